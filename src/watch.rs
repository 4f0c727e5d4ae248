//! Watching files that are replaced on disk: the config file (`reload`) and the listener's
//! certificate and key (`tls`). A file's directory is watched, not the file, so that in-place
//! writes, write-then-rename and Kubernetes ConfigMap/Secret `..data` symlink swaps are all
//! seen; the directory a symlink resolves into is watched too. Events are settled (an editor's
//! or the kubelet's several events make one change) before the owner's callback runs, on a
//! thread of its own.
//!
//! A file written in place is read once its writer closes it, never while it is being written
//! (on Linux, where inotify reports the close): a writer that pauses half-way, or writes one
//! byte at a time, is not read until it is done. Renames, symlink swaps and removals are read
//! at once: they replace a whole file.

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
    let (tx, rx) = mpsc::channel::<Event>();
    let mut dirs: Vec<PathBuf> = files.iter().map(|f| dir_of(f)).collect();
    dirs.dedup();
    let events = tx.clone();
    let watched = files.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if watched.iter().any(|f| concerns(f, &event.paths)) => {
                let kind = match what_changed(&event.kind, &event.paths) {
                    Change::Done => Event::Changed(Trigger::Watch),
                    Change::Writing => Event::Writing,
                    Change::Nothing => return,
                };
                let _ = events.send(kind);
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
            if tx.send(Event::Changed(Trigger::Signal)).is_err() {
                break;
            }
        }
    });
    let mut followed = Vec::new();
    follow(&mut watcher, &dirs, &files, &mut followed);
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            // A write in progress (data written, file not yet closed) waits for its close;
            // SIGHUP reads at once, as asked.
            while let Ok(first) = rx.recv() {
                let Event::Changed(mut trigger) = first else {
                    continue;
                };
                let mut writing = false;
                let until = Instant::now() + MAX_SETTLE;
                while let Ok(next) = rx.recv_timeout(SETTLE) {
                    match next {
                        Event::Writing => writing = true,
                        Event::Changed(t) => {
                            writing = false;
                            if t == Trigger::Signal {
                                trigger = Trigger::Signal;
                            }
                        }
                    }
                    if Instant::now() >= until {
                        break;
                    }
                }
                if writing && trigger == Trigger::Watch {
                    // Another write began while settling: its close reads the file.
                    continue;
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

/// What the settling thread hears.
enum Event {
    /// A change is complete: read the files (after settling).
    Changed(Trigger),
    /// A file is being written in place: wait for its writer to close it.
    Writing,
}

/// What a file event means for reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// A whole new content: a writer closed the file, a rename or symlink swap, a removal.
    Done,
    /// Data written, or a regular file created, whose writer has not closed it yet.
    Writing,
    /// Our own reads (opening a file is an event too).
    Nothing,
}

/// inotify reports a writer's close, so in-place writes wait for it there. Elsewhere a data
/// event is all there is.
const CLOSE_IS_REPORTED: bool = cfg!(target_os = "linux");

fn what_changed(kind: &notify::EventKind, paths: &[PathBuf]) -> Change {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Change::Done,
        EventKind::Access(_) => Change::Nothing,
        EventKind::Modify(ModifyKind::Data(_)) if CLOSE_IS_REPORTED => Change::Writing,
        // `open(O_CREAT)` of a regular file: its content comes, and its close follows. A
        // symlink (the kubelet's `..data_tmp`) or a directory is whole when created.
        EventKind::Create(_)
            if CLOSE_IS_REPORTED
                && !paths.is_empty()
                && paths.iter().all(|p| {
                    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
                }) =>
        {
            Change::Writing
        }
        _ => Change::Done,
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
    fn own_reads_are_not_changes_and_a_write_is_done_when_closed() {
        use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind};
        use notify::event::{ModifyKind, RenameMode};
        let none: &[PathBuf] = &[];
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert_eq!(what_changed(&open, none), Change::Nothing);
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert_eq!(what_changed(&read, none), Change::Nothing);
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(what_changed(&closed, none), Change::Done);
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(what_changed(&renamed, none), Change::Done);
        let written = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let created = EventKind::Create(CreateKind::File);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "x").unwrap();
        let link = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink("config.yaml", &link).unwrap();
        assert_eq!(what_changed(&created, &[link]), Change::Done);
        if CLOSE_IS_REPORTED {
            assert_eq!(what_changed(&written, none), Change::Writing);
            assert_eq!(what_changed(&created, &[file]), Change::Writing);
        } else {
            assert_eq!(what_changed(&written, none), Change::Done);
        }
    }
}
