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

/// What one group of findings (one rule's, from one provider) has seen
/// so far. Findings are tallied once, by group, not once per control
/// their rule maps to (seven, for some rules): a control's counts are
/// its groups' joined when coverage is finished, so a million findings
/// cost a million set insertions per tally, not seven million.
#[derive(Default)]
struct Tally {
    /// Hashes of subjects with a finding no exception covers (a set
    /// hashing them again cheaply: they are hashes already).
    failing: rustc_hash::FxHashSet<u64>,
    /// Hashes of subjects with an excepted finding.
    excepted: rustc_hash::FxHashSet<u64>,
    worst: Option<Severity>,
    /// The first [`MAX_LISTED`] fingerprints, with their place in report
    /// order (to merge the groups of a control in that order).
    listed: Vec<(u64, String)>,
    total: usize,
}

/// A control's counts, joined from the tallies of its groups.
#[derive(Debug, Default, PartialEq, Eq)]
struct Joined {
    failing: usize,
    excepted: usize,
    worst: Option<Severity>,
    listed: Vec<String>,
    total: usize,
}

/// Findings tallied by group (rule, provider): what [`Fold`] counts,
/// apart from the catalogs it reads them into.
#[derive(Default)]
struct Groups {
    /// The groups of each rule, by provider.
    of_rule: HashMap<String, Vec<(Option<String>, usize)>>,
    tallies: Vec<Tally>,
    /// Findings added so far: the next one's place in report order.
    seq: u64,
    /// Subject counts already joined, by the groups joined (controls
    /// mapped to the same rules count them once).
    joined: HashMap<Vec<usize>, (usize, usize)>,
}

impl Groups {
    /// Count one finding (in report order) of `rule` from `provider`.
    fn add(
        &mut self,
        rule: &str,
        provider: Option<&str>,
        subject: u64,
        excepted: bool,
        severity: Severity,
        fingerprint: &str,
    ) {
        let seq = self.seq;
        self.seq = self.seq.saturating_add(1);
        let groups = match self.of_rule.get_mut(rule) {
            Some(g) => g,
            None => self.of_rule.entry(rule.to_string()).or_default(),
        };
        let at = match groups.iter().find(|(p, _)| p.as_deref() == provider) {
            Some(&(_, at)) => at,
            None => {
                let at = self.tallies.len();
                self.tallies.push(Tally::default());
                groups.push((provider.map(str::to_string), at));
                at
            }
        };
        let t = &mut self.tallies[at];
        if excepted {
            t.excepted.insert(subject);
        } else {
            t.failing.insert(subject);
        }
        t.worst = t.worst.max(Some(severity));
        t.total += 1;
        if t.listed.len() < MAX_LISTED {
            t.listed.push((seq, fingerprint.to_string()));
        }
    }

    /// The groups of `rules` whose provider is `in_scope`, each once.
    fn of(&self, rules: &[&str], in_scope: impl Fn(Option<&str>) -> bool) -> Vec<usize> {
        let mut at: Vec<usize> = rules
            .iter()
            .filter_map(|r| self.of_rule.get(*r))
            .flatten()
            .filter(|(p, _)| in_scope(p.as_deref()))
            .map(|&(_, at)| at)
            .collect();
        at.sort_unstable();
        at.dedup();
        at
    }

    /// The counts of `groups` together: a subject failing in one and
    /// excepted in another fails; one in several counts once.
    fn join(&mut self, groups: &[usize]) -> Joined {
        let tallies: Vec<&Tally> = groups.iter().filter_map(|&g| self.tallies.get(g)).collect();
        let (failing, excepted) = match self.joined.get(groups) {
            Some(&n) => n,
            None => {
                let n = match tallies.as_slice() {
                    [] => (0, 0),
                    [t] => (t.failing.len(), t.excepted.difference(&t.failing).count()),
                    many => {
                        // Joined from the largest set, the others added.
                        let union = |sets: Vec<&rustc_hash::FxHashSet<u64>>| {
                            let mut sets = sets;
                            sets.sort_by_key(|s| std::cmp::Reverse(s.len()));
                            let mut all = sets.first().map(|s| (*s).clone()).unwrap_or_default();
                            for s in sets.iter().skip(1) {
                                all.extend(s.iter().copied());
                            }
                            all
                        };
                        let failing = union(many.iter().map(|t| &t.failing).collect());
                        let excepted = union(many.iter().map(|t| &t.excepted).collect());
                        (failing.len(), excepted.difference(&failing).count())
                    }
                };
                self.joined.insert(groups.to_vec(), n);
                n
            }
        };
        let mut listed: Vec<&(u64, String)> = tallies.iter().flat_map(|t| &t.listed).collect();
        listed.sort_unstable_by_key(|(seq, _)| *seq);
        Joined {
            failing,
            excepted,
            worst: tallies.iter().filter_map(|t| t.worst).max(),
            listed: listed
                .into_iter()
                .take(MAX_LISTED)
                .map(|(_, fp)| fp.clone())
                .collect(),
            total: tallies.iter().map(|t| t.total).sum(),
        }
    }
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
/// findings as it writes them: per rule and provider, hashed subjects and
/// the first [`MAX_LISTED`] fingerprints, not the findings.
pub struct Fold<'a> {
    data: &'a RunData,
    cats: Vec<&'a Catalog>,
    /// Each control's rules, per catalog.
    rules_of: Vec<Vec<Vec<&'a crate::store::reading::RuleInfo>>>,
    /// Rules mapped to a control of `cats`: the others are not counted.
    mapped: HashSet<&'a str>,
    groups: Groups,
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
        let mapped = rules_of
            .iter()
            .flatten()
            .flatten()
            .map(|r| r.id.as_str())
            .collect();
        Ok(Fold {
            data,
            cats,
            rules_of,
            mapped,
            groups: Groups::default(),
        })
    }

    /// Count finding `f` (in report order) against its rule.
    pub fn add(&mut self, f: &super::ReportFinding) {
        let fd = &f.finding;
        if !self.mapped.contains(&*fd.rule_id) {
            return;
        }
        self.groups.add(
            &fd.rule_id,
            fd.provider.as_deref(),
            subject_hash(f),
            fd.exception.is_some(),
            fd.severity,
            &f.fingerprint,
        );
    }

    /// The coverage of every framework, once every finding was added.
    pub fn finish(self) -> Vec<FrameworkCoverage> {
        let Fold {
            data,
            cats,
            rules_of,
            mut groups,
            ..
        } = self;
        let snap = &data.reading;
        let mut out = Vec::new();
        for (cat, per) in cats.iter().zip(&rules_of) {
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
            // A framework scoped to providers (CIS AWS) counts only their
            // findings.
            let provider_in_scope = |p: Option<&str>| {
                cat.providers.is_empty() || p.is_some_and(|p| cat.providers.iter().any(|x| x == p))
            };
            for (c, rules) in cat.controls.iter().zip(per) {
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
                let ids: Vec<&str> = rule_ids.iter().copied().collect();
                // A subject fails on any finding no exception covers; one whose
                // every finding here is excepted is counted apart.
                let t = groups.join(&groups.of(&ids, provider_in_scope));
                let (failing_n, excepted_n) = (t.failing, t.excepted);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One finding: rule, provider, subject, excepted, severity.
    type Seen = (usize, Option<usize>, u64, bool, usize);

    const RULES: [&str; 3] = ["a", "b", "c"];
    const PROVIDERS: [&str; 2] = ["aws", "azure"];

    /// A control's counts worked out the plain way: every finding of its
    /// rules within scope, one at a time, in order.
    fn by_control(seen: &[Seen], rules: &[&str], scope: &[&str]) -> Joined {
        let (mut failing, mut excepted) = (HashSet::new(), HashSet::new());
        let mut j = Joined::default();
        for (i, &(r, p, subject, exc, sev)) in seen.iter().enumerate() {
            let provider = p.map(|p| PROVIDERS[p]);
            if !rules.contains(&RULES[r])
                || !(scope.is_empty() || provider.is_some_and(|p| scope.contains(&p)))
            {
                continue;
            }
            if exc {
                excepted.insert(subject);
            } else {
                failing.insert(subject);
            }
            j.worst = j.worst.max(Some(Severity::ALL[sev]));
            j.total += 1;
            if j.listed.len() < MAX_LISTED {
                j.listed.push(format!("fp{i}"));
            }
        }
        j.failing = failing.len();
        j.excepted = excepted.difference(&failing).count();
        j
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Tallied once per group and joined per control, the counts are
        /// those of counting every control apart: a subject in several
        /// rules counts once, failing anywhere wins over excepted, the
        /// listed fingerprints are the first in report order across rules.
        #[test]
        fn groups_joined_count_as_each_control_apart(
            seen in proptest::collection::vec(
                (0..3usize, proptest::option::of(0..2usize), 0..40u64, any::<bool>(), 0..5usize),
                0..2_600,
            ),
        ) {
            let mut g = Groups::default();
            for (i, &(r, p, subject, exc, sev)) in seen.iter().enumerate() {
                g.add(RULES[r], p.map(|p| PROVIDERS[p]), subject, exc, Severity::ALL[sev], &format!("fp{i}"));
            }
            let subsets: [&[&str]; 7] =
                [&["a"], &["b"], &["c"], &["a", "b"], &["a", "c"], &["b", "c"], &["a", "b", "c"]];
            for rules in subsets {
                for scope in [&[][..], &["aws"][..], &["aws", "azure"][..]] {
                    let in_scope = |p: Option<&str>| {
                        scope.is_empty() || p.is_some_and(|p| scope.contains(&p))
                    };
                    let got = g.join(&g.of(rules, in_scope));
                    prop_assert_eq!(got, by_control(&seen, rules, scope), "{:?} in {:?}", rules, scope);
                }
            }
        }
    }
}
