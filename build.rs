//! Embeds the built-in rule pack and control catalogs into the binary, so an
//! installed `nhi-assure` needs no data directory.

use std::fmt::Write as _;
use std::path::Path;

fn list(dir: &str) -> Vec<String> {
    println!("cargo:rerun-if-changed={dir}");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

fn main() {
    // sqlx::migrate! embeds the migrations: a new file must rebuild.
    println!("cargo:rerun-if-changed=src/store/migrations");
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let mut out = String::new();
    for (konst, dir) in [("RULES", "rules/builtin"), ("CATALOGS", "rules/controls")] {
        writeln!(out, "/// Embedded `{dir}` files: (file name, text).").ok();
        writeln!(out, "pub const {konst}: &[(&str, &str)] = &[").ok();
        for n in list(dir) {
            let path = Path::new(&root).join(dir).join(&n);
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                out,
                "    ({n:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .ok();
        }
        writeln!(out, "];").ok();
    }
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded_rules.rs");
    std::fs::write(dest, out).expect("write embedded_rules.rs");
}
