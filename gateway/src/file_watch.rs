//! Watching one file for changes (the config's roster, the CRL): the file's directory is
//! watched, not the file, since editors and tools replace a file by renaming a new one over
//! it; events are let settle before the file is read again.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the file must stay unchanged before it is read again (a tool may write it in
/// several steps).
const SETTLE: Duration = Duration::from_millis(200);

/// Calls `changed` after each settled change of the file at `path`, on a task of the current
/// runtime, for as long as the returned watcher is kept.
pub fn watch_file(
    path: &Path,
    mut changed: impl FnMut() + Send + 'static,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = path.file_name().map(|name| name.to_os_string());
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !event.kind.is_access()
            && event
                .paths
                .iter()
                .any(|changed| changed.file_name() == name.as_deref())
        {
            let _ = events.send(());
        }
    })?;
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    watcher.watch(&directory, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while receiver.recv().await.is_some() {
            while let Ok(Some(())) = tokio::time::timeout(SETTLE, receiver.recv()).await {}
            changed();
        }
    });
    Ok(watcher)
}
