//! The estate: every source's inventory and every approval, merged for one pass.
//!
//! Sources are kept apart by index so later stages know which source each
//! subject came from — a subject of a failed or partial source is never
//! resolved or remediated on the strength of this pass.

use std::ops::Range;

use nhi_contract::{
    Approval, Coverage, Credential, CredentialKind, Entitlement, Gap, Grant, Identity, Inventory,
    Provider, Trust,
};
use serde::{Deserialize, Serialize};

use crate::engine::facets::{self, Facets};

/// How a source fared in this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", from = "StoredSourceState")]
pub enum SourceState {
    /// Read completely.
    Complete,
    /// Read, but some things could not be seen.
    Partial {
        /// What could not be seen, in the source's words.
        gaps: Vec<String>,
        /// What the gaps blind: findings and actions depending on any of it
        /// are held; the rest of the source is judged.
        blinds: Facets,
    },
    /// Could not be read: everything it holds is unknown.
    Failed {
        /// Why.
        error: String,
    },
}

/// A source state as stored by any version: before facets, a partial
/// source kept `unseen_kinds` (credential kinds it could not list) and
/// `unseen_other` (anything else, which held the whole source).
#[derive(Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum StoredSourceState {
    Complete,
    Partial {
        gaps: Vec<String>,
        #[serde(default)]
        blinds: Option<Facets>,
        #[serde(default)]
        unseen_kinds: Vec<CredentialKind>,
        #[serde(default)]
        unseen_other: bool,
    },
    Failed {
        error: String,
    },
}

impl From<StoredSourceState> for SourceState {
    fn from(s: StoredSourceState) -> SourceState {
        match s {
            StoredSourceState::Complete => SourceState::Complete,
            StoredSourceState::Failed { error } => SourceState::Failed { error },
            StoredSourceState::Partial {
                gaps,
                blinds,
                unseen_kinds,
                unseen_other,
            } => {
                let blinds = blinds.unwrap_or_else(|| {
                    let kinds = unseen_kinds
                        .into_iter()
                        .fold(Facets::NONE, |f, k| f.with(Facets::credential_kind(k)));
                    if unseen_other {
                        kinds.with(Facets::WHOLE_SOURCE)
                    } else {
                        kinds
                    }
                });
                SourceState::Partial { gaps, blinds }
            }
        }
    }
}

impl SourceState {
    /// Whether the source was read completely.
    pub fn is_complete(&self) -> bool {
        matches!(self, SourceState::Complete)
    }

    /// What of `needs` this pass could not see: nothing (empty) when a
    /// finding or action depending on `needs` may be resolved or acted on.
    /// A failed source, or one blind to the whole source, hides everything.
    pub fn hides(&self, needs: Facets) -> Facets {
        match self {
            SourceState::Complete => Facets::NONE,
            SourceState::Failed { .. } => Facets::WHOLE_SOURCE,
            SourceState::Partial { blinds, .. } if blinds.contains(Facets::WHOLE_SOURCE) => {
                Facets::WHOLE_SOURCE
            }
            SourceState::Partial { blinds, .. } => blinds.and(needs),
        }
    }

    /// Whether this pass saw everything `needs` names (see [`Facets`]).
    pub fn sees(&self, needs: Facets) -> bool {
        self.hides(needs).is_empty()
    }
}

/// One configured source and how it fared.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Configured name.
    pub name: String,
    /// Provider.
    pub provider: Provider,
    /// Outcome.
    pub state: SourceState,
}

fn slice<T: Clone>(v: &[T], r: &Range<usize>) -> Option<Vec<T>> {
    v.get(r.clone()).map(<[T]>::to_vec)
}

/// Move `more` into `into`; the first source's vectors are taken as they
/// are, so a large single inventory is never copied (peak memory).
fn append<T>(into: &mut Vec<T>, mut more: Vec<T>) {
    if into.is_empty() {
        std::mem::swap(into, &mut more);
    } else {
        into.append(&mut more);
    }
}

/// Where one source's inventory sits in the estate's flat lists: each
/// source's items are appended together, so the inventory it returned is
/// exactly these ranges (kept as read: reports and the run's reading never
/// regroup by id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    /// Its identities.
    pub identities: Range<usize>,
    /// Its credentials.
    pub credentials: Range<usize>,
    /// Its entitlement definitions.
    pub entitlements: Range<usize>,
    /// Its grants.
    pub grants: Range<usize>,
    /// Its trust edges.
    pub trusts: Range<usize>,
    /// What it could not see, as it said.
    pub coverage: Coverage,
}

/// All inventories and approvals of one pass, flattened with source indices.
#[derive(Debug, Default)]
pub struct Estate {
    /// Per-source status, indexed by the `source` fields below.
    pub sources: Vec<SourceStatus>,
    /// Per source, where its inventory sits (`None`: failed, unknown).
    pub spans: Vec<Option<Span>>,
    /// All identities.
    pub identities: Vec<Identity>,
    /// Source index of each identity.
    pub identity_source: Vec<u32>,
    /// All credentials.
    pub credentials: Vec<Credential>,
    /// All entitlement definitions (ids unique per source).
    pub entitlements: Vec<Entitlement>,
    /// Source index of each entitlement.
    pub entitlement_source: Vec<u32>,
    /// All grants.
    pub grants: Vec<Grant>,
    /// Source index of each grant.
    pub grant_source: Vec<u32>,
    /// All trust edges.
    pub trusts: Vec<Trust>,
    /// All approvals, from approval sources and from inventories.
    pub approvals: Vec<Approval>,
    /// Exceptions as code, as read (whether each applies is decided at
    /// evaluation time).
    pub exceptions: Vec<nhi_contract::Exception>,
}

impl Estate {
    /// Record a source that scanned (completely or with gaps).
    pub fn add_inventory(&mut self, name: &str, provider: Provider, inv: Inventory) {
        let src = self.sources.len() as u32;
        let state = if inv.coverage.gaps.is_empty() {
            SourceState::Complete
        } else {
            SourceState::Partial {
                gaps: inv.coverage.gaps.iter().map(Gap::to_string).collect(),
                blinds: inv.coverage.gaps.iter().flat_map(Gap::blinds).collect(),
            }
        };
        self.sources.push(SourceStatus {
            name: name.to_string(),
            provider,
            state,
        });
        let after = |start: usize, n: usize| start..start.saturating_add(n);
        self.spans.push(Some(Span {
            identities: after(self.identities.len(), inv.identities.len()),
            credentials: after(self.credentials.len(), inv.credentials.len()),
            entitlements: after(self.entitlements.len(), inv.entitlements.len()),
            grants: after(self.grants.len(), inv.grants.len()),
            trusts: after(self.trusts.len(), inv.trusts.len()),
            coverage: inv.coverage,
        }));
        self.identity_source
            .extend(std::iter::repeat_n(src, inv.identities.len()));
        append(&mut self.identities, inv.identities);
        append(&mut self.credentials, inv.credentials);
        self.entitlement_source
            .extend(std::iter::repeat_n(src, inv.entitlements.len()));
        append(&mut self.entitlements, inv.entitlements);
        self.grant_source
            .extend(std::iter::repeat_n(src, inv.grants.len()));
        append(&mut self.grants, inv.grants);
        append(&mut self.trusts, inv.trusts);
        append(&mut self.approvals, inv.approvals);
    }

    /// Record a source that failed: its subjects are unknown this pass.
    pub fn add_failed(&mut self, name: &str, provider: Provider, error: String) {
        self.sources.push(SourceStatus {
            name: name.to_string(),
            provider,
            state: SourceState::Failed { error },
        });
        self.spans.push(None);
    }

    /// The gaps of source `source` that blind any of `held`, as the source
    /// named them (`directory roles`, `subscription s1`), for reasons.
    pub fn gaps_blinding(&self, source: u32, held: Facets) -> Vec<String> {
        let Some(Some(span)) = self.spans.get(source as usize) else {
            return Vec::new();
        };
        let mut out: Vec<String> = span
            .coverage
            .gaps
            .iter()
            .filter(|g| {
                let blinds: Facets = g.blinds().into_iter().collect();
                !blinds.and(held).is_empty() || blinds.contains(Facets::WHOLE_SOURCE)
            })
            .map(|g| g.unseen.to_string())
            .collect();
        out.dedup();
        out
    }

    /// Why a finding or action held by `held` (what source `source` hid of
    /// what it needs) is not judged: `source X could not read: privilege
    /// (directory roles)`.
    pub fn held_reason(&self, source: u32, held: Facets) -> String {
        let Some(status) = self.sources.get(source as usize) else {
            return format!("source #{source} is unknown");
        };
        if let SourceState::Failed { .. } = status.state {
            return format!("source {} was not read this pass", status.name);
        }
        let what: Vec<String> = held.blinds().into_iter().map(facets::name).collect();
        let gaps = self.gaps_blinding(source, held);
        format!(
            "source {} could not read: {} ({})",
            status.name,
            what.join(", "),
            gaps.join(", ")
        )
    }

    /// Source `i`'s inventory as it returned it (`None` if it failed or
    /// there is no such source). Approvals are not in it: they are the
    /// estate's, from every source.
    pub fn inventory_of(&self, i: usize) -> Option<Inventory> {
        let span = self.spans.get(i)?.as_ref()?;
        Some(Inventory {
            identities: slice(&self.identities, &span.identities)?,
            credentials: slice(&self.credentials, &span.credentials)?,
            entitlements: slice(&self.entitlements, &span.entitlements)?,
            grants: slice(&self.grants, &span.grants)?,
            trusts: slice(&self.trusts, &span.trusts)?,
            approvals: Vec::new(),
            coverage: span.coverage.clone(),
        })
    }
}
