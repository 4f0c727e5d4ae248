//! Build script: the commit the binary is built from, for `portcullis_build_info{revision}`.
//! `PORTCULLIS_REVISION` in the environment wins (a build outside git, e.g. a container
//! image); otherwise `git rev-parse`, and `unknown` when that fails.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_REVISION");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a commit).
    for name in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", name]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    let revision = std::env::var("PORTCULLIS_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PORTCULLIS_REVISION={revision}");
}

/// Rerun on changes to `path`, if it exists (a missing one would rerun every build).
fn watch(path: Option<String>) {
    if let Some(path) = path.filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}
