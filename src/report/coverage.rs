//! Control coverage: for every control of every catalog, whether a rule
//! mapped to it was evaluated in the run, how many subjects pass and fail,
//! the failing findings, and the evidence. An auditor reads it as
//! "control → status → evidence".

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;

use super::{ReportError, RunData};
use crate::engine::rules::catalog::Catalog;

/// A control's status in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Evaluated, no subject fails, every source read completely.
    Pass,
    /// At least one subject fails.
    Fail,
    /// Evaluated and nothing fails, but a source was not read completely:
    /// its subjects are unknown, so a pass cannot be claimed.
    Unknown,
    /// No rule evaluated in this run maps to it.
    NotEvaluated,
    /// Every failing subject's findings are covered by exceptions: the
    /// control holds only by accepted risk, which is not passing.
    Excepted,
}

impl Status {
    /// The name used in tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unknown => "unknown",
            Status::NotEvaluated => "not_evaluated",
            Status::Excepted => "excepted",
        }
    }
}

/// Subject counts of one control.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Subjects {
    /// Subjects the mapped rules were evaluated on (from sources that were read).
    pub evaluated: usize,
    /// Of those, with no finding of a mapped rule.
    pub passing: usize,
    /// With at least one finding of a mapped rule that no exception covers.
    pub failing: usize,
    /// With findings of mapped rules, every one covered by an exception.
    pub excepted: usize,
}

/// One control in one run.
#[derive(Debug, Clone, Serialize)]
pub struct ControlCoverage {
    /// `FRAMEWORK:ID`.
    pub reference: String,
    /// Id within the framework.
    pub id: String,
    /// Title.
    pub title: String,
    /// Status.
    pub status: Status,
    /// Rules evaluated in the run that map to it.
    pub rules: Vec<String>,
    /// Subject counts.
    pub subjects: Subjects,
    /// Fingerprints of the failing findings (details in the report's `findings`).
    pub findings: Vec<String>,
    /// Highest severity among the failing findings.
    pub worst_severity: Option<String>,
    /// Why the status holds: the rules and subject kinds evaluated, and any
    /// source that was not read completely.
    pub evidence: Evidence,
}

/// What backs a control's status.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// Subject kinds evaluated (`credential`, `identity`, `approval`).
    pub subject_kinds: Vec<String>,
    /// Sources not read completely in the run (their subjects are unknown).
    pub incomplete_sources: Vec<String>,
}

/// Totals of one framework.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    /// Controls in the catalog.
    pub controls: usize,
    /// Passing.
    pub pass: usize,
    /// Failing.
    pub fail: usize,
    /// Unknown (incomplete sources).
    pub unknown: usize,
    /// Not evaluated.
    pub not_evaluated: usize,
    /// Holding only by exceptions.
    pub excepted: usize,
}

/// One framework in one run.
#[derive(Debug, Clone, Serialize)]
pub struct FrameworkCoverage {
    /// Framework id (`OWASP-NHI-2025`).
    pub framework: String,
    /// Full name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Where it is published.
    pub url: String,
    /// Providers it was evaluated on (empty: all).
    pub providers: Vec<String>,
    /// Totals.
    pub totals: Totals,
    /// Every control of the catalog, in catalog order.
    pub controls: Vec<ControlCoverage>,
}

fn catalog_matches(cat: &Catalog, filter: &[String]) -> bool {
    filter.is_empty()
        || filter
            .iter()
            .any(|f| f.eq_ignore_ascii_case(&cat.framework))
}

/// Compute coverage for the frameworks in `filter` (all when empty).
pub fn compute(data: &RunData, filter: &[String]) -> Result<Vec<FrameworkCoverage>, ReportError> {
    let cats = &data.catalogs.0;
    for f in filter {
        if !cats.iter().any(|c| c.framework.eq_ignore_ascii_case(f)) {
            return Err(ReportError::UnknownFramework {
                name: f.clone(),
                known: cats
                    .iter()
                    .map(|c| c.framework.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let snap = &data.reading;
    let mut out = Vec::new();
    for cat in cats.iter().filter(|c| catalog_matches(c, filter)) {
        // A framework scoped to providers (CIS AWS) counts only their
        // sources' subjects and findings.
        let in_scope = |p: &str| cat.providers.is_empty() || cat.providers.iter().any(|x| x == p);
        let sources: Vec<&crate::store::reading::SourceReading> = snap
            .sources
            .iter()
            .filter(|s| in_scope(s.provider.as_str()))
            .collect();
        let read = || sources.iter().filter_map(|s| s.inventory.as_ref());
        // Subjects evaluated per kind: those of sources that were read.
        let credentials: usize = read().map(|i| i.credentials.len()).sum();
        let identities: usize = read().map(|i| i.identities.len()).sum();
        let approvals = if cat.providers.is_empty() {
            snap.approvals.len()
        } else {
            let ids: HashSet<&str> = read()
                .flat_map(|i| i.identities.iter().map(|x| x.id.as_str()))
                .collect();
            snap.approvals
                .iter()
                .filter(|a| ids.contains(a.subject.as_str()))
                .count()
        };
        let incomplete: Vec<String> = sources
            .iter()
            .filter(|s| !s.state.is_complete())
            .map(|s| s.name.clone())
            .collect();
        let mut totals = Totals::default();
        let mut controls = Vec::new();
        for c in &cat.controls {
            let reference = format!("{}:{}", cat.framework, c.id);
            let rules: Vec<&crate::store::reading::RuleInfo> = snap
                .rules
                .iter()
                .filter(|r| r.controls.contains(&reference))
                .collect();
            let kinds: BTreeSet<&str> = rules.iter().map(|r| r.subject.as_str()).collect();
            let evaluated: usize = kinds
                .iter()
                .map(|k| match *k {
                    "credential" => credentials,
                    "identity" => identities,
                    _ => approvals,
                })
                .sum();
            let rule_ids: HashSet<&str> = rules.iter().map(|r| r.id.as_str()).collect();
            let failing: Vec<&super::ReportFinding> = data
                .findings
                .iter()
                .filter(|f| rule_ids.contains(f.finding.rule_id.as_str()))
                .filter(|f| {
                    cat.providers.is_empty() || f.finding.provider.as_deref().is_some_and(in_scope)
                })
                .collect();
            // A subject is what the rule was evaluated on: the credential,
            // the identity, or the approval record.
            let subject = |f: &&super::ReportFinding| {
                let fd = &f.finding;
                match (&fd.credential_id, fd.evidence.get("approval_record")) {
                    (Some(c), _) => format!("credential:{c}"),
                    (None, Some(a)) => format!("approval:{}", a.as_str().unwrap_or_default()),
                    _ => format!("identity:{}", fd.identity_id),
                }
            };
            // A subject fails on any finding no exception covers; one whose
            // every finding here is excepted is counted apart.
            let failing_subjects: HashSet<String> = failing
                .iter()
                .filter(|f| f.finding.exception.is_none())
                .map(subject)
                .collect();
            let excepted_subjects: HashSet<String> = failing
                .iter()
                .filter(|f| f.finding.exception.is_some())
                .map(subject)
                .filter(|s| !failing_subjects.contains(s))
                .collect();
            let status = if rules.is_empty() {
                Status::NotEvaluated
            } else if !failing_subjects.is_empty() {
                Status::Fail
            } else if !excepted_subjects.is_empty() {
                Status::Excepted
            } else if !incomplete.is_empty() {
                Status::Unknown
            } else {
                Status::Pass
            };
            match status {
                Status::Pass => totals.pass += 1,
                Status::Fail => totals.fail += 1,
                Status::Unknown => totals.unknown += 1,
                Status::NotEvaluated => totals.not_evaluated += 1,
                Status::Excepted => totals.excepted += 1,
            }
            totals.controls += 1;
            let failing_n = failing_subjects.len();
            let excepted_n = excepted_subjects.len();
            controls.push(ControlCoverage {
                reference,
                id: c.id.clone(),
                title: c.title.clone(),
                status,
                rules: {
                    let mut v: Vec<String> = rule_ids.iter().map(|s| s.to_string()).collect();
                    v.sort();
                    v
                },
                subjects: Subjects {
                    evaluated: evaluated.max(failing_n + excepted_n),
                    passing: evaluated.saturating_sub(failing_n + excepted_n),
                    failing: failing_n,
                    excepted: excepted_n,
                },
                worst_severity: failing
                    .iter()
                    .map(|f| f.finding.severity)
                    .max()
                    .map(|s| s.as_str().to_string()),
                findings: failing.iter().map(|f| f.fingerprint.clone()).collect(),
                evidence: Evidence {
                    subject_kinds: kinds.iter().map(|k| k.to_string()).collect(),
                    incomplete_sources: if rules.is_empty() {
                        Vec::new()
                    } else {
                        incomplete.clone()
                    },
                },
            });
        }
        out.push(FrameworkCoverage {
            framework: cat.framework.clone(),
            name: cat.name.clone(),
            version: cat.version.clone(),
            url: cat.url.clone(),
            providers: cat.providers.clone(),
            totals,
            controls,
        });
    }
    Ok(out)
}
