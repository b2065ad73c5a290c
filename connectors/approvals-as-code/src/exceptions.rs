//! Exceptions as code: a directory of YAML files accepting one rule's risk
//! on named subjects for a bounded time, reviewed like approvals.
//!
//! Each `*.yaml` / `*.yml` file holds a list under `exceptions:`. Reading is
//! as strict as for approvals — every problem in every file, located, and
//! one problem fails the whole read, before anything else runs:
//!
//! - YAML syntax, unknown fields, missing required fields (`expires_at`,
//!   `reason`, `requester`, `approver` among them);
//! - separation of duties: `approver` must differ from `requester`;
//! - ids unique across the directory;
//! - `expires_at` after `approved_at`, and no later than `max_days` after it;
//! - never an exception to a rule that only an approval answers
//!   ([`NEEDS_APPROVAL`]): accepting "unapproved" as a risk would be an
//!   approval without its scope, owner or review.
//!
//! Whether `rule` names a loaded rule is checked by the caller, who knows
//! the rule set (the location is in [`Exception::source`]).

use std::collections::HashMap;
use std::path::Path;

use nhi_contract::{time, Exception, Timestamp};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::{read_files, split_source, yaml_options, yaml_problem, Problem, Problems};

/// Rules an exception may never cover: what they find is answered by an
/// approval (scoped, owned, reviewed), not by accepting the risk.
pub const NEEDS_APPROVAL: [&str; 2] = ["credential-unapproved", "approval-expired"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    exceptions: Vec<Spanned<ExceptionDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionDoc {
    id: Spanned<String>,
    rule: Spanned<String>,
    subject: String,
    #[serde(default)]
    credential: Option<String>,
    reason: String,
    requester: String,
    approver: Spanned<String>,
    #[serde(deserialize_with = "time::deserialize")]
    approved_at: Timestamp,
    expires_at: Spanned<time::Bounded>,
    #[serde(default)]
    reference: Option<String>,
}

/// Read and validate every exception file under `dir`; an exception may
/// last at most `max_days` from its `approved_at`.
pub fn load_dir(dir: &Path, max_days: i64) -> Result<Vec<Exception>, Problems> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (f, text) in read_files(dir, "exceptions", &mut problems)? {
        parse_file(&f, &text, max_days, &mut out, &mut problems);
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut dupes = Vec::new();
    for e in &out {
        if let Some(first) = seen.insert(e.id.as_str(), e.source.as_str()) {
            dupes.push((e.source.clone(), e.id.clone(), first.to_string()));
        }
    }
    for (src, id, first) in dupes {
        let (file, line, column) = split_source(&src);
        problems.push(Problem {
            file,
            line,
            column,
            message: format!("duplicate exception id {id:?} (first defined at {first})"),
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(Problems(problems))
    }
}

/// Parse and validate one file's text as if read from `file`.
pub fn parse_text(file: &Path, text: &str, max_days: i64) -> Result<Vec<Exception>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    parse_file(file, text, max_days, &mut out, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

fn parse_file(
    file: &Path,
    text: &str,
    max_days: i64,
    out: &mut Vec<Exception>,
    problems: &mut Vec<Problem>,
) {
    let doc: FileDoc = match serde_saphyr::from_str_with_options(text, yaml_options(text)) {
        Ok(d) => d,
        Err(e) => {
            problems.push(yaml_problem(file, &e));
            return;
        }
    };
    for item in doc.exceptions {
        let at = item.referenced;
        let d = item.value;
        let (line, col) = (at.line() as u32, at.column() as u32);
        let mut ok = true;
        let mut fail = |at: serde_saphyr::Location, message: String| {
            problems.push(Problem {
                file: file.to_path_buf(),
                line: at.line() as u32,
                column: at.column() as u32,
                message,
            });
            ok = false;
        };
        let id = d.id.value.trim().to_string();
        if id.is_empty() {
            fail(d.id.referenced, "empty id".into());
        }
        let rule = d.rule.value.trim().to_string();
        if rule.is_empty() {
            fail(d.rule.referenced, format!("exception {id}: empty rule"));
        } else if NEEDS_APPROVAL.contains(&rule.as_str()) {
            fail(
                d.rule.referenced,
                format!(
                    "exception {id}: rule {rule} cannot be excepted: what it finds needs an approval (scoped, owned, reviewed), not an accepted risk"
                ),
            );
        }
        if d.subject.trim().is_empty() {
            fail(at, format!("exception {id}: empty subject"));
        }
        if d.credential.as_deref().is_some_and(|c| c.trim().is_empty()) {
            fail(at, format!("exception {id}: empty credential pattern"));
        }
        if d.reason.trim().is_empty() {
            fail(at, format!("exception {id}: a reason is required"));
        }
        let approver = &d.approver.value;
        if approver.trim().is_empty() || d.requester.trim().is_empty() {
            fail(
                at,
                format!("exception {id}: requester and approver are required"),
            );
        } else if approver.trim().eq_ignore_ascii_case(d.requester.trim()) {
            fail(
                d.approver.referenced,
                format!(
                    "exception {id}: approver {approver:?} is also the requester (separation of duties)"
                ),
            );
        }
        let expires = d.expires_at.value.0;
        if expires <= d.approved_at {
            fail(
                d.expires_at.referenced,
                format!(
                    "exception {id}: expires_at {expires} is not after approved_at {}",
                    d.approved_at
                ),
            );
        }
        let limit = time::add(d.approved_at, time::days(max_days));
        if expires > limit {
            fail(
                d.expires_at.referenced,
                format!(
                    "exception {id}: expires_at {expires} is more than {max_days} days after approved_at (max_exception_days)"
                ),
            );
        }
        if ok {
            out.push(Exception {
                id,
                rule,
                subject: d.subject.trim().to_string(),
                credential: d.credential.map(|c| c.trim().to_string()),
                reason: d.reason.trim().to_string(),
                requester: d.requester,
                approver: d.approver.value,
                approved_at: d.approved_at,
                expires_at: expires,
                reference: d.reference,
                source: format!("{}:{line}:{col}", file.display()),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "exceptions:
  - id: EXC-1
    rule: credential-rotation-overdue
    subject: \"arn:aws:iam::*:user/vendor-*\"
    credential: AKIA*
    reason: vendor integration cannot rotate until its v3 API ships
    requester: alice@example.com
    approver: bob@example.com
    approved_at: 2026-11-01T00:00:00Z
    expires_at: 2027-01-15T00:00:00Z
    reference: RISK-12
";

    fn load(text: &str) -> Result<Vec<Exception>, Problems> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("e.yaml"), text).expect("write");
        load_dir(dir.path(), 90)
    }

    fn problems(text: &str) -> Vec<String> {
        load(text)
            .expect_err("must fail")
            .0
            .iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn a_valid_exception_loads_located() {
        let e = load(GOOD).expect("valid");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].rule, "credential-rotation-overdue");
        assert_eq!(e[0].credential.as_deref(), Some("AKIA*"));
        assert!(e[0].source.ends_with("e.yaml:2:5"), "{}", e[0].source);
    }

    #[test]
    fn unapproved_and_expired_approval_cannot_be_excepted() {
        for rule in NEEDS_APPROVAL {
            let text = GOOD.replace("credential-rotation-overdue", rule);
            let p = problems(&text);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with("3:11: "), "located at the rule: {p:?}");
            assert!(p[0].contains("needs an approval"), "{p:?}");
        }
    }

    #[test]
    fn approver_must_not_be_the_requester() {
        let text = GOOD.replace("bob@example.com", "Alice@example.com");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("8:15: "), "{p:?}");
        assert!(p[0].contains("separation of duties"), "{p:?}");
    }

    #[test]
    fn expiry_is_required_and_bounded() {
        let p = problems(&GOOD.replace("    expires_at: 2027-01-15T00:00:00Z\n", ""));
        assert!(p[0].contains("expires_at"), "{p:?}");
        let p = problems(&GOOD.replace("2027-01-15", "2027-03-01"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("10:17: "), "{p:?}");
        assert!(p[0].contains("more than 90 days"), "{p:?}");
        let p = problems(&GOOD.replace("2027-01-15", "2026-10-01"));
        assert!(p[0].contains("is not after approved_at"), "{p:?}");
    }

    #[test]
    fn reason_is_required_and_unknown_fields_refused() {
        let p = problems(&GOOD.replace(
            "reason: vendor integration cannot rotate until its v3 API ships",
            "reason: \" \"",
        ));
        assert!(p[0].contains("a reason is required"), "{p:?}");
        let p = problems(&GOOD.replace("reference: RISK-12", "referenc: RISK-12"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("referenc"), "{p:?}");
    }

    #[test]
    fn duplicate_ids_across_files_name_both_places() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), GOOD).expect("write");
        std::fs::write(dir.path().join("b.yaml"), GOOD).expect("write");
        let p = load_dir(dir.path(), 90).expect_err("duplicate");
        assert_eq!(p.0.len(), 1, "{p}");
        assert!(p.0[0].message.contains("first defined at"), "{p}");
        assert!(p.0[0].file.ends_with("b.yaml"), "{p}");
    }
}
