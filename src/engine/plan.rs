//! The plan: what enforce mode would do about the findings. Nothing here
//! acts; a plan is computed and printed (dry-run is the default).
//!
//! One entry per target (a credential, an identity's login, ...), carrying
//! every rule that asked for it. An entry is skipped, with the reason, when
//! its subject is protected or its source could not see what it depends on
//! this pass: unknown is never treated as empty.
//!
//! What an action depends on, per rule that asks for it: the rule's facets
//! (what its condition reads), the credential's and the identity's kinds,
//! and the operation's own (detaching entitlements reads who holds what,
//! removing a login reads the logins). A gap holds only the asks that
//! depend on what it blinds. When several rules ask for one target, the
//! action is carried by the asks the source saw: it acts, with the
//! strongest operation a seen rule asks for and naming those rules, if any
//! seen ask alone would produce an action there (a blinded rule's stronger
//! ask — delete where a seen rule asks to disable — neither blocks nor
//! upgrades it). Only when every ask is held is it skipped, naming what
//! the source could not read.
//!
//! The plan is built on estate indices (cheap for millions of findings) and
//! [`Plan::resolve`]d to provider ids only for output or execution.

use nhi_contract::pattern::Syntax;
use nhi_contract::{ActionRequest, Operation};
use rayon::prelude::*;
use serde::Serialize;

use crate::engine::estate::Estate;
use crate::engine::facets::Facets;
use crate::engine::facts::Facts;
use crate::engine::findings;
use crate::engine::rules::{Hit, Kind, RuleSet, Target};

/// Approval scopes and protected ids: `*` only, ASCII case ignored.
const SCOPE: Syntax = Syntax::STAR_ASCII_CASELESS;

/// Subjects never acted on, by id pattern.
#[derive(Debug, Clone, Default)]
pub struct Protected(Vec<String>);

impl Protected {
    /// From config patterns (`*` wildcards), compared case-insensitively.
    pub fn new(patterns: &[String]) -> Protected {
        Protected(patterns.to_vec())
    }

    /// Whether `id` is protected.
    pub fn covers(&self, id: &str) -> bool {
        self.0.iter().any(|p| SCOPE.matches(p, id))
    }
}

/// Subjects held for one pass, with why: the subjects of approval records a
/// source could not map (it is unknown whether they are approved), or every
/// subject when such a record names none; the subjects of an account a
/// source could not read (by their id prefix). A held subject is treated
/// like an unseen one: nothing of it is acted on, none of its findings
/// resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Held {
    /// Every subject is held, for this reason.
    pub all: Option<String>,
    /// Held subjects (identity ids) and why.
    pub subjects: std::collections::BTreeMap<String, String>,
    /// Held id prefixes (every subject of an unread account) and why.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prefixes: std::collections::BTreeMap<String, String>,
}

impl Held {
    /// Why `identity` is held, if it is.
    pub fn reason(&self, identity: &str) -> Option<&str> {
        self.subjects
            .get(identity)
            .or_else(|| {
                // Few prefixes (one per unread account): a scan is cheap.
                self.prefixes
                    .iter()
                    .find(|(p, _)| !p.is_empty() && identity.starts_with(p.as_str()))
                    .map(|(_, why)| why)
            })
            .or(self.all.as_ref())
            .map(String::as_str)
    }

    /// Whether `identity` belongs to an account its source could not read
    /// (it may exist although the pass did not list it).
    pub fn unread(&self, identity: &str) -> bool {
        self.prefixes
            .keys()
            .any(|p| !p.is_empty() && identity.starts_with(p.as_str()))
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.subjects.is_empty() && self.prefixes.is_empty()
    }

    /// Hold the subjects of every account a source reported unread (an
    /// [`Unseen::Account`](nhi_contract::Unseen::Account) gap naming their
    /// id prefix).
    pub fn hold_unread_accounts(&mut self, estate: &Estate) {
        for (source, span) in estate.sources.iter().zip(&estate.spans) {
            let Some(span) = span else { continue };
            for gap in &span.coverage.gaps {
                if let nhi_contract::Unseen::Account {
                    subjects: Some(prefix),
                    ..
                } = &gap.unseen
                {
                    self.prefixes.entry(prefix.clone()).or_insert_with(|| {
                        format!(
                            "held: source {} could not read {} ({}); its subjects are unknown this pass",
                            source.name, gap.unseen, gap.reason
                        )
                    });
                }
            }
        }
    }

    /// Whether a finding that was open may be resolved by a run holding
    /// this: not if it is about a held subject (a run's own finding on an
    /// unmapped record is resolved by the record's absence).
    pub fn lets_resolve(&self, rule: &str, identity: &str) -> bool {
        rule == crate::engine::findings::UNMAPPED_RULE || self.reason(identity).is_none()
    }

    /// Skip every action of `plan` that would act on a held subject.
    pub fn apply(&self, plan: &mut [ResolvedAction]) {
        for a in plan.iter_mut().filter(|a| a.status == Verdict::Act) {
            if let Some(why) = self.reason(&a.request.identity_id) {
                a.status = Verdict::Skip;
                a.reason = Some(why.to_string());
            }
        }
    }
}

/// Why a planned action will not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The identity or credential is protected by config.
    Protected,
    /// The subject's source (by index) failed, or could not see these
    /// facets every ask for the action depends on.
    SourceBlind(u32, Facets),
    /// The account root: only root itself can manage its credentials.
    AccountRoot,
    /// An identity the provider manages for its own services (an AWS
    /// service-linked role): never remediated.
    ProviderManaged,
    /// Entitlements to detach, but every one the rules ask for is held
    /// through a group or as eligible: detaching from the identity cannot
    /// remove it.
    HeldIndirectly,
    /// Every ask the source saw is covered by an exception (index into
    /// `Estate::exceptions`): the risk is accepted until it ends.
    Excepted(u32),
}

/// Whether a planned action would run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Enforce mode would carry it out.
    Act,
    /// It will not run.
    Skip(SkipReason),
}

/// One planned action, on estate indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAction {
    /// Identity index.
    pub identity: u32,
    /// Credential index, for credential operations.
    pub credential: Option<u32>,
    /// What to do.
    pub operation: Operation,
    /// Indices of the rules that asked for it (`RuleSet::rules`), ascending.
    pub rules: Vec<u16>,
    /// Whether it would run.
    pub disposition: Disposition,
}

/// The plan of a pass.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Planned actions, grouped by identity.
    pub actions: Vec<PlannedAction>,
}

/// A planned action in provider terms: what the output and the enforcer see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedAction {
    /// What to do, to what.
    #[serde(flatten)]
    pub request: ActionRequest,
    /// Ids of the rules that asked for it.
    pub rules: Vec<String>,
    /// Inventory source of the subject (which remediator acts on it).
    pub source: String,
    /// Whether it is carried out.
    pub status: Verdict,
    /// Why it is skipped.
    pub reason: Option<String>,
}

/// A resolved action's verdict, as output and acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Carried out in enforce mode (behind the rails).
    Act,
    /// Not carried out; the action's `reason` says why.
    Skip,
}

impl Verdict {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Act => "act",
            Verdict::Skip => "skip",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn family(op: Operation) -> u8 {
    match op {
        Operation::DisableCredential | Operation::DeleteCredential => 0,
        Operation::DisableIdentity => 1,
        Operation::RemoveLogin => 2,
        Operation::DetachEntitlements => 3,
        // Not planned from findings (see act::issue); never in one family.
        Operation::DenySessions
        | Operation::LiftSessionDeny
        | Operation::AddFederatedCredential
        | Operation::RemoveFederatedCredential => 4,
    }
}

fn strength(op: Operation) -> u8 {
    match op {
        Operation::DeleteCredential => 2,
        _ => 1,
    }
}

/// The entitlements detaching removes from identity `ident` for the rules
/// `asking` (indices), each once: beyond scope (`entitlements`: those of
/// them held directly and actively) and unused beyond each rule's
/// threshold (`unused_entitlements`). Never one held through a group or as
/// eligible, never one whose last use is unknown.
pub fn detach_set(
    facts: &Facts,
    rules: &RuleSet,
    ident: u32,
    asking: impl Iterator<Item = u16>,
) -> Vec<u32> {
    let f = &facts.identities[ident as usize];
    let mut out: Vec<u32> = Vec::new();
    for r in asking {
        let rule = &rules.rules[r as usize];
        let ents: Vec<u32> = match rule.target {
            Target::Entitlements => f.detachable.clone(),
            Target::UnusedEntitlements => match rule.unused_days() {
                Some(days) => f
                    .unused
                    .iter()
                    .filter(|u| u.days > days)
                    .map(|u| u.entitlement)
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        for e in ents {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

impl Plan {
    /// Derive the plan from rule hits.
    pub fn build(
        estate: &Estate,
        facts: &Facts,
        rules: &RuleSet,
        hits: &[Hit],
        protected: &Protected,
    ) -> Plan {
        // (identity, credential or MAX, operation family, rule, operation,
        // what the source hid of what this ask depends on, the exception
        // covering the ask or MAX)
        let mut wanted: Vec<(u32, u32, u8, u16, Operation, Facets, u32)> = hits
            .par_iter()
            .filter_map(|h| {
                let rule = &rules.rules[h.rule as usize];
                let op = rule.operation()?;
                let (ident, cred) = match rule.subject {
                    Kind::Credential => {
                        (facts.credentials[h.subject as usize].identity?, h.subject)
                    }
                    Kind::Identity => (h.subject, u32::MAX),
                    Kind::Approval => return None,
                };
                let kind = (cred != u32::MAX).then(|| estate.credentials[cred as usize].kind);
                let needs = findings::depends(estate, rule, Some(ident), kind)
                    .with(Facets::of_operation(op));
                let source = estate.identity_source[ident as usize];
                let hidden = estate.sources[source as usize].state.hides(needs);
                let excepted = h.exception.unwrap_or(u32::MAX);
                Some((ident, cred, family(op), h.rule, op, hidden, excepted))
            })
            .collect();
        wanted.par_sort_unstable_by_key(|w| (w.0, w.1, w.2, w.3));

        let mut actions: Vec<PlannedAction> = Vec::new();
        for group in wanted.chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2)) {
            let Some(&(ident, cred, _, _, first_op, _, _)) = group.first() else {
                continue;
            };
            let credential = (cred != u32::MAX).then_some(cred);
            let source = estate.identity_source[ident as usize];
            let identity = &estate.identities[ident as usize];
            // An ask carries the action if its source saw what it needs and
            // no exception accepts its risk.
            let live =
                |w: &(u32, u32, u8, u16, Operation, Facets, u32)| w.5.is_empty() && w.6 == u32::MAX;
            let any_live = group.iter().any(live);
            let excepted = group
                .iter()
                .find(|w| w.5.is_empty() && w.6 != u32::MAX)
                .map(|w| w.6);
            let disposition = if identity.kind == nhi_contract::IdentityKind::Root {
                Disposition::Skip(SkipReason::AccountRoot)
            } else if identity.provider_managed {
                Disposition::Skip(SkipReason::ProviderManaged)
            } else if first_op == Operation::DetachEntitlements
                && detach_set(facts, rules, ident, group.iter().map(|w| w.3)).is_empty()
            {
                Disposition::Skip(SkipReason::HeldIndirectly)
            } else if protected.covers(&identity.id)
                || credential.is_some_and(|c| protected.covers(&estate.credentials[c as usize].id))
            {
                Disposition::Skip(SkipReason::Protected)
            } else if any_live {
                Disposition::Act
            } else if let Some(e) = excepted {
                Disposition::Skip(SkipReason::Excepted(e))
            } else {
                let hidden = group.iter().fold(Facets::NONE, |acc, w| acc.with(w.5));
                Disposition::Skip(SkipReason::SourceBlind(source, hidden))
            };
            // An action that acts is carried by the asks its source saw and
            // no exception covers.
            let carried = group
                .iter()
                .filter(|w| disposition != Disposition::Act || live(w));
            let mut operation = first_op;
            let mut asked: Vec<u16> = Vec::with_capacity(group.len());
            for (i, w) in carried.enumerate() {
                if i == 0 || strength(w.4) > strength(operation) {
                    operation = w.4;
                }
                if asked.last() != Some(&w.3) {
                    asked.push(w.3);
                }
            }
            actions.push(PlannedAction {
                identity: ident,
                credential,
                operation,
                rules: asked,
                disposition,
            });
        }
        Plan { actions }
    }

    /// The plan in provider ids, sorted by identity, credential, operation.
    pub fn resolve(&self, estate: &Estate, facts: &Facts, rules: &RuleSet) -> Vec<ResolvedAction> {
        let mut out: Vec<ResolvedAction> = self
            .actions
            .iter()
            .map(|a| {
                let identity = &estate.identities[a.identity as usize];
                let entitlements = if a.operation == Operation::DetachEntitlements {
                    detach_set(facts, rules, a.identity, a.rules.iter().copied())
                        .into_iter()
                        .map(|e| estate.entitlements[e as usize].id.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                let (status, reason) = match a.disposition {
                    Disposition::Act => (Verdict::Act, None),
                    Disposition::Skip(SkipReason::Protected) => {
                        (Verdict::Skip, Some("protected subject".to_string()))
                    }
                    Disposition::Skip(SkipReason::AccountRoot) => (
                        Verdict::Skip,
                        Some(
                            "account root: only root can manage its credentials, by hand"
                                .to_string(),
                        ),
                    ),
                    Disposition::Skip(SkipReason::ProviderManaged) => (
                        Verdict::Skip,
                        Some(
                            "managed by the provider for its own service (service-linked): \
                             never remediated"
                                .to_string(),
                        ),
                    ),
                    Disposition::Skip(SkipReason::SourceBlind(s, held)) => {
                        (Verdict::Skip, Some(estate.held_reason(s, held)))
                    }
                    Disposition::Skip(SkipReason::Excepted(e)) => {
                        let e = &estate.exceptions[e as usize];
                        (
                            Verdict::Skip,
                            Some(format!(
                                "excepted: {} until {}",
                                e.id,
                                e.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
                            )),
                        )
                    }
                    Disposition::Skip(SkipReason::HeldIndirectly) => (
                        Verdict::Skip,
                        Some(
                            "every entitlement to detach is held through a group or as \
                             eligible: remove the membership or the eligibility"
                                .to_string(),
                        ),
                    ),
                };
                let source = estate.sources[estate.identity_source[a.identity as usize] as usize]
                    .name
                    .clone();
                ResolvedAction {
                    source,
                    request: ActionRequest {
                        operation: a.operation,
                        provider: identity.provider,
                        identity_id: identity.id.clone(),
                        credential_id: a
                            .credential
                            .map(|c| estate.credentials[c as usize].id.clone()),
                        credential_kind: a.credential.map(|c| estate.credentials[c as usize].kind),
                        entitlements,
                        federated: None,
                    },
                    rules: a
                        .rules
                        .iter()
                        .map(|&r| rules.rules[r as usize].id.clone())
                        .collect(),
                    status,
                    reason,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (
                &a.request.identity_id,
                &a.request.credential_id,
                a.request.operation.as_str(),
            )
                .cmp(&(
                    &b.request.identity_id,
                    &b.request.credential_id,
                    b.request.operation.as_str(),
                ))
        });
        out
    }
}
