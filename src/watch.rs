//! Watching files that are replaced on disk: the config file (`reload`) and the listener's
//! certificate and key (`tls`). A file's directory is watched, not the file, so that in-place
//! writes, write-then-rename and Kubernetes ConfigMap/Secret `..data` symlink swaps are all
//! seen; the directory a symlink resolves into is watched too. Events are settled (an editor's
//! or the kubelet's several events make one change) before the owner's callback runs, on a
//! thread of its own.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Quiet time after a file event before the files are read: several events make one change,
/// and a write in progress is not read half-done.
const SETTLE: Duration = Duration::from_millis(150);
/// The longest events may keep postponing a read.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// Why the watched files are read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Watch,
}

impl Trigger {
    /// The `trigger` field of the log lines.
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Watch => "file",
        }
    }
}

/// Watch `files` and SIGHUP on `runtime`; call `on_change` (on a thread named `thread`) once
/// events settle. Returns once both are set up (SIGHUP no longer ends the process from then on).
pub fn spawn(
    thread: &str,
    files: Vec<PathBuf>,
    runtime: &tokio::runtime::Handle,
    mut on_change: impl FnMut(Trigger) + Send + 'static,
) -> std::io::Result<()> {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel::<Trigger>();
    let mut dirs: Vec<PathBuf> = files.iter().map(|f| dir_of(f)).collect();
    dirs.dedup();
    let events = tx.clone();
    let watched = files.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if may_change_content(&event.kind)
                    && watched.iter().any(|f| concerns(f, &event.paths)) =>
            {
                let _ = events.send(Trigger::Watch);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "file watch error"),
        })
        .map_err(std::io::Error::other)?;
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| std::io::Error::other(format!("cannot watch {}: {e}", dir.display())))?;
    }
    let mut hangup = {
        let _entered = runtime.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?
    };
    runtime.spawn(async move {
        while hangup.recv().await.is_some() {
            if tx.send(Trigger::Signal).is_err() {
                break;
            }
        }
    });
    let mut followed = Vec::new();
    follow(&mut watcher, &dirs, &files, &mut followed);
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut trigger = first;
                let until = Instant::now() + MAX_SETTLE;
                while let Ok(next) = rx.recv_timeout(SETTLE) {
                    if next == Trigger::Signal {
                        trigger = Trigger::Signal;
                    }
                    if Instant::now() >= until {
                        break;
                    }
                }
                // Follow the symlinks first: a write after this is seen, one before is read.
                follow(&mut watcher, &dirs, &files, &mut followed);
                on_change(trigger);
            }
        })?;
    Ok(())
}

/// The directory a file is watched through.
fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Also watch the directories the files resolve to, when a symlink leads out of the watched
/// `dirs` (into a ConfigMap's `..2024_…` directory, or anywhere else): an in-place write there
/// changes a file without an event in `dirs`. `followed` is what is watched so far.
fn follow(
    watcher: &mut notify::RecommendedWatcher,
    dirs: &[PathBuf],
    files: &[PathBuf],
    followed: &mut Vec<PathBuf>,
) {
    use notify::Watcher;
    let watched: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .collect();
    let mut targets: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .filter(|t| !watched.contains(t))
        .collect();
    targets.sort();
    targets.dedup();
    if targets == *followed {
        return;
    }
    for old in followed.drain(..) {
        // Fails when the directory is gone (a swapped-out ConfigMap version): nothing to undo.
        let _ = watcher.unwatch(&old);
    }
    for target in targets {
        match watcher.watch(&target, notify::RecursiveMode::NonRecursive) {
            Ok(()) => followed.push(target),
            Err(e) => {
                tracing::warn!(dir = %target.display(), error = %e, "cannot watch a watched file's target directory")
            }
        }
    }
}

/// Any event in the directory but our own reads (opening a file is an event too).
fn may_change_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Is an event on `paths` (in a watched directory) one that may change what `file` reads?
/// The file itself, the file its symlinks resolve to, and what its symlink goes through: the
/// ConfigMap `..data` link, swapped by renaming `..data_tmp` over it. Other files there (a log
/// file, an editor's backup) are not, or writing one would set off reads.
fn concerns(file: &Path, paths: &[PathBuf]) -> bool {
    let name = file.file_name();
    let resolved = std::fs::canonicalize(file).ok();
    let target_name = resolved.as_deref().and_then(Path::file_name);
    let via = std::fs::read_link(file).ok().and_then(|target| {
        target
            .components()
            .find(|c| !matches!(c, std::path::Component::CurDir))
            .map(|c| c.as_os_str().to_os_string())
            .filter(|_| target.is_relative())
    });
    paths.is_empty()
        || paths.iter().filter_map(|p| p.file_name()).any(|n| {
            Some(n) == name
                || Some(n) == target_name
                || via.as_deref() == Some(n)
                || n.to_string_lossy().starts_with("..")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_file_and_its_configmap_links_concern_it() {
        let config = Path::new("/etc/portcullis/config.yaml");
        let at = |name: &str| vec![PathBuf::from("/etc/portcullis").join(name)];
        assert!(concerns(config, &at("config.yaml")));
        assert!(concerns(config, &at("..data")));
        assert!(concerns(config, &at("..data_tmp")));
        assert!(!concerns(config, &at("access.log")));
        assert!(!concerns(config, &at(".config.yaml.swp")));
        assert!(concerns(config, &[]));
    }

    #[test]
    fn own_reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind};
        assert!(!may_change_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!may_change_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(may_change_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(may_change_content(&EventKind::Create(CreateKind::Any)));
    }
}
