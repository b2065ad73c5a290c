//! Control coverage: for every control of every catalog, whether a rule
//! mapped to it was evaluated in the run, how many subjects pass and fail,
//! the failing findings, and the evidence. An auditor reads it as
//! "control → status → evidence".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use super::{ReportError, RunData};
use crate::engine::rules::catalog::Catalog;
use crate::engine::rules::Severity;

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
    /// Fingerprints of the failing findings, worst first, the first
    /// [`MAX_LISTED`] of them (every one is in the report's `findings`,
    /// with its controls).
    pub findings: Vec<String>,
    /// How many failing findings there are.
    pub findings_total: usize,
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

/// Fingerprints listed per control, at most: a control failing on a
/// million credentials lists the worst and counts the rest.
pub const MAX_LISTED: usize = 1_000;

/// Check that every framework `filter` names has a catalog.
pub fn check_filter(data: &RunData, filter: &[String]) -> Result<(), ReportError> {
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
    Ok(())
}

/// What one control has seen of the findings so far.
#[derive(Default)]
struct Tally {
    /// Hashes of subjects with a finding no exception covers (a set
    /// hashing them again cheaply: they are hashes already).
    failing: rustc_hash::FxHashSet<u64>,
    /// Hashes of subjects with an excepted finding.
    excepted: rustc_hash::FxHashSet<u64>,
    worst: Option<Severity>,
    listed: Vec<String>,
    total: usize,
}

/// A subject is what the rule was evaluated on: the credential, the
/// identity, or the approval record. Kept as a 64-bit hash (SipHash with
/// fixed keys): subjects are counted, never shown, and a collision among
/// a million would take some 4 × 10⁹ of them to be likely.
fn subject_hash(f: &super::ReportFinding) -> u64 {
    let fd = &f.finding;
    let mut h = std::hash::DefaultHasher::new();
    match (&fd.credential_id, fd.evidence.approval_record()) {
        (Some(c), _) => ("credential", c.as_str()).hash(&mut h),
        (None, Some(a)) => ("approval", a.as_str()).hash(&mut h),
        _ => ("identity", fd.identity_id.as_str()).hash(&mut h),
    }
    h.finish()
}

/// Compute coverage for the frameworks in `filter` (all when empty), in
/// one pass over the run's findings ([`Fold`]).
pub fn compute(data: &RunData, filter: &[String]) -> Result<Vec<FrameworkCoverage>, ReportError> {
    let mut fold = Fold::new(data, filter)?;
    for f in data.findings.iter() {
        let f = f?;
        fold.add(&f);
    }
    Ok(fold.finish())
}

/// Coverage tallied finding by finding, so a report can count the
/// findings as it writes them: per control, hashed subjects and the first
/// [`MAX_LISTED`] fingerprints, not the findings.
pub struct Fold<'a> {
    data: &'a RunData,
    cats: Vec<&'a Catalog>,
    /// Each control's rules, per catalog.
    rules_of: Vec<Vec<Vec<&'a crate::store::reading::RuleInfo>>>,
    /// Each rule's controls (catalog, control).
    controls_of: HashMap<&'a str, Vec<(usize, usize)>>,
    tallies: Vec<Vec<Tally>>,
}

impl<'a> Fold<'a> {
    /// Nothing tallied yet, for the frameworks in `filter` (all when empty).
    pub fn new(data: &'a RunData, filter: &[String]) -> Result<Self, ReportError> {
        check_filter(data, filter)?;
        let cats: Vec<&Catalog> = data
            .catalogs
            .0
            .iter()
            .filter(|c| catalog_matches(c, filter))
            .collect();
        let rules_of: Vec<Vec<Vec<&crate::store::reading::RuleInfo>>> = cats
            .iter()
            .map(|cat| {
                cat.controls
                    .iter()
                    .map(|c| {
                        let reference = format!("{}:{}", cat.framework, c.id);
                        data.reading
                            .rules
                            .iter()
                            .filter(|r| r.controls.contains(&reference))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let mut controls_of: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (ci, per) in rules_of.iter().enumerate() {
            for (ki, rules) in per.iter().enumerate() {
                for r in rules {
                    let v = controls_of.entry(r.id.as_str()).or_default();
                    if !v.contains(&(ci, ki)) {
                        v.push((ci, ki));
                    }
                }
            }
        }
        let tallies = cats
            .iter()
            .map(|cat| cat.controls.iter().map(|_| Tally::default()).collect())
            .collect();
        Ok(Fold {
            data,
            cats,
            rules_of,
            controls_of,
            tallies,
        })
    }

    /// Count finding `f` (in report order) against its rule's controls.
    pub fn add(&mut self, f: &super::ReportFinding) {
        let Some(places) = self.controls_of.get(&*f.finding.rule_id) else {
            return;
        };
        let subject = subject_hash(f);
        for &(ci, ki) in places {
            // A framework scoped to providers (CIS AWS) counts only their
            // findings.
            let cat = self.cats[ci];
            if !cat.providers.is_empty()
                && !f
                    .finding
                    .provider
                    .as_deref()
                    .is_some_and(|p| cat.providers.iter().any(|x| x == p))
            {
                continue;
            }
            let t = &mut self.tallies[ci][ki];
            if f.finding.exception.is_none() {
                t.failing.insert(subject);
            } else {
                t.excepted.insert(subject);
            }
            t.worst = t.worst.max(Some(f.finding.severity));
            t.total += 1;
            if t.listed.len() < MAX_LISTED {
                t.listed.push(f.fingerprint.clone());
            }
        }
    }

    /// The coverage of every framework, once every finding was added.
    pub fn finish(self) -> Vec<FrameworkCoverage> {
        let Fold {
            data,
            cats,
            rules_of,
            tallies,
            ..
        } = self;
        let snap = &data.reading;
        let mut out = Vec::new();
        for ((cat, per), tallies) in cats.iter().zip(&rules_of).zip(tallies) {
            let in_scope =
                |p: &str| cat.providers.is_empty() || cat.providers.iter().any(|x| x == p);
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
            for ((c, rules), t) in cat.controls.iter().zip(per).zip(tallies) {
                let reference = format!("{}:{}", cat.framework, c.id);
                let kinds: BTreeSet<&str> = rules.iter().map(|r| r.subject.as_str()).collect();
                let evaluated: usize = kinds
                    .iter()
                    .map(|k| match *k {
                        "credential" => credentials,
                        "identity" => identities,
                        _ => approvals,
                    })
                    .sum();
                let rule_ids: BTreeSet<&str> = rules.iter().map(|r| r.id.as_str()).collect();
                // A subject fails on any finding no exception covers; one whose
                // every finding here is excepted is counted apart.
                let failing_n = t.failing.len();
                let excepted_n = t.excepted.difference(&t.failing).count();
                let status = if rules.is_empty() {
                    Status::NotEvaluated
                } else if failing_n > 0 {
                    Status::Fail
                } else if excepted_n > 0 {
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
                controls.push(ControlCoverage {
                    reference,
                    id: c.id.clone(),
                    title: c.title.clone(),
                    status,
                    rules: rule_ids.iter().map(|s| s.to_string()).collect(),
                    subjects: Subjects {
                        evaluated: evaluated.max(failing_n + excepted_n),
                        passing: evaluated.saturating_sub(failing_n + excepted_n),
                        failing: failing_n,
                        excepted: excepted_n,
                    },
                    worst_severity: t.worst.map(|s| s.as_str().to_string()),
                    findings: t.listed,
                    findings_total: t.total,
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
        out
    }
}
