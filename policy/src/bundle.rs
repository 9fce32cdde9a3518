//! OPA bundles: reading a `.tar.gz` bundle into the same files a policy directory gives, with
//! its `.manifest`, and writing one from a directory.
//!
//! A bundle comes from outside (a board's CI, a download), so reading it is defensive. Nothing
//! is written to disk; still, entry names are checked as if they were, so that a name such as
//! `../x.rego` or `/etc/data.json` cannot mount data or policy somewhere unexpected. Limits:
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

use std::io::Read;
use std::path::Path;

use crate::PolicyError;
use crate::files::{FileRole, Manifest, PolicyDirectory, PolicyFile, SourceKind, file_role};

/// Largest bundle file accepted.
pub const MAX_BUNDLE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest total of all entries, uncompressed.
pub const MAX_UNCOMPRESSED_BYTES: u64 = 256 * 1024 * 1024;
/// Largest single entry.
pub const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;
/// Most entries (files and directories) in one bundle.
pub const MAX_ENTRIES: usize = 10_000;
/// Deepest entry path, in components.
const MAX_PATH_COMPONENTS: usize = 32;

fn bundle_error(path: &Path, message: impl Into<String>) -> PolicyError {
    PolicyError::Bundle {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Whether `path` names a bundle file rather than a directory: any file that is not a
/// directory is read as a gzip-compressed tar archive.
pub(crate) fn is_bundle(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file())
}

/// Reads a bundle's policy, test and data files and its manifest.
pub(crate) fn read_bundle(path: &Path) -> Result<PolicyDirectory, PolicyError> {
    let io_error = |source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let length = file.metadata().map_err(io_error)?.len();
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
    let mut directory = PolicyDirectory {
        kind: SourceKind::Bundle,
        ..PolicyDirectory::default()
    };
    let mut seen = std::collections::HashSet::new();
    let entries = archive
        .entries()
        .map_err(|error| bundle_error(path, format!("not a tar.gz archive: {error}")))?;
    for (index, entry) in entries.enumerate() {
        if index >= MAX_ENTRIES {
            return Err(bundle_error(
                path,
                format!("the bundle has more than {MAX_ENTRIES} entries"),
            ));
        }
        let mut entry =
            entry.map_err(|error| bundle_error(path, format!("unreadable entry: {error}")))?;
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
        let file_name = name.rsplit('/').next().unwrap_or(&name);
        let is_manifest = name == ".manifest";
        let role = file_role(file_name);
        let hidden = name.split('/').any(|component| component.starts_with('.'));
        if !is_manifest && (hidden || matches!(role, FileRole::Other)) {
            // Read past it, so that its size still counts against the limit.
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(|error| {
                bundle_error(path, format!("cannot read entry {name}: {error}"))
            })?;
            continue;
        }
        let mut contents = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .read_to_end(&mut contents)
            .map_err(|error| bundle_error(path, format!("cannot read entry {name}: {error}")))?;
        let contents = String::from_utf8(contents)
            .map_err(|_| bundle_error(path, format!("entry {name} is not valid utf-8")))?;
        if is_manifest {
            directory.manifest = Some(
                Manifest::parse(&contents)
                    .map_err(|message| bundle_error(path, format!(".manifest: {message}")))?,
            );
            continue;
        }
        let list = match role {
            FileRole::Module => &mut directory.modules,
            FileRole::Test => &mut directory.tests,
            FileRole::Data => &mut directory.data,
            FileRole::Other => unreachable!("skipped above"),
        };
        list.push(PolicyFile {
            relative_path: name,
            contents,
        });
    }
    if directory.modules.is_empty()
        && directory
            .manifest
            .as_ref()
            .is_some_and(|manifest| manifest.wasm)
    {
        return Err(bundle_error(
            path,
            "the bundle holds only a WebAssembly policy (its manifest lists wasm modules); \
             regorus needs the .rego sources, the opa-wasm engine runs policy.wasm",
        ));
    }
    directory.sort();
    Ok(directory)
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
            ".." => return Err(format!("entry name {name:?} leaves the bundle (..)")),
            other => components.push(other),
        }
    }
    if components.len() > MAX_PATH_COMPONENTS {
        return Err(format!(
            "entry name {name:?} is nested deeper than {MAX_PATH_COMPONENTS} levels"
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

/// Checks that every package and data document lies under one of the manifest's roots, as OPA
/// does: a bundle may only define what it declares it owns.
pub(crate) fn check_roots(
    manifest: &Manifest,
    packages: &[regorus::PolicyPackageComponents],
    data: &[(String, serde_json::Value)],
) -> Result<(), PolicyError> {
    let roots: Vec<Vec<&str>> = manifest
        .roots
        .iter()
        .map(|root| root.split('/').filter(|part| !part.is_empty()).collect())
        .collect();
    let under_a_root = |path: &[&str]| roots.iter().any(|root| path.starts_with(root));
    let above_a_root = |path: &[&str]| roots.iter().any(|root| root.starts_with(path));
    for package in packages {
        let path: Vec<&str> = package.components.iter().map(String::as_str).collect();
        if !under_a_root(&path) {
            return Err(PolicyError::Compile {
                message: format!(
                    "{}: package {} is outside the bundle's roots {:?}",
                    package.source_file,
                    path.join("."),
                    manifest.roots
                ),
            });
        }
    }
    fn check_document<'a>(
        file: &str,
        path: &mut Vec<&'a str>,
        document: &'a serde_json::Value,
        under_a_root: &dyn Fn(&[&str]) -> bool,
        above_a_root: &dyn Fn(&[&str]) -> bool,
        roots: &[String],
    ) -> Result<(), PolicyError> {
        if under_a_root(path) {
            return Ok(());
        }
        let outside = |path: &[&str]| PolicyError::Data {
            file: file.to_owned(),
            message: format!(
                "data.{} is outside the bundle's roots {roots:?}",
                path.join(".")
            ),
        };
        match document {
            serde_json::Value::Object(object) if above_a_root(path) => {
                for (key, value) in object {
                    path.push(key);
                    check_document(file, path, value, under_a_root, above_a_root, roots)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Err(outside(path)),
        }
    }
    for (file, document) in data {
        check_document(
            file,
            &mut Vec::new(),
            document,
            &under_a_root,
            &above_a_root,
            &manifest.roots,
        )?;
    }
    Ok(())
}

/// Writes the policy, test and data files of `dir` as an OPA bundle at `out` (gzip-compressed
/// tar), with a `.manifest` holding `revision` and the root `""` when a revision is given, and
/// no manifest otherwise. The archive is reproducible: sorted entries, zero timestamps.
///
/// Meant for tests and for boards without the `opa` tool; `opa build` makes equivalent bundles.
pub fn bundle_from_dir(dir: &Path, out: &Path, revision: Option<&str>) -> Result<(), PolicyError> {
    let directory = PolicyDirectory::read(dir)?;
    let io_error = |source| PolicyError::Io {
        path: out.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(out).map_err(io_error)?;
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(revision) = revision {
        let manifest = serde_json::json!({"revision": revision, "roots": [""]});
        entries.push((".manifest".to_owned(), manifest.to_string().into_bytes()));
    }
    for file in directory
        .modules
        .iter()
        .chain(&directory.tests)
        .chain(&directory.data)
    {
        entries.push((
            file.relative_path.clone(),
            file.contents.clone().into_bytes(),
        ));
    }
    entries.sort();
    for (name, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &name, contents.as_slice())
            .map_err(io_error)?;
    }
    let encoder = builder.into_inner().map_err(io_error)?;
    encoder.finish().map_err(io_error)?;
    Ok(())
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
}
