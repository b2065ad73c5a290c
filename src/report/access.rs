//! Standing vs issued access per approval: for every approval the run read,
//! the standing secrets it covers and what was issued under it (sessions,
//! federated credentials), so an auditor sees which approvals still rest on
//! secrets that outlive them and which are served only by access that
//! cannot.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use nhi_contract::Issuance;
use serde::Serialize;

use crate::engine::facts::approval_state;
use crate::store::issued::IssuedRecord;
use crate::store::journal::Entry;

/// How an approval's access is served, as the run saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Served {
    /// Only by standing secrets.
    Standing,
    /// Only by issued access (sessions, a federated credential).
    Issued,
    /// Both: issued access exists, yet a standing secret remains.
    Both,
    /// Neither: nothing active, nothing issued.
    None,
}

impl Served {
    /// The name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Standing => "standing",
            Served::Issued => "issued",
            Served::Both => "both",
            Served::None => "none",
        }
    }
}

/// One approval's access.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalAccess {
    /// Approval id.
    pub approval: String,
    /// Identity it approves.
    pub subject: String,
    /// Its state at the run (`valid`, `expired`, …).
    pub state: &'static str,
    /// How it could be served without a standing secret, if it says.
    pub issuance: Option<Issuance>,
    /// The role or application it names for issuance.
    pub role: Option<String>,
    /// Active secret-bearing credentials it covers (ids only).
    pub standing: Vec<String>,
    /// Sessions issued under it up to the run's start.
    pub sessions_issued: usize,
    /// Of those, valid when the run started.
    pub sessions_valid: usize,
    /// Last issuance up to the run's start (RFC 3339).
    pub last_issued_at: Option<String>,
    /// A federated credential for its workload was in place when the run
    /// started (added by the reconciler and not removed since).
    pub federated: bool,
    /// How its access is served.
    pub served: Served,
}

/// Access per approval for the run that read `reading` at `as_of`, started
/// at `started`, with the sessions `issued` and the `journal` up to it.
/// Approvals are in id order. Read in place: a large estate is not copied.
pub fn compute(
    reading: &crate::store::reading::RunReading,
    as_of: DateTime<Utc>,
    started: DateTime<Utc>,
    issued: &[IssuedRecord],
    journal: &[Entry],
) -> Vec<ApprovalAccess> {
    // identity id → its active secret-bearing credentials.
    let mut standing: HashMap<&str, Vec<&str>> = HashMap::new();
    let inventories = || reading.sources.iter().filter_map(|s| s.inventory.as_ref());
    for c in inventories().flat_map(|i| &i.credentials) {
        let live = c.active && c.expires.is_none_or(|e| e > as_of);
        if live && c.kind.is_secret_bearing() {
            standing
                .entry(c.identity.as_str())
                .or_default()
                .push(c.id.as_str());
        }
    }
    let mut sessions: HashMap<&str, (usize, usize, Option<DateTime<Utc>>)> = HashMap::new();
    for r in issued.iter().filter(|r| r.issued_at <= started) {
        let e = sessions.entry(r.approval_id.as_str()).or_default();
        e.0 += 1;
        if r.expires_at > started {
            e.1 += 1;
        }
        e.2 = e.2.max(Some(r.issued_at));
    }
    let federated = federations_in_place(journal);
    let mut out: BTreeMap<&str, ApprovalAccess> = BTreeMap::new();
    for a in reading
        .approvals
        .iter()
        .chain(inventories().flat_map(|i| &i.approvals))
    {
        let held: Vec<String> = standing
            .get(a.subject.as_str())
            .into_iter()
            .flatten()
            .filter(|c| a.credentials.is_empty() || a.credentials.iter().any(|x| x == *c))
            .map(|c| c.to_string())
            .collect();
        let (n, valid, last) = sessions.get(a.id.as_str()).copied().unwrap_or_default();
        let fed = federated.contains(&a.id);
        let issued_any = valid > 0 || fed;
        let served = match (held.is_empty(), issued_any) {
            (false, false) => Served::Standing,
            (true, true) => Served::Issued,
            (false, true) => Served::Both,
            (true, false) => Served::None,
        };
        // Two records of one id (two sources): one row, the later one.
        out.insert(
            a.id.as_str(),
            ApprovalAccess {
                approval: a.id.clone(),
                subject: a.subject.clone(),
                state: approval_state(a, as_of).0.as_str(),
                issuance: a.issuance(),
                role: a.role.clone(),
                standing: held,
                sessions_issued: n,
                sessions_valid: valid,
                last_issued_at: last.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                federated: fed,
                served,
            },
        );
    }
    out.into_values().collect()
}

/// Approvals whose federated credential the journal says is in place
/// (added, and neither removed nor undone since).
fn federations_in_place(journal: &[Entry]) -> std::collections::HashSet<String> {
    crate::act::federate::federations_in_force(journal)
        .into_values()
        .map(|f| f.approval)
        .collect()
}
