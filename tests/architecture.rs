//! The module graph of `src/` has no cycles: a module that uses another never is used by it,
//! directly or through others. docs/architecture.md draws the graph this keeps honest.
//!
//! Read from the source text: every `crate::a::b` and `super::…` path outside test code names
//! the deepest module it reaches. Between a module and its own ancestors or descendants there is
//! no edge (a parent re-exports its children; a child uses its parent's types). Any other edge
//! joins two siblings under their nearest common ancestor, and each such sibling graph must be
//! acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// Every module file under `src/` (test modules excluded), by module path.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("under src/")
                .with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            if module.last().map(String::as_str) == Some("tests") {
                continue;
            }
            out.insert(module, path);
        }
    }
    out
}

/// The source without line comments and without a trailing `#[cfg(test)] mod … { … }`.
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module paths written as `crate::a::b…` or `super::a…` in `text` (of module `at`),
/// `crate::a::{b, c::d}` groups expanded.
fn paths(text: &str, at: &Module) -> Vec<Module> {
    let mut out = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(at))] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            tree(rest, base.clone(), &mut out);
        }
    }
    out
}

/// Read one use tree (`a::b`, `a::{b, c::{d}}`) from the start of `text` under `path`; returns
/// what follows it.
fn tree<'a>(mut text: &'a str, mut path: Module, out: &mut Vec<Module>) -> &'a str {
    loop {
        text = text.trim_start();
        if let Some(group) = text.strip_prefix('{') {
            text = group;
            loop {
                text = tree(text, path.clone(), out).trim_start();
                match text.chars().next() {
                    Some(',') => text = &text[1..],
                    Some('}') => return &text[1..],
                    _ => return text,
                }
                if text.trim_start().starts_with('}') {
                    return &text.trim_start()[1..];
                }
            }
        }
        let len = text
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        if len == 0 {
            out.push(path);
            return text;
        }
        path.push(text[..len].to_string());
        match text[len..].strip_prefix("::") {
            Some(next) => text = next,
            None => {
                out.push(path);
                return &text[len..];
            }
        }
    }
}

fn parent(m: &Module) -> Module {
    m[..m.len().saturating_sub(1)].to_vec()
}

/// Edges between siblings, grouped by their common parent.
fn sibling_edges(src: &Path) -> BTreeMap<Module, BTreeSet<(String, String)>> {
    let modules = modules(src);
    let mut edges: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, file) in &modules {
        let text = code(&std::fs::read_to_string(file).expect("a readable source file"));
        for path in paths(&text, from) {
            let Some(to) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains_key(p))
            else {
                continue;
            };
            if to.starts_with(from) || from.starts_with(&to) {
                continue;
            }
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            edges
                .entry(from[..common].to_vec())
                .or_default()
                .insert((from[common].clone(), to[common].clone()));
        }
    }
    edges
}

/// A cycle in `edges`, as the list of nodes on it, if there is one.
fn cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeSet<(String, String)>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| *n == node) {
            let mut found: Vec<String> = stack[i..].iter().map(|s| s.to_string()).collect();
            found.push(node.to_string());
            return Some(found);
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for (_, to) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(found) = visit(to, edges, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

#[test]
fn src_modules_have_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let cycles: Vec<String> = sibling_edges(&src)
        .iter()
        .filter_map(|(parent, edges)| {
            cycle(edges).map(|c| {
                let under = if parent.is_empty() {
                    "crate".to_string()
                } else {
                    parent.join("::")
                };
                format!("{under}: {}", c.join(" -> "))
            })
        })
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles among src/ modules:\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    // The check itself, on a tree that has one: a -> b -> a, and c -> a without a cycle.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n");
    write("a.rs", "use crate::b::Thing;\n");
    write(
        "b.rs",
        "// crate::c::Nothing is a comment\npub fn f() { crate::a::g() }\n",
    );
    write(
        "c.rs",
        "use crate::{a::One, d::{self, e}};\n#[cfg(test)]\nmod tests { use crate::b; }\n",
    );
    write("d.rs", "pub fn e() {}\n");
    let edges = sibling_edges(dir.path());
    let top = &edges[&Vec::<String>::new()];
    assert!(top.contains(&("a".into(), "b".into())));
    assert!(top.contains(&("b".into(), "a".into())));
    assert!(
        !top.contains(&("b".into(), "c".into())),
        "comments are not code"
    );
    assert!(
        top.contains(&("c".into(), "a".into())),
        "a group's members are paths"
    );
    assert!(top.contains(&("c".into(), "d".into())), "nested groups too");
    assert!(
        !top.contains(&("c".into(), "b".into())),
        "test modules are not code"
    );
    let found = cycle(top).expect("a -> b -> a");
    assert_eq!(found.first(), found.last());
    assert!(found.contains(&"a".to_string()) && found.contains(&"b".to_string()));
}
