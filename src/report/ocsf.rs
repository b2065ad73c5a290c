//! OCSF export: one **IAM Analysis Finding** (class 2008, OCSF 1.6.0, cloud
//! profile) per finding. Chosen over Detection Finding (2004) because an
//! NHI finding is a statement about an identity's credentials and
//! permissions, and 2008 has typed places for exactly that: `user` with its
//! `programmatic_credentials` (id, type, last use),
//! `identity_activity_metrics`, `permission_analysis_results` (each
//! entitlement held, with its actions). Rule, controls and approval go in
//! `finding_info` (`analytic`, `types`) and `unmapped`.
//!
//! Every required attribute of the class is filled; the tests validate the
//! output against the official schema (JSON Schema generated from the
//! schema.ocsf.io 1.6.0 export, vendored in `tests/data/`).

use std::collections::HashMap;

use nhi_contract::{Credential, Entitlement, Identity, IdentityKind, Usage};
use serde_json::{json, Map, Value};

use super::{parse_ts, ReportError, ReportFinding, RunData};
use crate::engine::rules::Severity;

/// OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.6.0";
/// IAM Analysis Finding.
pub const CLASS_UID: i64 = 2008;
/// Findings category.
pub const CATEGORY_UID: i64 = 2;

fn ms(t: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_millis())
}

fn severity(s: Severity) -> (i64, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn cloud_provider(p: Option<&str>) -> &'static str {
    match p {
        Some("aws") => "AWS",
        Some("azure") => "Azure",
        Some("gcp") => "GCP",
        Some("github") => "GitHub",
        Some("kubernetes") => "Kubernetes",
        _ => "Unknown",
    }
}

fn last_used(u: &Usage) -> Option<i64> {
    ms(u.last_used_at())
}

fn user_type(k: IdentityKind) -> (i64, &'static str) {
    match k {
        IdentityKind::Root => (2, "Admin"),
        _ => (4, "Service"),
    }
}

/// Lookups into the run's reading.
struct Index<'a> {
    identities: HashMap<&'a str, &'a Identity>,
    credentials: HashMap<&'a str, &'a Credential>,
    by_identity: HashMap<&'a str, Vec<&'a Credential>>,
    entitlements: HashMap<&'a str, Vec<&'a Entitlement>>,
}

impl<'a> Index<'a> {
    fn new(data: &'a RunData) -> Self {
        let mut ix = Index {
            identities: HashMap::new(),
            credentials: HashMap::new(),
            by_identity: HashMap::new(),
            entitlements: HashMap::new(),
        };
        for inv in data
            .reading
            .sources
            .iter()
            .filter_map(|s| s.inventory.as_ref())
        {
            for i in &inv.identities {
                ix.identities.insert(i.id.as_str(), i);
            }
            for c in &inv.credentials {
                ix.credentials.insert(c.id.as_str(), c);
                ix.by_identity
                    .entry(c.identity.as_str())
                    .or_default()
                    .push(c);
            }
            // Entitlement ids are unique per source: resolve grants within it.
            let ents: HashMap<&str, &Entitlement> = inv
                .entitlements
                .iter()
                .map(|e| (e.id.as_str(), e))
                .collect();
            for g in &inv.grants {
                if let Some(e) = ents.get(g.entitlement.as_str()) {
                    ix.entitlements
                        .entry(g.identity.as_str())
                        .or_default()
                        .push(e);
                }
            }
        }
        ix
    }
}

fn credential_json(c: &Credential) -> Value {
    let mut m = Map::new();
    m.insert("uid".into(), json!(c.id));
    m.insert("type".into(), json!(c.kind.as_str()));
    if let Some(t) = last_used(&c.usage) {
        m.insert("last_used_time".into(), json!(t));
    }
    Value::Object(m)
}

/// Where a finding stands in the reported run.
enum Phase<'a> {
    /// Seen by the run.
    Open,
    /// Resolved by the run; last seen at this instant.
    Resolved(&'a str),
}

fn event(data: &RunData, ix: &Index<'_>, f: &ReportFinding, phase: Phase<'_>) -> Value {
    let d = &f.finding;
    let time = ms(parse_ts(&data.run.finished_at)).unwrap_or(0);
    let first = ms(parse_ts(&f.first_seen));
    let new = f.first_seen == data.run.started_at;
    let ((activity_id, activity), (status_id, status)) = match phase {
        Phase::Resolved(_) => ((3, "Close"), (4, "Resolved")),
        // An excepted finding is open but its risk accepted: OCSF's
        // `Suppressed`, with the exception in `unmapped`.
        Phase::Open if d.exception.is_some() => (
            if new { (1, "Create") } else { (2, "Update") },
            (3, "Suppressed"),
        ),
        Phase::Open if new => ((1, "Create"), (1, "New")),
        Phase::Open => ((2, "Update"), (1, "New")),
    };
    let last_seen = match phase {
        Phase::Resolved(at) => ms(parse_ts(at)).unwrap_or(time),
        Phase::Open => time,
    };
    let (sev_id, sev) = severity(d.severity);
    let ident = ix.identities.get(d.identity_id.as_str()).copied();
    let rule = data.reading.rules.iter().find(|r| r.id == d.rule_id);

    let mut cloud = Map::new();
    cloud.insert(
        "provider".into(),
        json!(cloud_provider(d.provider.as_deref())),
    );
    if let Some(i) = ident.filter(|i| !i.account.is_empty()) {
        cloud.insert("account".into(), json!({ "uid": i.account }));
    }

    let mut user = Map::new();
    user.insert("uid".into(), json!(d.identity_id));
    if let Some(i) = ident {
        user.insert("name".into(), json!(i.name));
        let (tid, t) = user_type(i.kind);
        user.insert("type_id".into(), json!(tid));
        user.insert("type".into(), json!(t));
        if !i.account.is_empty() {
            user.insert("account".into(), json!({ "uid": i.account }));
        }
    }
    if let Some(c) = &d.credential_id {
        user.insert("credential_uid".into(), json!(c));
    }
    // The credential concerned, or every credential of the identity for
    // identity findings: ids, kinds and last use, never a secret.
    let creds: Vec<Value> = match &d.credential_id {
        Some(c) => ix
            .credentials
            .get(c.as_str())
            .map(|c| vec![credential_json(c)])
            .unwrap_or_else(|| vec![json!({ "uid": c })]),
        None => ix
            .by_identity
            .get(d.identity_id.as_str())
            .map(|v| v.iter().map(|c| credential_json(c)).collect())
            .unwrap_or_default(),
    };
    if !creds.is_empty() {
        user.insert(
            "programmatic_credentials".into(),
            Value::Array(creds.clone()),
        );
    }

    let mut finding_info = Map::new();
    finding_info.insert("uid".into(), json!(f.fingerprint));
    finding_info.insert("title".into(), json!(d.title));
    if let Some(r) = rule {
        finding_info.insert("desc".into(), json!(r.description));
    }
    finding_info.insert("types".into(), json!(d.controls));
    if let Some(t) = first {
        finding_info.insert("first_seen_time".into(), json!(t));
        finding_info.insert("created_time".into(), json!(t));
    }
    finding_info.insert("last_seen_time".into(), json!(last_seen));
    finding_info.insert(
        "analytic".into(),
        json!({ "uid": d.rule_id, "name": d.title, "type_id": 1, "type": "Rule" }),
    );
    finding_info.insert(
        "product".into(),
        json!({ "name": "nhi-assure", "vendor_name": "nhi-assure", "version": data.version }),
    );

    let mut ev = Map::new();
    ev.insert("activity_id".into(), json!(activity_id));
    ev.insert("activity_name".into(), json!(activity));
    ev.insert("category_uid".into(), json!(CATEGORY_UID));
    ev.insert("category_name".into(), json!("Findings"));
    ev.insert("class_uid".into(), json!(CLASS_UID));
    ev.insert("class_name".into(), json!("IAM Analysis Finding"));
    ev.insert("type_uid".into(), json!(CLASS_UID * 100 + activity_id));
    ev.insert(
        "type_name".into(),
        json!(format!("IAM Analysis Finding: {activity}")),
    );
    ev.insert("severity_id".into(), json!(sev_id));
    ev.insert("severity".into(), json!(sev));
    ev.insert("status_id".into(), json!(status_id));
    ev.insert("status".into(), json!(status));
    ev.insert("time".into(), json!(time));
    ev.insert(
        "message".into(),
        json!(match &d.credential_id {
            Some(c) => format!("{}: {} ({})", d.title, d.identity_id, c),
            None => format!("{}: {}", d.title, d.identity_id),
        }),
    );
    ev.insert(
        "metadata".into(),
        json!({
            "version": OCSF_VERSION,
            "profiles": ["cloud"],
            "uid": format!("run-{}:{}", data.run.id, f.fingerprint),
            "product": { "name": "nhi-assure", "vendor_name": "nhi-assure", "version": data.version },
            "log_name": format!("run {}", data.run.id),
        }),
    );
    ev.insert("cloud".into(), Value::Object(cloud));
    ev.insert("finding_info".into(), Value::Object(finding_info));
    ev.insert("user".into(), Value::Object(user));
    let mut metrics = Map::new();
    if let Some(t) = ident.and_then(|i| ms(i.created)) {
        metrics.insert("first_seen_time".into(), json!(t));
    }
    if let Some(t) = ident.and_then(|i| last_used(&i.usage)) {
        metrics.insert("last_seen_time".into(), json!(t));
    }
    if let Some(t) = ident.and_then(|i| ms(i.human_login_last_used)) {
        metrics.insert("password_last_used_time".into(), json!(t));
    }
    if !creds.is_empty() {
        metrics.insert("programmatic_credentials".into(), Value::Array(creds));
    }
    if !metrics.is_empty() {
        ev.insert("identity_activity_metrics".into(), Value::Object(metrics));
    }
    // What the identity may do: each entitlement it holds, with the actions
    // it grants (those beyond the approved scope are named in the evidence).
    let held: Vec<Value> = ix
        .entitlements
        .get(d.identity_id.as_str())
        .map(|v| {
            v.iter()
                .map(|e| {
                    json!({
                        "policy": { "uid": e.id, "name": e.name },
                        "granted_privileges": e.actions,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if !held.is_empty() {
        ev.insert("permission_analysis_results".into(), Value::Array(held));
    }
    // The class requires one of its analysis objects; an identity no source
    // holds (an approval naming it) has nothing but this to say.
    if !ev.contains_key("permission_analysis_results")
        && !ev.contains_key("identity_activity_metrics")
    {
        ev.insert(
            "identity_activity_metrics".into(),
            json!({ "programmatic_credentials": [] }),
        );
    }
    if let Some(r) = rule {
        ev.insert("remediation".into(), json!({ "desc": r.remediation }));
    }
    let mut unmapped = json!({
        "rule_id": d.rule_id,
        "controls": d.controls,
        "recommended_action": d.recommended_action.as_str(),
        "source": f.source,
        "evidence": d.evidence,
    });
    // The approval's ticket, where a SIEM user follows it up.
    if let (Some(t), Some(o)) = (ticket(&d.evidence), unmapped.as_object_mut()) {
        o.insert("ticket".into(), t);
    }
    if let (Some(e), Some(o)) = (&d.exception, unmapped.as_object_mut()) {
        o.insert("exception".into(), json!(e));
    }
    ev.insert("unmapped".into(), unmapped);
    Value::Object(ev)
}

/// The ticket a finding's evidence names: its approval's (or an unmapped
/// record's) reference and URL.
fn ticket(evidence: &Value) -> Option<Value> {
    let from = evidence
        .get("approval")
        .filter(|a| a.is_object())
        .unwrap_or(evidence);
    let reference = from.get("reference").filter(|r| r.is_string())?;
    Some(json!({ "reference": reference, "url": from.get("url").cloned().unwrap_or(Value::Null) }))
}

/// The run's findings as OCSF IAM Analysis Finding events: `Create` for a
/// finding this run opened, `Update` for one still open, and `Close`
/// (status `Resolved`) for each finding this run resolved, so a SIEM's copy
/// does not stay open forever.
pub fn events(data: &RunData) -> Result<Vec<Value>, ReportError> {
    let ix = Index::new(data);
    each(data, &ix).collect()
}

fn each<'a>(
    data: &'a RunData,
    ix: &'a Index<'a>,
) -> impl Iterator<Item = Result<Value, ReportError>> + 'a {
    data.findings
        .iter()
        .map(move |f| f.map(|f| event(data, ix, &f, Phase::Open)))
        .chain(
            data.resolved.iter().map(move |r| {
                r.map(|r| event(data, ix, &r.finding, Phase::Resolved(&r.last_seen)))
            }),
        )
}

/// The events of [`events`] as a JSON array written one event per line,
/// each compact: a run of a million findings is never a million `Value`s
/// at once, and the file is two thirds of its pretty-printed size (574 MB
/// at 125,000 findings) while still valid JSON and greppable by line.
pub fn write_lines(data: &RunData, w: &mut dyn std::io::Write) -> Result<(), ReportError> {
    let io = |e: std::io::Error| ReportError::Render {
        what: "ocsf",
        message: e.to_string(),
    };
    let ix = Index::new(data);
    w.write_all(b"[").map_err(io)?;
    for (n, event) in each(data, &ix).enumerate() {
        w.write_all(if n == 0 { b"\n" } else { b",\n" })
            .map_err(io)?;
        serde_json::to_writer(&mut *w, &event?)?;
    }
    w.write_all(b"\n]\n").map_err(io)
}
