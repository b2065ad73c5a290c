use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture");
}

const GOOD: &str = "approvals:
  - id: APR-1
    subject: arn:aws:iam::111122223333:user/ci
    credentials: [AKIAEXAMPLE1]
    scope:
      actions: [\"s3:GetObject\"]
      services: [s3]
    requester: alice@example.com
    approver: bob@example.com
    approved_at: 2026-01-01T00:00:00Z
    expires_at: 2026-06-01T00:00:00Z
    reference: CHG-1
";

fn load(text: &str) -> Result<Vec<Approval>, Problems> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", text);
    load_dir(dir.path(), 365)
}

fn only_problem(text: &str) -> String {
    let p = load(text).expect_err("must fail");
    assert_eq!(p.0.len(), 1, "{p}");
    let one = &p.0[0];
    format!("a.yaml:{}:{}: {}", one.line, one.column, one.message)
}

#[test]
fn valid_file_loads_with_source_location() {
    let a = load(GOOD).expect("valid");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id, "APR-1");
    assert_eq!(a[0].scope.services, vec!["s3"]);
    assert!(a[0].source.ends_with("a.yaml:2:5"), "{}", a[0].source);
}

#[test]
fn unknown_field_is_reported_with_line() {
    let text = GOOD.replace(
        "    reference: CHG-1\n",
        "    reference: CHG-1\n    aproved_by: eve\n",
    );
    let msg = only_problem(&text);
    assert!(msg.starts_with("a.yaml:13:"), "{msg}");
    assert!(msg.contains("aproved_by"), "{msg}");
}

#[test]
fn missing_expiry_is_reported() {
    let text = GOOD.replace("    expires_at: 2026-06-01T00:00:00Z\n", "");
    let msg = only_problem(&text);
    assert!(msg.contains("expires_at"), "{msg}");
    assert!(!msg.starts_with("a.yaml:0:"), "needs a line: {msg}");
}

#[test]
fn self_approval_is_rejected_at_the_approver_line() {
    let text = GOOD.replace("approver: bob@example.com", "approver: Alice@example.com");
    let msg = only_problem(&text);
    assert!(msg.starts_with("a.yaml:9:"), "{msg}");
    assert!(msg.contains("separation of duties"), "{msg}");
}

#[test]
fn expiry_beyond_maximum_validity_is_rejected() {
    let text = GOOD.replace("2026-06-01T00:00:00Z", "2027-06-01T00:00:00Z");
    let msg = only_problem(&text);
    assert!(msg.starts_with("a.yaml:11:"), "{msg}");
    assert!(msg.contains("maximum validity"), "{msg}");
}

#[test]
fn expiry_before_start_is_rejected() {
    let text = GOOD.replace("2026-06-01T00:00:00Z", "2025-06-01T00:00:00Z");
    assert!(only_problem(&text).contains("is not after its start"));
}

#[test]
fn empty_scope_is_rejected() {
    let text = GOOD.replace("      actions: [\"s3:GetObject\"]\n", "");
    assert!(only_problem(&text).contains("scope approves nothing"));
}

#[test]
fn duplicate_ids_across_files_name_both_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", GOOD);
    write(dir.path(), "b.yml", GOOD);
    let p = load_dir(dir.path(), 365).expect_err("duplicate");
    assert_eq!(p.0.len(), 1, "{p}");
    let msg = p.to_string();
    assert!(
        msg.contains("b.yml:2:5: duplicate approval id \"APR-1\""),
        "{msg}"
    );
    assert!(msg.contains("a.yaml:2:5"), "{msg}");
}

#[test]
fn every_problem_in_every_file_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        &GOOD.replace("bob@example.com", "alice@example.com"),
    );
    write(dir.path(), "b.yaml", "approvals: [ {id: x");
    let p = load_dir(dir.path(), 365).expect_err("bad");
    assert_eq!(p.0.len(), 2, "{p}");
}

#[test]
fn missing_directory_is_an_error() {
    assert!(load_dir(Path::new("/nonexistent/approvals"), 365).is_err());
}
