//! Embeds the built-in rule pack (each rule's `rule.yaml` and its
//! `cases.yaml`), the clean world rule cases start from, and the control
//! catalogs into the binary, so an installed `nhi-assure` needs no data
//! directory.

use std::fmt::Write as _;
use std::path::Path;

/// Sorted entries of `dir` whose name satisfies `keep`.
fn list(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<String> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| keep(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One `pub const NAME: &[(&str, &str)]` of (name, embedded text) pairs.
fn table(out: &mut String, konst: &str, doc: &str, files: &[(String, std::path::PathBuf)]) {
    writeln!(out, "/// {doc}: (path below its directory, text).").ok();
    writeln!(out, "pub const {konst}: &[(&str, &str)] = &[").ok();
    for (name, path) in files {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .ok();
    }
    writeln!(out, "];").ok();
}

fn main() {
    // sqlx::migrate! embeds the migrations: a new file must rebuild.
    println!("cargo:rerun-if-changed=src/store/migrations");
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&root);
    let mut out = String::new();

    // rules/builtin/<id>/rule.yaml, and its cases.yaml when present.
    let builtin = root.join("rules/builtin");
    let (mut rules, mut cases) = (Vec::new(), Vec::new());
    for id in list(&builtin, |p| p.is_dir()) {
        let dir = builtin.join(&id);
        println!("cargo:rerun-if-changed={}", dir.display());
        let rule = dir.join("rule.yaml");
        assert!(rule.is_file(), "{}: missing", rule.display());
        rules.push((format!("{id}/rule.yaml"), rule));
        let case = dir.join("cases.yaml");
        if case.is_file() {
            cases.push((format!("{id}/cases.yaml"), case));
        }
    }
    table(
        &mut out,
        "RULES",
        "Embedded `rules/builtin/*/rule.yaml`",
        &rules,
    );
    table(
        &mut out,
        "CASES",
        "Embedded `rules/builtin/*/cases.yaml`",
        &cases,
    );

    let controls = root.join("rules/controls");
    let catalogs: Vec<_> = list(&controls, |p| p.extension().is_some_and(|e| e == "yaml"))
        .into_iter()
        .map(|n| (n.clone(), controls.join(n)))
        .collect();
    table(
        &mut out,
        "CATALOGS",
        "Embedded `rules/controls` files",
        &catalogs,
    );

    let world = root.join("rules/clean-world.yaml");
    println!("cargo:rerun-if-changed={}", world.display());
    writeln!(
        out,
        "/// Embedded `rules/clean-world.yaml`.\npub const CLEAN_WORLD: &str = include_str!({:?});",
        world.display().to_string()
    )
    .ok();

    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_rules.rs");
    std::fs::write(dest, out).expect("write embedded_rules.rs");
}
