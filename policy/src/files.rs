//! Reading a policy source the way OPA reads one: a directory or a bundle, which files are
//! policy, tests and data, where each data document is mounted, and the revision: a bundle
//! manifest's, or a hash over what actually runs.

use std::path::Path;

use crate::PolicyError;
use crate::source::{MANIFEST, SourceFiles, SourceKind, content_hash};

/// One file of a policy directory, named by its path relative to the directory with `/`
/// separators, so that names and revisions are the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct PolicyFile {
    pub relative_path: String,
    pub contents: String,
}

/// A bundle's `.manifest`: the fields Cordon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Manifest {
    /// Empty when the manifest gives none.
    pub revision: String,
    /// Path prefixes (`cordon/outbound`) the bundle owns; `[""]`, everything, by default.
    pub roots: Vec<String>,
    /// Whether the manifest lists WebAssembly modules.
    pub wasm: bool,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|error| format!("not valid json: {error}"))?;
        let serde_json::Value::Object(object) = value else {
            return Err("not a json object".to_owned());
        };
        let revision = match object.get("revision") {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(revision)) => revision.clone(),
            Some(_) => return Err("revision is not a string".to_owned()),
        };
        let roots = match object.get("roots") {
            None | Some(serde_json::Value::Null) => vec![String::new()],
            Some(serde_json::Value::Array(roots)) => roots
                .iter()
                .map(|root| {
                    root.as_str()
                        .map(|root| root.trim_matches('/').to_owned())
                        .ok_or_else(|| "roots holds a value that is not a string".to_owned())
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("roots is not a list of strings".to_owned()),
        };
        let wasm = object
            .get("wasm")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|modules| !modules.is_empty());
        Ok(Manifest {
            revision,
            roots,
            wasm,
        })
    }
}

/// The files of a policy source, each list sorted by relative path.
#[derive(Debug, Default)]
pub(crate) struct PolicyDirectory {
    pub kind: SourceKind,
    /// A bundle's manifest; directories have none.
    pub manifest: Option<Manifest>,
    /// `*.rego` files other than tests: the running policy.
    pub modules: Vec<PolicyFile>,
    /// `*_test.rego` files: run by `run_tests`, never part of the running policy.
    pub tests: Vec<PolicyFile>,
    /// `data.json`, `data.yaml` and `data.yml` files, mounted by their directory.
    pub data: Vec<PolicyFile>,
}

pub(crate) enum FileRole {
    Module,
    Test,
    Data,
    Other,
}

pub(crate) fn file_role(name: &str) -> FileRole {
    if name.ends_with("_test.rego") {
        FileRole::Test
    } else if name.ends_with(".rego") {
        FileRole::Module
    } else if matches!(name, "data.json" | "data.yaml" | "data.yml") {
        FileRole::Data
    } else {
        FileRole::Other
    }
}

impl PolicyDirectory {
    /// Those of `modules` (parsed from this directory) that come from its test files.
    pub fn test_modules(
        &self,
        modules: &[regorus::unstable::Ref<regorus::unstable::Module>],
    ) -> Vec<regorus::unstable::Ref<regorus::unstable::Module>> {
        modules
            .iter()
            .filter(|module| {
                let file = module.package.span.source.file();
                self.tests.iter().any(|test| &test.relative_path == file)
            })
            .cloned()
            .collect()
    }

    /// Reads a directory or, for any other file, a bundle: its policy, test and data files,
    /// and a bundle's manifest. A directory's `.manifest` is not read: a directory's revision
    /// is always its content hash, so that editing a file can never keep the old revision.
    pub fn read_source(path: &Path) -> Result<PolicyDirectory, PolicyError> {
        let source = SourceFiles::read(path, |kind, name| {
            if name == MANIFEST {
                return kind == SourceKind::Bundle;
            }
            !matches!(file_role(file_name(name)), FileRole::Other)
        })?;
        let mut directory = PolicyDirectory {
            kind: source.kind,
            ..PolicyDirectory::default()
        };
        for (relative_path, contents) in source.files {
            let contents = String::from_utf8(contents).map_err(|_| match source.kind {
                SourceKind::Bundle => PolicyError::Bundle {
                    path: path.to_path_buf(),
                    message: format!("entry {relative_path} is not valid utf-8"),
                },
                SourceKind::Directory => PolicyError::Io {
                    path: path.join(&relative_path),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "stream did not contain valid UTF-8",
                    ),
                },
            })?;
            if relative_path == MANIFEST {
                directory.manifest =
                    Some(
                        Manifest::parse(&contents).map_err(|message| PolicyError::Bundle {
                            path: path.to_path_buf(),
                            message: format!(".manifest: {message}"),
                        })?,
                    );
                continue;
            }
            let list = match file_role(file_name(&relative_path)) {
                FileRole::Module => &mut directory.modules,
                FileRole::Test => &mut directory.tests,
                FileRole::Data => &mut directory.data,
                FileRole::Other => continue,
            };
            list.push(PolicyFile {
                relative_path,
                contents,
            });
        }
        if directory.modules.is_empty()
            && directory
                .manifest
                .as_ref()
                .is_some_and(|manifest| manifest.wasm)
        {
            return Err(PolicyError::Bundle {
                path: path.to_path_buf(),
                message: "the bundle holds only a WebAssembly policy (its manifest lists wasm \
                          modules); regorus needs the .rego sources, the opa-wasm engine runs \
                          policy.wasm"
                    .to_owned(),
            });
        }
        directory.sort();
        Ok(directory)
    }

    pub fn sort(&mut self) {
        self.modules
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        self.tests
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        self.data
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    }

    /// The policy modules as `(relative path, text)`, as the engine takes them; with the tests
    /// after them when `with_tests`.
    pub fn module_pairs(&self, with_tests: bool) -> Vec<(String, String)> {
        let tests: &[PolicyFile] = if with_tests { &self.tests } else { &[] };
        self.modules
            .iter()
            .chain(tests)
            .map(|file| (file.relative_path.clone(), file.contents.clone()))
            .collect()
    }

    /// Every data file parsed and wrapped for its mount point, named by its relative path.
    pub fn mounted_data(&self) -> Result<Vec<(String, serde_json::Value)>, PolicyError> {
        self.data
            .iter()
            .map(|file| Ok((file.relative_path.clone(), mounted_data_document(file)?)))
            .collect()
    }

    /// A bundle manifest's revision when it gives a non-empty one, otherwise the content hash.
    pub fn revision(&self) -> String {
        match &self.manifest {
            Some(manifest) if !manifest.revision.is_empty() => manifest.revision.clone(),
            _ => self.content_hash(),
        }
    }

    /// `sha256:<hex>` over the policy and data files in path order. Tests are left out so that
    /// adding a test does not look like a policy change in the decision log. A bundle and the
    /// directory it was built from hash alike.
    pub fn content_hash(&self) -> String {
        content_hash(
            self.modules
                .iter()
                .chain(&self.data)
                .map(|file| (file.relative_path.as_str(), file.contents.as_bytes())),
        )
    }
}

/// The last component of a relative path.
pub(crate) fn file_name(relative_path: &str) -> &str {
    relative_path.rsplit('/').next().unwrap_or(relative_path)
}

/// The directory components under which a data file is mounted: `a/b/data.json` is `data.a.b`.
fn mount_point(relative_path: &str) -> Vec<&str> {
    let mut components: Vec<&str> = relative_path.split('/').collect();
    components.pop();
    components
}

/// Parses a data file and wraps it in objects for its mount point, ready to merge into `data`.
pub(crate) fn mounted_data_document(file: &PolicyFile) -> Result<serde_json::Value, PolicyError> {
    let data_error = |message: String| PolicyError::Data {
        file: file.relative_path.clone(),
        message,
    };
    let document: serde_json::Value = if file.relative_path.ends_with(".json") {
        serde_json::from_str(&file.contents).map_err(|error| data_error(error.to_string()))?
    } else {
        let value = regorus::Value::from_yaml_str(&file.contents)
            .map_err(|error| data_error(error.to_string()))?;
        serde_json::to_value(&value).map_err(|error| data_error(error.to_string()))?
    };
    let mount = mount_point(&file.relative_path);
    if mount.is_empty() && !document.is_object() {
        return Err(data_error(
            "the root data document must be an object".to_owned(),
        ));
    }
    Ok(mount.iter().rev().fold(document, |inner, component| {
        serde_json::Value::Object(serde_json::Map::from_iter([(
            (*component).to_owned(),
            inner,
        )]))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_mount(relative_path: &str, expected: &[&str]) {
        assert_eq!(mount_point(relative_path), expected, "{relative_path}");
    }

    #[test]
    fn mount_points() {
        check_mount("data.json", &[]);
        check_mount("a/data.json", &["a"]);
        check_mount("a/b/data.yaml", &["a", "b"]);
    }

    fn check_role(name: &str, expected: &str) {
        let role = match file_role(name) {
            FileRole::Module => "module",
            FileRole::Test => "test",
            FileRole::Data => "data",
            FileRole::Other => "other",
        };
        assert_eq!(role, expected, "{name}");
    }

    #[test]
    fn file_roles() {
        check_role("outbound.rego", "module");
        check_role("outbound_test.rego", "test");
        check_role("data.json", "data");
        check_role("data.yaml", "data");
        check_role("data.yml", "data");
        check_role("other.json", "other");
        check_role("README.md", "other");
    }
}
