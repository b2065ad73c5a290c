//! Findings' lifecycle replayed from the per-run record, and the diff
//! between two runs: new, resolved, still open, with first-seen dates and
//! mean time to remediate per severity.
//!
//! The replay applies the store's rule, run by run: a finding opens when a
//! run sees it; it is resolved only by a run that does not see it although
//! that run's source saw everything the finding depends on (its facets)
//! and the run evaluated its rule. Absent because its source failed, or
//! could not read what the finding reads, is not resolved.

use std::collections::{HashMap, HashSet};

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
#[derive(Debug, Default, Clone)]
pub struct Lifecycle {
    /// Open findings by fingerprint.
    pub open: HashMap<String, Life>,
    /// Closed lifecycles, in resolution order.
    pub closed: Vec<Life>,
    /// Runs replayed (those with recorded detail), oldest first.
    pub runs: Vec<RunInfo>,
}

fn sees(sources: &[SourceStatus], life: &Life) -> bool {
    crate::store::seeable(sources, &life.source, life.depends)
}

fn depends(k: &Sighting) -> Facets {
    crate::store::stored_depends(
        k.depends.as_deref().and_then(Facets::from_stored),
        &k.source,
        k.credential_kind.as_deref(),
    )
}

/// The identity a fingerprint (`rule|identity|subject`) names.
pub(crate) fn identity_of(fingerprint: &str) -> &str {
    fingerprint.split('|').nth(1).unwrap_or("")
}

impl Lifecycle {
    /// The fingerprints open after run `run`; `None` if `run` was not
    /// replayed (no recorded detail).
    pub fn open_after(&self, run: i64) -> Option<HashSet<&str>> {
        self.runs.iter().any(|r| r.id == run).then(|| {
            self.open
                .values()
                .filter(|l| l.first_run <= run)
                .chain(
                    self.closed
                        .iter()
                        .filter(|l| l.first_run <= run && l.resolved_run.is_some_and(|r| r > run)),
                )
                .map(|l| l.fingerprint.as_str())
                .collect()
        })
    }
}

/// Replay every recorded run up to `upto`, finding by finding: a
/// lifecycle opens at the first replayed run of its first sighting, spans
/// its sightings, and closes at the first replayed run after a sighting
/// (before the next one) that evaluated its rule and saw what it depends
/// on without holding its subject. Work is per sighting and per run
/// between two sightings of one finding, so a long-lived store (thousands
/// of daemon passes) is not replayed as runs × findings.
pub async fn replay(store: &SqlStore, upto: i64) -> Result<Lifecycle, ReportError> {
    let replayer = Replayer::load(store, upto).await?;
    let sightings = store.sightings_upto(upto).await?;
    let mut lc = replayer.replay(&sightings);
    lc.runs = replayer.runs;
    Ok(lc)
}

/// What a replay needs besides the sightings: the runs with recorded
/// detail up to a run and the rules each evaluated. Loaded once, it
/// replays any set of findings, so a report can replay page by page.
#[derive(Debug, Default)]
pub struct Replayer {
    rules: HashMap<i64, HashSet<String>>,
    /// Runs replayed (those with recorded detail), oldest first.
    pub runs: Vec<RunInfo>,
}

impl Replayer {
    /// The runs up to `upto` and their rules.
    pub async fn load(store: &SqlStore, upto: i64) -> Result<Self, ReportError> {
        let rules: HashMap<i64, HashSet<String>> = store
            .run_rules(upto)
            .await?
            .into_iter()
            .map(|(id, json)| {
                let list: Vec<RuleInfo> = serde_json::from_str(&json)?;
                Ok((id, list.into_iter().map(|r| r.id).collect()))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        // Runs without detail (older than per-run records) cannot be replayed.
        let runs: Vec<RunInfo> = store
            .runs_upto(upto)
            .await?
            .into_iter()
            .filter(|r| rules.contains_key(&r.id))
            .collect();
        Ok(Replayer { rules, runs })
    }

    /// The lifecycles of the findings `sightings` are of: every sighting
    /// of each, up to the replayed run, ordered by first run within a
    /// fingerprint (the fingerprints may come in any order). `runs` of
    /// the result is left empty.
    pub fn replay(&self, sightings: &[Sighting]) -> Lifecycle {
        let mut by_fp: HashMap<&str, Vec<&Sighting>> = HashMap::new();
        for k in sightings {
            by_fp.entry(k.fingerprint.as_str()).or_default().push(k);
        }
        let mut lc = Lifecycle::default();
        for (fp, list) in by_fp {
            self.replay_one(fp, &list, &mut lc);
        }
        lc.closed.sort_by(|a, b| {
            (a.resolved_run, &a.fingerprint).cmp(&(b.resolved_run, &b.fingerprint))
        });
        lc
    }

    /// One finding's lifecycles from its sightings (in first-run order).
    fn replay_one(&self, fp: &str, list: &[&Sighting], lc: &mut Lifecycle) {
        let runs = &self.runs;
        // The index of the first replayed run at or after `id`.
        let at_or_after = |id: i64| runs.partition_point(|r| r.id < id);
        let mut life: Option<Life> = None;
        for (n, k) in list.iter().enumerate() {
            let start = at_or_after(k.first_run);
            let end = runs.partition_point(|r| r.id <= k.last_run);
            if start >= end {
                continue;
            }
            let l = life.get_or_insert_with(|| Life {
                fingerprint: fp.to_string(),
                rule_id: k.rule_id.clone(),
                severity: k.severity.clone(),
                source: k.source.clone(),
                credential_kind: k.credential_kind.clone(),
                depends: depends(k),
                first_run: runs[start].id,
                first_seen: runs[start].started_at.clone(),
                last_run: runs[start].id,
                resolved_run: None,
                resolved_at: None,
            });
            l.last_run = runs[end - 1].id;
            l.severity = k.severity.clone();
            l.source = k.source.clone();
            l.depends = depends(k);
            let next = list
                .get(n + 1)
                .map_or(runs.len(), |x| at_or_after(x.first_run))
                .max(end);
            let own = l.rule_id == crate::engine::findings::UNMAPPED_RULE;
            let closed_by = runs[end..next].iter().find(|run| {
                (own || self
                    .rules
                    .get(&run.id)
                    .is_some_and(|e| e.contains(&l.rule_id)))
                    && sees(&run.sources, l)
                    && run.held.lets_resolve(&l.rule_id, identity_of(fp))
            });
            if let Some(run) = closed_by {
                if let Some(mut l) = life.take() {
                    l.resolved_run = Some(run.id);
                    l.resolved_at = Some(run.started_at.clone());
                    lc.closed.push(l);
                }
            }
        }
        if let Some(l) = life {
            lc.open.insert(fp.to_string(), l);
        }
    }
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
    let before = lc.open_after(from).ok_or(ReportError::NoDetail(from))?;
    if !lc.runs.iter().any(|r| r.id == to) {
        return Err(ReportError::NoDetail(to));
    }
    let mut new = Vec::new();
    let mut still_open = Vec::new();
    for l in lc.open.values() {
        if l.first_run > from {
            new.push(entry(l, to));
        } else if before.contains(l.fingerprint.as_str()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::estate::{SourceState, SourceStatus};
    use crate::engine::findings::Finding;
    use crate::engine::rules::{Action, Severity};
    use crate::store::runs::RunDetail;
    use crate::store::{RunRecord, SourcedFinding, Store};

    fn finding(n: usize, evidence: u64) -> SourcedFinding {
        SourcedFinding {
            finding: Finding {
                rule_id: "credential-stale".into(),
                title: "t".into(),
                severity: Severity::High,
                provider: Some("aws".into()),
                identity_id: format!("arn:aws:iam::1:user/u{}", n % 4),
                credential_id: Some(format!("AKIA{n}")),
                controls: Default::default(),
                evidence: serde_json::json!({ "n": evidence }).into(),
                recommended_action: Action::Disable,
                exception: None,
            },
            source: "aws".into(),
            credential_kind: Some(nhi_contract::CredentialKind::AccessKey),
            depends: Facets::USAGE,
        }
    }

    /// The store keeps the lifecycle as runs are recorded; the report
    /// replays it from the sightings finding by finding. Over a
    /// pseudo-random history (findings appearing, changing, vanishing;
    /// the source failing, blind to usage, or holding a subject), both
    /// agree on what is open after every run.
    #[tokio::test]
    async fn the_replay_agrees_with_the_recorded_lifecycle_after_every_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::SqlStore::open(&dir.path().join("s.db").display().to_string())
            .await
            .expect("open");
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64*: deterministic, no dependency.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let rules = ["credential-stale".to_string()];
        let mut ids = Vec::new();
        for _ in 0..40 {
            let state = match next() % 6 {
                0 => SourceState::Failed { error: "x".into() },
                1 => SourceState::Partial {
                    gaps: vec!["usage".into()],
                    blinds: Facets::USAGE,
                },
                _ => SourceState::Complete,
            };
            let sources = vec![SourceStatus {
                name: "aws".into(),
                provider: nhi_contract::Provider::Aws,
                state,
            }];
            let mut list: Vec<SourcedFinding> = Vec::new();
            for n in 0..12 {
                if next() % 3 != 0 {
                    list.push(finding(n, next() % 2));
                }
            }
            let mut held = crate::engine::plan::Held::default();
            if next() % 5 == 0 {
                held.subjects
                    .insert("arn:aws:iam::1:user/u1".into(), "test".into());
            }
            let s = store
                .record_run(RunRecord {
                    started_at: chrono::Utc::now(),
                    as_of: chrono::Utc::now(),
                    command: "scan",
                    sources: &sources,
                    rules: &rules,
                    findings: &list,
                    held: &held,
                    reading: None,
                    scope: None,
                })
                .await
                .expect("run");
            store
                .record_run_detail(
                    s.run_id,
                    RunDetail {
                        inventory: "[]",
                        approvals: "[]",
                        rules: r#"[{"id":"credential-stale","title":"t","description":"d","severity":"high","subject":"credential","action":"disable","remediation":"r","controls":[]}]"#,
                        findings: &list,
                    },
                )
                .await
                .expect("detail");
            ids.push(s.run_id);
            let mut stored: Vec<String> = store
                .open_findings()
                .await
                .expect("open")
                .into_iter()
                .map(|f| f.finding.fingerprint())
                .collect();
            stored.sort();
            let lc = replay(&store, s.run_id).await.expect("replay");
            let mut replayed: Vec<String> = lc.open.keys().cloned().collect();
            replayed.sort();
            assert_eq!(replayed, stored, "after run {}", s.run_id);
        }
        // The open set after any earlier run is what was open then.
        let lc = replay(&store, ids[39]).await.expect("replay");
        for (i, id) in ids.iter().enumerate().take(39) {
            let then = replay(&store, *id).await.expect("replay");
            let mut want: Vec<&str> = then.open.keys().map(String::as_str).collect();
            want.sort();
            let mut got: Vec<&str> = lc.open_after(*id).expect("replayed").into_iter().collect();
            got.sort();
            assert_eq!(got, want, "after run {} ({i})", id);
        }
        assert!(lc.open_after(9_999).is_none());
    }
}
