//! The control plane's modules form layers: no module of `crates/api` imports one that imports it
//! back, directly or through others (design.md, section 11). This test reads the crate's sources,
//! collects which top-level module each one names (`crate::x`, or `super::x` from the crate's
//! root files), and fails with the circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module names that follow any of `prefixes` in `code` (comments and unit tests left out),
/// other than `own`: what the code imports through those paths.
fn names_after(text: &str, prefixes: &[&str], own: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // Unit tests may reach anywhere; only the code that ships has to keep to its layer.
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    for line in code.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        for prefix in prefixes {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                // `super::super::x` also contains `super::x`: take only a whole path start.
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != own && name != "super" {
                    names.insert(name);
                }
            }
        }
    }
    names
}

/// Top-level module -> the top-level modules its code names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).expect("read src").map(|e| e.expect("entry").path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(src).expect("under src");
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
        let top = parts[0].clone();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read file");
        // How far below the crate root the file's module sits: `super::` that many times (plus
        // one) names the root. A `mod.rs` is its directory's module.
        let depth = parts.len() - 1 - usize::from(parts.last().is_some_and(|p| p == "mod"));
        let root_via_super = "super::".repeat(depth + 1);
        let names = names_after(&text, &["crate::", root_via_super.as_str()], &top);
        graph.entry(top.clone()).or_default().extend(names);
    }
    only_known(graph)
}

/// The graph with only the edges between its own modules (a path may name a function or type).
fn only_known(mut graph: BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// A circle through `start`, if there is one: the modules along it.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in &graph[&at] {
            if next == start {
                return Some([path.clone(), vec![start.to_string()]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.clone()]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() > 10, "the crate's modules were found: {:?}", graph.keys());
    assert!(graph["handlers"].contains("domain"), "imports are seen: {:?}", graph["handlers"]);
    let circles: Vec<String> = graph.keys().filter_map(|m| circle_through(&graph, m)).map(|c| c.join(" -> ")).collect();
    assert!(circles.is_empty(), "import circles in crates/api:\n{}", circles.join("\n"));
}

/// Within one directory module (`handlers`, `controller`, ...): submodule -> the sibling
/// submodules its code names (`super::x` or `crate::dir::x`).
fn submodule_graph(dir: &Path, name: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        let Some(stem) = path.file_stem().map(|s| s.to_string_lossy().to_string()) else { continue };
        if stem == "mod" || stem == "tests" {
            continue;
        }
        let file = if path.is_dir() { path.join("mod.rs") } else { path.clone() };
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let via_crate = format!("crate::{name}::");
        let via_super = if path.is_dir() { "super::super::" } else { "super::" };
        let names = names_after(&text, &[via_crate.as_str(), via_super], &stem);
        graph.entry(stem).or_default().extend(names);
    }
    only_known(graph)
}

#[test]
fn no_submodule_imports_a_sibling_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut circles = Vec::new();
    for entry in std::fs::read_dir(&src).expect("read src") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        let graph = submodule_graph(&dir, &name);
        circles.extend(
            graph.keys().filter_map(|m| circle_through(&graph, m)).map(|c| format!("{name}: {}", c.join(" -> "))),
        );
    }
    let handlers = submodule_graph(&src.join("handlers"), "handlers");
    assert!(handlers["run_task"].contains("tasks"), "sibling imports are seen: {:?}", handlers["run_task"]);
    assert!(circles.is_empty(), "import circles between submodules of crates/api:\n{}", circles.join("\n"));
}

#[test]
fn the_graph_sees_a_circle_when_there_is_one() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circle_through(&graph, "a"), Some(vec!["a".into(), "b".into(), "a".into()]));
    assert_eq!(circle_through(&graph, "c"), None);
}
