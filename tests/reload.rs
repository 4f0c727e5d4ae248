//! Config hot reload and the process lifecycle around it: a file rewritten under load (in-place
//! writes, renames, ConfigMap-style `..data` symlink swaps), an invalid file, SIGHUP, issuers
//! kept or replaced across a reload, SIGTERM after reloads, readiness while draining, and a
//! listener that cannot bind.
mod common;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An upstream that answers every request 200 with `tag` as its body (keep-alive allowed).
async fn start_tagged(tag: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(portcullis::http1::serve(
        listener,
        move |_req: http::Request<hyper::body::Incoming>| {
            let reply = http::Response::new(Full::new(Bytes::from(tag.clone())));
            std::future::ready(reply)
        },
    ));
    addr
}

/// How a test replaces the config file.
#[derive(Debug, Clone, Copy)]
enum Write {
    /// Truncate and write the file in place (through its symlink, if it is one).
    InPlace,
    /// Write a temp file beside it and rename it over the file (an editor's save).
    Rename,
    /// What the kubelet does to a mounted ConfigMap: a new `..<version>` directory, a
    /// `..data_tmp` symlink to it renamed over `..data`, the old version removed; the file is
    /// a symlink to `..data/<name>`.
    ConfigMap,
}

/// A config file in its own directory, rewritten the ways `Write` lists.
struct ConfigDir {
    dir: tempfile::TempDir,
    version: usize,
}

impl ConfigDir {
    fn new(yaml: &str) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        ConfigDir { dir, version: 0 }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn write(&mut self, how: Write, yaml: &str) {
        let d = self.dir.path();
        self.version += 1;
        match how {
            Write::InPlace => std::fs::write(self.path(), yaml).unwrap(),
            Write::Rename => {
                let tmp = d.join(format!(".config.yaml.{}", self.version));
                std::fs::write(&tmp, yaml).unwrap();
                std::fs::rename(&tmp, self.path()).unwrap();
            }
            Write::ConfigMap => {
                let version = format!("..v{}", self.version);
                std::fs::create_dir(d.join(&version)).unwrap();
                std::fs::write(d.join(&version).join("config.yaml"), yaml).unwrap();
                let old = std::fs::read_link(d.join("..data")).ok();
                std::os::unix::fs::symlink(&version, d.join("..data_tmp")).unwrap();
                std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
                let linked = std::fs::read_link(self.path()).is_ok();
                if !linked {
                    let tmp = d.join("config.yaml.link");
                    std::os::unix::fs::symlink("..data/config.yaml", &tmp).unwrap();
                    std::fs::rename(&tmp, self.path()).unwrap();
                }
                if let Some(old) = old {
                    let _ = std::fs::remove_dir_all(d.join(old));
                }
            }
        }
    }
}

fn signal(gw: &Gateway, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &gw.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Log lines with `"event": event`, parsed.
fn events(gw: &Gateway, event: &str) -> Vec<Value> {
    gw.logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

fn wait_exit(gw: &mut Gateway, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = gw.child().try_wait().unwrap() {
            return status;
        }
        assert!(started.elapsed() < within, "still running");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Generation `k` of the load test: `/stable/**` (token required) and `/r/<k>` (public) both
/// go to the upstream that answers `gen-<k>`.
fn generation(k: usize, issuer: &FaultyIssuer, upstream: SocketAddr) -> String {
    Config::new()
        .upstream(&format!("u{k}"), &format!("http://{upstream}"))
        .default_upstream(&format!("u{k}"))
        .issuer(issuer.jwks_uri_block("main"))
        .identity_header("x-auth-subject", "sub")
        .route(Route::new("stable", "/stable/**"))
        .route(Route::new(&format!("r{k}"), &format!("/r/{k}")).auth("none"))
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn config_rewritten_60_times_under_load_never_fails_or_misroutes() {
    const WRITES: usize = 60;
    let issuer = FaultyIssuer::start().await;
    let mut upstreams = Vec::new();
    for k in 0..=WRITES {
        upstreams.push(start_tagged(format!("gen-{k}")).await);
    }
    let mut config = ConfigDir::new(&generation(0, &issuer, upstreams[0]));
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    let fetches_at_start = issuer.fetches();
    let token = issuer.token();

    // Clients: each sends one request after another and checks that the generation it is
    // answered by never goes back and never runs ahead of what was written.
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (written, stop, sent, token, addr) = (
            Arc::clone(&written),
            Arc::clone(&stop),
            Arc::clone(&sent),
            token.clone(),
            gw.addr,
        );
        clients.push(tokio::spawn(async move {
            let mut seen = 0u64;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let r = get_bearer_at(addr, "/stable/x", &token).await;
                sent.fetch_add(1, Ordering::Relaxed);
                let body = String::from_utf8_lossy(&r.body).to_string();
                let generation = body
                    .strip_prefix("gen-")
                    .and_then(|g| g.parse::<u64>().ok());
                match generation {
                    Some(g)
                        if r.status == 200 && g >= seen && g <= written.load(Ordering::Acquire) =>
                    {
                        seen = g
                    }
                    _ => failures.push(format!(
                        "{} {body} (last seen gen-{seen}, written {})",
                        r.status,
                        written.load(Ordering::Acquire)
                    )),
                }
            }
            failures
        }));
    }

    let ways = [Write::InPlace, Write::Rename, Write::ConfigMap];
    let mut slowest = Duration::ZERO;
    for k in 1..=WRITES {
        let how = ways[k % 3];
        written.store(k as u64, Ordering::Release);
        let started = Instant::now();
        config.write(how, &generation(k, &issuer, upstreams[k]));
        loop {
            let r = gw.get(&format!("/r/{k}"), &[]).await;
            if r.status == 200 {
                assert_eq!(r.body, format!("gen-{k}").as_bytes());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "write {k} ({how:?}) not in effect after 2 s: {}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, Ordering::Release);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed or misrouted: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(sent > 200, "only {sent} requests during the reloads");
    eprintln!("{WRITES} reloads, {sent} requests, slowest reload {slowest:?}");

    gw.wait_metric("portcullis_config_generation", (WRITES + 1) as f64)
        .await;
    assert_eq!(
        gw.metric(r#"portcullis_config_reloads_total{result="ok"}"#)
            .await,
        WRITES as f64
    );
    assert_eq!(
        gw.metric(r#"portcullis_config_reloads_total{result="invalid"}"#)
            .await,
        0.0
    );
    assert_eq!(
        issuer.fetches(),
        fetches_at_start,
        "an unchanged issuer was refetched"
    );
    let reloads = events(&gw, "config_reload");
    let ok = reloads.iter().filter(|e| e["result"] == "ok").count();
    assert_eq!(ok, WRITES);
    let last = reloads.iter().rev().find(|e| e["result"] == "ok").unwrap();
    assert_eq!(last["routes_added"], format!("r{WRITES}"));
    assert_eq!(last["routes_removed"], format!("r{}", WRITES - 1));
    assert_eq!(last["issuers_changed"], "");
}

/// How the hostile writer of `a_policy_is_never_judged_half_written` writes version `k`.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// Truncate in place, write up to the `scopes:` line, pause 1.5 s, write the rest, close.
    InPieces,
    /// Truncate in place, one `write` per byte, a pause at the `scopes:` line, then close.
    ByteByByte,
    /// Write a temp file in pieces with a pause, then rename it over the file.
    Rename,
    /// The kubelet's `..data` symlink swap (its version file written in pieces first).
    ConfigMap,
}

/// Write `yaml` to `path` in place, holding it open: `pieces` in order, `pause` after each but
/// the last, each piece in one `write` or one per byte.
fn write_slowly(path: &Path, pieces: &[&[u8]], pause: Duration, per_byte: bool) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    for (i, piece) in pieces.iter().enumerate() {
        if per_byte {
            for b in piece.iter() {
                f.write_all(std::slice::from_ref(b)).unwrap();
            }
        } else {
            f.write_all(piece).unwrap();
        }
        if i + 1 < pieces.len() {
            std::thread::sleep(pause);
        }
    }
}

/// Every way of writing the file, one after another, while clients ask for a route that
/// needs `admin` with a token that lacks it: a file cut before the route's `scopes:` line is
/// itself a valid policy that opens the route, so one request judged by any incomplete file
/// shows as a 200. Each version also adds a public route, to see it applied once complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_written_in_pieces_byte_by_byte_renamed_or_swapped_is_never_judged_half_written() {
    let issuer = FaultyIssuer::start().await;
    let echo = start_echo().await;
    let version = |k: usize| {
        Config::new()
            .upstream("echo", &format!("http://{echo}"))
            .default_upstream("echo")
            .issuer(issuer.jwks_uri_block("main"))
            .route(Route::new(&format!("m{k}"), &format!("/m/{k}")).auth("none"))
            .route(Route::new("admin", "/admin/**").scopes("[admin]"))
            .yaml()
    };
    // The danger is real: the file up to the scopes line is a policy of its own.
    let cut = |yaml: &str| yaml.find("    scopes: [admin]").unwrap();
    let v0 = version(0);
    let (ok, out) = check_config(&v0[..cut(&v0)]);
    assert!(ok, "the cut file should compile: {out}");

    let mut config = ConfigDir::new(&v0);
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    let token = issuer.token();
    assert_eq!(gw.get_bearer("/admin/x", &token).await.status, 403);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (stop, sent, token, addr) =
            (Arc::clone(&stop), Arc::clone(&sent), token.clone(), gw.addr);
        clients.push(tokio::spawn(async move {
            let mut opened = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let r = get_bearer_at(addr, "/admin/x", &token).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if r.status != 403 {
                    opened.push(r.status);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            opened
        }));
    }

    let ways = [
        Hostile::InPieces,
        Hostile::ByteByByte,
        Hostile::Rename,
        Hostile::ConfigMap,
        Hostile::InPieces,
    ];
    for (i, how) in ways.into_iter().enumerate() {
        let k = i + 1;
        let yaml = version(k);
        let at = cut(&yaml);
        let pause = Duration::from_millis(1500);
        let path = config.path();
        let dir = config.dir.path().to_path_buf();
        let text = yaml.clone().into_bytes();
        tokio::task::spawn_blocking(move || {
            let (head, tail) = text.split_at(at);
            match how {
                Hostile::InPieces => write_slowly(&path, &[head, tail], pause, false),
                Hostile::ByteByByte => write_slowly(&path, &[head, tail], pause / 3, true),
                Hostile::Rename => {
                    let tmp = dir.join(format!(".config.yaml.{k}"));
                    write_slowly(&tmp, &[head, tail], pause, false);
                    std::fs::rename(&tmp, &path).unwrap();
                }
                Hostile::ConfigMap => {}
            }
        })
        .await
        .unwrap();
        if matches!(how, Hostile::ConfigMap) {
            config.write(Write::ConfigMap, &yaml);
        }
        let started = Instant::now();
        loop {
            if gw.get(&format!("/m/{k}"), &[]).await.status == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "version {k} ({how:?}) not in effect after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.store(true, Ordering::Release);
    let mut opened = Vec::new();
    for c in clients {
        opened.extend(c.await.unwrap());
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        opened.is_empty(),
        "{} of {sent} requests for /admin/x without the admin scope were not 403: {:?}",
        opened.len(),
        &opened[..opened.len().min(10)]
    );
    assert!(sent > 100, "only {sent} requests during the writes");
    assert_eq!(
        gw.metric(r#"portcullis_config_reloads_total{result="invalid"}"#)
            .await,
        0.0,
        "a half-written file was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_keeps_the_old_policy_and_is_logged_with_its_position_and_counted() {
    let issuer = FaultyIssuer::start().await;
    let echo = start_echo().await;
    let good = Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .issuer(issuer.jwks_uri_block("main"))
        .route(Route::new("health", "/healthz").auth("none"))
        .yaml();
    let mut config = ConfigDir::new(&good);
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;

    let bad = good.replace("    auth: none", "    auth: none\n    scope: [x]");
    let line = bad.lines().position(|l| l.contains("scope:")).unwrap() + 1;
    config.write(Write::Rename, &bad);
    gw.wait_metric(r#"portcullis_config_reloads_total{result="invalid"}"#, 1.0)
        .await;
    assert_eq!(gw.get("/healthz", &[]).await.status, 200);
    assert_eq!(gw.metric("portcullis_config_generation").await, 1.0);

    let refused = events(&gw, "config_reload");
    let refused: Vec<_> = refused
        .iter()
        .filter(|e| e["result"] == "invalid")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let e = refused[0];
    assert_eq!(e["file"], config.path().display().to_string());
    assert_eq!(e["line"], line);
    assert_eq!(e["column"], 5);
    assert_eq!(e["key"], "routes[0].scope");
    assert_eq!(e["level"], "ERROR");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `scope`"),
        "{e}"
    );

    // Fixed: the next write applies.
    config.write(Write::InPlace, &good.replace("/healthz", "/livez"));
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    assert_eq!(gw.get("/livez", &[]).await.status, 200);
    assert_eq!(gw.get("/healthz", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_unchanged_file_refetches_nothing_and_keeps_serving() {
    let issuer = FaultyIssuer::start().await;
    let echo = start_echo().await;
    let yaml = Config::new()
        .upstream("echo", &format!("http://{echo}"))
        .default_upstream("echo")
        .issuer(issuer.discovery_block("main"))
        .route(Route::new("api", "/api/**"))
        .yaml();
    let config = ConfigDir::new(&yaml);
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    let (fetches, discovery) = (issuer.fetches(), issuer.discovery_requests());
    assert_eq!(gw.get_bearer("/api/x", &issuer.token()).await.status, 200);

    for n in 1..=3 {
        signal(&gw, "HUP");
        gw.wait_metric(
            r#"portcullis_config_reloads_total{result="unchanged"}"#,
            n as f64,
        )
        .await;
    }
    assert_eq!(gw.get_bearer("/api/x", &issuer.token()).await.status, 200);
    assert_eq!(issuer.fetches(), fetches, "keys refetched on SIGHUP");
    assert_eq!(issuer.discovery_requests(), discovery);
    assert_eq!(gw.metric("portcullis_config_generation").await, 1.0);
    let unchanged = events(&gw, "config_reload");
    assert!(
        unchanged
            .iter()
            .all(|e| e["result"] == "unchanged" && e["trigger"] == "sighup"),
        "{unchanged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_issuer_gets_fresh_keys_and_readiness_waits_for_them_while_others_keep_theirs() {
    let kept = FaultyIssuer::start().await;
    let changed = FaultyIssuer::start().await;
    let echo = start_echo().await;
    let config_with = |audience: &str| {
        Config::new()
            .upstream("echo", &format!("http://{echo}"))
            .default_upstream("echo")
            .issuer(kept.jwks_uri_block("kept"))
            .issuer(
                changed
                    .jwks_uri_block("changed")
                    .audiences(&[AUD, audience]),
            )
            .route(Route::new("api", "/api/**"))
            .yaml()
    };
    let mut config = ConfigDir::new(&config_with("api://one"));
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    let (kept_fetches, changed_fetches) = (kept.fetches(), changed.fetches());

    // The changed issuer cannot serve keys for a while: /readyz must say so.
    changed.set_fault(Fault::Status500).await;
    config.write(Write::Rename, &config_with("api://two"));
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    let r = gw.admin_get("/readyz").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("changed"));
    assert_eq!(gw.get_bearer("/api/x", &kept.token()).await.status, 200);

    changed.set_fault(Fault::None).await;
    gw.wait_ready().await;
    assert_eq!(gw.get_bearer("/api/x", &changed.token()).await.status, 200);
    assert!(changed.fetches() > changed_fetches);
    assert_eq!(
        kept.fetches(),
        kept_fetches,
        "the unchanged issuer was refetched"
    );
    let applied = events(&gw, "config_reload");
    assert_eq!(applied.last().unwrap()["issuers_changed"], "changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_never_read_under_another_issuer_after_issuers_move() {
    // Issuers are indexed in name order: adding `aaa` moves `main` from index 0 to 1. Both
    // publish the same keys (as one IdP's v1 and v2 endpoints do), so only the issuer id
    // tells a cached token of `main` from one of `aaa`.
    let main = FaultyIssuer::start().await;
    let other = FaultyIssuer::start().await;
    other.set_jwks(portcullis::demo::keys::jwks(&[&main.rs, &main.ed]));
    let echo = start_echo().await;
    let base = || {
        Config::new()
            .upstream("echo", &format!("http://{echo}"))
            .default_upstream("echo")
            .issuer(main.jwks_uri_block("main"))
            .identity_header("x-auth-subject", "sub")
            .route(Route::new("main-only", "/api/**").set("issuers", "[main]"))
    };
    let mut config = ConfigDir::new(&base().yaml());
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    let token = main.token();
    // Twice: a token is cached on its second verification.
    assert_eq!(gw.get_bearer("/api/x", &token).await.status, 200);
    assert_eq!(gw.get_bearer("/api/x", &token).await.status, 200);

    config.write(
        Write::ConfigMap,
        &base().issuer(other.jwks_uri_block("aaa")).yaml(),
    );
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    gw.wait_ready().await;
    let r = gw.get_bearer("/api/x", &token).await;
    assert_eq!(r.echo().header("x-auth-subject"), Some("user-1"));

    // And a changed identity plan renders the cached token anew.
    config.write(
        Write::ConfigMap,
        &base()
            .issuer(other.jwks_uri_block("aaa"))
            .identity_header("x-auth-user", "sub")
            .yaml(),
    );
    gw.wait_metric("portcullis_config_generation", 3.0).await;
    let echo = gw.get_bearer("/api/x", &token).await.echo();
    assert_eq!(echo.header("x-auth-user"), Some("user-1"));
    assert_eq!(echo.header("x-auth-subject"), Some("user-1"));
    let applied = events(&gw, "config_reload");
    assert_eq!(applied.last().unwrap()["token_cache_kept"], false);
}

/// An issuer whose block changed is a new issuer to the cache, whatever its name: a token
/// cached under the old block is judged again under the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_issuer_block_does_not_keep_its_cached_tokens() {
    let issuer = FaultyIssuer::start().await;
    let echo = start_echo().await;
    let with_audiences = |audiences: &[&str]| {
        Config::new()
            .upstream("echo", &format!("http://{echo}"))
            .default_upstream("echo")
            .issuer(issuer.jwks_uri_block("main").audiences(audiences))
            .identity_header("x-auth-subject", "sub")
            .route(Route::new("api", "/api/**"))
            .yaml()
    };
    let mut config = ConfigDir::new(&with_audiences(&[AUD]));
    let gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    let token = issuer.token();
    // Twice: a token is cached on its second verification; the third is a hit.
    for _ in 0..3 {
        assert_eq!(gw.get_bearer("/api/x", &token).await.status, 200);
    }
    let hit = r#"portcullis_token_cache_requests_total{result="hit"}"#;
    assert_eq!(gw.metric(hit).await, 1.0);

    // Same name, same keys, another audience: the token's `aud` is no longer accepted.
    config.write(Write::Rename, &with_audiences(&["api://other"]));
    gw.wait_metric("portcullis_config_generation", 2.0).await;
    gw.wait_ready().await;
    let applied = events(&gw, "config_reload");
    let last = applied.last().unwrap();
    assert_eq!(last["issuers_changed"], "main");
    assert_eq!(last["token_cache_kept"], true, "{last}");
    assert_refused_as(
        &gw.get_bearer("/api/x", &token).await,
        "audience not allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_settings_are_logged_as_ignored_and_sigterm_after_reloads_exits_zero() {
    let issuer = FaultyIssuer::start().await;
    let echo = start_echo().await;
    let config_with = |threads: &str, path: &str| {
        Config::new()
            .upstream("echo", &format!("http://{echo}"))
            .default_upstream("echo")
            .issuer(issuer.jwks_uri_block("main"))
            .route(Route::new("health", path).auth("none"))
            .server("threads", threads)
            .limit("h2_max_concurrent_streams", threads)
            .yaml()
    };
    let mut config = ConfigDir::new(&config_with("2", "/a"));
    let mut gw = start_gateway_at(&config.path(), &[]);
    gw.wait_ready().await;
    for (n, how) in [Write::InPlace, Write::Rename, Write::ConfigMap]
        .into_iter()
        .enumerate()
    {
        config.write(how, &config_with("3", &format!("/p{n}")));
        gw.wait_metric("portcullis_config_generation", (n + 2) as f64)
            .await;
    }
    assert_eq!(gw.get("/p2", &[]).await.status, 200);
    for setting in ["server.threads", "limits.h2_max_concurrent_streams"] {
        let ignored: Vec<_> = events(&gw, "config_reload")
            .into_iter()
            .filter(|e| e["setting"] == setting)
            .collect();
        assert_eq!(ignored.len(), 1, "{setting}: {ignored:?}");
    }

    signal(&gw, "TERM");
    let status = wait_exit(&mut gw, Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_from_sigterm_on_while_a_slow_request_drains() {
    let issuer = TestIssuer::start().await;
    let slow = start_slow(Duration::from_millis(1500), "slow").await;
    let mut gw = start_gateway(&standard_config(&issuer.url(), slow).yaml());
    gw.wait_ready().await;
    let addr = gw.addr;
    let pending = tokio::spawn(async move { request_at(addr, "GET", "/healthz", &[], "").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&gw, "TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = gw.admin_get("/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, b"not ready: shutting down\n");
    assert!(
        gw.child().try_wait().unwrap().is_none(),
        "exited before the drain"
    );
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"slow".as_slice()));
    assert!(wait_exit(&mut gw, Duration::from_secs(5)).success());
}

/// Run the binary with `args`, expecting it to fail within 5 s; its stderr.
fn fails_fast(args: &[&str], config: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args);
    if let Some(path) = config {
        cmd.arg(path);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "exited 0");
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("still running 5 s after start on a used port");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("\"listening\"") && !stdout.contains("curl"),
        "announced itself anyway: {stdout}"
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_on_a_used_port_exits_at_once_naming_the_address() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("second.yaml");
    for (listen, admin, used) in [
        (s.gw.addr.to_string(), "127.0.0.1:0".to_string(), s.gw.addr),
        (
            "127.0.0.1:0".to_string(),
            s.gw.admin.unwrap().to_string(),
            s.gw.admin.unwrap(),
        ),
    ] {
        let yaml = standard_config(&s.issuer.url(), s.echo)
            .listen(&listen)
            .admin_listen(&admin)
            .yaml();
        std::fs::write(&path, yaml).unwrap();
        let err = fails_fast(&["run", "-c"], Some(&path));
        assert!(err.contains(&used.to_string()), "{err}");
        assert!(err.contains("in use"), "{err}");
    }
    let err = fails_fast(&["demo", "--listen", &s.gw.addr.to_string()], None);
    assert!(err.contains(&s.gw.addr.to_string()), "{err}");
    // The first gateway is untouched.
    assert_eq!(s.gw.get("/healthz", &[]).await.status, 200);
}
