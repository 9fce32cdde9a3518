//! Reading the files of a policy source, once for every engine: a directory, walked as OPA
//! walks one, or an OPA bundle (a gzip-compressed tar archive), read defensively.
//!
//! A directory is walked following symlinks (mounted configuration, Kubernetes ConfigMaps,
//! is made of them), at most 32 levels deep; hidden entries (`.git`, Kubernetes' `..data`
//! links) are skipped, except the top-level `.manifest`, which a caller may ask for.
//!
//! A bundle comes from outside (a board's CI, a download). Nothing is written to disk; still,
//! entry names are checked as if they were, so that a name such as `../x.rego` or
//! `/etc/data.json` cannot mount data or policy somewhere unexpected. Limits:
//!
//! - the bundle file: at most [`MAX_BUNDLE_BYTES`] (64 MiB);
//! - all entries together, uncompressed: at most [`MAX_UNCOMPRESSED_BYTES`] (256 MiB), checked
//!   while decompressing, so a gzip bomb stops there;
//! - one entry: at most [`MAX_ENTRY_BYTES`] (64 MiB), checked from its header before reading;
//! - at most [`MAX_ENTRIES`] (10,000) entries and 32 directory levels;
//! - only regular files and directories: links, devices and fifos are refused, as are `..`
//!   components, backslashes, NUL bytes, names that are not UTF-8 and duplicate paths.
//!
//! Signatures (`.signatures.json`) are not verified; a bundle is trusted as much as the file
//! system it is read from.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::PolicyError;

/// Largest bundle file accepted.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest total of all entries, uncompressed.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 256 * 1024 * 1024;
/// Largest single entry.
pub const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries (files and directories) in one bundle.
pub const MAX_ENTRIES: usize = 10_000;
/// Deepest entry path, in components; deeper directory trees are almost certainly a symlink
/// loop, not a board's policy.
const MAX_DEPTH: usize = 32;

/// The bundle file that holds the revision, the roots and the wasm modules.
pub(crate) const MANIFEST: &str = ".manifest";

/// Where the files came from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceKind {
    #[default]
    Directory,
    Bundle,
}

/// The files read from a policy source, by relative path (`/` separators, no leading `/`, the
/// same on every platform), in path order.
#[derive(Debug)]
pub(crate) struct SourceFiles {
    pub kind: SourceKind,
    /// The directory or the bundle file.
    #[cfg_attr(
        not(feature = "opa-wasm"),
        expect(dead_code, reason = "error messages of the wasm engine")
    )]
    pub path: PathBuf,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl SourceFiles {
    /// Reads `path`: a directory, or any other file as a bundle. Of the files found, only
    /// those for which `wanted(kind, relative path)` holds are kept; hidden ones are never
    /// offered, except the top-level [`MANIFEST`].
    pub fn read(
        path: &Path,
        wanted: impl Fn(SourceKind, &str) -> bool,
    ) -> Result<SourceFiles, PolicyError> {
        let metadata = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
        let (kind, files) = if metadata.is_dir() {
            let mut listed = BTreeMap::new();
            list_directory(path, "", 0, &mut listed)?;
            let mut files = BTreeMap::new();
            for (name, file) in listed {
                if wanted(SourceKind::Directory, &name) {
                    let contents =
                        std::fs::read(&file).map_err(|source| io_error(&file, source))?;
                    files.insert(name, contents);
                }
            }
            (SourceKind::Directory, files)
        } else {
            let files = read_archive(path, |name| wanted(SourceKind::Bundle, name))?;
            (SourceKind::Bundle, files)
        };
        Ok(SourceFiles {
            kind,
            path: path.to_path_buf(),
            files,
        })
    }

    /// How a file of the source is named in error messages.
    #[cfg(feature = "opa-wasm")]
    pub fn display_name(&self, relative_path: &str) -> String {
        match self.kind {
            SourceKind::Directory => self.path.join(relative_path).display().to_string(),
            SourceKind::Bundle => format!("{}/{relative_path}", self.path.display()),
        }
    }
}

/// `sha256:<hex>` over `(relative path, contents)` pairs in path order, each part length
/// prefixed, so that ("ab", "c") and ("a", "bc") do not hash alike.
pub(crate) fn content_hash<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut files: Vec<(&str, &[u8])> = files.into_iter().collect();
    files.sort();
    let mut hasher = Sha256::new();
    for (path, contents) in files {
        for part in [path.as_bytes(), contents] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn io_error(path: &Path, source: std::io::Error) -> PolicyError {
    PolicyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bundle_error(path: &Path, message: impl Into<String>) -> PolicyError {
    PolicyError::Bundle {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn is_hidden(relative_path: &str) -> bool {
    relative_path
        .split('/')
        .any(|component| component.starts_with('.'))
}

/// Lists the files under `dir` into `files` (relative path -> path).
fn list_directory(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut BTreeMap<String, PathBuf>,
) -> Result<(), PolicyError> {
    if depth > MAX_DEPTH {
        return Err(io_error(
            dir,
            std::io::Error::other(format!(
                "policy directory is nested deeper than {MAX_DEPTH} levels"
            )),
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(io_error(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "file name is not valid utf-8",
                ),
            ));
        };
        let is_manifest = prefix.is_empty() && name == MANIFEST;
        if name.starts_with('.') && !is_manifest {
            continue;
        }
        let relative_path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let metadata = std::fs::metadata(&path).map_err(|source| io_error(&path, source))?;
        if metadata.is_dir() {
            list_directory(&path, &relative_path, depth + 1, files)?;
        } else {
            files.insert(relative_path, path);
        }
    }
    Ok(())
}

/// Reads the wanted entries of the bundle at `path`; the others are read past, so that their
/// size still counts against the limit.
fn read_archive(
    path: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>, PolicyError> {
    let file = std::fs::File::open(path).map_err(|source| io_error(path, source))?;
    let length = file
        .metadata()
        .map_err(|source| io_error(path, source))?
        .len();
    if length > MAX_BUNDLE_BYTES {
        return Err(bundle_error(
            path,
            format!("the bundle is {length} bytes, more than the limit of {MAX_BUNDLE_BYTES}"),
        ));
    }
    let decoder = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    let limited = LimitedReader {
        inner: decoder,
        remaining: MAX_UNCOMPRESSED_BYTES,
    };
    let mut archive = tar::Archive::new(limited);
    let not_a_bundle = |error: std::io::Error| {
        bundle_error(
            path,
            format!("is not a directory or a .tar.gz bundle: {error}"),
        )
    };
    let entries = archive.entries().map_err(not_a_bundle)?;
    let mut files = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (index, entry) in entries.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(bundle_error(
                path,
                format!("the bundle has more than {MAX_ENTRIES} entries"),
            ));
        }
        let mut entry = entry.map_err(not_a_bundle)?;
        let raw_name = entry.path_bytes().into_owned();
        let name = entry_name(&raw_name).map_err(|message| bundle_error(path, message))?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_dir() {
            continue;
        }
        if !(entry_type.is_file() || entry_type == tar::EntryType::Continuous) {
            return Err(bundle_error(
                path,
                format!(
                    "entry {} is not a regular file ({entry_type:?}); links and special files are refused",
                    String::from_utf8_lossy(&raw_name)
                ),
            ));
        }
        let Some(name) = name else {
            return Err(bundle_error(path, "an entry names the bundle root itself"));
        };
        if !seen.insert(name.clone()) {
            return Err(bundle_error(path, format!("entry {name} occurs twice")));
        }
        let size = entry.header().size().map_err(|error| {
            bundle_error(path, format!("entry {name} has an invalid size: {error}"))
        })?;
        if size > MAX_ENTRY_BYTES {
            return Err(bundle_error(
                path,
                format!("entry {name} is {size} bytes, more than the limit of {MAX_ENTRY_BYTES}"),
            ));
        }
        let offered = (name == MANIFEST || !is_hidden(&name)) && wanted(&name);
        if !offered {
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(|error| {
                bundle_error(path, format!("cannot read entry {name}: {error}"))
            })?;
            continue;
        }
        let mut contents = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .read_to_end(&mut contents)
            .map_err(|error| bundle_error(path, format!("cannot read entry {name}: {error}")))?;
        files.insert(name, contents);
    }
    Ok(files)
}

/// The normalised path of an entry: OPA writes `/data.json`, other tools `./data.json`; both
/// are `data.json`. `None` for the root directory itself.
fn entry_name(raw: &[u8]) -> Result<Option<String>, String> {
    let name =
        std::str::from_utf8(raw).map_err(|_| format!("entry name {raw:?} is not valid utf-8"))?;
    if name.contains('\0') || name.contains('\\') {
        return Err(format!(
            "entry name {name:?} holds a NUL byte or a backslash"
        ));
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(format!(
                    "entry name {name:?} is not a plain path inside the bundle: it leaves the bundle (..)"
                ));
            }
            other => components.push(other),
        }
    }
    if components.len() > MAX_DEPTH {
        return Err(format!(
            "entry name {name:?} is nested deeper than {MAX_DEPTH} levels"
        ));
    }
    if components.is_empty() {
        return Ok(None);
    }
    Ok(Some(components.join("/")))
}

/// Fails the read, rather than truncating it, once more than the limit was decompressed.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        let read_u64 = read as u64;
        if read_u64 > self.remaining {
            return Err(std::io::Error::other(format!(
                "the bundle decompresses to more than {MAX_UNCOMPRESSED_BYTES} bytes"
            )));
        }
        self.remaining -= read_u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        assert_eq!(entry_name(b"/data.json").unwrap().unwrap(), "data.json");
        assert_eq!(
            entry_name(b"./cordon/outbound.rego").unwrap().unwrap(),
            "cordon/outbound.rego"
        );
        assert_eq!(entry_name(b"a//b/./c").unwrap().unwrap(), "a/b/c");
        assert_eq!(entry_name(b"./").unwrap(), None);
        for bad in [
            &b"../x.rego"[..],
            b"a/../../x.rego",
            b"a\\x.rego",
            b"a\0b",
            b"\xff.rego",
        ] {
            assert!(entry_name(bad).is_err(), "{bad:?}");
        }
        let deep = "a/".repeat(40) + "data.json";
        assert!(entry_name(deep.as_bytes()).is_err());
    }

    #[test]
    fn limited_reader_fails_past_the_limit() {
        let mut reader = LimitedReader {
            inner: &[0u8; 100][..],
            remaining: 10,
        };
        let mut buffer = Vec::new();
        assert!(reader.read_to_end(&mut buffer).is_err());
    }

    #[test]
    fn content_hashes_ignore_order_and_keep_boundaries() {
        let one = content_hash([("a", &b"bc"[..]), ("b", b"x")]);
        assert_eq!(one, content_hash([("b", &b"x"[..]), ("a", b"bc")]));
        assert_ne!(one, content_hash([("ab", &b"c"[..]), ("b", b"x")]));
        assert!(one.starts_with("sha256:"));
    }
}
