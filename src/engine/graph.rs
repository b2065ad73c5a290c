//! The correlation graph (petgraph): identities, credentials, entitlements,
//! approvals and owners, joined by the edges the facts are computed from.
//!
//! Node indices are laid out in blocks (identities first, then credentials,
//! entitlements, approvals, owners), so an estate index converts to a node
//! index by adding the block's offset, without a lookup table.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::engine::estate::Estate;

/// What a node stands for; the payload indexes the estate's vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// `estate.identities[i]`.
    Identity(u32),
    /// `estate.credentials[i]`.
    Credential(u32),
    /// `estate.entitlements[i]`.
    Entitlement(u32),
    /// `estate.approvals[i]`.
    Approval(u32),
    /// `Graph::owners[i]`.
    Owner(u32),
}

/// How two nodes relate. Edges point from the dependent to what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// credential → identity it authenticates as.
    AuthenticatesAs,
    /// identity → entitlement it holds (payload: grant index).
    Holds(u32),
    /// identity → identity it may assume.
    MayAssume,
    /// approval → identity it approves.
    Approves,
    /// approval → credential it names explicitly.
    ApprovesCredential,
    /// identity → owner.
    OwnedBy,
}

/// `from` and every identity they may assume, directly or through others,
/// in breadth-first order, each once; `assumes(id, visit)` visits what `id`
/// may assume. One walk for every scoped view of an estate (a targeted
/// pass's subjects, a trace's identities), over whatever index each keeps.
pub fn assume_reach<'a>(
    from: impl IntoIterator<Item = &'a str>,
    assumes: impl Fn(&'a str, &mut dyn FnMut(&'a str)),
) -> Vec<&'a str> {
    let mut reach: Vec<&'a str> = Vec::new();
    let mut seen: std::collections::HashSet<&'a str> = std::collections::HashSet::new();
    for id in from {
        if seen.insert(id) {
            reach.push(id);
        }
    }
    let mut head = 0;
    while let Some(&id) = reach.get(head) {
        head += 1;
        assumes(id, &mut |to| {
            if seen.insert(to) {
                reach.push(to);
            }
        });
    }
    reach
}

/// The joined estate.
pub struct Graph {
    /// The petgraph graph itself.
    pub g: DiGraph<Node, Edge, u32>,
    /// Identity-only trust graph (node i = identity i), for SCC condensation.
    pub trust: DiGraph<(), (), u32>,
    /// Identity index of each credential (`None` when it names an identity
    /// no source returned: such a credential is reported, never acted on).
    pub credential_identity: Vec<Option<u32>>,
    /// Distinct owners.
    pub owners: Vec<String>,
    n_ident: u32,
    n_cred: u32,
    n_ent: u32,
}

impl Graph {
    /// Join an estate. Dangling references (a grant of an unknown policy, a
    /// trust from an external principal) are skipped: they name nothing we
    /// could evaluate.
    pub fn build(estate: &Estate) -> Graph {
        let n_ident = estate.identities.len() as u32;
        let n_cred = estate.credentials.len() as u32;
        let n_ent = estate.entitlements.len() as u32;
        let n_appr = estate.approvals.len() as u32;
        let mut g = DiGraph::<Node, Edge, u32>::with_capacity(
            (n_ident + n_cred + n_ent + n_appr) as usize,
            (n_cred as usize) + estate.grants.len() + estate.trusts.len() * 2 + n_appr as usize,
        );
        for i in 0..n_ident {
            g.add_node(Node::Identity(i));
        }
        for i in 0..n_cred {
            g.add_node(Node::Credential(i));
        }
        for i in 0..n_ent {
            g.add_node(Node::Entitlement(i));
        }
        for i in 0..n_appr {
            g.add_node(Node::Approval(i));
        }

        let mut ident_ix: FxHashMap<&str, u32> = FxHashMap::default();
        ident_ix.reserve(n_ident as usize);
        for (i, id) in estate.identities.iter().enumerate() {
            ident_ix.insert(id.id.as_str(), i as u32);
        }
        let mut ent_ix: FxHashMap<&str, u32> = FxHashMap::default();
        for (i, e) in estate.entitlements.iter().enumerate() {
            ent_ix.entry(e.id.as_str()).or_insert(i as u32);
        }
        // Id lookups are the expensive part and independent: resolve them in
        // parallel, then add the edges in one sequential sweep.
        let ident = |s: &str| ident_ix.get(s).copied();
        let credential_identity: Vec<Option<u32>> = estate
            .credentials
            .par_iter()
            .map(|c| ident(c.identity.as_str()))
            .collect();
        let grant_ends: Vec<Option<(u32, u32)>> = estate
            .grants
            .par_iter()
            .map(|g| {
                Some((
                    ident(g.identity.as_str())?,
                    *ent_ix.get(g.entitlement.as_str())?,
                ))
            })
            .collect();
        let approval_subjects: Vec<Option<u32>> = estate
            .approvals
            .par_iter()
            .map(|a| ident(a.subject.as_str()))
            .collect();

        let dangling = credential_identity.iter().filter(|c| c.is_none()).count();
        if dangling > 0 {
            tracing::warn!(credentials = dangling, "credentials name an identity no source returned; they are reported, never acted on");
        }
        for (c, i) in credential_identity.iter().enumerate() {
            if let Some(i) = i {
                g.add_edge(
                    NodeIndex::new((n_ident + c as u32) as usize),
                    NodeIndex::new(*i as usize),
                    Edge::AuthenticatesAs,
                );
            }
        }
        for (k, ends) in grant_ends.iter().enumerate() {
            if let Some((i, e)) = ends {
                g.add_edge(
                    NodeIndex::new(*i as usize),
                    NodeIndex::new((n_ident + n_cred + e) as usize),
                    Edge::Holds(k as u32),
                );
            }
        }
        let mut trust =
            DiGraph::<(), (), u32>::with_capacity(n_ident as usize, estate.trusts.len());
        for _ in 0..n_ident {
            trust.add_node(());
        }
        for t in &estate.trusts {
            if let (Some(a), Some(b)) = (ident(t.from.as_str()), ident(t.to.as_str())) {
                if a != b {
                    g.add_edge(
                        NodeIndex::new(a as usize),
                        NodeIndex::new(b as usize),
                        Edge::MayAssume,
                    );
                    trust.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), ());
                }
            }
        }
        for (k, (a, subject)) in estate.approvals.iter().zip(&approval_subjects).enumerate() {
            let Some(i) = *subject else { continue };
            let an = NodeIndex::new((n_ident + n_cred + n_ent + k as u32) as usize);
            g.add_edge(an, NodeIndex::new(i as usize), Edge::Approves);
            if a.credentials.is_empty() {
                continue;
            }
            // Approvals naming credentials are few: find them among the
            // subject's own credentials rather than index every credential.
            let named: Vec<NodeIndex> = g
                .edges_directed(NodeIndex::new(i as usize), Direction::Incoming)
                .filter(|e| *e.weight() == Edge::AuthenticatesAs)
                .map(|e| e.source())
                .filter(|n| {
                    let c = n.index() - n_ident as usize;
                    a.credentials
                        .iter()
                        .any(|id| *id == estate.credentials[c].id)
                })
                .collect();
            for n in named {
                g.add_edge(an, n, Edge::ApprovesCredential);
            }
        }
        let mut owners: Vec<String> = Vec::new();
        let mut owner_ix: FxHashMap<&str, NodeIndex> = FxHashMap::default();
        for (i, id) in estate.identities.iter().enumerate() {
            let Some(owner) = id.owner.as_deref().map(str::trim).filter(|o| !o.is_empty()) else {
                continue;
            };
            let on = *owner_ix.entry(owner).or_insert_with(|| {
                owners.push(owner.to_string());
                g.add_node(Node::Owner(owners.len() as u32 - 1))
            });
            g.add_edge(NodeIndex::new(i), on, Edge::OwnedBy);
        }
        Graph {
            g,
            trust,
            credential_identity,
            owners,
            n_ident,
            n_cred,
            n_ent,
        }
    }

    /// Node of identity `i`.
    pub fn identity_node(&self, i: u32) -> NodeIndex {
        NodeIndex::new(i as usize)
    }

    /// Node of credential `c`.
    pub fn credential_node(&self, c: u32) -> NodeIndex {
        NodeIndex::new((self.n_ident + c) as usize)
    }

    /// Entitlement indices identity `i` holds directly.
    pub fn held(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        let base = self.n_ident + self.n_cred;
        self.g
            .edges_directed(self.identity_node(i), Direction::Outgoing)
            .filter(|e| matches!(e.weight(), Edge::Holds(_)))
            .map(move |e| e.target().index() as u32 - base)
    }

    /// Grants of identity `i`: (entitlement index, grant index), one per
    /// grant (an entitlement held two ways appears twice).
    pub fn held_grants(&self, i: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        let base = self.n_ident + self.n_cred;
        self.g
            .edges_directed(self.identity_node(i), Direction::Outgoing)
            .filter_map(move |e| match e.weight() {
                Edge::Holds(k) => Some((e.target().index() as u32 - base, *k)),
                _ => None,
            })
    }

    /// Identities identity `i` may assume directly.
    pub fn assumable(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.trust
            .neighbors_directed(NodeIndex::new(i as usize), Direction::Outgoing)
            .map(|n| n.index() as u32)
    }

    /// Approvals whose subject is identity `i`.
    pub fn approvals_of(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        let base = self.n_ident + self.n_cred + self.n_ent;
        self.g
            .edges_directed(self.identity_node(i), Direction::Incoming)
            .filter(|e| *e.weight() == Edge::Approves)
            .map(move |e| e.source().index() as u32 - base)
    }

    /// Approvals naming credential `c` explicitly.
    pub fn approvals_naming(&self, c: u32) -> impl Iterator<Item = u32> + '_ {
        let base = self.n_ident + self.n_cred + self.n_ent;
        self.g
            .edges_directed(self.credential_node(c), Direction::Incoming)
            .filter(|e| *e.weight() == Edge::ApprovesCredential)
            .map(move |e| e.source().index() as u32 - base)
    }

    /// Identity index of approval `k`'s subject, if the estate holds it.
    pub fn approval_subject(&self, k: u32) -> Option<u32> {
        let node = NodeIndex::new((self.n_ident + self.n_cred + self.n_ent + k) as usize);
        self.g
            .edges_directed(node, Direction::Outgoing)
            .find(|e| *e.weight() == Edge::Approves)
            .map(|e| e.target().index() as u32)
    }

    /// Credentials of identity `i`.
    pub fn credentials_of(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        let base = self.n_ident;
        self.g
            .edges_directed(self.identity_node(i), Direction::Incoming)
            .filter(|e| *e.weight() == Edge::AuthenticatesAs)
            .map(move |e| e.source().index() as u32 - base)
    }

    /// Owner of identity `i`, if it has one.
    pub fn owner_of(&self, i: u32) -> Option<&str> {
        self.g
            .edges_directed(self.identity_node(i), Direction::Outgoing)
            .find(|e| *e.weight() == Edge::OwnedBy)
            .and_then(|e| match self.g[e.target()] {
                Node::Owner(o) => self.owners.get(o as usize).map(String::as_str),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::assume_reach;
    use std::collections::HashMap;

    /// Breadth-first, each identity once, through cycles and chains, a
    /// start named twice kept once; what no one reaches is left out.
    #[test]
    fn assume_reach_follows_chains_and_cycles_once() {
        let edges: HashMap<&str, Vec<&str>> = HashMap::from([
            ("a", vec!["b", "c"]),
            ("b", vec!["d"]),
            ("c", vec!["a", "d"]),
            ("d", vec!["e"]),
            ("e", vec!["b"]),
            ("x", vec!["y"]),
        ]);
        let walk = |from: &[&'static str]| {
            assume_reach(from.iter().copied(), |id, visit| {
                for &to in edges.get(id).into_iter().flatten() {
                    visit(to)
                }
            })
        };
        assert_eq!(walk(&["a", "a"]), ["a", "b", "c", "d", "e"]);
        assert_eq!(walk(&["d"]), ["d", "e", "b"]);
        assert_eq!(walk(&["y", "q"]), ["y", "q"]);
        assert!(walk(&[]).is_empty());
    }
}
