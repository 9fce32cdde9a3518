//! The gateway's house rules, checked on its sources: no file over 800 lines, rooms by
//! capability, and dependencies between rooms that point one way (ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// DESIGN.md's standing rule: split a file by responsibility before it grows past this.
const MAX_LINES: usize = 800;

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).expect("read gateway/src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                out.push((path, text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.into_iter()
        .map(|(path, text)| (path.strip_prefix(&root).unwrap().to_path_buf(), text))
        .collect()
}

/// The room a file belongs to: its top-level folder, or the file itself at the top.
fn room(path: &Path) -> String {
    let first = path
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The rooms `text` names with `crate::<room>`, comments left out.
fn rooms_named(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() {
                named.insert(name);
            }
            rest = after;
        }
    }
    named
}

fn check(edges: &BTreeMap<String, BTreeSet<String>>) -> Result<(), String> {
    // Depth-first search for a cycle between rooms.
    fn visit(
        room: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        state.insert(room.to_string(), 1);
        path.push(room.to_string());
        for next in edges.get(room).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => return Err(format!("{} -> {next}", path.join(" -> "))),
                Some(_) => {}
                None => visit(next, edges, state, path)?,
            }
        }
        path.pop();
        state.insert(room.to_string(), 2);
        Ok(())
    }
    let mut state = BTreeMap::new();
    for room in edges.keys() {
        if !state.contains_key(room) {
            visit(room, edges, &mut state, &mut Vec::new())?;
        }
    }
    Ok(())
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(path, text)| format!("{} ({} lines)", path.display(), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split by responsibility: {long:?}");
}

#[test]
fn rooms_by_capability_depend_one_way() {
    let sources = sources();
    let folders: BTreeSet<String> = sources
        .iter()
        .filter(|(path, _)| path.components().count() > 1)
        .map(|(path, _)| room(path))
        .collect();
    for capability in ["feed", "release", "federation", "circle", "cli"] {
        assert!(
            folders.contains(capability),
            "no {capability}/ in {folders:?}"
        );
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &sources {
        let from = room(path);
        for to in rooms_named(text) {
            if to != from {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    check(&edges).unwrap_or_else(|cycle| panic!("rooms import each other: {cycle}"));
}

#[test]
fn the_cycle_check_finds_cycles() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in pairs {
            edges
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
        }
        edges
    };
    assert!(check(&edges(&[("feed", "release"), ("release", "clock")])).is_ok());
    let cycle = check(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).unwrap_err();
    assert_eq!(cycle, "a -> b -> c -> a");
    assert_eq!(
        rooms_named("use crate::release::Releaser; // crate::feed\nlet x = crate::clock::now();"),
        BTreeSet::from(["release".to_string(), "clock".to_string()])
    );
}
