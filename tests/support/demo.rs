//! A private copy of the bundled demo (estate, approvals, config) in a
//! temporary directory, so a test's store never lands in `examples/`.

use std::path::{Path, PathBuf};

/// Copy `from` into `to` recursively, leaving out what a demo run leaves
/// behind (the store, the owners' messages of the file sink).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read demo") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if !e.file_name().to_string_lossy().starts_with("demo-store.db")
            && e.file_name() != "demo-notifications.jsonl"
        {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// The demo copied into a fresh temporary directory; returns it and the
/// config path inside it.
#[allow(dead_code)]
pub fn demo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = demo_into(dir.path());
    (dir, cfg)
}

/// The whole demo (estate, approvals, ticket exports, config) copied into
/// `dir`; returns the config path inside it.
pub fn demo_into(dir: &Path) -> PathBuf {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo"),
        dir,
    );
    dir.join("nhi-assure.toml")
}
