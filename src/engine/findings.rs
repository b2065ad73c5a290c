//! Findings: the stable, documented output contract.
//!
//! A finding is materialised from a rule hit only when it is output or
//! stored; the engine itself passes compact hits around. The JSON form has
//! exactly these fields (see README "Finding JSON contract"):
//! `rule_id, title, severity, provider, identity_id, credential_id,
//! controls, evidence, recommended_action`, and `exception` when one
//! applies.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
    /// Rule that fired (shared by the rule's findings).
    pub rule_id: Arc<str>,
    /// Rule title (shared by the rule's findings).
    pub title: Arc<str>,
    /// Severity.
    pub severity: Severity,
    /// Provider of the identity (`null` for an approval naming an unknown
    /// identity); a provider this version names is not allocated per finding.
    pub provider: Option<Cow<'static, str>>,
    /// Stable id of the identity concerned.
    pub identity_id: String,
    /// Credential concerned, for credential rules.
    pub credential_id: Option<String>,
    /// Controls, as `FRAMEWORK:ID` (the rule's list, shared).
    pub controls: Arc<[String]>,
    /// The facts that made it fire, the approval considered, the parameters.
    pub evidence: Evidence,
    /// `flag`, `disable` or `delete`.
    pub recommended_action: Action,
    /// The exception accepting this finding's risk, if one applies: the
    /// finding is recorded and reported as excepted, never acted on.
    /// Boxed: most findings have none, and the reference is larger than
    /// the rest of the finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<Box<ExceptionRef>>,
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
        let subject = match (&self.credential_id, self.evidence.approval_record()) {
            (Some(c), _) => c.clone(),
            (None, Some(a)) => format!("approval:{a}"),
            _ => String::new(),
        };
        fingerprint(&self.rule_id, &self.identity_id, &subject)
    }
}

/// A finding's evidence, a JSON object, kept as the text it is stored,
/// hashed and reported as. A million findings' evidence as `Value` maps
/// took 3 KiB each (a node and a string allocation per field) against
/// some 500 bytes of text, and every report parsed it only to write it
/// out again; the few readers of a field parse on demand.
///
/// The approval a finding considered is most of that text (at a million
/// findings, 86 % name one, 320 of their 430 bytes) and the same for
/// every finding naming it: a pass keeps it once, shared, beside the rest
/// of the text ([`Shared`]); the JSON is the same either way.
#[derive(Clone)]
pub struct Evidence {
    /// The object's text, less the shared field when there is one.
    own: Box<RawValue>,
    /// The field kept once for many findings, if any.
    shared: Shared,
}

/// A field of the evidence whose value is kept once, for every finding
/// naming it, and written in its key's place.
#[derive(Clone)]
enum Shared {
    /// None: the text is whole.
    None,
    /// `approval`: the approval considered.
    Approval(Arc<RawValue>),
    /// `approvals`: the approvals covering an identity.
    Approvals(Box<[Arc<RawValue>]>),
}

impl Shared {
    fn key(&self) -> Option<&'static str> {
        match self {
            Shared::None => None,
            Shared::Approval(_) => Some("approval"),
            Shared::Approvals(_) => Some("approvals"),
        }
    }
}

impl Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Shared::None => s.serialize_unit(),
            Shared::Approval(a) => a.serialize(s),
            Shared::Approvals(list) => s.collect_seq(list.iter().map(|a| &**a)),
        }
    }
}

/// A JSON object's fields in their order, borrowed from its text.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields<'de>, D::Error> {
        struct Key<'a>(Cow<'a, str>);
        impl<'de> Deserialize<'de> for Key<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Key<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a key")
                    }
                    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                        Ok(Key(Cow::Borrowed(v)))
                    }
                    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                        Ok(Key(Cow::Owned(v.to_string())))
                    }
                }
                d.deserialize_str(V)
            }
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((Key(k), v)) = m.next_entry::<Key<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Evidence {
    /// The evidence's JSON text (written out when a field is shared).
    pub fn json(&self) -> Cow<'_, str> {
        match self.shared {
            Shared::None => Cow::Borrowed(self.own.get()),
            // Raw fields written back as they were read cannot fail.
            _ => Cow::Owned(serde_json::to_string(self).unwrap_or_else(|_| "null".into())),
        }
    }

    /// The text less its shared field (the whole text when none is).
    pub fn own_json(&self) -> &str {
        self.own.get()
    }

    /// The approval considered, when it is kept shared.
    pub fn shared_approval(&self) -> Option<&RawValue> {
        match &self.shared {
            Shared::Approval(a) => Some(a),
            _ => None,
        }
    }

    /// As a `Value` (parsed: for readers of a few findings' fields).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json()).unwrap_or(Value::Null)
    }

    /// Top-level field `key`, parsed (`None` when absent or not an object).
    pub fn get(&self, key: &str) -> Option<Value> {
        if self.shared.key() == Some(key) {
            return serde_json::to_value(&self.shared).ok();
        }
        let fields: std::collections::HashMap<&str, &RawValue> =
            serde_json::from_str(self.own.get()).ok()?;
        serde_json::from_str(fields.get(key)?.get()).ok()
    }

    /// The approval record an approval finding is about
    /// (`approval_record`), read without parsing the rest into values:
    /// every approval finding's fingerprint needs it.
    pub fn approval_record(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Record {
            #[serde(default)]
            approval_record: Option<Value>,
        }
        // Never the shared field.
        match serde_json::from_str::<Record>(self.own.get())
            .ok()?
            .approval_record
        {
            Some(Value::String(a)) => Some(a),
            _ => None,
        }
    }
}

impl From<Value> for Evidence {
    fn from(v: Value) -> Evidence {
        Evidence::from(&v)
    }
}

impl From<&Value> for Evidence {
    fn from(v: &Value) -> Evidence {
        // Serialising a `Value` cannot fail (its keys are strings); null
        // stands in should that ever change.
        Evidence {
            own: serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::NULL.to_owned()),
            shared: Shared::None,
        }
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Evidence) -> bool {
        self.json() == other.json()
    }
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.json())
    }
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.json())
    }
}

impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let Some(key) = self.shared.key() else {
            return self.own.serialize(s);
        };
        // The shared field in its key's place: the fields are in key order.
        let Fields(fields) = serde_json::from_str(self.own.get()).map_err(S::Error::custom)?;
        let mut m = s.serialize_map(Some(fields.len() + 1))?;
        let mut placed = false;
        for (k, v) in &fields {
            if !placed && k.as_ref() > key {
                m.serialize_entry(key, &self.shared)?;
                placed = true;
            }
            m.serialize_entry(k.as_ref(), v)?;
        }
        if !placed {
            m.serialize_entry(key, &self.shared)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Evidence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Evidence, D::Error> {
        Box::<RawValue>::deserialize(d).map(|own| Evidence {
            own,
            shared: Shared::None,
        })
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
    materialize_with(estate, facts, graph, rules, hits, |m| m.finding)
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
    materialize_with(estate, facts, graph, rules, hits, |m| m)
}

/// Materialise findings from hits in [`materialize`]'s order, each passed
/// through `wrap` as it is made: the caller's form is the only list built
/// (at a million findings, a second list of another shape held beside
/// it while converting was a fifth of the pass's peak).
pub fn materialize_with<T: Send + Sync + AsRef<Finding>>(
    estate: &Estate,
    facts: &Facts,
    graph: &Graph,
    rules: &RuleSet,
    hits: &[Hit],
    wrap: impl Fn(Materialized) -> T + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    let env = Env { estate, facts };
    // Shared by every finding of a rule, not copied into each.
    let names: Vec<(Arc<str>, Arc<str>)> = rules
        .rules
        .iter()
        .map(|r| (Arc::from(r.id.as_str()), Arc::from(r.title.as_str())))
        .collect();
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
    // Each approval's evidence, written once for every finding naming it.
    let approval_texts: Vec<std::sync::OnceLock<Arc<RawValue>>> = (0..estate.approvals.len())
        .map(|_| Default::default())
        .collect();
    let approval = |a: u32| -> Arc<RawValue> {
        Arc::clone(approval_texts[a as usize].get_or_init(|| {
            Arc::from(
                serde_json::value::to_raw_value(&ApprovalEvidence::of(estate, facts, a))
                    .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            )
        }))
    };
    // Each hit's evidence is built on its own and serialised at once: the
    // parts are borrowed from the estate and written straight to text,
    // never held as a map of values. Made in the hits' order, which
    // follows the estate's (in sorted order, each finding's reads of the
    // estate land far from the last's: twice the time), then sorted.
    let mut out: Vec<T> = hits
        .par_iter()
        .map(|h| {
            let rule = &rules.rules[h.rule as usize];
            let mut ev: Vec<(&str, Part<'_>)> = Vec::with_capacity(rule.fields.len() + 4);
            for path in &rule.fields {
                ev.push((
                    path,
                    Part::Value(evidence_value(&env, rule.subject, path, h.subject)),
                ));
            }
            if let Some(used) = &params[h.rule as usize] {
                ev.push(("params", Part::Shared(used)));
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
                            ev.push(("federation", Part::Value(shown)));
                        }
                    }
                    ev.push((
                        "approval",
                        f.approval
                            .map_or(Part::Value(Value::Null), |a| Part::Approval(approval(a))),
                    ));
                    (f.identity, c.identity.clone(), Some(c.id.clone()))
                }
                Kind::Identity => {
                    let f = &facts.identities[h.subject as usize];
                    let ents = |v: &[u32]| -> Part<'_> {
                        Part::Ids(
                            v.iter()
                                .map(|&e| estate.entitlements[e as usize].id.as_str())
                                .collect(),
                        )
                    };
                    if rule.fields.iter().any(|p| p == "identity.overscope_direct") {
                        ev.push(("entitlements_beyond_scope", ents(&f.overscope_direct)));
                    }
                    if rule
                        .fields
                        .iter()
                        .any(|p| p == "identity.overscope_transitive")
                    {
                        ev.push((
                            "entitlements_beyond_scope_via_assume",
                            ents(&f.overscope_transitive),
                        ));
                    }
                    if rule
                        .fields
                        .iter()
                        .any(|p| p == "identity.entitlement_unused_days")
                    {
                        ev.push((
                            "unused_entitlements",
                            Part::Value(unused_json(estate, f, rule.unused_days())),
                        ));
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
                            ev.push(("held_indirectly", Part::Value(Value::Array(indirect))));
                        }
                    }
                    // Compute wearing the identity is what breaks if it is
                    // removed: an owner reads it before acting.
                    let worn_by = &estate.identities[h.subject as usize].attached_to;
                    if !worn_by.is_empty() {
                        ev.push(("attached_to", Part::Strs(worn_by)));
                    }
                    if rule.fields.iter().any(|p| p.starts_with("identity.approv")) || f.approved {
                        let list = graph.approvals_of(h.subject).map(approval).collect();
                        ev.push(("approvals", Part::Approvals(list)));
                    }
                    (
                        Some(h.subject),
                        estate.identities[h.subject as usize].id.clone(),
                        None,
                    )
                }
                Kind::Approval => {
                    let a = &estate.approvals[h.subject as usize];
                    ev.push(("approval_record", Part::Str(&a.id)));
                    ev.push(("approval", Part::Approval(approval(h.subject))));
                    (
                        facts.approvals[h.subject as usize].identity,
                        a.subject.clone(),
                        None,
                    )
                }
            };
            let (rule_id, title) = &names[h.rule as usize];
            let finding = Finding {
                rule_id: Arc::clone(rule_id),
                title: Arc::clone(title),
                severity: rule.severity,
                provider: identity
                    .map(|i| Cow::Borrowed(estate.identities[i as usize].provider.as_str())),
                identity_id,
                credential_id,
                controls: rule.controls.clone(),
                evidence: Evidence::of_parts(ev),
                recommended_action: rule.action,
                exception: h
                    .exception
                    .map(|e| Box::new(ExceptionRef::from(&estate.exceptions[e as usize]))),
            };
            let credential_kind = (rule.subject == Kind::Credential)
                .then(|| estate.credentials[h.subject as usize].kind);
            wrap(Materialized {
                depends: depends(estate, rule, identity, credential_kind),
                finding,
                identity,
                credential_kind,
            })
        })
        .collect();
    let order = report_order(&out);
    permute(&mut out, order);
    out
}

/// The positions of `items` in report order: severity (highest first),
/// rule id, identity id, credential id (none first), ties in the order
/// given — what a stable sort by those gives. The findings are not moved
/// (a stable sort of them buffers half of them again): their positions
/// are sorted, on every core, by 24-byte keys gathered once. Comparing
/// through the findings chased four pointers per comparison; at a million
/// findings that sort was a fifth of an unchanged pass's CPU.
pub(crate) fn report_order<T: Sync + AsRef<Finding>>(items: &[T]) -> Vec<usize> {
    use rayon::prelude::*;
    // A rule's place among the rule ids present: one integer compared,
    // not its id. A rule's findings share its id, so each run of them is
    // looked up once.
    let mut rules: Vec<&str> = Vec::new();
    let mut last: Option<&str> = None;
    for f in items {
        let id = &*f.as_ref().rule_id;
        if !last.is_some_and(|l| std::ptr::eq(l, id)) {
            last = Some(id);
            if let Err(at) = rules.binary_search(&id) {
                rules.insert(at, id);
            }
        }
    }
    let credential = |k: &OrderKey| items[k.pos as usize].as_ref().credential_id.as_deref();
    let mut keys: Vec<OrderKey> = items
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let f = f.as_ref();
            // Every id is in `rules`, which has fewer entries than `items`.
            let rule = rules.binary_search(&&*f.rule_id).unwrap_or(rules.len());
            let severity = u32::from(u8::MAX - f.severity as u8) << 24;
            OrderKey {
                rank: severity | u32::try_from(rule).unwrap_or(0xff_ffff).min(0xff_ffff),
                // Four billion findings would not fit in memory first.
                pos: u32::try_from(i).unwrap_or(u32::MAX),
                identity: f.identity_id.as_str(),
            }
        })
        .collect();
    // Unstable is stable here: the position ends every comparison, so no
    // two keys are equal.
    keys.par_sort_unstable_by(|a, b| {
        a.rank
            .cmp(&b.rank)
            .then_with(|| a.identity.cmp(b.identity))
            // Read through the finding only for one identity's findings
            // of one rule: the key stays 24 bytes.
            .then_with(|| credential(a).cmp(&credential(b)))
            .then(a.pos.cmp(&b.pos))
    });
    keys.into_iter().map(|k| k.pos as usize).collect()
}

/// A finding's place in [`report_order`]: severity (highest first) and
/// rule rank in one integer, its identity id, and its position (which
/// also leads to its credential id).
struct OrderKey<'a> {
    rank: u32,
    pos: u32,
    identity: &'a str,
}

/// Reorder `items` so that position `i` holds what was at `order[i]`
/// (`order` a permutation of the positions), in place: each cycle of the
/// permutation followed once, by swaps.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        let mut at = start;
        loop {
            let from = order[at];
            // Marks `at` as placed.
            order[at] = at;
            if from == start || from == at {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

impl AsRef<Finding> for Finding {
    fn as_ref(&self) -> &Finding {
        self
    }
}

impl AsRef<Finding> for Materialized {
    fn as_ref(&self) -> &Finding {
        &self.finding
    }
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

/// An approval as evidence: ids and metadata, its state at evaluation
/// time. Fields in name order, as the evidence has always been written
/// (a map's order): the stored evidence of an unchanged finding hashes
/// the same.
#[derive(Serialize)]
struct ApprovalEvidence<'a> {
    approved_at: &'a nhi_contract::Timestamp,
    approver: &'a str,
    assignee: &'a Option<String>,
    emergency: bool,
    ends_at: &'a nhi_contract::Timestamp,
    expires_at: &'a nhi_contract::Timestamp,
    id: &'a str,
    reference: &'a Option<String>,
    requester: &'a str,
    source: &'a str,
    state: &'static str,
    url: &'a Option<String>,
}

impl<'a> ApprovalEvidence<'a> {
    fn of(estate: &'a Estate, facts: &'a Facts, a: u32) -> ApprovalEvidence<'a> {
        let rec = &estate.approvals[a as usize];
        let f = &facts.approvals[a as usize];
        ApprovalEvidence {
            approved_at: &rec.approved_at,
            approver: &rec.approver,
            assignee: &rec.assignee,
            emergency: rec.emergency.is_some(),
            ends_at: &f.end,
            expires_at: &rec.expires_at,
            id: &rec.id,
            reference: &rec.reference,
            requester: &rec.requester,
            source: &rec.source,
            state: f.state.as_str(),
            url: &rec.url,
        }
    }
}

/// One field of a finding's evidence, borrowed where it can be.
#[derive(Serialize)]
#[serde(untagged)]
enum Part<'a> {
    Value(Value),
    Shared(&'a Value),
    /// An approval's evidence, kept shared under `approval`.
    Approval(Arc<RawValue>),
    /// Approvals' evidence, kept shared under `approvals`.
    Approvals(Vec<Arc<RawValue>>),
    Ids(Vec<&'a str>),
    Strs(&'a [String]),
    Str(&'a str),
}

/// Evidence fields as a map in key order, a key given twice taking its
/// last value: how a map of them serialised.
struct Parts<'a>(Vec<(&'a str, Part<'a>)>);

impl Serialize for Parts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Evidence {
    /// Evidence written from its fields.
    fn of_parts(mut parts: Vec<(&str, Part<'_>)>) -> Evidence {
        // Stable: of a key given twice, the last stays last.
        parts.sort_by(|a, b| a.0.cmp(b.0));
        let mut kept: Vec<(&str, Part<'_>)> = Vec::with_capacity(parts.len());
        for p in parts {
            match kept.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => kept.push(p),
            }
        }
        // The approval or approvals considered are kept shared, not in
        // the text.
        let at = kept.iter().position(|(k, p)| {
            matches!(
                (*k, p),
                ("approval", Part::Approval(_)) | ("approvals", Part::Approvals(_))
            )
        });
        let shared = match at.map(|i| kept.remove(i).1) {
            Some(Part::Approval(a)) => Shared::Approval(a),
            Some(Part::Approvals(list)) => Shared::Approvals(list.into_boxed_slice()),
            _ => Shared::None,
        };
        Evidence {
            own: serde_json::value::to_raw_value(&Parts(kept))
                .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;

    use super::{Action, Evidence, Finding, Part, Severity};

    fn raw(v: &serde_json::Value) -> Arc<serde_json::value::RawValue> {
        Arc::from(serde_json::value::to_raw_value(v).expect("raw"))
    }

    /// Evidence keeping its approval shared is the same JSON, field for
    /// field and byte for byte, as the text written whole: keys before
    /// and after `approval`, a key given twice, the list form, an empty
    /// list, and read back from its text.
    #[test]
    fn shared_approvals_write_as_the_whole_text() {
        let approval = json!({"id": "APR-1", "reference": "CHG-1", "url": null, "state": "valid"});
        let other =
            json!({"id": "APR-2", "reference": null, "url": "https://x/2", "state": "expired"});
        let params = json!({"max_age_days": 90});
        let cases: Vec<(Vec<(&str, Part<'_>)>, serde_json::Value)> = vec![
            (
                vec![
                    ("credential.age_days", Part::Value(json!(400))),
                    ("params", Part::Shared(&params)),
                    ("approval", Part::Approval(raw(&approval))),
                    ("credential.active", Part::Value(json!(true))),
                ],
                json!({"approval": approval, "credential.active": true,
                       "credential.age_days": 400, "params": params}),
            ),
            (
                vec![("approval", Part::Approval(raw(&approval)))],
                json!({"approval": approval}),
            ),
            (
                vec![
                    ("attached_to", Part::Str("i-0abc")),
                    (
                        "approvals",
                        Part::Approvals(vec![raw(&approval), raw(&other)]),
                    ),
                    ("identity.admin", Part::Value(json!(true))),
                ],
                json!({"approvals": [approval, other], "attached_to": "i-0abc",
                       "identity.admin": true}),
            ),
            (
                vec![
                    ("approvals", Part::Approvals(vec![])),
                    ("a", Part::Value(json!(1))),
                ],
                json!({"a": 1, "approvals": []}),
            ),
            (
                // The last of a key given twice stays.
                vec![
                    ("approval", Part::Value(serde_json::Value::Null)),
                    ("approval", Part::Approval(raw(&other))),
                ],
                json!({"approval": other}),
            ),
        ];
        for (parts, want) in cases {
            let ev = Evidence::of_parts(parts);
            let whole = serde_json::to_string(&want).expect("json");
            assert_eq!(ev.json(), whole);
            assert_eq!(serde_json::to_string(&ev).expect("json"), whole);
            assert_eq!(ev.value(), want);
            assert_eq!(ev, Evidence::from(&want));
            for (k, v) in want.as_object().expect("object") {
                assert_eq!(ev.get(k).as_ref(), Some(v), "{k}");
            }
            let back: Evidence = serde_json::from_str(&whole).expect("read back");
            assert_eq!(back, ev);
            assert_eq!(back.own_json(), whole);
        }
        let ev = Evidence::of_parts(vec![("approval", Part::Approval(raw(&approval)))]);
        assert_eq!(
            ev.shared_approval().map(|a| a.get()),
            Some(&*raw(&approval).get().to_string())
        );
        assert_eq!(ev.own_json(), "{}");
    }

    proptest! {
        /// The keyed order is a stable sort by severity (highest first),
        /// rule, identity and credential: duplicates kept in the order given.
        #[test]
        fn report_order_is_the_stable_sort_by_severity_rule_identity_credential(
            picks in proptest::collection::vec((0..5u8, 0..4usize, 0..6usize, 0..4usize), 0..300)
        ) {
            let rules: Vec<Arc<str>> = ["stale", "long-lived", "unapproved", "approval-unmapped"]
                .into_iter().map(Arc::from).collect();
            let sev = [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];
            let items: Vec<Finding> = picks.iter().enumerate().map(|(n, &(s, r, i, c))| Finding {
                rule_id: Arc::clone(&rules[r]),
                title: Arc::from(""),
                severity: sev[s as usize],
                provider: None,
                // Shared prefixes, as real ids have.
                identity_id: format!("arn:aws:iam::123456789012:role/r{i}"),
                credential_id: (c > 0).then(|| format!("AKIA{c}")),
                controls: Arc::from(Vec::<String>::new()),
                // Tells apart findings with the same key.
                evidence: Evidence::of_parts(vec![("n", Part::Str(&n.to_string()))]),
                recommended_action: Action::Flag,
                exception: None,
            }).collect();
            let mut want: Vec<usize> = (0..items.len()).collect();
            want.sort_by(|&a, &b| {
                let (a, b) = (&items[a], &items[b]);
                b.severity.cmp(&a.severity)
                    .then_with(|| a.rule_id.cmp(&b.rule_id))
                    .then_with(|| a.identity_id.cmp(&b.identity_id))
                    .then_with(|| a.credential_id.cmp(&b.credential_id))
            });
            prop_assert_eq!(super::report_order(&items), want);
        }

        /// Moving in place gives what gathering by the order gives.
        #[test]
        fn permute_gathers(keys in proptest::collection::vec(any::<u16>(), 0..200)) {
            let items: Vec<usize> = (0..keys.len()).map(|i| i * 7).collect();
            // A permutation: the positions sorted by random keys.
            let mut order: Vec<usize> = (0..keys.len()).collect();
            order.sort_by_key(|&i| keys[i]);
            let gathered: Vec<usize> = order.iter().map(|&i| items[i]).collect();
            let mut moved = items.clone();
            super::permute(&mut moved, order);
            prop_assert_eq!(moved, gathered);
        }
    }
}
