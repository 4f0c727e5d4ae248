//! The minimum Rust toolchain has one source of truth, `rust-version` in Cargo.toml: the
//! Dockerfile's builder image and README.md's prerequisites must name the same version, and no
//! package in Cargo.lock may need a newer rustc (each package's `rust_version` as `cargo
//! metadata` reports it). A lock file that moved ahead of the documented toolchain is what
//! breaks `docker build` for a new user while every local build (on a newer toolchain) passes.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// "1.95" or "1.95.0" as (major, minor, patch).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.trim().split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("not a version: {text:?}"))
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

/// `rust-version` of Cargo.toml's `[package]`, as written.
fn crate_rust_version() -> String {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("rust-version"))
        .expect("Cargo.toml sets rust-version");
    line.split('"')
        .nth(1)
        .expect("rust-version = \"…\"")
        .to_string()
}

#[test]
fn the_dockerfile_builds_with_the_crates_rust_version() {
    let wanted = crate_rust_version();
    let dockerfile = read("Dockerfile");
    let tags: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM rust:"))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(
        tags.len(),
        1,
        "one `FROM rust:` builder stage, got {tags:?}"
    );
    let tag_version = tags[0].split('-').next().unwrap_or("");
    assert_eq!(
        tag_version, wanted,
        "the Dockerfile's builder is rust:{}, Cargo.toml's rust-version is {wanted}",
        tags[0]
    );
}

#[test]
fn the_readme_names_the_crates_rust_version() {
    let wanted = crate_rust_version();
    let readme = read("README.md");
    let line = readme
        .lines()
        .find(|l| l.contains("a Rust toolchain,"))
        .expect("README.md's prerequisites name the Rust toolchain");
    assert!(
        line.contains(&format!("{wanted} or newer")),
        "README.md says {line:?}, Cargo.toml's rust-version is {wanted}"
    );
}

#[test]
fn no_locked_package_needs_a_newer_rustc_than_the_crates_rust_version() {
    let ours = version(&crate_rust_version());
    // The packages built for this (Linux) host: the image's builder builds for the same one,
    // and Windows-only packages are not in the offline cache.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let rustc = String::from_utf8_lossy(&rustc.stdout);
    let host = rustc
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", host])
        .current_dir(ROOT)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    assert!(packages.len() > 100, "the whole dependency graph is listed");
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > ours).then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "Cargo.lock needs a newer rustc than rust-version {ours:?}: {newer:?}"
    );
}
