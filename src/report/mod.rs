//! Reports on a recorded run, for auditors and for machines: control
//! coverage per framework ([`coverage`]), findings as table / JSON / CSV,
//! OCSF ([`ocsf`]), SARIF ([`sarif`]), a self-contained HTML page
//! ([`html`]), the per-subject trace ([`trace`]) and run diffs ([`diff`]).
//!
//! Everything is read from the store (the run, the findings it saw, the
//! reading (what it read), the action journal), never from live sources:
//! a report on run 12 is the same today and next year.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::findings::Finding;
use crate::engine::rules::catalog::Catalogs;
use crate::store::journal::Entry;
use crate::store::runs::RunInfo;
use crate::store::{SqlStore, StoreError};

pub mod access;
pub mod commands;
pub mod coverage;
pub mod diff;
pub mod evidence;
pub mod format;
pub mod html;
pub mod listing;
pub mod ocsf;
pub mod output;
pub mod render;
pub mod sarif;
pub mod trace;

use crate::store::reading::RunReading;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing recorded yet.
    #[error("the store holds no run yet: run `nhi-assure scan` first")]
    NoRuns,
    /// No such run.
    #[error("no run {0} in the store")]
    NoRun(i64),
    /// The run predates per-run detail, or was a targeted pass (which
    /// keeps none).
    #[error("run {0} has no recorded detail (a targeted pass, or older than report support); report on a full run")]
    NoDetail(i64),
    /// Stored data could not be read.
    #[error("stored data: {0}")]
    Data(#[from] serde_json::Error),
    /// A framework filter names no catalog.
    #[error("unknown framework {name:?} (known: {known})")]
    UnknownFramework {
        /// What was asked.
        name: String,
        /// What exists.
        known: String,
    },
    /// Rendering failed.
    #[error("rendering {what}: {message}")]
    Render {
        /// Which output.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Writing failed.
    #[error("{path}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Which run: `latest` or an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSel {
    /// The newest run.
    Latest,
    /// This run.
    Id(i64),
}

impl FromStr for RunSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("latest") {
            return Ok(RunSel::Latest);
        }
        s.parse::<i64>()
            .map(RunSel::Id)
            .map_err(|_| format!("{s:?} is neither `latest` nor a run id"))
    }
}

impl SqlStore {
    /// Resolve a run selector to a run id that exists.
    pub async fn resolve_run(&self, sel: RunSel) -> Result<i64, ReportError> {
        match sel {
            // A targeted run keeps no reading: the latest full run is the
            // latest that can be reported on.
            RunSel::Latest => self
                .latest_detailed_run_id()
                .await?
                .ok_or(ReportError::NoRuns),
            RunSel::Id(id) => self
                .run_info(id)
                .await?
                .map(|r| r.id)
                .ok_or(ReportError::NoRun(id)),
        }
    }
}

/// A finding of the reported run with its lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFinding {
    /// Stable key across runs.
    pub fingerprint: String,
    /// Inventory source (empty for approval records).
    pub source: String,
    /// When its current lifecycle began (RFC 3339).
    pub first_seen: String,
    /// The finding (contract form).
    #[serde(flatten)]
    pub finding: Finding,
}

/// A finding resolved by the reported run.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedFinding {
    /// The finding as last seen.
    #[serde(flatten)]
    pub finding: ReportFinding,
    /// Start of the last run that saw it.
    pub last_seen: String,
    /// Start of the run that resolved it (the reported run).
    pub resolved_at: String,
}

/// Everything a report needs about one run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run.
    pub run: RunInfo,
    /// Its findings, worst first.
    pub findings: Vec<ReportFinding>,
    /// Findings this run resolved, as last seen (for OCSF `Close` events).
    pub resolved: Vec<ResolvedFinding>,
    /// What it read.
    pub reading: RunReading,
    /// Journal entries of the run.
    pub journal: Vec<Entry>,
    /// Every journal entry up to this run (for traces).
    pub journal_upto: Vec<Entry>,
    /// Standing vs issued access per approval.
    pub access: Vec<access::ApprovalAccess>,
    /// Control catalogs.
    pub catalogs: Catalogs,
    /// Tool version.
    pub version: &'static str,
}

/// Load a run's data from the store.
pub async fn load(
    store: &SqlStore,
    sel: RunSel,
    catalogs: Catalogs,
) -> Result<RunData, ReportError> {
    let id = store.resolve_run(sel).await?;
    let run = store.run_info(id).await?.ok_or(ReportError::NoRun(id))?;
    let stored = store
        .run_reading(id)
        .await?
        .ok_or(ReportError::NoDetail(id))?;
    let reading = RunReading::from_stored(&stored)?;
    let life = diff::replay(store, id).await?;
    let mut findings: Vec<ReportFinding> = store
        .run_findings(id)
        .await?
        .into_iter()
        .filter_map(|rf| {
            let finding = rf.finding?;
            Some(ReportFinding {
                first_seen: life
                    .open
                    .get(&rf.fingerprint)
                    .map(|l| l.first_seen.clone())
                    .unwrap_or_else(|| run.started_at.clone()),
                fingerprint: rf.fingerprint,
                source: rf.source,
                finding,
            })
        })
        .collect();
    findings.sort_by(|a, b| {
        let (x, y) = (&a.finding, &b.finding);
        y.severity
            .cmp(&x.severity)
            .then_with(|| x.rule_id.cmp(&y.rule_id))
            .then_with(|| x.identity_id.cmp(&y.identity_id))
            .then_with(|| x.credential_id.cmp(&y.credential_id))
    });
    // Resolved by this run: their data as the last run that saw them had it.
    let started: HashMap<i64, &str> = life
        .runs
        .iter()
        .map(|r| (r.id, r.started_at.as_str()))
        .collect();
    let mut by_last: std::collections::BTreeMap<i64, Vec<&diff::Life>> = Default::default();
    for l in life.closed.iter().filter(|l| l.resolved_run == Some(id)) {
        by_last.entry(l.last_run).or_default().push(l);
    }
    let mut resolved = Vec::new();
    for (last, lives) in by_last {
        // By fingerprint: a run resolving many findings is not quadratic.
        let mut seen: HashMap<String, Finding> = store
            .run_findings(last)
            .await?
            .into_iter()
            .filter_map(|s| Some((s.fingerprint, s.finding?)))
            .collect();
        for l in lives {
            let Some(finding) = seen.remove(&l.fingerprint) else {
                continue;
            };
            resolved.push(ResolvedFinding {
                finding: ReportFinding {
                    fingerprint: l.fingerprint.clone(),
                    source: l.source.clone(),
                    first_seen: l.first_seen.clone(),
                    finding,
                },
                last_seen: started
                    .get(&last)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                resolved_at: run.started_at.clone(),
            });
        }
    }
    resolved.sort_by(|a, b| a.finding.fingerprint.cmp(&b.finding.fingerprint));
    let journal_upto: Vec<Entry> = store
        .journal_list(None)
        .await?
        .into_iter()
        .filter(|e| e.run_id <= id)
        .collect();
    let journal = journal_upto
        .iter()
        .filter(|e| e.run_id == id)
        .cloned()
        .collect();
    let access = {
        let as_of = parse_ts(&run.as_of).unwrap_or_else(Utc::now);
        let started = parse_ts(&run.started_at).unwrap_or(as_of);
        let issued = store.issued_sessions(None).await?;
        access::compute(&reading, as_of, started, &issued, &journal_upto)
    };
    Ok(RunData {
        access,
        run,
        findings,
        resolved,
        reading,
        journal,
        journal_upto,
        catalogs,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Parse an RFC 3339 timestamp kept as text.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Count of findings per key, sorted by count (desc) then key.
pub fn tally<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut m: HashMap<&str, usize> = HashMap::new();
    for k in keys {
        *m.entry(k).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}
