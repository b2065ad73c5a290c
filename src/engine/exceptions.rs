//! Exceptions as code applied to rule hits: which findings carry an
//! accepted risk this pass. An excepted hit stays a finding (recorded,
//! reported as excepted); the plan never acts on it. Whether an exception
//! applies is decided at the pass instant, so one that has ended simply
//! stops matching and its findings are open again.

use nhi_contract::pattern::Syntax;
use nhi_contract::Timestamp;

use crate::engine::estate::Estate;
use crate::engine::facts::Facts;
use crate::engine::rules::{Hit, Kind, RuleSet};

/// Subject and credential patterns: `*` only, ASCII case ignored, as for
/// protected ids.
const PATTERN: Syntax = Syntax::STAR_ASCII_CASELESS;

/// Set `Hit::exception` on every hit an exception applying at `now` covers:
/// same rule, the identity's id matching `subject` and, when the exception
/// names `credential`, a credential finding whose credential id matches
/// it. Of several, the one ending last is kept (the finding shows the
/// acceptance that lasts).
pub fn apply(estate: &Estate, facts: &Facts, rules: &RuleSet, hits: &mut [Hit], now: Timestamp) {
    if estate.exceptions.is_empty() {
        return;
    }
    // Per rule index, the exceptions applying now; a handful per rule.
    let mut by_rule: Vec<Vec<u32>> = vec![Vec::new(); rules.rules.len()];
    for (i, e) in estate.exceptions.iter().enumerate() {
        if !e.applies_at(now) {
            continue;
        }
        if let Some(r) = rules.rules.iter().position(|r| r.id == e.rule) {
            by_rule[r].push(i as u32);
        }
    }
    for h in hits.iter_mut() {
        let Some(candidates) = by_rule.get(h.rule as usize).filter(|c| !c.is_empty()) else {
            continue;
        };
        let kind = rules.rules[h.rule as usize].subject;
        let (identity, credential): (Option<&str>, Option<&str>) = match kind {
            Kind::Credential => {
                let c = &estate.credentials[h.subject as usize];
                let ident = facts.credentials[h.subject as usize]
                    .identity
                    .map(|i| estate.identities[i as usize].id.as_str());
                (ident, Some(c.id.as_str()))
            }
            Kind::Identity => (
                Some(estate.identities[h.subject as usize].id.as_str()),
                None,
            ),
            Kind::Approval => (
                Some(estate.approvals[h.subject as usize].subject.as_str()),
                None,
            ),
        };
        let Some(identity) = identity else { continue };
        h.exception = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let e = &estate.exceptions[i as usize];
                PATTERN.matches(&e.subject, identity)
                    && match (&e.credential, credential) {
                        (None, _) => true,
                        (Some(p), Some(c)) => PATTERN.matches(p, c),
                        // A credential pattern covers credential findings only.
                        (Some(_), None) => false,
                    }
            })
            .max_by_key(|&i| estate.exceptions[i as usize].expires_at);
    }
}
