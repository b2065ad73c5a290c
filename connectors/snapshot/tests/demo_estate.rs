//! The bundled demo estate (`examples/demo/estate/*.json`) must always parse.

use std::path::PathBuf;

#[test]
fn every_demo_estate_file_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/estate");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected aws, azure and github snapshots in {}",
        dir.display()
    );
    for path in &files {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let inv = nhi_snapshot::parse(path, &text, None)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        assert!(
            !inv.identities.is_empty(),
            "{} holds no identity",
            path.display()
        );
    }
}
