//! The plan: what enforce mode would do about the findings. Nothing here
//! acts; a plan is computed and printed (dry-run is the default).
//!
//! One entry per target (a credential, an identity's login, ...), carrying
//! every rule that asked for it. An entry is `skip`ped, with the reason,
//! when its subject is protected or its source was not read completely
//! this pass: unknown is never treated as empty.

use nhi_contract::{ActionRequest, Operation};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::estate::Estate;
use crate::facts::Facts;
use crate::pattern;
use crate::rules::{Hit, Kind, RuleSet};

/// Subjects never acted on, by id pattern.
#[derive(Debug, Clone, Default)]
pub struct Protected(Vec<String>);

impl Protected {
    /// From config patterns (`*` wildcards), compared case-insensitively.
    pub fn new(patterns: &[String]) -> Protected {
        Protected(patterns.iter().map(|p| p.to_ascii_lowercase()).collect())
    }

    /// Whether `id` is protected.
    pub fn covers(&self, id: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        let id = id.to_ascii_lowercase();
        self.0.iter().any(|p| pattern::matches(p, &id))
    }
}

/// Whether a planned action would run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Disposition {
    /// Enforce mode would carry it out.
    Act,
    /// It will not run, and why.
    Skip(String),
}

/// One planned action.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    /// What to do, to what.
    #[serde(flatten)]
    pub request: ActionRequest,
    /// Rules that asked for it.
    pub rules: Vec<String>,
    /// Whether it would run.
    #[serde(flatten)]
    pub disposition: Disposition,
}

/// The plan of a pass.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Planned actions, in a stable order.
    pub actions: Vec<PlannedAction>,
}

fn strength(op: Operation) -> u8 {
    match op {
        Operation::DeleteCredential => 2,
        _ => 1,
    }
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
        // Target key: (identity index, credential index or MAX, operation family).
        let mut by_target: FxHashMap<(u32, u32, u8), usize> = FxHashMap::default();
        let mut actions: Vec<PlannedAction> = Vec::new();
        for hit in hits {
            let rule = &rules.rules[hit.rule as usize];
            let Some(op) = rule.operation() else {
                continue;
            };
            let (ident, cred) = match rule.subject {
                Kind::Credential => match facts.credentials[hit.subject as usize].identity {
                    Some(i) => (i, Some(hit.subject)),
                    None => continue,
                },
                Kind::Identity => (hit.subject, None),
                Kind::Approval => continue,
            };
            let family = match op {
                Operation::DisableCredential | Operation::DeleteCredential => 0,
                Operation::DisableIdentity => 1,
                Operation::RemoveLogin => 2,
                Operation::DetachEntitlements => 3,
            };
            let key = (ident, cred.unwrap_or(u32::MAX), family);
            if let Some(&k) = by_target.get(&key) {
                let a = &mut actions[k];
                if strength(op) > strength(a.request.operation) {
                    a.request.operation = op;
                }
                if !a.rules.contains(&rule.id) {
                    a.rules.push(rule.id.clone());
                }
                continue;
            }
            let identity = &estate.identities[ident as usize];
            let credential_id = cred.map(|c| estate.credentials[c as usize].id.clone());
            let entitlements = if op == Operation::DetachEntitlements {
                let f = &facts.identities[ident as usize];
                f.overscope_direct
                    .iter()
                    .map(|&e| estate.entitlements[e as usize].id.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let source = &estate.sources[estate.identity_source[ident as usize] as usize];
            let disposition = if protected.covers(&identity.id)
                || credential_id
                    .as_deref()
                    .is_some_and(|c| protected.covers(c))
            {
                Disposition::Skip("protected subject".into())
            } else if !source.state.is_complete() {
                Disposition::Skip(format!(
                    "source {} was not read completely this pass",
                    source.name
                ))
            } else {
                Disposition::Act
            };
            by_target.insert(key, actions.len());
            actions.push(PlannedAction {
                request: ActionRequest {
                    operation: op,
                    provider: identity.provider,
                    identity_id: identity.id.clone(),
                    credential_id,
                    entitlements,
                },
                rules: vec![rule.id.clone()],
                disposition,
            });
        }
        actions.sort_by(|a, b| {
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
        Plan { actions }
    }
}
