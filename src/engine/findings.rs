//! Findings: the stable, documented output contract.
//!
//! A finding is materialised from a rule hit only when it is output or
//! stored; the engine itself passes compact hits around. The JSON form has
//! exactly these fields (see README "Finding JSON contract"):
//! `rule_id, title, severity, provider, identity_id, credential_id,
//! controls, evidence, recommended_action`, and `exception` when one
//! applies.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::engine::estate::Estate;
use crate::engine::facets::Facets;
use crate::engine::facts::Facts;
use crate::engine::graph::Graph;
use crate::engine::rules::{
    evidence_value, Action, Env, Hit, Kind, Param, Rule, RuleSet, Severity,
};

/// The id of the rule-less finding a run records for each approval record
/// a source could not map.
pub const UNMAPPED_RULE: &str = "approval-unmapped";

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Rule that fired.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Provider of the identity (`null` for an approval naming an unknown identity).
    pub provider: Option<String>,
    /// Stable id of the identity concerned.
    pub identity_id: String,
    /// Credential concerned, for credential rules.
    pub credential_id: Option<String>,
    /// Controls, as `FRAMEWORK:ID`.
    pub controls: Vec<String>,
    /// The facts that made it fire, the approval considered, the parameters.
    pub evidence: Value,
    /// `flag`, `disable` or `delete`.
    pub recommended_action: Action,
    /// The exception accepting this finding's risk, if one applies: the
    /// finding is recorded and reported as excepted, never acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<ExceptionRef>,
}

/// An exception as a finding carries it: enough to find the file and the
/// people who accepted the risk, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRef {
    /// Exception id.
    pub id: String,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who asked.
    pub requester: String,
    /// Who accepted it.
    pub approver: String,
    /// When it ends (the finding is open again from then).
    pub expires_at: nhi_contract::Timestamp,
    /// Ticket or document reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Where it was read (`exceptions/vendor.yaml:4:5`).
    pub source: String,
}

impl From<&nhi_contract::Exception> for ExceptionRef {
    fn from(e: &nhi_contract::Exception) -> Self {
        ExceptionRef {
            id: e.id.clone(),
            reason: e.reason.clone(),
            requester: e.requester.clone(),
            approver: e.approver.clone(),
            expires_at: e.expires_at,
            reference: e.reference.clone(),
            source: e.source.clone(),
        }
    }
}

impl Finding {
    /// Key that identifies the same finding across runs.
    pub fn fingerprint(&self) -> String {
        let subject = match (&self.credential_id, self.evidence.get("approval_record")) {
            (Some(c), _) => c.clone(),
            (None, Some(Value::String(a))) => format!("approval:{a}"),
            _ => String::new(),
        };
        fingerprint(&self.rule_id, &self.identity_id, &subject)
    }
}

/// The fingerprint of rule `rule` on an identity and a credential (or
/// `approval:ID`, or nothing): how the store and the journal find a finding.
pub fn fingerprint(rule: &str, identity: &str, subject: &str) -> String {
    format!("{rule}|{identity}|{subject}")
}

fn param_json(p: &Param) -> Value {
    match p {
        Param::Bool(b) => json!(b),
        Param::Int(i) => json!(i),
        Param::Str(s) => json!(s),
        Param::List(l) => json!(l),
    }
}

/// Materialise findings from hits, sorted by severity (worst first), rule, subject.
pub fn materialize(
    estate: &Estate,
    facts: &Facts,
    graph: &Graph,
    rules: &RuleSet,
    hits: &[Hit],
) -> Vec<Finding> {
    materialize_with_subjects(estate, facts, graph, rules, hits)
        .into_iter()
        .map(|m| m.finding)
        .collect()
}

/// A finding with what the store needs to know about its subject.
#[derive(Debug, Clone)]
pub struct Materialized {
    /// The finding.
    pub finding: Finding,
    /// Identity index (`None` for an approval naming an identity the estate lacks).
    pub identity: Option<u32>,
    /// Kind of the credential concerned, for credential findings.
    pub credential_kind: Option<nhi_contract::CredentialKind>,
    /// What judging it depends on ([`depends`]).
    pub depends: Facets,
}

/// What a finding of `rule` on `identity` (an estate index; `None` for an
/// approval naming an identity no source listed) and a credential of
/// `credential_kind` depends on: the rule's facets, the credential's kind
/// and the identity's kind — every identity kind when the identity is
/// unknown, since any listing gap may be why.
pub fn depends(
    estate: &Estate,
    rule: &Rule,
    identity: Option<u32>,
    credential_kind: Option<nhi_contract::CredentialKind>,
) -> Facets {
    let kind = credential_kind.map_or(Facets::NONE, Facets::credential_kind);
    let who = identity.map_or(Facets::ALL_IDENTITY_KINDS, |i| {
        Facets::identity_kind(estate.identities[i as usize].kind)
    });
    rule.depends.with(kind).with(who)
}

/// The identity id a hit's finding is about (its `identity_id`), without
/// materialising it: a targeted pass keeps only its subjects' hits.
pub fn subject_id<'e>(estate: &'e Estate, rules: &RuleSet, h: &Hit) -> &'e str {
    match rules.rules[h.rule as usize].subject {
        Kind::Credential => &estate.credentials[h.subject as usize].identity,
        Kind::Identity => &estate.identities[h.subject as usize].id,
        Kind::Approval => &estate.approvals[h.subject as usize].subject,
    }
}

/// Like [`materialize`], keeping each finding's subject.
pub fn materialize_with_subjects(
    estate: &Estate,
    facts: &Facts,
    graph: &Graph,
    rules: &RuleSet,
    hits: &[Hit],
) -> Vec<Materialized> {
    use rayon::prelude::*;
    let env = Env { estate, facts };
    // The parameters each rule's condition reads, as evidence: once per
    // rule, not searched for in its source once per finding.
    let params: Vec<Option<Value>> = rules
        .rules
        .iter()
        .map(|rule| {
            let used: Map<String, Value> = rule
                .params
                .iter()
                .filter(|(k, _)| rule.condition_source.contains(&format!("params.{k}")))
                .map(|(k, v)| (k.clone(), param_json(v)))
                .collect();
            (!used.is_empty()).then_some(Value::Object(used))
        })
        .collect();
    // Each hit's evidence is built on its own (a second of work per
    // 100,000 findings on one core).
    let mut out: Vec<Materialized> = hits
        .par_iter()
        .map(|h| {
            let rule = &rules.rules[h.rule as usize];
            let mut ev = Map::new();
            for path in &rule.fields {
                ev.insert(
                    path.clone(),
                    evidence_value(&env, rule.subject, path, h.subject),
                );
            }
            if let Some(used) = &params[h.rule as usize] {
                ev.insert("params".into(), used.clone());
            }
            let (identity, identity_id, credential_id) = match rule.subject {
                Kind::Credential => {
                    let c = &estate.credentials[h.subject as usize];
                    let f = &facts.credentials[h.subject as usize];
                    if rule
                        .fields
                        .iter()
                        .any(|p| p.starts_with("credential.federat"))
                    {
                        if let Some(fed) = &c.federation {
                            let mut shown = json!({
                                "issuer": fed.issuer,
                                "subjects": fed.subjects,
                                "audiences": fed.audiences,
                                "expression": fed.expression,
                                "broad": f.federation.as_ref().and_then(|x| x.broad.as_deref()),
                            });
                            // An account or public trust is read by its
                            // conditions and account, not by subjects.
                            if fed.kind != nhi_contract::FederationKind::Oidc {
                                if let Value::Object(m) = &mut shown {
                                    m.insert("kind".into(), json!(fed.kind.as_str()));
                                    m.insert("account".into(), json!(fed.account));
                                    m.insert("conditions".into(), json!(fed.conditions));
                                    m.insert("outside_estate".into(), json!(fed.outside_estate));
                                }
                            }
                            ev.insert("federation".into(), shown);
                        }
                    }
                    ev.insert(
                        "approval".into(),
                        f.approval
                            .map_or(Value::Null, |a| approval_json(estate, facts, a)),
                    );
                    (f.identity, c.identity.clone(), Some(c.id.clone()))
                }
                Kind::Identity => {
                    let f = &facts.identities[h.subject as usize];
                    let ents = |v: &[u32]| -> Value {
                        v.iter()
                            .map(|&e| Value::String(estate.entitlements[e as usize].id.clone()))
                            .collect()
                    };
                    if rule.fields.iter().any(|p| p == "identity.overscope_direct") {
                        ev.insert(
                            "entitlements_beyond_scope".into(),
                            ents(&f.overscope_direct),
                        );
                    }
                    if rule
                        .fields
                        .iter()
                        .any(|p| p == "identity.overscope_transitive")
                    {
                        ev.insert(
                            "entitlements_beyond_scope_via_assume".into(),
                            ents(&f.overscope_transitive),
                        );
                    }
                    if rule
                        .fields
                        .iter()
                        .any(|p| p == "identity.entitlement_unused_days")
                    {
                        ev.insert(
                            "unused_entitlements".into(),
                            unused_json(estate, f, rule.unused_days()),
                        );
                    }
                    let privilege_facts = [
                        "identity.admin",
                        "identity.admin_direct",
                        "identity.privilege",
                        "identity.overscope_direct",
                    ];
                    if rule
                        .fields
                        .iter()
                        .any(|p| privilege_facts.contains(&p.as_str()))
                    {
                        let indirect = indirect_grants(estate, graph, h.subject);
                        if !indirect.is_empty() {
                            ev.insert("held_indirectly".into(), Value::Array(indirect));
                        }
                    }
                    // Compute wearing the identity is what breaks if it is
                    // removed: an owner reads it before acting.
                    let worn_by = &estate.identities[h.subject as usize].attached_to;
                    if !worn_by.is_empty() {
                        ev.insert("attached_to".into(), json!(worn_by));
                    }
                    if rule.fields.iter().any(|p| p.starts_with("identity.approv")) || f.approved {
                        let list: Vec<Value> = graph
                            .approvals_of(h.subject)
                            .map(|a| approval_json(estate, facts, a))
                            .collect();
                        ev.insert("approvals".into(), Value::Array(list));
                    }
                    (
                        Some(h.subject),
                        estate.identities[h.subject as usize].id.clone(),
                        None,
                    )
                }
                Kind::Approval => {
                    let a = &estate.approvals[h.subject as usize];
                    ev.insert("approval_record".into(), Value::String(a.id.clone()));
                    ev.insert("approval".into(), approval_json(estate, facts, h.subject));
                    (
                        facts.approvals[h.subject as usize].identity,
                        a.subject.clone(),
                        None,
                    )
                }
            };
            let finding = Finding {
                rule_id: rule.id.clone(),
                title: rule.title.clone(),
                severity: rule.severity,
                provider: identity.map(|i| estate.identities[i as usize].provider.to_string()),
                identity_id,
                credential_id,
                controls: rule.controls.clone(),
                evidence: Value::Object(ev),
                recommended_action: rule.action,
                exception: h
                    .exception
                    .map(|e| ExceptionRef::from(&estate.exceptions[e as usize])),
            };
            let credential_kind = (rule.subject == Kind::Credential)
                .then(|| estate.credentials[h.subject as usize].kind);
            Materialized {
                depends: depends(estate, rule, identity, credential_kind),
                finding,
                identity,
                credential_kind,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let (a, b) = (&a.finding, &b.finding);
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.rule_id.cmp(&b.rule_id))
            .then_with(|| a.identity_id.cmp(&b.identity_id))
            .then_with(|| a.credential_id.cmp(&b.credential_id))
    });
    out
}

/// The directly held entitlements unused beyond `threshold` days (all whose
/// last use was read, without one), longest unused first: each with its
/// last use and the services it allows — none of them used since.
fn unused_json(
    estate: &Estate,
    f: &crate::engine::facts::IdentityFacts,
    threshold: Option<i64>,
) -> Value {
    let mut list: Vec<&crate::engine::facts::UnusedGrant> = f
        .unused
        .iter()
        .filter(|u| threshold.is_none_or(|t| u.days > t))
        .collect();
    list.sort_by_key(|u| std::cmp::Reverse(u.days));
    list.into_iter()
        .map(|u| {
            let ent = &estate.entitlements[u.entitlement as usize];
            let mut services: Vec<&str> = ent
                .actions
                .iter()
                .map(|a| a.split_once(':').map_or(a.as_str(), |(s, _)| s))
                .collect();
            services.sort_unstable();
            services.dedup();
            json!({
                "entitlement": ent.id,
                "days_unused": u.days,
                "last_used": estate.grants[u.grant as usize].last_used,
                "services": services,
            })
        })
        .collect()
}

/// The entitlements identity `i` holds through a group or as eligible,
/// marked so: they count for its privilege and scope like direct ones, but
/// are removed elsewhere (the membership, the eligibility).
fn indirect_grants(estate: &Estate, graph: &Graph, i: u32) -> Vec<Value> {
    graph
        .held_grants(i)
        .map(|(e, g)| (e, &estate.grants[g as usize]))
        .filter(|(_, g)| !crate::engine::facts::held_directly(g))
        .map(|(e, g)| {
            json!({
                "entitlement": estate.entitlements[e as usize].id,
                "via": g.via,
                "eligible": g.eligible,
            })
        })
        .collect()
}

/// An approval as evidence: ids and metadata, its state at evaluation time.
fn approval_json(estate: &Estate, facts: &Facts, a: u32) -> Value {
    let rec = &estate.approvals[a as usize];
    let f = &facts.approvals[a as usize];
    json!({
        "id": rec.id,
        "state": f.state.as_str(),
        "source": rec.source,
        "reference": rec.reference,
        "url": rec.url,
        "requester": rec.requester,
        "approver": rec.approver,
        "assignee": rec.assignee,
        "approved_at": rec.approved_at,
        "expires_at": rec.expires_at,
        "ends_at": f.end,
        "emergency": rec.emergency.is_some(),
    })
}
