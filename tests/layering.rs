//! The layering of `src/`: a module never imports one that uses it. Reads
//! every `crate::…` path in `src/` (grouped `use crate::{a, b::c}` too) and
//! fails on a cycle between top-level modules, or between the engine's
//! stages, naming the files that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module paths (as segment lists) a file's text names through
/// `crate::`, grouped imports expanded one level deep per brace.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        // `nhi_crate::` or `my_crate::` is not `crate::`.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        expand(rest, Vec::new(), &mut out);
    }
    out
}

/// Read a path (or a `{…}` group of paths) at the start of `s`, with
/// `prefix` already read, into `out`.
fn expand(s: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 0usize;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&group[start..i], prefix.clone(), out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&group[start..i], prefix.clone(), out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        if !prefix.is_empty() {
            out.push(prefix);
        }
        return;
    }
    let mut path = prefix;
    path.push(ident.clone());
    match s[ident.len()..].strip_prefix("::") {
        Some(more) => expand(more, path, out),
        None => out.push(path),
    }
}

/// Cycles in `edges` (module → modules it uses), each as the modules on it.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|x| x == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// `(importing module, imported module) → files` at the level `level_of`
/// picks (None: not considered).
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

fn edges(level_of: impl Fn(&[String]) -> Option<String>) -> Edges {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Edges::new();
    for file in sources(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        let mut segs: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if segs.last().is_some_and(|s| s == "mod") {
            segs.pop();
        }
        let Some(from) = level_of(&segs) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read");
        for path in crate_paths(&text) {
            if let Some(to) = level_of(&path).filter(|to| *to != from) {
                out.entry((from.clone(), to))
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    out
}

fn assert_acyclic(what: &str, edges: &Edges) {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
    }
    if let Some(c) = cycle(&graph) {
        let steps: Vec<String> = c
            .windows(2)
            .map(|w| {
                let files = &edges[&(w[0].clone(), w[1].clone())];
                format!("{} uses {} (in {:?})", w[0], w[1], files)
            })
            .collect();
        panic!("{what}: import cycle:\n  {}", steps.join("\n  "));
    }
}

#[test]
fn top_level_modules_never_import_one_that_uses_them() {
    let e = edges(|segs| {
        let first = segs.first()?;
        (first != "lib" && first != "main").then(|| first.clone())
    });
    assert!(e.len() > 10, "the scan sees the imports: {e:?}");
    assert_acyclic("src", &e);
}

#[test]
fn engine_stages_form_a_pipeline() {
    let e = edges(|segs| match segs {
        [engine, stage, ..] if engine == "engine" => Some(stage.clone()),
        _ => None,
    });
    assert_acyclic("src/engine", &e);
}

#[test]
fn the_engine_does_no_io_and_knows_nothing_above_it() {
    let e = edges(|segs| segs.first().cloned());
    let above: Vec<_> = e
        .iter()
        .filter(|((from, to), _)| from == "engine" && to != "engine")
        .collect();
    assert!(above.is_empty(), "engine uses {above:?}");
}

#[test]
fn the_scan_reads_grouped_imports() {
    let paths =
        crate_paths("use crate::{a::b, c::{d, e::f}};\nlet x = nhi_crate::z; crate::g::h();");
    let firsts: Vec<&str> = paths.iter().map(|p| p[0].as_str()).collect();
    assert_eq!(firsts, ["a", "c", "c", "g"]);
    assert_eq!(paths[2], ["c", "e", "f"]);
}
