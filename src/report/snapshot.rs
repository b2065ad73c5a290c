//! What a run read, kept with the run: per source its state and inventory,
//! the approvals as read (revocations applied), the rules evaluated. From
//! it a report on a past run can rebuild the estate and recompute the facts
//! (covering approvals, their state) exactly as that run saw them.
//!
//! Ids and metadata only: the inventory model has no field for a secret.

use std::collections::HashMap;

use nhi_contract::{Approval, Inventory, Provider};
use serde::{Deserialize, Serialize};

use crate::estate::{Estate, SourceState};
use crate::rules::{Action, RuleSet, Severity};
use crate::store::runs::RunDetail;
use crate::store::{SourcedFinding, SqlStore, StoreError};

/// One source as a run read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSnapshot {
    /// Configured name.
    pub name: String,
    /// Provider.
    pub provider: Provider,
    /// How the read went.
    pub state: SourceState,
    /// What it returned; `None` for a failed source (unknown, not empty).
    pub inventory: Option<Inventory>,
}

/// A rule as evaluated by a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleInfo {
    /// Rule id.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it detects and why it matters.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// `credential`, `identity` or `approval`.
    pub subject: String,
    /// Recommended action.
    pub action: Action,
    /// How to fix it by hand.
    pub remediation: String,
    /// Controls, as `FRAMEWORK:ID`.
    pub controls: Vec<String>,
}

/// Everything a run read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSnapshot {
    /// Sources, in configuration order.
    pub sources: Vec<SourceSnapshot>,
    /// Approvals as read.
    pub approvals: Vec<Approval>,
    /// Rules evaluated.
    pub rules: Vec<RuleInfo>,
}

/// The rules of a rule set, as kept with a run.
pub fn rule_infos(rules: &RuleSet) -> Vec<RuleInfo> {
    rules
        .rules
        .iter()
        .map(|r| RuleInfo {
            id: r.id.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            severity: r.severity,
            subject: r.subject.as_str().to_string(),
            action: r.action,
            remediation: r.remediation.clone(),
            controls: r.controls.clone(),
        })
        .collect()
}

/// Regroup the flattened estate per source. Approvals carried by
/// inventories are already in `estate.approvals`: they are kept there only,
/// so rebuilding does not count them twice.
pub fn capture(estate: &Estate, rules: &RuleSet) -> RunSnapshot {
    let mut invs: Vec<Option<Inventory>> = estate
        .sources
        .iter()
        .map(|s| match s.state {
            SourceState::Failed { .. } => None,
            _ => Some(Inventory::default()),
        })
        .collect();
    let mut identity_source: HashMap<&str, usize> = HashMap::new();
    for (i, ident) in estate.identities.iter().enumerate() {
        let src = estate.identity_source[i] as usize;
        identity_source.entry(ident.id.as_str()).or_insert(src);
        if let Some(Some(inv)) = invs.get_mut(src) {
            inv.identities.push(ident.clone());
        }
    }
    // Credentials and trusts carry no source index: they go with their
    // identity's source (the snapshot connector rejects dangling ids).
    let first_read = invs.iter().position(Option::is_some).unwrap_or(0);
    let src_of = |id: &str| identity_source.get(id).copied().unwrap_or(first_read);
    for c in &estate.credentials {
        if let Some(Some(inv)) = invs.get_mut(src_of(&c.identity)) {
            inv.credentials.push(c.clone());
        }
    }
    for t in &estate.trusts {
        if let Some(Some(inv)) = invs.get_mut(src_of(&t.from)) {
            inv.trusts.push(t.clone());
        }
    }
    for (i, e) in estate.entitlements.iter().enumerate() {
        if let Some(Some(inv)) = invs.get_mut(estate.entitlement_source[i] as usize) {
            inv.entitlements.push(e.clone());
        }
    }
    for (i, g) in estate.grants.iter().enumerate() {
        if let Some(Some(inv)) = invs.get_mut(estate.grant_source[i] as usize) {
            inv.grants.push(g.clone());
        }
    }
    for (gaps, inv) in estate.source_gaps.iter().zip(invs.iter_mut()) {
        if let Some(inv) = inv {
            inv.coverage.gaps = gaps.clone();
        }
    }
    RunSnapshot {
        sources: estate
            .sources
            .iter()
            .zip(invs)
            .map(|(s, inventory)| SourceSnapshot {
                name: s.name.clone(),
                provider: s.provider,
                state: s.state.clone(),
                inventory,
            })
            .collect(),
        approvals: estate.approvals.clone(),
        rules: rule_infos(rules),
    }
}

impl RunSnapshot {
    /// Rebuild the estate the run evaluated.
    pub fn estate(&self) -> Estate {
        let mut e = Estate {
            approvals: self.approvals.clone(),
            ..Estate::default()
        };
        for s in &self.sources {
            match (&s.inventory, &s.state) {
                (Some(inv), _) => e.add_inventory(&s.name, s.provider, inv.clone()),
                (None, SourceState::Failed { error }) => {
                    e.add_failed(&s.name, s.provider, error.clone())
                }
                (None, _) => e.add_failed(&s.name, s.provider, "not recorded".into()),
            }
        }
        e
    }

    /// Parse a stored snapshot.
    pub fn from_stored(s: &crate::store::runs::StoredSnapshot) -> Result<Self, serde_json::Error> {
        Ok(RunSnapshot {
            sources: serde_json::from_str(&s.inventory)?,
            approvals: serde_json::from_str(&s.approvals)?,
            rules: serde_json::from_str(&s.rules)?,
        })
    }
}

/// Keep what run `run_id` read and the findings it saw.
pub async fn record(
    store: &SqlStore,
    run_id: i64,
    estate: &Estate,
    rules: &RuleSet,
    findings: &[SourcedFinding],
) -> Result<(), StoreError> {
    let snap = capture(estate, rules);
    let inventory = serde_json::to_string(&snap.sources)?;
    let approvals = serde_json::to_string(&snap.approvals)?;
    let rules = serde_json::to_string(&snap.rules)?;
    store
        .record_run_detail(
            run_id,
            RunDetail {
                inventory: &inventory,
                approvals: &approvals,
                rules: &rules,
                findings,
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Protected;
    use crate::rules::RulesConfig;
    use crate::synth::{generate, synth_now, SynthSpec};

    #[test]
    fn a_rebuilt_estate_evaluates_as_the_original() {
        let (inv, approvals) = generate(SynthSpec {
            identities: 300,
            credentials: 900,
            seed: 7,
        });
        let (inv2, _) = generate(SynthSpec {
            identities: 50,
            credentials: 100,
            seed: 8,
        });
        let mut estate = Estate {
            approvals,
            ..Estate::default()
        };
        estate.add_inventory("a", Provider::Aws, inv);
        estate.add_failed("b", Provider::Azure, "timeout".into());
        // A second source whose ids differ from the first's.
        let mut inv2 = inv2;
        let rename = |s: &mut String| *s = format!("second/{s}");
        inv2.identities.iter_mut().for_each(|i| rename(&mut i.id));
        inv2.credentials.iter_mut().for_each(|c| {
            rename(&mut c.id);
            rename(&mut c.identity);
        });
        inv2.entitlements.iter_mut().for_each(|e| rename(&mut e.id));
        inv2.grants.iter_mut().for_each(|g| {
            rename(&mut g.identity);
            rename(&mut g.entitlement);
        });
        inv2.trusts.iter_mut().for_each(|t| {
            rename(&mut t.from);
            rename(&mut t.to);
        });
        inv2.approvals.clear();
        estate.add_inventory("c", Provider::Aws, inv2);

        let rules =
            RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
        let snap = capture(&estate, &rules);
        // Through JSON, as stored.
        let stored = crate::store::runs::StoredSnapshot {
            inventory: serde_json::to_string(&snap.sources).expect("json"),
            approvals: serde_json::to_string(&snap.approvals).expect("json"),
            rules: serde_json::to_string(&snap.rules).expect("json"),
        };
        let back = RunSnapshot::from_stored(&stored).expect("parse");
        assert!(back.sources[1].inventory.is_none(), "failed stays unknown");
        let rebuilt = back.estate();
        assert_eq!(rebuilt.identities, estate.identities);
        assert_eq!(rebuilt.credentials.len(), estate.credentials.len());
        assert_eq!(rebuilt.approvals, estate.approvals);
        assert_eq!(
            serde_json::to_value(&rebuilt.sources).expect("json"),
            serde_json::to_value(&estate.sources).expect("json")
        );
        let hits = |e: &Estate| {
            let eval = crate::engine::evaluate(e, &rules, &Protected::default(), synth_now());
            let mut v: Vec<(u16, String)> = eval
                .hits
                .iter()
                .map(|h| {
                    let r = &rules.rules[h.rule as usize];
                    let subject = match r.subject {
                        crate::rules::Kind::Credential => {
                            e.credentials[h.subject as usize].id.clone()
                        }
                        crate::rules::Kind::Identity => e.identities[h.subject as usize].id.clone(),
                        crate::rules::Kind::Approval => e.approvals[h.subject as usize].id.clone(),
                    };
                    (h.rule, subject)
                })
                .collect();
            v.sort();
            v
        };
        let want = hits(&estate);
        assert!(!want.is_empty());
        assert_eq!(hits(&rebuilt), want);
        assert_eq!(back.rules.len(), rules.rules.len());
    }
}
