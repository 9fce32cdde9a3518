//! Watching one file for changes (the config's roster, the CRL): the file's directory is
//! watched, not the file, since editors and tools replace a file by renaming a new one over
//! it; events are let settle before the file is read again.
//!
//! The directory often holds the SQLite database too, whose files change on every write. On
//! Linux the watch therefore asks inotify only for what replacing or rewriting a file gives
//! (a close after writing, a rename into the directory, a creation, a deletion), not for each
//! write or open: with every change reported, the watcher's thread woke about 6,000 times a
//! second while the gateway screened, 5% of its CPU, to drop events on the database. A file
//! rewritten in place is seen when the writer closes it. Elsewhere `notify` reports
//! everything and the events are filtered by name.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the file must stay unchanged before it is read again (a tool may write it in
/// several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// A watch of one file; it ends when dropped.
pub struct FileWatch {
    #[cfg(target_os = "linux")]
    watches: inotify::Watches,
    #[cfg(target_os = "linux")]
    watch: inotify::WatchDescriptor,
    #[cfg(not(target_os = "linux"))]
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("FileWatch").finish_non_exhaustive()
    }
}

#[cfg(target_os = "linux")]
impl Drop for FileWatch {
    fn drop(&mut self) {
        // The kernel answers with an IN_IGNORED event, on which the reading thread ends.
        let _ = self.watches.remove(self.watch.clone());
    }
}

/// Calls `changed` after each settled change of the file at `path`, on a task of the current
/// runtime, for as long as the returned watch is kept.
pub fn watch_file(
    path: &Path,
    mut changed: impl FnMut() + Send + 'static,
) -> anyhow::Result<FileWatch> {
    let name = path
        .file_name()
        .map(|name| name.to_os_string())
        .ok_or_else(|| anyhow::anyhow!("{}: not a file name", path.display()))?;
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watch = watch_directory(&directory, name, events)?;
    tokio::spawn(async move {
        while receiver.recv().await.is_some() {
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, receiver.recv()).await {}
            changed();
        }
    });
    Ok(watch)
}

/// Sends on `events` for each change of the file `name` in `directory`.
#[cfg(target_os = "linux")]
fn watch_directory(
    directory: &Path,
    name: std::ffi::OsString,
    events: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<FileWatch> {
    use inotify::{EventMask, Inotify, WatchMask};
    let mut inotify = Inotify::init()?;
    let watches = inotify.watches();
    let watch = watches.clone().add(
        directory,
        WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::ONLYDIR,
    )?;
    std::thread::Builder::new()
        .name("file-watch".into())
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let read = match inotify.read_events_blocking(&mut buffer) {
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        tracing::error!(%error, "reading file changes failed; no longer watching");
                        return;
                    }
                };
                for event in read {
                    if event.mask.contains(EventMask::IGNORED) {
                        return;
                    }
                    if event.name == Some(name.as_os_str()) && events.send(()).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(FileWatch { watches, watch })
}

/// Sends on `events` for each change of the file `name` in `directory`.
#[cfg(not(target_os = "linux"))]
fn watch_directory(
    directory: &Path,
    name: std::ffi::OsString,
    events: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<FileWatch> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.kind.is_access()
            && event
                .paths
                .iter()
                .any(|changed| changed.file_name() == Some(name.as_os_str()))
        {
            let _ = events.send(());
        }
    })?;
    watcher.watch(directory, notify::RecursiveMode::NonRecursive)?;
    Ok(FileWatch { _watcher: watcher })
}
