//! Reading a policy directory the way OPA reads one: which files are policy, tests and data,
//! where each data document is mounted, and the revision hash over what actually runs.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::PolicyError;

/// Deeper trees than this are almost certainly a symlink loop, not a board's policy.
const MAX_DIRECTORY_DEPTH: usize = 32;

/// One file of a policy directory, named by its path relative to the directory with `/`
/// separators, so that names and revisions are the same on every platform.
#[derive(Debug, Clone)]
pub(crate) struct PolicyFile {
    pub relative_path: String,
    pub contents: String,
}

/// The files of a policy directory, each list sorted by relative path.
#[derive(Debug, Default)]
pub(crate) struct PolicyDirectory {
    /// `*.rego` files other than tests: the running policy.
    pub modules: Vec<PolicyFile>,
    /// `*_test.rego` files: run by `run_tests`, never part of the running policy.
    pub tests: Vec<PolicyFile>,
    /// `data.json`, `data.yaml` and `data.yml` files, mounted by their directory.
    pub data: Vec<PolicyFile>,
}

enum FileRole {
    Module,
    Test,
    Data,
    Other,
}

fn file_role(name: &str) -> FileRole {
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
    /// Reads every policy, test and data file under `dir`. Hidden entries (`.git`, `.manifest`,
    /// Kubernetes' `..data` links) are skipped: they are not policy.
    pub fn read(dir: &Path) -> Result<PolicyDirectory, PolicyError> {
        let mut directory = PolicyDirectory::default();
        directory.read_level(dir, "", 0)?;
        directory
            .modules
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        directory
            .tests
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        directory
            .data
            .sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        Ok(directory)
    }

    fn read_level(&mut self, dir: &Path, prefix: &str, depth: usize) -> Result<(), PolicyError> {
        let io_error = |path: &Path, source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if depth > MAX_DIRECTORY_DEPTH {
            return Err(io_error(
                dir,
                std::io::Error::other(format!(
                    "policy directory is nested deeper than {MAX_DIRECTORY_DEPTH} levels"
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
            if name.starts_with('.') {
                continue;
            }
            let relative_path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            // Follows symlinks: mounted configuration (Kubernetes ConfigMaps) is made of them.
            let metadata = std::fs::metadata(&path).map_err(|source| io_error(&path, source))?;
            if metadata.is_dir() {
                self.read_level(&path, &relative_path, depth + 1)?;
                continue;
            }
            let list = match file_role(&name) {
                FileRole::Module => &mut self.modules,
                FileRole::Test => &mut self.tests,
                FileRole::Data => &mut self.data,
                FileRole::Other => continue,
            };
            let contents =
                std::fs::read_to_string(&path).map_err(|source| io_error(&path, source))?;
            list.push(PolicyFile {
                relative_path,
                contents,
            });
        }
        Ok(())
    }

    /// `sha256:<hex>` over the policy and data files in path order. Tests are left out so that
    /// adding a test does not look like a policy change in the decision log.
    pub fn revision(&self) -> String {
        let mut files: Vec<&PolicyFile> = self.modules.iter().chain(&self.data).collect();
        files.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        let mut hasher = Sha256::new();
        for file in files {
            // Length prefixes keep ("ab", "c") and ("a", "bc") from hashing alike.
            for part in [file.relative_path.as_bytes(), file.contents.as_bytes()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
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
