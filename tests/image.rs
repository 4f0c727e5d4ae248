//! The container image's runtime, without a container engine: the binary's dynamic libraries
//! (its ELF `DT_NEEDED` entries) are all in the runtime base the Dockerfile names, and the
//! binary serves as uid 65532 from a root that holds nothing else and is read-only, with no
//! `/tmp` at all: a `FROM scratch`-like tree of the binary, the libraries it needs and an
//! `/etc/passwd`, bind-mounted read-only in a mount namespace of its own (`unshare`) and entered
//! with `chroot --userspec=65532:65532`.
//!
//! What `gcr.io/distroless/cc-debian12` holds, written down below (the check relies on it):
//! distroless' `cc/config.bzl` lists the Debian 12 packages `libgcc-s1`, `libgomp1`,
//! `libstdc++6` and `gcc-12-base` on top of its `base` image, whose README lists glibc
//! (`libc6`), `libssl3`, `openssl`, `ca-certificates`, an `/etc/passwd` with `nonroot` (65532)
//! and `/tmp` (https://github.com/GoogleContainerTools/distroless, `cc/` and `base/`). The
//! shared objects of those packages are listed by soname; on a Debian 12 host the test also
//! asks `dpkg -S` which package owns each library the binary needs.
//!
//! Needs root (mount namespace, chroot), `unshare`, `chroot`, `readelf` and `ldd`; skipped with
//! a loud message otherwise. The debug binary is checked: its `DT_NEEDED` list is the release
//! binary's (the same crates and linker arguments; only optimisation and LTO differ).
mod common;
use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The shared objects of `gcr.io/distroless/cc-debian12`, by soname, with their Debian
/// package: glibc's (`libc6`, amd64 and arm64 loaders), `libgcc-s1`, `libstdc++6`, `libgomp1`
/// and `libssl3`.
const DISTROLESS_CC_DEBIAN12: &[(&str, &str)] = &[
    ("ld-linux-x86-64.so.2", "libc6"),
    ("ld-linux-aarch64.so.1", "libc6"),
    ("libc.so.6", "libc6"),
    ("libm.so.6", "libc6"),
    ("libmvec.so.1", "libc6"),
    ("libpthread.so.0", "libc6"),
    ("libdl.so.2", "libc6"),
    ("librt.so.1", "libc6"),
    ("libresolv.so.2", "libc6"),
    ("libutil.so.1", "libc6"),
    ("libanl.so.1", "libc6"),
    ("libnss_dns.so.2", "libc6"),
    ("libnss_files.so.2", "libc6"),
    ("libgcc_s.so.1", "libgcc-s1"),
    ("libstdc++.so.6", "libstdc++6"),
    ("libgomp.so.1", "libgomp1"),
    ("libssl.so.3", "libssl3"),
    ("libcrypto.so.3", "libssl3"),
];

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The binary's `DT_NEEDED` sonames.
fn needed() -> Vec<String> {
    output("readelf", &["-d", BIN])
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.split(']').next()?.to_string()))
        .collect()
}

fn skipped(why: &str) -> bool {
    eprintln!(
        "\n\n!!!!!!!! SKIPPED image runtime check: {why}. It runs in CI (root on Debian 12). !!!!!!!!\n\n"
    );
    true
}

#[test]
fn the_binarys_libraries_are_all_in_distroless_cc() {
    if !tool("readelf") && skipped("readelf (binutils) is missing") {
        return;
    }
    let needed = needed();
    assert!(
        needed.iter().any(|n| n == "libc.so.6"),
        "a glibc binary: {needed:?}"
    );
    let known: BTreeSet<&str> = DISTROLESS_CC_DEBIAN12.iter().map(|(so, _)| *so).collect();
    let missing: Vec<&String> = needed
        .iter()
        .filter(|n| !known.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the binary needs {missing:?}, which gcr.io/distroless/cc-debian12 does not have: the \
         image would not start"
    );
    // On Debian 12 (CI), the host's packages are the image's: each library comes from the
    // package the list above names.
    let debian12 =
        std::fs::read_to_string("/etc/debian_version").is_ok_and(|v| v.starts_with("12"));
    if debian12 && tool("dpkg") && tool("ldd") {
        for (name, path) in resolved() {
            let owner = output("dpkg", &["-S", &path.to_string_lossy()]);
            let package = owner.split(':').next().unwrap_or_default().trim();
            let listed = DISTROLESS_CC_DEBIAN12
                .iter()
                .find(|(so, _)| *so == name)
                .map(|(_, p)| *p);
            assert_eq!(Some(package), listed, "{name} ({path:?}) is in {owner}");
        }
    }
}

/// Each needed library (and the program interpreter) with the path the host's loader finds.
fn resolved() -> Vec<(String, PathBuf)> {
    let ldd = output("ldd", &[BIN]);
    let mut out = Vec::new();
    for line in ldd.lines() {
        let line = line.trim();
        let name = line.split_whitespace().next().unwrap_or_default();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next().unwrap_or_default(),
            None => name, // the interpreter, by absolute path
        };
        if !path.starts_with('/') {
            continue; // linux-vdso.so.1
        }
        let soname = Path::new(name)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((soname, PathBuf::from(path)));
    }
    out
}

fn copy_into(root: &Path, path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let dest = root.join(path.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(path, &dest).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write_into(root: &Path, path: &str, text: &str) {
    let dest = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(dest, text).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_as_65532_from_a_read_only_root_without_tmp() {
    let root_user = output("id", &["-u"]).trim() == "0";
    if !root_user && skipped("not root (a mount namespace and chroot need it)") {
        return;
    }
    for t in ["unshare", "chroot", "ldd", "readelf"] {
        if !tool(t) && skipped(&format!("{t} is missing")) {
            return;
        }
    }
    // The tree the image holds: the binary, the libraries it loads, /etc/passwd, the config.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for (_, path) in resolved() {
        copy_into(&root, &path, 0o755);
    }
    // Where the Dockerfile puts it, whatever the checkout's path (a checkout under /tmp must not
    // bring a /tmp into the tree).
    let bin_in_root = "/usr/local/bin/portcullis";
    let dest = root.join(bin_in_root.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &dest).unwrap();
    std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write_into(
        &root,
        "/etc/passwd",
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    );
    let issuer = TestIssuer::start().await;
    let echo = start_echo().await;
    let (port, admin) = (free_port(), free_port());
    let config = standard_config(&issuer.url(), echo)
        .listen(&format!("127.0.0.1:{port}"))
        .admin_listen(&format!("127.0.0.1:{admin}"));
    write_into(&root, "/etc/portcullis/config.yaml", &config.yaml());
    assert!(!root.join("tmp").exists(), "no /tmp in the tree");
    // Every directory traversable by 65532, nothing writable by it.
    let chmod = Command::new("chmod")
        .args(["-R", "a+rX,go-w"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(chmod.success());
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let script = "mount --bind \"$0\" \"$0\" && mount -o remount,bind,ro \"$0\" && \
                  exec chroot --userspec=65532:65532 \"$0\" \"$1\" run -c /etc/portcullis/config.yaml";
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .arg(&root)
        .arg(bin_in_root)
        .env_clear()
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    let admin_addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the gateway exited ({status}) in the read-only root:\n{err}");
        }
        if std::net::TcpStream::connect(admin_addr).is_ok()
            && send_raw(
                admin_addr,
                b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            .await
            .status
                == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready in the read-only root"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It runs as 65532:65532 (the exec chain keeps the pid).
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let gid = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid}"
    );
    assert!(
        gid.split_whitespace().skip(1).all(|g| g == "65532"),
        "{gid}"
    );
    // It serves: a token verified against keys fetched over HTTP, forwarded upstream.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let token = issuer.token(json!({ "scope": "read:orders" }));
    let r = get_bearer_at(addr, "/api/orders/1", &token).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        get_bearer_at(addr, "/api/orders/1", "x.y.z").await.status,
        401
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
