//! Build script: records the git revision that `portcullis --version` prints.
//!
//! `PORTCULLIS_GIT_REV` in the build environment wins (the Dockerfile passes it as a build
//! argument, since `.git` is not in the image's build context); otherwise `git rev-parse`;
//! otherwise `unknown`, so a build from a source tarball still works.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_GIT_REV");
    let rev = std::env::var("PORTCULLIS_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: the worktree's HEAD, the branch it names, packed refs.
            for dir in [
                git(&["rev-parse", "--git-dir"]),
                git(&["rev-parse", "--git-common-dir"]),
            ]
            .into_iter()
            .flatten()
            {
                for file in ["HEAD", "packed-refs"] {
                    let path = Path::new(&dir).join(file);
                    if path.exists() {
                        println!("cargo:rerun-if-changed={}", path.display());
                    }
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
                    let path = Path::new(&common).join(branch);
                    if path.exists() {
                        println!("cargo:rerun-if-changed={}", path.display());
                    }
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PORTCULLIS_GIT_REV={rev}");
}
