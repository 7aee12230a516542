//! The shape of `src/`, checked: no import cycle among its top-level modules
//! (`docs/architecture.md`, "Import dependencies among top-level modules").
//!
//! Each file's production code (comments, string literals and `#[cfg(test)]` items removed)
//! is scanned for `crate::` paths; `crate::{a, b::c}` counts every name in the group. A file
//! belongs to the top-level module its path starts with (`src/http/auth/mod.rs` is `http`);
//! `lib.rs` and `main.rs` belong to none.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules its production code imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    assert!(
        graph.len() > 5,
        "found too few modules under {}: {graph:?}",
        src.display()
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle among top-level modules: {}\n(the edges, each from the crate:: paths \
             outside #[cfg(test)]: {})\nall imports:\n{}",
            cycle.join(" → "),
            cycle
                .windows(2)
                .map(|pair| format!("{} imports {}", pair[0], pair[1]))
                .collect::<Vec<_>>()
                .join("; "),
            graph
                .iter()
                .map(|(module, imports)| format!(
                    "  {module} → {}",
                    imports.iter().cloned().collect::<Vec<_>>().join(", ")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The checker itself: a cycle is found and printed, test-only code is ignored.
#[test]
fn the_cycle_check_sees_cycles_and_skips_test_code() {
    let code = "use crate::http::Client; // crate::observe\n\
                fn f() { let s = \"crate::report\"; crate::landing::open(); }\n\
                use crate::{config::X, state};\n\
                #[cfg(test)]\nmod tests { use crate::extract; fn g() { '{'; } }\n\
                #[cfg(test)]\nuse crate::cli;\n\
                fn h() { crate::quality::run() }";
    let imports = crate_imports(code);
    let expected: BTreeSet<String> = ["http", "landing", "config", "state", "quality"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(imports, expected);

    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(from.into()).or_default().insert(to.into());
    }
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.get_mut("c").unwrap().remove("a");
    assert_eq!(find_cycle(&graph), None);
}

fn import_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src/");
        let first = relative
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let code = std::fs::read_to_string(&file).expect("a readable source file");
        let imports = graph.entry(module.clone()).or_default();
        imports.extend(crate_imports(&code).into_iter().filter(|target| *target != module));
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("a readable directory")
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules named by `crate::` paths in production code.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let code = without_test_items(&strip_comments_and_literals(code));
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            // The first name of each path in the group (`a` and `b` in `{a::X, b}`).
            let mut depth = 0usize;
            let mut segment_start = true;
            let mut name = String::new();
            let mut flush = |name: &mut String, segment_start: &mut bool| {
                if *segment_start && !name.is_empty() {
                    found.insert(std::mem::take(name));
                }
                name.clear();
                *segment_start = false;
            };
            for c in group.chars() {
                match c {
                    '{' => {
                        flush(&mut name, &mut segment_start);
                        depth += 1;
                    }
                    '}' if depth == 0 => {
                        flush(&mut name, &mut segment_start);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        flush(&mut name, &mut segment_start);
                        segment_start = true;
                    }
                    c if depth == 0 && segment_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    c if depth == 0 && segment_start && c.is_whitespace() && name.is_empty() => {}
                    _ if depth == 0 => flush(&mut name, &mut segment_start),
                    _ => {}
                }
            }
        } else {
            let name: String = trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `crate::VERSION` and other items of lib.rs itself are not a module.
            if !name.is_empty() && name.chars().next().is_some_and(char::is_lowercase) {
                found.insert(name);
            }
        }
    }
    found.retain(|name| name.chars().next().is_some_and(char::is_lowercase));
    found
}

/// The code with comments removed and string and character literals emptied, so braces and
/// paths inside them do not count.
fn strip_comments_and_literals(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !out.chars().next_back().is_some_and(|p| p.is_alphanumeric() || p == '_')
            && raw_string_start(&chars, i).is_some()
        {
            let hashes = raw_string_start(&chars, i).unwrap();
            i += 2 + hashes;
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < chars.len() && !chars[i..].starts_with(&closing) {
                i += 1;
            }
            i += closing.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{7f}'), or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `r` of `r"`, `r#"`, `r##"`: the number of `#`.
fn raw_string_start(chars: &[char], at: usize) -> Option<usize> {
    let mut j = at + 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j - at - 1)
}

/// The code without the items under `#[cfg(test)]` (a `mod tests { .. }`, a `use ..;`, a fn).
fn without_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at its first `;` outside braces, or at the brace closing its first `{`.
        let mut depth = 0usize;
        let mut end = rest.len();
        for (index, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = index + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = index + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A cycle as its modules, the first repeated at the end, or `None` when the graph is acyclic.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path
                    .iter()
                    .position(|n| n == node)
                    .expect("an open node is on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}
