//! Findings' lifecycle replayed from the per-run record, and the diff
//! between two runs: new, resolved, still open, with first-seen dates and
//! mean time to remediate per severity.
//!
//! The replay applies the store's rule, run by run: a finding opens when a
//! run sees it; it is resolved only by a run that does not see it although
//! that run's source saw everything the finding depends on (its facets)
//! and the run evaluated its rule. Absent because its source failed, or
//! could not read what the finding reads, is not resolved.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::{parse_ts, ReportError};
use crate::engine::estate::SourceStatus;
use crate::engine::facets::Facets;
use crate::store::reading::RuleInfo;
use crate::store::runs::{RunInfo, Sighting};
use crate::store::SqlStore;

/// One lifecycle of a finding.
#[derive(Debug, Clone, Serialize)]
pub struct Life {
    /// Fingerprint.
    pub fingerprint: String,
    /// Rule.
    pub rule_id: String,
    /// Severity.
    pub severity: String,
    /// Source.
    pub source: String,
    /// Credential kind.
    pub credential_kind: Option<String>,
    /// What judging it depends on (as last seen).
    #[serde(skip)]
    pub depends: Facets,
    /// Run that opened it.
    pub first_run: i64,
    /// When that run started.
    pub first_seen: String,
    /// Last run that saw it.
    pub last_run: i64,
    /// Run that resolved it.
    pub resolved_run: Option<i64>,
    /// When that run started.
    pub resolved_at: Option<String>,
}

/// The lifecycle state after a given run.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Open findings by fingerprint.
    pub open: HashMap<String, Life>,
    /// Closed lifecycles, in resolution order.
    pub closed: Vec<Life>,
    /// Runs replayed (those with recorded detail), oldest first.
    pub runs: Vec<RunInfo>,
    /// Open fingerprints after each replayed run.
    pub open_after: HashMap<i64, HashSet<String>>,
}

fn sees(sources: &[SourceStatus], life: &Life) -> bool {
    crate::store::seeable(sources, &life.source, life.depends)
}

fn depends(k: &Sighting) -> Facets {
    crate::store::stored_depends(
        k.depends.as_deref(),
        &k.source,
        k.credential_kind.as_deref(),
    )
}

/// The identity a fingerprint (`rule|identity|subject`) names.
fn identity_of(fingerprint: &str) -> &str {
    fingerprint.split('|').nth(1).unwrap_or("")
}

/// Replay every recorded run up to `upto`.
pub async fn replay(store: &SqlStore, upto: i64) -> Result<Lifecycle, ReportError> {
    let runs = store.runs_upto(upto).await?;
    let rules: HashMap<i64, HashSet<String>> = store
        .run_rules(upto)
        .await?
        .into_iter()
        .map(|(id, json)| {
            let list: Vec<RuleInfo> = serde_json::from_str(&json)?;
            Ok((id, list.into_iter().map(|r| r.id).collect()))
        })
        .collect::<Result<_, serde_json::Error>>()?;
    // A sighting covers consecutive recorded runs first_run..=last_run.
    let sightings = store.sightings_upto(upto).await?;
    let mut starting: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, s) in sightings.iter().enumerate() {
        starting.entry(s.first_run).or_default().push(i);
    }
    let mut active: HashMap<&str, usize> = HashMap::new();
    let mut lc = Lifecycle::default();
    for run in runs {
        // Runs without detail (older than per-run records) cannot be replayed.
        let Some(evaluated) = rules.get(&run.id) else {
            continue;
        };
        for &i in starting.get(&run.id).into_iter().flatten() {
            active.insert(sightings[i].fingerprint.as_str(), i);
        }
        let seen: Vec<&Sighting> = active.values().map(|&i| &sightings[i]).collect();
        let seen_fps: HashSet<&str> = active.keys().copied().collect();
        for k in &seen {
            let life = lc
                .open
                .entry(k.fingerprint.clone())
                .or_insert_with(|| Life {
                    fingerprint: k.fingerprint.clone(),
                    rule_id: k.rule_id.clone(),
                    severity: k.severity.clone(),
                    source: k.source.clone(),
                    credential_kind: k.credential_kind.clone(),
                    depends: depends(k),
                    first_run: run.id,
                    first_seen: run.started_at.clone(),
                    last_run: run.id,
                    resolved_run: None,
                    resolved_at: None,
                });
            life.last_run = run.id;
            life.severity = k.severity.clone();
            life.source = k.source.clone();
            life.depends = depends(k);
        }
        let closing: Vec<String> = lc
            .open
            .values()
            .filter(|l| !seen_fps.contains(l.fingerprint.as_str()))
            .filter(|l| {
                let own = l.rule_id == crate::engine::findings::UNMAPPED_RULE;
                (own || evaluated.contains(&l.rule_id))
                    && sees(&run.sources, l)
                    && run
                        .held
                        .lets_resolve(&l.rule_id, identity_of(&l.fingerprint))
            })
            .map(|l| l.fingerprint.clone())
            .collect();
        for fp in closing {
            if let Some(mut l) = lc.open.remove(&fp) {
                l.resolved_run = Some(run.id);
                l.resolved_at = Some(run.started_at.clone());
                lc.closed.push(l);
            }
        }
        lc.open_after
            .insert(run.id, lc.open.keys().cloned().collect());
        active.retain(|_, i| sightings[*i].last_run != run.id);
        lc.runs.push(run);
    }
    Ok(lc)
}

/// One finding in a diff.
#[derive(Debug, Clone, Serialize)]
pub struct DiffEntry {
    /// Fingerprint (`rule|identity|credential`).
    pub fingerprint: String,
    /// Rule.
    pub rule_id: String,
    /// Severity.
    pub severity: String,
    /// First seen (start of its lifecycle).
    pub first_seen: String,
    /// Resolved at, for resolved findings.
    pub resolved_at: Option<String>,
    /// Hours from first seen to resolution.
    pub hours_to_remediate: Option<f64>,
    /// Open but not seen by the later run (its source was not read): unknown, not resolved.
    pub unverified: bool,
}

/// Mean time to remediate, per severity.
#[derive(Debug, Clone, Serialize)]
pub struct Mttr {
    /// Severity.
    pub severity: String,
    /// Findings resolved.
    pub resolved: usize,
    /// Mean hours from first seen to resolution.
    pub mean_hours: f64,
}

/// The difference between two runs.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Earlier run.
    pub from_run: i64,
    /// Later run.
    pub to_run: i64,
    /// Opened after `from_run`, open at `to_run`.
    pub new: Vec<DiffEntry>,
    /// Resolved after `from_run`, up to `to_run`.
    pub resolved: Vec<DiffEntry>,
    /// Open at both.
    pub still_open: Vec<DiffEntry>,
    /// Mean time to remediate per severity, over `resolved`.
    pub mttr: Vec<Mttr>,
    /// Mean time to remediate per severity, over every resolution up to `to_run`.
    pub mttr_all_time: Vec<Mttr>,
}

fn hours(l: &Life) -> Option<f64> {
    let a = parse_ts(&l.first_seen)?;
    let b = parse_ts(l.resolved_at.as_deref()?)?;
    Some((b - a).num_milliseconds() as f64 / 3_600_000.0)
}

fn entry(l: &Life, to_run: i64) -> DiffEntry {
    DiffEntry {
        fingerprint: l.fingerprint.clone(),
        rule_id: l.rule_id.clone(),
        severity: l.severity.clone(),
        first_seen: l.first_seen.clone(),
        resolved_at: l.resolved_at.clone(),
        hours_to_remediate: hours(l),
        unverified: l.resolved_run.is_none() && l.last_run != to_run,
    }
}

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

fn mttr<'a>(lives: impl Iterator<Item = &'a Life>) -> Vec<Mttr> {
    let mut acc: HashMap<&str, (usize, f64)> = HashMap::new();
    for l in lives {
        if let Some(h) = hours(l) {
            let e = acc.entry(l.severity.as_str()).or_default();
            e.0 += 1;
            e.1 += h;
        }
    }
    SEVERITIES
        .iter()
        .filter_map(|s| {
            acc.get(s).map(|(n, total)| Mttr {
                severity: s.to_string(),
                resolved: *n,
                mean_hours: total / *n as f64,
            })
        })
        .collect()
}

fn sev_rank(s: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|x| *x == s)
        .unwrap_or(SEVERITIES.len())
}

/// Diff run `from` against run `to` (`from < to`).
pub async fn diff(store: &SqlStore, from: i64, to: i64) -> Result<Diff, ReportError> {
    let lc = replay(store, to).await?;
    let before = lc
        .open_after
        .get(&from)
        .ok_or(ReportError::NoDetail(from))?;
    if !lc.open_after.contains_key(&to) {
        return Err(ReportError::NoDetail(to));
    }
    let mut new = Vec::new();
    let mut still_open = Vec::new();
    for l in lc.open.values() {
        if l.first_run > from {
            new.push(entry(l, to));
        } else if before.contains(&l.fingerprint) {
            still_open.push(entry(l, to));
        }
    }
    let window: Vec<&Life> = lc
        .closed
        .iter()
        .filter(|l| l.resolved_run.is_some_and(|r| r > from && r <= to) && l.first_run <= to)
        .collect();
    // A finding opened and resolved between the two runs counts as resolved.
    let mut resolved: Vec<DiffEntry> = window.iter().map(|l| entry(l, to)).collect();
    for v in [&mut new, &mut resolved, &mut still_open] {
        v.sort_by(|a, b| {
            sev_rank(&a.severity)
                .cmp(&sev_rank(&b.severity))
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
    }
    Ok(Diff {
        from_run: from,
        to_run: to,
        new,
        resolved,
        still_open,
        mttr: mttr(window.iter().copied()),
        mttr_all_time: mttr(lc.closed.iter()),
    })
}

/// The run recorded just before `to` (with detail), for a default diff.
pub async fn previous_run(store: &SqlStore, to: i64) -> Result<Option<i64>, ReportError> {
    Ok(store
        .run_rules(to)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| *id < to)
        .max())
}
