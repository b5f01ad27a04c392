//! The architecture, drawn from the code (`docs/architecture.md`): imports only go down the
//! module table, no two files import each other round a circle, and the command line is the only
//! place clap is used and nobody's import.
//!
//! It reads every `use crate::…` / `use super::…` statement (groups expanded) and every inline
//! `crate::…` / `super::…` path of the library's sources, outside comments and `mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (besides itself). One table; `docs/architecture.md`
/// shows the same.
const ALLOWED: &[(&str, &[&str])] = &[
    ("base", &[]),
    ("data", &["base"]),
    ("layers", &["base"]),
    ("rules", &["base", "layers"]),
    ("optim", &["base", "layers"]),
    ("train", &["base", "data", "layers", "rules", "optim"]),
    ("report", &["base", "data", "layers", "train"]),
    ("experiments", &["base", "data", "layers", "rules", "optim", "train", "report"]),
];

/// Macros exported at the crate root, and the file that defines each.
const MACROS: &[(&str, &str)] = &[("multiversion", "base/simd.rs"), ("choices", "base/choice.rs")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(src()).unwrap().to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path of a library file: `train/parallel/mod.rs` → `[train, parallel]`.
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(String::from).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source without comments, string literals and the trailing `#[cfg(test)] mod tests`.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            i += text[i..].find("*/").map_or(bytes.len(), |k| k + 2);
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if bytes[i] == b'\'' && i + 2 < bytes.len() && bytes[i + 2] == b'\'' {
            i += 3; // a char literal such as '"'
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `a::{b, c::{d, e}}` → `[a::b, a::c::d, a::c::e]` (whitespace removed first).
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// The crate paths (as segments from the crate root) that a file's code names.
fn paths_named(code: &str, module: &[String], module_files: &[Vec<String>]) -> Vec<Vec<String>> {
    let mut raw = Vec::new();
    // use statements, groups expanded
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let stmt_end = rest[i..].find(';').map_or(rest.len(), |k| i + k);
        if before.is_none_or(|c| !c.is_alphanumeric() && c != '_') {
            let tree: String = rest[i + 4..stmt_end].chars().filter(|c| !c.is_whitespace()).collect();
            raw.extend(expand(&tree));
        }
        rest = &rest[stmt_end.min(rest.len())..];
        if rest.is_empty() {
            break;
        }
        rest = &rest[1..];
    }
    // inline paths
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(start) {
            let i = from + k;
            let ok = i == 0 || !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
            let end =
                code[i..].find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(code.len(), |e| i + e);
            if ok {
                raw.push(code[i..end].trim_end_matches(':').to_string());
            }
            from = end.max(i + 1);
        }
    }
    let mut out = Vec::new();
    for path in raw {
        let path = path.split(" as ").next().unwrap().to_string();
        let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        // `x as y` with whitespace removed reads `xasy`; only the first segments matter
        let mut base: Vec<String> = match segs.first() {
            Some(&"crate") => Vec::new(),
            Some(&"super") => {
                let mut m = module.to_vec();
                while segs.first() == Some(&"super") {
                    m.pop();
                    segs.remove(0);
                }
                segs.insert(0, "crate");
                m
            }
            Some(&"self") => {
                segs[0] = "crate";
                module.to_vec()
            }
            // a child module of this one (`pub use child::Item` in a mod.rs)
            Some(first)
                if module_files
                    .iter()
                    .any(|m| m.len() == module.len() + 1 && m.starts_with(module) && m[module.len()] == *first) =>
            {
                segs.insert(0, "crate");
                module.to_vec()
            }
            _ => continue, // another crate
        };
        base.extend(segs[1..].iter().map(|s| s.to_string()));
        out.push(base);
    }
    out
}

/// The file a crate path lands in: the longest prefix that is a module file (`lib.rs` for a
/// root re-export, resolved through `roots`).
fn resolve(
    path: &[String],
    files: &BTreeMap<Vec<String>, String>,
    roots: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    if let Some(first) = path.first() {
        if let Some((_, file)) = MACROS.iter().find(|(m, _)| m == first) {
            return Some(file.to_string());
        }
        if !files.contains_key(&vec![first.clone()]) {
            return roots.get(first).and_then(|target| resolve(target, files, roots));
        }
    }
    (1..=path.len()).rev().find_map(|n| files.get(&path[..n]).cloned())
}

struct Graph {
    /// file → files it imports from
    edges: BTreeMap<String, BTreeSet<String>>,
}

fn graph() -> Graph {
    let mut all = Vec::new();
    rust_files(&src(), &mut all);
    let library: Vec<String> = all.into_iter().filter(|f| f != "main.rs" && !f.starts_with("cli/")).collect();
    let files: BTreeMap<Vec<String>, String> = library.iter().map(|f| (module_of(f), f.clone())).collect();
    // the crate root's re-exports: `pub use a::b::X;` → X ↦ [a, b, X]
    let lib = code_of(&std::fs::read_to_string(src().join("lib.rs")).unwrap());
    let mut roots = BTreeMap::new();
    let modules: Vec<Vec<String>> = files.keys().cloned().collect();
    for path in paths_named(&lib.replace("pub use ", "use crate::"), &[], &modules) {
        if let Some(last) = path.last() {
            roots.insert(last.clone(), path.clone());
        }
    }
    let mut edges = BTreeMap::new();
    for file in &library {
        let code = code_of(&std::fs::read_to_string(src().join(file)).unwrap());
        let module = module_of(file);
        let targets: BTreeSet<String> = paths_named(&code, &module, &modules)
            .iter()
            .filter_map(|p| resolve(p, &files, &roots))
            .filter(|t| t != file && t != "lib.rs")
            .collect();
        edges.insert(file.clone(), targets);
    }
    Graph { edges }
}

fn top(file: &str) -> &str {
    file.split('/').next().unwrap().trim_end_matches(".rs")
}

#[test]
fn imports_only_go_down_the_table() {
    let g = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (file, targets) in &g.edges {
        if file == "lib.rs" {
            continue;
        }
        let from = top(file);
        let may = allowed.get(from).unwrap_or_else(|| panic!("{file}: module '{from}' is not in the table"));
        for t in targets {
            let to = top(t);
            if to != from && !may.contains(&to) {
                wrong.push(format!("{file} imports {t} ({from} → {to})"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the table:\n  {}", wrong.join("\n  "));
    // the reader sees imports at all (a broken parser would pass the test above vacuously)
    assert!(g.edges["train/protocol.rs"].iter().any(|t| t.starts_with("train/")), "{:?}", g.edges["train/protocol.rs"]);
    assert!(g.edges["rules/drive.rs"].contains("layers/activation.rs"), "{:?}", g.edges["rules/drive.rs"]);
}

#[test]
fn no_file_imports_round_a_circle() {
    let g = graph();
    // Tarjan's strongly connected components
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        circles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        let g = s.g;
        for w in g.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.circles.push(component);
            }
        }
    }
    let mut s = State {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        circles: Vec::new(),
    };
    for v in g.edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    let described: Vec<String> = s
        .circles
        .iter()
        .map(|c| {
            let edges: Vec<String> = c
                .iter()
                .flat_map(|a| g.edges[*a].iter().filter(|b| c.contains(&b.as_str())).map(move |b| format!("{a} → {b}")))
                .collect();
            edges.join(", ")
        })
        .collect();
    assert!(described.is_empty(), "import circles:\n  {}", described.join("\n  "));
}

#[test]
fn the_command_line_is_the_only_user_of_clap_and_nobody_imports_it() {
    let mut all = Vec::new();
    rust_files(&src(), &mut all);
    for file in all.iter().filter(|f| *f != "main.rs" && !f.starts_with("cli/")) {
        let code = code_of(&std::fs::read_to_string(src().join(file)).unwrap());
        assert!(!code.contains("clap"), "{file} uses clap (only src/cli may)");
        assert!(!code.contains("cli::"), "{file} imports the command line");
    }
    let cli = code_of(&std::fs::read_to_string(src().join("cli/args.rs")).unwrap());
    assert!(cli.contains("clap"), "the reader does not see src/cli/args.rs's clap");
}

#[test]
fn the_reader_expands_groups_and_resolves_super() {
    assert_eq!(expand("crate::a::{b,c::{d,e}}"), vec!["crate::a::b", "crate::a::c::d", "crate::a::c::e"]);
    let m = vec!["train".to_string(), "parallel".to_string(), "overlap".to_string()];
    let paths = paths_named("use super::shares::LayerShares;\nlet x = crate::rules::chain_step(1);", &m, &[]);
    assert!(
        paths.contains(&vec!["train".into(), "parallel".into(), "shares".into(), "LayerShares".into()]),
        "{paths:?}"
    );
    assert!(paths.contains(&vec!["rules".into(), "chain_step".into()]), "{paths:?}");
    assert_eq!(code_of("a // crate::x\nb \"crate::y\" c"), "a \nb \"\" c");
}
