//! SARIF 2.1.0, so a pull request on the approvals-as-code repository gets
//! annotations: approval validation errors ([`from_problems`]) and the
//! approval-related findings of a run ([`Log`], streamed), each located at the
//! approval's file, line and column.
//!
//! Paths are made relative to the working directory when they lie under it
//! (run from the approvals repository's root, they are repository paths, as
//! code-scanning tools expect); otherwise they are absolute `file://` URIs.
//! Findings that no approval record locates (an unapproved credential) have
//! no place in the approvals repository and are left out; the run's counts
//! are in the run's `properties`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{ReportFinding, RunData};
use crate::engine::rules::Severity;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFO_URI: &str = "https://github.com/nhi-assure/nhi-assure";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning's numeric severity (0–10) for a rule.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// Split `path:line:column` (column optional) from the right.
pub fn split_location(s: &str) -> (String, Option<u64>, Option<u64>) {
    let mut parts = s.rsplitn(3, ':');
    let a = parts.next();
    let b = parts.next();
    let c = parts.next();
    match (c, b, a) {
        (Some(p), Some(l), Some(col)) if l.parse::<u64>().is_ok() && col.parse::<u64>().is_ok() => {
            (p.to_string(), l.parse().ok(), col.parse().ok())
        }
        _ => match s.rsplit_once(':') {
            Some((p, l)) if l.parse::<u64>().is_ok() => (p.to_string(), l.parse().ok(), None),
            _ => (s.to_string(), None, None),
        },
    }
}

fn uri(path: &str) -> String {
    let p = Path::new(path);
    let abs: PathBuf = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let abs = normalize(&abs);
    if let Some(rel) = std::env::current_dir().ok().and_then(|cwd| {
        abs.strip_prefix(normalize(&cwd))
            .ok()
            .map(Path::to_path_buf)
    }) {
        return rel.to_string_lossy().replace('\\', "/");
    }
    format!("file://{}", abs.to_string_lossy())
}

/// Lexically drop `.` and `..` (the approval file need not exist any more).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A SARIF location for `path:line[:column]`; `None` for anything else.
pub fn location(source: &str) -> Option<Value> {
    let (path, line, col) = split_location(source);
    // Only `file:line[:column]` is a place in a repository; `jira:SEC-9`
    // (a ticket) is not.
    if path.is_empty() || line.is_none() {
        return None;
    }
    let mut phys = json!({ "artifactLocation": { "uri": uri(&path) } });
    if let Some(l) = line.filter(|l| *l > 0) {
        let mut region = json!({ "startLine": l });
        if let Some(c) = col.filter(|c| *c > 0) {
            region["startColumn"] = json!(c);
        }
        phys["region"] = region;
    }
    Some(json!({ "physicalLocation": phys }))
}

/// The approval source locations a finding refers to.
fn approval_locations(f: &ReportFinding) -> Vec<(String, String)> {
    let ev = f.finding.evidence.value();
    let mut out = Vec::new();
    let mut push = |a: &Value| {
        if let (Some(id), Some(src)) = (
            a.get("id").and_then(Value::as_str),
            a.get("source").and_then(Value::as_str),
        ) {
            if !src.is_empty() && !out.iter().any(|(i, _)| i == id) {
                out.push((id.to_string(), src.to_string()));
            }
        }
    };
    if let Some(a) = ev.get("approval").filter(|a| a.is_object()) {
        push(a);
    }
    if let Some(list) = ev.get("approvals").and_then(Value::as_array) {
        list.iter().for_each(&mut push);
    }
    out
}

fn log(rules: Vec<Value>, results: Vec<Value>, properties: Value, version: &str) -> Value {
    json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "nhi-assure",
                "version": version,
                "informationUri": INFO_URI,
                "rules": rules,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
            "properties": properties,
        }]
    })
}

fn rules_of(data: &RunData) -> Vec<Value> {
    data.reading
        .rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.title },
                "fullDescription": { "text": r.description },
                "help": { "text": r.remediation },
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": {
                    "tags": r.controls,
                    "security-severity": security_severity(r.severity),
                    "problem.severity": r.severity.as_str(),
                },
            })
        })
        .collect()
}

/// The SARIF result of finding `f`, or `None` when no approval record (nor
/// exception) locates it.
fn result_of(data: &RunData, f: &ReportFinding) -> Option<Value> {
    let d = &f.finding;
    let locs = approval_locations(f);
    let located: Vec<(&str, Value)> = locs
        .iter()
        .filter_map(|(id, s)| location(s).map(|l| (id.as_str(), l)))
        .collect();
    let located_ids: Vec<&str> = located.iter().map(|(id, _)| *id).collect();
    let mut locations: Vec<Value> = located.into_iter().map(|(_, l)| l).collect();
    // An excepted finding is also located at its exception: the file a
    // reviewer renews or lets lapse.
    let exception_location = d.exception.as_ref().and_then(|e| location(&e.source));
    if let Some(l) = &exception_location {
        locations.push(l.clone());
    }
    if locations.is_empty() {
        return None;
    }
    let approvals: Vec<&str> = locs.iter().map(|(id, _)| id.as_str()).collect();
    let subject = match &d.credential_id {
        Some(c) => format!("{} (credential {c})", d.identity_id),
        None => d.identity_id.clone(),
    };
    let mut r = json!({
        "ruleId": d.rule_id,
        "level": level(d.severity),
        "message": { "text": format!("{}: {subject}; approval {}", d.title, approvals.join(", ")) },
        "locations": locations,
        "partialFingerprints": { "nhiAssureFingerprint/v1": f.fingerprint },
        "properties": {
            "identity_id": d.identity_id,
            "credential_id": d.credential_id,
            "approvals": approvals,
            "located_approvals": located_ids,
            "controls": d.controls,
            "recommended_action": d.recommended_action.as_str(),
            "first_seen": f.first_seen,
        },
    });
    if let Some(i) = data.reading.rules.iter().position(|x| *x.id == *d.rule_id) {
        r["ruleIndex"] = json!(i);
    }
    if let Some(e) = &d.exception {
        let mut sup = json!({
            "kind": "external",
            "status": "accepted",
            "justification": e.reason,
            "properties": {
                "exception": e.id,
                "requester": e.requester,
                "approver": e.approver,
                "expires_at": e.expires_at,
                "reference": e.reference,
            },
        });
        if let Some(l) = exception_location {
            sup["location"] = l;
        }
        r["suppressions"] = json!([sup]);
    }
    Some(r)
}

/// The approval-related findings of a run as one SARIF log, serialised as
/// a stream: each result is built, written and dropped in turn, so memory
/// is flat in the number of findings (the run's counts, known once every
/// result is written, follow them in the run's `properties`).
pub struct Log<'a>(pub &'a RunData);

impl serde::Serialize for Log<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let data = self.0;
        let unlocated = std::cell::Cell::new(0usize);
        let run = RunRef {
            tool: json!({ "driver": {
                "name": "nhi-assure",
                "version": data.version,
                "informationUri": INFO_URI,
                "rules": rules_of(data),
            }}),
            results: Results {
                data,
                unlocated: &unlocated,
            },
            column_kind: "unicodeCodePoints",
            properties: Properties {
                data,
                unlocated: &unlocated,
            },
        };
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("$schema", SCHEMA)?;
        m.serialize_entry("version", "2.1.0")?;
        m.serialize_entry("runs", &[run])?;
        m.end()
    }
}

/// One SARIF run; fields are written in this order (results before the
/// properties that count them).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RunRef<'a> {
    tool: Value,
    results: Results<'a>,
    column_kind: &'static str,
    properties: Properties<'a>,
}

struct Results<'a> {
    data: &'a RunData,
    unlocated: &'a std::cell::Cell<usize>,
}

impl serde::Serialize for Results<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_stream(
            s,
            self.data.findings.iter().filter_map(|f| match f {
                Ok(f) => {
                    let r = result_of(self.data, &f);
                    if r.is_none() {
                        self.unlocated.set(self.unlocated.get().saturating_add(1));
                    }
                    r.map(Ok)
                }
                Err(e) => Some(Err(e)),
            }),
        )
    }
}

struct Properties<'a> {
    data: &'a RunData,
    unlocated: &'a std::cell::Cell<usize>,
}

impl serde::Serialize for Properties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({
            "run_id": self.data.run.id,
            "as_of": self.data.run.as_of,
            "findings": self.data.findings.len(),
            "findings_without_approval_location": self.unlocated.get(),
        })
        .serialize(s)
    }
}

/// Rule id of approval validation errors.
pub const INVALID_RULE: &str = "approval-invalid";

/// Approval validation problems (`nhi-assure check-approvals`).
/// Records a source could not map are results of `approval-unmapped`,
/// located by the record's reference (no place in a repository).
pub fn from_problems(
    problems: &[nhi_approvals_as_code::Problem],
    unmapped: &[crate::pass::UnmappedRecord],
    version: &str,
) -> Value {
    let rules = vec![
        json!({
            "id": INVALID_RULE,
            "name": INVALID_RULE,
            "shortDescription": { "text": "Approval file is invalid" },
            "fullDescription": { "text": "An approval or exception record fails validation (YAML, unknown field, missing expiry, separation of duties, duplicate id, validity, empty scope; an exception to a rule only an approval answers, or naming no loaded rule). Every run stops until it is fixed." },
            "defaultConfiguration": { "level": "error" },
            "properties": { "security-severity": "7.0" },
        }),
        json!({
            "id": crate::engine::findings::UNMAPPED_RULE,
            "name": crate::engine::findings::UNMAPPED_RULE,
            "shortDescription": { "text": "Approval record could not be mapped" },
            "fullDescription": { "text": "A ticket an approval source found could not be turned into an approval (a mapped field missing or malformed). It never causes a revocation: the subjects it may cover are held until it is fixed." },
            "defaultConfiguration": { "level": "error" },
            "properties": { "security-severity": "7.0" },
        }),
    ];
    let mut results: Vec<Value> = problems
        .iter()
        .map(|p| {
            let src = format!("{}:{}:{}", p.file.display(), p.line, p.column);
            json!({
                "ruleId": INVALID_RULE,
                "ruleIndex": 0,
                "level": "error",
                "message": { "text": p.message },
                "locations": location(&src).into_iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    results.extend(unmapped.iter().map(|u| {
        json!({
            "ruleId": crate::engine::findings::UNMAPPED_RULE,
            "ruleIndex": 1,
            "level": "error",
            "message": { "text": format!("{} {}: {}", u.source, u.record.reference, u.record.problem) },
            "properties": { "source": u.source, "reference": u.record.reference, "url": u.record.url },
        })
    }));
    log(
        rules,
        results,
        json!({ "problems": problems.len() + unmapped.len() }),
        version,
    )
}
