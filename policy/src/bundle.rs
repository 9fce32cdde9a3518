//! OPA bundles: the roots a bundle's `.manifest` claims, checked against what it defines, and
//! writing a bundle from a policy directory. Reading one is [`crate::source`]'s.

use std::path::Path;

use crate::PolicyError;
use crate::files::{Manifest, PolicyDirectory};

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
    let directory = PolicyDirectory::read_source(dir)?;
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
