//! The per-subject trace — "why is this key still alive?": identity →
//! credentials → entitlements → covering approval (source, ticket,
//! approver, expiry) → findings → actions taken, as the run saw them.
//!
//! The run's reading is rebuilt into an estate and the facts are
//! recomputed at the run's evaluation instant, so a trace of a past run
//! shows the approval state that run acted on, not today's.

use std::collections::{HashMap, HashSet};

use nhi_contract::{Approval, Timestamp, Usage};
use serde::Serialize;

use super::{parse_ts, ReportError, ReportFinding, RunData};
use crate::engine::estate::{Estate, SourceState};
use crate::engine::facts::Facts;
use crate::engine::graph::Graph;
use crate::store::journal::Entry;
use crate::store::reading::RunReading;

/// An approval as the trace shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// Approval id.
    pub id: String,
    /// `valid`, `expired`, `revoked`, `not_started`.
    pub state: String,
    /// Where it is recorded (`file:line:column`).
    pub source: String,
    /// Ticket or document.
    pub reference: Option<String>,
    /// Where a reader sees the ticket, if known.
    pub url: Option<String>,
    /// Who asked.
    pub requester: String,
    /// Who approved.
    pub approver: String,
    /// Who carries out the task, if the record names one.
    pub assignee: Option<String>,
    /// When approved.
    pub approved_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// When it ends in effect (expiry, revocation, emergency end).
    pub ends_at: Timestamp,
    /// Revoked at.
    pub revoked_at: Option<Timestamp>,
    /// Credentials it names (empty: all of the subject's).
    pub credentials: Vec<String>,
    /// Approved actions.
    pub actions: Vec<String>,
    /// Break-glass.
    pub emergency: bool,
}

/// A credential in a trace.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    /// Credential id (never a secret).
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Created.
    pub created: Option<Timestamp>,
    /// Expires.
    pub expires: Option<Timestamp>,
    /// Active.
    pub active: bool,
    /// Last use.
    pub usage: Usage,
    /// State of the covering approval (`none` when nothing covers it).
    pub approval_state: String,
    /// The covering approval, if any.
    pub approval: Option<String>,
}

/// An entitlement in a trace.
#[derive(Debug, Clone, Serialize)]
pub struct EntitlementView {
    /// Entitlement id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Privilege level.
    pub privilege: String,
    /// Granted through (a group), if not directly.
    pub via: Option<String>,
    /// Held as eligible (PIM): in force once the holder activates it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub eligible: bool,
    /// Beyond the approved scope.
    pub beyond_scope: bool,
}

/// The identity in a trace.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    /// Stable id.
    pub id: String,
    /// Provider.
    pub provider: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Account / tenant / org.
    pub account: String,
    /// Owner.
    pub owner: Option<String>,
    /// Enabled.
    pub enabled: bool,
    /// Last use.
    pub usage: Usage,
    /// Interactive login enabled.
    pub human_login: bool,
    /// Inventory source.
    pub source: String,
    /// How that source was read (`complete`, `partial`, `failed`).
    pub source_state: String,
    /// Effective privilege (through assume-role).
    pub privilege: String,
    /// May assume these identities directly.
    pub may_assume: Vec<String>,
}

/// A finding in a trace.
#[derive(Debug, Clone, Serialize)]
pub struct FindingView {
    /// Fingerprint.
    pub fingerprint: String,
    /// Rule.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// Credential concerned.
    pub credential_id: Option<String>,
    /// First seen.
    pub first_seen: String,
    /// Recommended action.
    pub recommended_action: String,
    /// Controls.
    pub controls: Vec<String>,
}

/// One subject's trace.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// Run traced.
    pub run_id: i64,
    /// Its evaluation instant.
    pub as_of: String,
    /// What was asked for (an identity or credential id).
    pub subject: String,
    /// The identity (absent when an approval names one no source holds).
    pub identity: Option<IdentityView>,
    /// Its credentials (only the one asked for, if a credential was asked).
    pub credentials: Vec<CredentialView>,
    /// Its entitlements.
    pub entitlements: Vec<EntitlementView>,
    /// Approvals naming it.
    pub approvals: Vec<ApprovalView>,
    /// Findings of the run on it.
    pub findings: Vec<FindingView>,
    /// Journaled actions on it, up to and including this run.
    pub actions: Vec<Entry>,
}

/// The rebuilt estate and facts of a run.
pub struct Context<'a> {
    data: &'a RunData,
    estate: Estate,
    graph: Graph,
    facts: Facts,
    // Lookups built once: the HTML report traces every subject with a finding.
    identity_ix: HashMap<String, usize>,
    credential_ix: HashMap<String, usize>,
    credentials_of: HashMap<String, Vec<usize>>,
    grants_of: HashMap<String, Vec<usize>>,
    entitlement_ix: HashMap<(u32, String), usize>,
    approvals_of: HashMap<String, Vec<usize>>,
    findings_of: HashMap<String, Vec<usize>>,
    /// The run's findings on the subjects this context traces.
    findings: Vec<ReportFinding>,
}

fn approval_view(a: &Approval, facts: &Facts, k: usize) -> ApprovalView {
    let f = &facts.approvals[k];
    ApprovalView {
        id: a.id.clone(),
        state: f.state.as_str().to_string(),
        source: a.source.clone(),
        reference: a.reference.clone(),
        url: a.url.clone(),
        requester: a.requester.clone(),
        approver: a.approver.clone(),
        assignee: a.assignee.clone(),
        approved_at: a.approved_at,
        expires_at: a.expires_at,
        ends_at: f.end,
        revoked_at: a.revoked_at,
        credentials: a.credentials.clone(),
        actions: a.scope.actions.clone(),
        emergency: a.emergency.is_some(),
    }
}

fn state_name(s: &SourceState) -> &'static str {
    match s {
        SourceState::Complete => "complete",
        SourceState::Partial { .. } => "partial",
        SourceState::Failed { .. } => "failed",
    }
}

/// The estate `reading` read, as far as tracing identities `ids` needs: theirs
/// and every identity they may assume, transitively and across sources
/// (privilege and scope flow along assume-role trust), with their
/// credentials, grants, trusts and approvals and the entitlements those
/// grants name — what the daemon's targeted pass evaluates for its
/// subjects (`pass::cache`). Records keep their order and every source
/// its place, so ids and source indices resolve as in the whole estate.
/// A page's thousand traces no longer rebuild and evaluate the whole
/// estate (at a million credentials, 1.2 GB and seconds).
fn scoped_estate(reading: &RunReading, ids: &HashSet<&str>) -> Estate {
    let read = || reading.sources.iter().filter_map(|s| s.inventory.as_ref());
    let mut assumes: HashMap<&str, Vec<&str>> = HashMap::new();
    for t in read().flat_map(|i| &i.trusts) {
        assumes
            .entry(t.from.as_str())
            .or_default()
            .push(t.to.as_str());
    }
    let seen: HashSet<&str> =
        crate::engine::graph::assume_reach(ids.iter().copied(), |id, visit| {
            for &to in assumes.get(id).into_iter().flatten() {
                visit(to)
            }
        })
        .into_iter()
        .collect();
    let named: HashSet<&str> = read()
        .flat_map(|i| &i.grants)
        .filter(|g| seen.contains(g.identity.as_str()))
        .map(|g| g.entitlement.as_str())
        .collect();
    fn pick<T: Clone>(all: &[T], keep: impl Fn(&T) -> bool) -> Vec<T> {
        all.iter().filter(|x| keep(x)).cloned().collect()
    }
    let ours = |id: &String| seen.contains(id.as_str());
    let mut e = Estate {
        approvals: pick(&reading.approvals, |a| ours(&a.subject)),
        ..Estate::default()
    };
    for s in &reading.sources {
        match (&s.inventory, &s.state) {
            (Some(inv), _) => {
                let part = nhi_contract::Inventory {
                    identities: pick(&inv.identities, |i| ours(&i.id)),
                    credentials: pick(&inv.credentials, |c| ours(&c.identity)),
                    entitlements: pick(&inv.entitlements, |x| named.contains(x.id.as_str())),
                    grants: pick(&inv.grants, |g| ours(&g.identity)),
                    trusts: pick(&inv.trusts, |t| ours(&t.from)),
                    approvals: pick(&inv.approvals, |a| ours(&a.subject)),
                    coverage: inv.coverage.clone(),
                };
                e.add_inventory(&s.name, s.provider, part);
            }
            (None, SourceState::Failed { error }) => {
                e.add_failed(&s.name, s.provider, error.clone())
            }
            (None, _) => e.add_failed(&s.name, s.provider, "not recorded".into()),
        }
    }
    e
}

impl<'a> Context<'a> {
    /// Rebuild as much of run `data`'s estate and facts as tracing the
    /// identities `ids` needs ([`scoped_estate`]), whose findings are
    /// among `findings` (see [`findings_of_subjects`]).
    pub fn new(data: &'a RunData, ids: &HashSet<&str>, findings: Vec<ReportFinding>) -> Self {
        let estate = scoped_estate(&data.reading, ids);
        let graph = Graph::build(&estate);
        let now = parse_ts(&data.run.as_of).unwrap_or_else(chrono::Utc::now);
        let facts = Facts::compute(&estate, &graph, now);
        let mut identity_ix = HashMap::new();
        for (i, x) in estate.identities.iter().enumerate() {
            identity_ix.entry(x.id.clone()).or_insert(i);
        }
        let mut credential_ix = HashMap::new();
        let mut credentials_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (c, x) in estate.credentials.iter().enumerate() {
            credential_ix.entry(x.id.clone()).or_insert(c);
            credentials_of
                .entry(x.identity.clone())
                .or_default()
                .push(c);
        }
        let mut grants_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (g, x) in estate.grants.iter().enumerate() {
            grants_of.entry(x.identity.clone()).or_default().push(g);
        }
        let mut entitlement_ix = HashMap::new();
        for (k, x) in estate.entitlements.iter().enumerate() {
            entitlement_ix
                .entry((estate.entitlement_source[k], x.id.clone()))
                .or_insert(k);
        }
        let mut approvals_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (k, x) in estate.approvals.iter().enumerate() {
            approvals_of.entry(x.subject.clone()).or_default().push(k);
        }
        let mut findings_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (n, f) in findings.iter().enumerate() {
            findings_of
                .entry(f.finding.identity_id.clone())
                .or_default()
                .push(n);
        }
        Context {
            data,
            estate,
            graph,
            facts,
            identity_ix,
            credential_ix,
            credentials_of,
            grants_of,
            entitlement_ix,
            approvals_of,
            findings_of,
            findings,
        }
    }

    /// Trace `subject`: an identity id or a credential id. `None` when the
    /// run knows nothing of it (no identity, credential, approval or finding).
    pub fn trace(&self, subject: &str) -> Option<Trace> {
        let e = &self.estate;
        let cred = self.credential_ix.get(subject).copied();
        let identity_id = match cred {
            Some(c) => e.credentials[c].identity.clone(),
            None => subject.to_string(),
        };
        let ident = self.identity_ix.get(&identity_id).copied();
        let findings: Vec<FindingView> = self
            .findings_of
            .get(&identity_id)
            .into_iter()
            .flatten()
            .map(|&n| &self.findings[n])
            .filter(|f| {
                cred.is_none()
                    || f.finding.credential_id.as_deref() == Some(subject)
                    || f.finding.credential_id.is_none()
            })
            .map(|f| FindingView {
                fingerprint: f.fingerprint.clone(),
                rule_id: f.finding.rule_id.to_string(),
                title: f.finding.title.to_string(),
                severity: f.finding.severity.as_str().to_string(),
                credential_id: f.finding.credential_id.clone(),
                first_seen: f.first_seen.clone(),
                recommended_action: f.finding.recommended_action.as_str().to_string(),
                controls: f.finding.controls.to_vec(),
            })
            .collect();
        let approvals: Vec<ApprovalView> = self
            .approvals_of
            .get(&identity_id)
            .into_iter()
            .flatten()
            .map(|&k| approval_view(&e.approvals[k], &self.facts, k))
            .collect();
        if ident.is_none() && approvals.is_empty() && findings.is_empty() {
            return None;
        }
        let identity = ident.map(|i| {
            let id = &e.identities[i];
            let src = &e.sources[e.identity_source[i] as usize];
            IdentityView {
                id: id.id.clone(),
                provider: id.provider.to_string(),
                kind: id.kind.as_str().to_string(),
                name: id.name.clone(),
                account: id.account.clone(),
                owner: id.owner.clone(),
                enabled: id.enabled,
                usage: id.usage.clone(),
                human_login: id.human_login,
                source: src.name.clone(),
                source_state: state_name(&src.state).to_string(),
                privilege: self.facts.identities[i].privilege.as_str().to_string(),
                may_assume: self
                    .graph
                    .assumable(i as u32)
                    .map(|j| e.identities[j as usize].id.clone())
                    .collect(),
            }
        });
        let cred_list: Vec<usize> = match cred {
            Some(only) => vec![only],
            None => self
                .credentials_of
                .get(&identity_id)
                .cloned()
                .unwrap_or_default(),
        };
        let credentials: Vec<CredentialView> = cred_list
            .into_iter()
            .map(|c| {
                let x = &e.credentials[c];
                let f = &self.facts.credentials[c];
                CredentialView {
                    id: x.id.clone(),
                    kind: x.kind.as_str().to_string(),
                    created: x.created,
                    expires: x.expires,
                    active: x.active,
                    usage: x.usage.clone(),
                    approval_state: f.approval_state.as_str().to_string(),
                    approval: f.approval.map(|a| e.approvals[a as usize].id.clone()),
                }
            })
            .collect();
        let entitlements: Vec<EntitlementView> = match ident {
            None => Vec::new(),
            Some(i) => {
                let f = &self.facts.identities[i];
                let src = e.identity_source[i];
                self.grants_of
                    .get(&identity_id)
                    .into_iter()
                    .flatten()
                    .filter(|&&g| e.grant_source[g] == src)
                    .filter_map(|&g| {
                        let grant = &e.grants[g];
                        let k = *self.entitlement_ix.get(&(src, grant.entitlement.clone()))?;
                        let ent = &e.entitlements[k];
                        Some(EntitlementView {
                            id: ent.id.clone(),
                            name: ent.name.clone(),
                            privilege: ent.privilege.as_str().to_string(),
                            via: grant.via.clone(),
                            eligible: grant.eligible,
                            beyond_scope: f.overscope_direct.contains(&(k as u32)),
                        })
                    })
                    .collect()
            }
        };
        let actions: Vec<Entry> = self
            .data
            .journal_upto
            .iter()
            .filter(|a| {
                a.request.identity_id == identity_id
                    && (cred.is_none()
                        || a.request.credential_id.is_none()
                        || a.request.credential_id.as_deref() == Some(subject))
            })
            .cloned()
            .collect();
        Some(Trace {
            run_id: self.data.run.id,
            as_of: self.data.run.as_of.clone(),
            subject: subject.to_string(),
            identity,
            credentials,
            entitlements,
            approvals,
            findings,
            actions,
        })
    }

    /// Traces of `ids`, in order, those the run knows something of.
    pub fn traces_of<'s>(&self, ids: impl Iterator<Item = &'s str>) -> Vec<Trace> {
        ids.filter_map(|id| self.trace(id)).collect()
    }
}

/// The identity `subject` (an identity or a credential id) is traced as:
/// a credential's owner, as the run read it.
pub fn identity_of_subject(data: &RunData, subject: &str) -> String {
    data.reading
        .sources
        .iter()
        .filter_map(|s| s.inventory.as_ref())
        .flat_map(|i| &i.credentials)
        .find(|c| c.id == subject)
        .map(|c| c.identity.clone())
        .unwrap_or_else(|| subject.to_string())
}

/// The run's findings on identities `ids` (chosen by fingerprint, so
/// only theirs are read).
pub fn findings_of_subjects(
    data: &RunData,
    ids: &HashSet<&str>,
) -> Result<Vec<ReportFinding>, ReportError> {
    data.findings
        .only(|fp| ids.contains(super::diff::identity_of(fp)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::facts::IdentityFacts;
    use crate::store::reading::SourceReading;
    use crate::synth::{generate, synth_now, SynthSpec};

    /// An identity's facts with indices read as ids, to compare across
    /// estates.
    fn judged(e: &Estate, f: &IdentityFacts) -> String {
        let ents = |v: &[u32]| -> Vec<(u32, &str)> {
            v.iter()
                .map(|&k| {
                    (
                        e.entitlement_source[k as usize],
                        e.entitlements[k as usize].id.as_str(),
                    )
                })
                .collect()
        };
        let unused: Vec<(&str, i64)> = f
            .unused
            .iter()
            .map(|u| (e.entitlements[u.entitlement as usize].id.as_str(), u.days))
            .collect();
        format!(
            "{:?}",
            (
                (f.age_days, f.days_since_last_use, f.active_credentials),
                (f.active_access_keys, f.admin_direct, f.admin, f.privilege),
                (f.approved, f.approval_count, f.assumable, f.has_owner),
                (ents(&f.overscope_direct), ents(&f.detachable)),
                (
                    ents(&f.overscope_transitive),
                    unused,
                    f.entitlement_unused_days
                ),
            )
        )
    }

    /// Every traced identity and its credentials are judged in the scoped
    /// estate as in the whole one: two sources whose ids collide, a failed
    /// one between them, assume-role chains.
    #[test]
    fn a_scoped_estate_judges_its_subjects_as_the_whole_one() {
        let spec = |seed| SynthSpec {
            identities: 1_500,
            credentials: 4_000,
            seed,
        };
        let (a, mut approvals) = generate(spec(3));
        let (b, more) = generate(spec(4));
        approvals.extend(more);
        let source = |name: &str, inventory| SourceReading {
            name: name.into(),
            provider: nhi_contract::Provider::Aws,
            state: SourceState::Complete,
            inventory,
        };
        let reading = RunReading {
            sources: vec![
                source("a", Some(a)),
                SourceReading {
                    state: SourceState::Failed {
                        error: "denied".into(),
                    },
                    ..source("gone", None)
                },
                source("b", Some(b)),
            ],
            approvals,
            rules: Vec::new(),
        };
        let now = synth_now();
        let whole = reading.estate();
        let whole_facts = Facts::compute(&whole, &Graph::build(&whole), now);
        let ids: HashSet<&str> = whole
            .identities
            .iter()
            .step_by(41)
            .map(|i| i.id.as_str())
            .collect();
        let part = scoped_estate(&reading, &ids);
        let part_facts = Facts::compute(&part, &Graph::build(&part), now);
        assert!(part.identities.len() < whole.identities.len() / 4);
        assert!(part.trusts.len() > ids.len() / 10, "chains followed");
        let index = |e: &Estate| -> HashMap<(u32, String), usize> {
            let mut m = HashMap::new();
            for (i, x) in e.identities.iter().enumerate() {
                m.entry((e.identity_source[i], x.id.clone())).or_insert(i);
            }
            m
        };
        let whole_ix = index(&whole);
        let mut compared = 0;
        for (key, &i) in index(&part)
            .iter()
            .filter(|(k, _)| ids.contains(k.1.as_str()))
        {
            let w = whole_ix[key];
            assert_eq!(
                judged(&part, &part_facts.identities[i]),
                judged(&whole, &whole_facts.identities[w]),
                "{key:?}"
            );
            compared += 1;
        }
        assert!(compared >= ids.len(), "{compared} of {}", ids.len());
        let credentials = |e: &Estate, f: &Facts| -> Vec<String> {
            let mut v: Vec<String> = e
                .credentials
                .iter()
                .zip(&f.credentials)
                .filter(|(c, _)| ids.contains(c.identity.as_str()))
                .map(|(c, f)| {
                    format!(
                        "{} {} {:?} {:?} {} {}",
                        c.identity,
                        c.id,
                        f.approval_state,
                        f.approval.map(|a| e.approvals[a as usize].id.as_str()),
                        f.approval_count,
                        f.used_outside_scope
                    )
                })
                .collect();
            v.sort();
            v
        };
        let traced = credentials(&part, &part_facts);
        assert!(!traced.is_empty());
        assert_eq!(traced, credentials(&whole, &whole_facts));
    }
}
