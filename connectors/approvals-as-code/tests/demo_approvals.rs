//! The bundled demo approvals (`examples/demo/approvals/*.yaml`) must always validate.

use std::path::PathBuf;

#[test]
fn demo_approvals_validate() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/approvals");
    let approvals = nhi_approvals_as_code::load_dir(&dir, 365)
        .unwrap_or_else(|e| panic!("demo approvals in {} are invalid: {e}", dir.display()));
    assert!(
        approvals.len() >= 10,
        "only {} demo approvals",
        approvals.len()
    );
}
