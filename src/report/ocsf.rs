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

use rustc_hash::FxHashMap as HashMap;

use nhi_contract::{Credential, Entitlement, Identity, IdentityKind, Usage};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{parse_ts, ReportError, ReportFinding, RunData, Shared};
use crate::engine::findings::{Evidence, Finding};
use crate::engine::rules::Severity;
use crate::store::reading::RuleInfo;

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

/// Lookups into the run's reading (a million credentials: Fx hashing, as
/// the engine's graph indexes the same ids).
struct Index<'a> {
    identities: HashMap<&'a str, &'a Identity>,
    credentials: HashMap<&'a str, &'a Credential>,
    by_identity: HashMap<&'a str, Vec<&'a Credential>>,
    entitlements: HashMap<&'a str, Vec<&'a Entitlement>>,
    rules: HashMap<&'a str, &'a RuleInfo>,
}

impl<'a> Index<'a> {
    fn new(data: &'a RunData) -> Self {
        let mut ix = Index {
            identities: HashMap::default(),
            credentials: HashMap::default(),
            by_identity: HashMap::default(),
            entitlements: HashMap::default(),
            rules: HashMap::default(),
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
        // The first rule of an id, as a linear search found it.
        for r in data.reading.rules.iter().rev() {
            ix.rules.insert(r.id.as_str(), r);
        }
        ix
    }
}

// The event as typed, borrowed structs: building a `serde_json::Value` per
// event (a map node per key) was most of a million-finding export. Fields
// are declared in key order, so events read as they did when they were
// `Value` maps (sorted keys); optional parts are left out, never null.

/// A credential: ids, kind and last use, never a secret.
#[derive(Serialize)]
struct Cred<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_time: Option<i64>,
    /// None for a credential the reading does not hold.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    uid: &'a str,
}

impl<'a> Cred<'a> {
    fn of(c: &'a Credential) -> Self {
        Cred {
            last_used_time: last_used(&c.usage),
            kind: Some(c.kind.as_str()),
            uid: &c.id,
        }
    }
}

#[derive(Serialize)]
struct Uid<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Cloud<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<Uid<'a>>,
    provider: &'static str,
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<Uid<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    programmatic_credentials: Option<&'a [Cred<'a>]>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    type_id: Option<i64>,
    uid: &'a str,
}

#[derive(Serialize)]
struct Product<'a> {
    name: &'static str,
    vendor_name: &'static str,
    version: &'a str,
}

#[derive(Serialize)]
struct Analytic<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    type_id: i64,
    uid: &'a str,
}

#[derive(Serialize)]
struct FindingInfo<'a> {
    analytic: Analytic<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen_time: Option<i64>,
    last_seen_time: i64,
    product: Product<'a>,
    title: &'a str,
    types: &'a [String],
    uid: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    log_name: String,
    product: Product<'a>,
    profiles: [&'static str; 1],
    uid: String,
    version: &'static str,
}

#[derive(Serialize)]
struct Metrics<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    password_last_used_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    programmatic_credentials: Option<&'a [Cred<'a>]>,
}

impl Metrics<'_> {
    fn is_empty(&self) -> bool {
        self.first_seen_time.is_none()
            && self.last_seen_time.is_none()
            && self.password_last_used_time.is_none()
            && self.programmatic_credentials.is_none()
    }
}

#[derive(Serialize)]
struct Policy<'a> {
    name: &'a str,
    uid: &'a str,
}

#[derive(Serialize)]
struct Held<'a> {
    granted_privileges: &'a [String],
    policy: Policy<'a>,
}

#[derive(Serialize)]
struct Remediation<'a> {
    desc: &'a str,
}

#[derive(Serialize)]
struct Ticket<'a> {
    reference: &'a RawValue,
    url: &'a RawValue,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    controls: &'a [String],
    evidence: &'a Evidence,
    /// As a `Value`: its keys sorted like the rest of the event.
    #[serde(skip_serializing_if = "Option::is_none")]
    exception: Option<Value>,
    recommended_action: &'static str,
    rule_id: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<Ticket<'a>>,
}

/// One IAM Analysis Finding event.
#[derive(Serialize)]
struct Event<'a> {
    activity_id: i64,
    activity_name: &'static str,
    category_name: &'static str,
    category_uid: i64,
    class_name: &'static str,
    class_uid: i64,
    cloud: Cloud<'a>,
    finding_info: FindingInfo<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity_activity_metrics: Option<Metrics<'a>>,
    message: String,
    metadata: Metadata<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    permission_analysis_results: Vec<Held<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remediation: Option<Remediation<'a>>,
    severity: &'static str,
    severity_id: i64,
    status: &'static str,
    status_id: i64,
    time: i64,
    type_name: String,
    type_uid: i64,
    unmapped: Unmapped<'a>,
    user: User<'a>,
}

/// Where a finding stands in the reported run.
enum Phase<'a> {
    /// Seen by the run.
    Open,
    /// Resolved by the run; last seen at this instant.
    Resolved(&'a str),
}

/// The credential concerned, or every credential of the identity for
/// identity findings.
fn credentials_of<'a>(ix: &Index<'a>, d: &'a Finding) -> Vec<Cred<'a>> {
    match &d.credential_id {
        Some(c) => vec![match ix.credentials.get(c.as_str()) {
            Some(c) => Cred::of(c),
            None => Cred {
                last_used_time: None,
                kind: None,
                uid: c,
            },
        }],
        None => ix
            .by_identity
            .get(d.identity_id.as_str())
            .map(|v| v.iter().map(|c| Cred::of(c)).collect())
            .unwrap_or_default(),
    }
}

/// `f`'s event; `creds` are [`credentials_of`] its finding.
fn event<'a>(
    data: &'a RunData,
    ix: &Index<'a>,
    f: &'a ReportFinding,
    phase: Phase<'_>,
    creds: &'a [Cred<'a>],
) -> Event<'a> {
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
    let rule = ix.rules.get(&*d.rule_id).copied();
    let account = ident
        .filter(|i| !i.account.is_empty())
        .map(|i| Uid { uid: &i.account });
    let product = || Product {
        name: "nhi-assure",
        vendor_name: "nhi-assure",
        version: data.version,
    };
    let listed = (!creds.is_empty()).then_some(creds);
    let user = User {
        account: ident
            .filter(|i| !i.account.is_empty())
            .map(|i| Uid { uid: &i.account }),
        credential_uid: d.credential_id.as_deref(),
        name: ident.map(|i| i.name.as_str()),
        programmatic_credentials: listed,
        kind: ident.map(|i| user_type(i.kind).1),
        type_id: ident.map(|i| user_type(i.kind).0),
        uid: &d.identity_id,
    };
    let finding_info = FindingInfo {
        analytic: Analytic {
            name: &d.title,
            kind: "Rule",
            type_id: 1,
            uid: &d.rule_id,
        },
        created_time: first,
        desc: rule.map(|r| r.description.as_str()),
        first_seen_time: first,
        last_seen_time: last_seen,
        product: product(),
        title: &d.title,
        types: &d.controls,
        uid: &f.fingerprint,
    };
    let mut metrics = Metrics {
        first_seen_time: ident.and_then(|i| ms(i.created)),
        last_seen_time: ident.and_then(|i| last_used(&i.usage)),
        password_last_used_time: ident.and_then(|i| ms(i.human_login_last_used)),
        programmatic_credentials: listed,
    };
    // What the identity may do: each entitlement it holds, with the actions
    // it grants (those beyond the approved scope are named in the evidence).
    let held: Vec<Held<'a>> = ix
        .entitlements
        .get(d.identity_id.as_str())
        .map(|v| {
            v.iter()
                .map(|e| Held {
                    granted_privileges: &e.actions,
                    policy: Policy {
                        name: &e.name,
                        uid: &e.id,
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    // The class requires one of its analysis objects; an identity no source
    // holds (an approval naming it) has nothing but this to say.
    if held.is_empty() && metrics.is_empty() {
        metrics.programmatic_credentials = Some(&[]);
    }
    Event {
        activity_id,
        activity_name: activity,
        category_name: "Findings",
        category_uid: CATEGORY_UID,
        class_name: "IAM Analysis Finding",
        class_uid: CLASS_UID,
        cloud: Cloud {
            account,
            provider: cloud_provider(d.provider.as_deref()),
        },
        finding_info,
        identity_activity_metrics: (!metrics.is_empty()).then_some(metrics),
        message: match &d.credential_id {
            Some(c) => format!("{}: {} ({})", d.title, d.identity_id, c),
            None => format!("{}: {}", d.title, d.identity_id),
        },
        metadata: Metadata {
            log_name: format!("run {}", data.run.id),
            product: product(),
            profiles: ["cloud"],
            uid: format!("run-{}:{}", data.run.id, f.fingerprint),
            version: OCSF_VERSION,
        },
        permission_analysis_results: held,
        remediation: rule.map(|r| Remediation {
            desc: &r.remediation,
        }),
        severity: sev,
        severity_id: sev_id,
        status,
        status_id,
        time,
        type_name: format!("IAM Analysis Finding: {activity}"),
        type_uid: CLASS_UID * 100 + activity_id,
        unmapped: Unmapped {
            controls: &d.controls,
            evidence: &d.evidence,
            exception: d
                .exception
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok()),
            recommended_action: d.recommended_action.as_str(),
            rule_id: &d.rule_id,
            source: &f.source,
            // The approval's ticket, where a SIEM user follows it up.
            ticket: ticket(&d.evidence),
        },
        user,
    }
}

/// The ticket a finding's evidence names: its approval's (or an unmapped
/// record's) reference and URL.
///
/// Read as borrowed raw fields, not parsed into values: every event of a
/// million asks.
fn ticket(evidence: &Evidence) -> Option<Ticket<'_>> {
    #[derive(serde::Deserialize)]
    struct Refs<'a> {
        #[serde(borrow, default)]
        approval: Option<&'a RawValue>,
        #[serde(borrow, default)]
        reference: Option<&'a RawValue>,
        #[serde(borrow, default)]
        url: Option<&'a RawValue>,
    }
    let top: Refs<'_> = serde_json::from_str(evidence.own_json()).ok()?;
    let approval = evidence.shared_approval().or(top.approval);
    let from = match approval.filter(|a| a.get().starts_with('{')) {
        Some(a) => serde_json::from_str::<Refs<'_>>(a.get()).ok()?,
        None => top,
    };
    let reference = from.reference.filter(|r| r.get().starts_with('"'))?;
    Some(Ticket {
        reference,
        url: from.url.unwrap_or(RawValue::NULL),
    })
}

/// A finding to write, and the instant it was last seen if the run
/// resolved it.
type Item = (Of, Option<String>);

/// A finding still open or one resolved, as its page holds it.
enum Of {
    Open(Shared<ReportFinding>),
    Closed(Shared<super::ResolvedFinding>),
}

impl std::ops::Deref for Of {
    type Target = ReportFinding;
    fn deref(&self) -> &ReportFinding {
        match self {
            Of::Open(f) => f,
            Of::Closed(r) => &r.finding,
        }
    }
}

/// The run's findings as OCSF IAM Analysis Finding events: `Create` for a
/// finding this run opened, `Update` for one still open, and `Close`
/// (status `Resolved`) for each finding this run resolved, so a SIEM's copy
/// does not stay open forever.
pub fn events(data: &RunData) -> Result<Vec<Value>, ReportError> {
    let ix = Index::new(data);
    each(data)
        .map(|item| {
            let (f, last_seen) = item?;
            let creds = credentials_of(&ix, &f.finding);
            Ok(serde_json::to_value(event(
                data,
                &ix,
                &f,
                phase(&last_seen),
                &creds,
            ))?)
        })
        .collect()
}

fn phase(last_seen: &Option<String>) -> Phase<'_> {
    match last_seen {
        Some(at) => Phase::Resolved(at),
        None => Phase::Open,
    }
}

fn each(data: &RunData) -> impl Iterator<Item = Result<Item, ReportError>> + '_ {
    data.findings
        .iter()
        .map(|f| f.map(|f| (Of::Open(f), None)))
        .chain(data.resolved.iter().map(|r| {
            r.map(|r| {
                let last_seen = r.last_seen.clone();
                (Of::Closed(r), Some(last_seen))
            })
        }))
}

/// Findings rendered at once, then written in order while the next are
/// rendered: two pages.
const BATCH: usize = 4_096;
/// Findings per rendering task.
const CHUNK: usize = 256;

/// `items` rendered as events, each after `,\n`, in order, into the
/// buffers of `spare` (emptied; new ones where it runs out). Buffers are
/// reused from batch to batch: a megabyte each, freed after every batch,
/// the allocator handed them back to the system and the kernel zeroed
/// them again for the next — at a million findings, 4 GB of page faults
/// and a fifth of the report's time.
fn render(
    data: &RunData,
    ix: &Index<'_>,
    items: &[Item],
    spare: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, ReportError> {
    use rayon::prelude::*;
    let mut bufs = spare;
    bufs.resize_with(items.len().div_ceil(CHUNK), Vec::new);
    items
        .par_chunks(CHUNK)
        .zip(bufs)
        .map(|(chunk, mut out)| {
            out.clear();
            out.reserve(chunk.len() * 4_096);
            for (f, last_seen) in chunk {
                out.extend_from_slice(b",\n");
                let creds = credentials_of(ix, &f.finding);
                serde_json::to_writer(&mut out, &event(data, ix, f, phase(last_seen), &creds))?;
            }
            Ok(out)
        })
        .collect()
}

/// The events of [`events`] as a JSON array written one event per line,
/// each compact: a run of a million findings is never a million events
/// at once, and the file is two thirds of its pretty-printed size (574 MB
/// at 125,000 findings) while still valid JSON and greppable by line.
/// Events are rendered on every core a batch at a time, and a batch is
/// written while the next is rendered: a million events are 4 GB.
pub fn write_lines(data: &RunData, w: &mut dyn std::io::Write) -> Result<(), ReportError> {
    let io = |e: std::io::Error| ReportError::Render {
        what: "ocsf",
        message: e.to_string(),
    };
    let ix = Index::new(data);
    let mut items = each(data);
    w.write_all(b"[").map_err(io)?;
    // The first event follows `[` on a line of its own, without a comma.
    let mut skip = 1;
    let mut rendered: Vec<Vec<u8>> = Vec::new();
    // The buffers of the batch written last time, for the next to render.
    let mut spare: Vec<Vec<u8>> = Vec::new();
    loop {
        let batch = items
            .by_ref()
            .take(BATCH)
            .collect::<Result<Vec<Item>, _>>()?;
        if batch.is_empty() && rendered.is_empty() {
            break;
        }
        let done = std::mem::take(&mut rendered);
        let reuse = std::mem::take(&mut spare);
        let (written, next) = std::thread::scope(|s| {
            let next = s.spawn(|| render(data, &ix, &batch, reuse));
            let written = done.iter().try_for_each(|b| {
                let b = b.get(skip..).unwrap_or_default();
                skip = 0;
                w.write_all(b)
            });
            (written, next.join())
        });
        written.map_err(io)?;
        spare = done;
        rendered = next.map_err(|_| ReportError::Render {
            what: "ocsf",
            message: "rendering events panicked".into(),
        })??;
    }
    w.write_all(b"\n]\n").map_err(io)
}
