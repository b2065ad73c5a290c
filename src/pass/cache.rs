//! The daemon's inventories between passes, and the index a targeted pass
//! finds its subjects' records in: a targeted pass copies and evaluates
//! what its subjects reach, not the estate, so its cost follows the
//! subjects and not the number of credentials.

use std::collections::HashMap;
use std::sync::Arc;

use nhi_contract::{Approval, Inventory, Provider};
use rayon::prelude::*;

use super::expiry::Expiries;
use crate::engine::estate::Estate;

/// A list of approvals shared between passes.
type Shared = Arc<Vec<Approval>>;

/// Inventories of the last full pass, by source name, with targeted
/// re-reads on top: the base a targeted pass re-reads its subjects on.
#[derive(Default)]
pub struct InventoryCache {
    inventories: HashMap<String, Inventory>,
    /// Built for a source order; dropped whenever an inventory changes, so
    /// it never points into an inventory it was not built from.
    index: Option<Index>,
    /// The approval sources' list and it with the inventories' approvals
    /// added, while neither changes.
    combined: Option<(Shared, Shared)>,
    /// The approval sources' list and its positions sorted by subject.
    by_subject: Option<(Shared, Vec<usize>)>,
    /// Every approval and when they end.
    expiries: Option<(Shared, Arc<Expiries>)>,
}

/// Where each source's records sit, sorted by the identity they belong to.
struct Index {
    /// The source names it was built for, in pass order.
    order: Vec<String>,
    /// Per source in `order` (`None`: not cached).
    parts: Vec<Option<Sorted>>,
    /// Credentials per source in `order`, counted as a full pass counts
    /// them (by the source of the identity they name, when one does).
    source_credentials: Vec<usize>,
}

/// Positions in one inventory's lists, sorted by identity id (stable: a
/// key's records keep their order).
struct Sorted {
    identities: Vec<usize>,
    credentials: Vec<usize>,
    grants: Vec<usize>,
    trusts: Vec<usize>,
    entitlements: Vec<usize>,
    approvals: Vec<usize>,
}

fn sorted_by<T: Sync>(items: &[T], key: impl Fn(&T) -> &str + Sync) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.par_sort_by(|&a, &b| key(&items[a]).cmp(key(&items[b])));
    order
}

/// The positions whose key is `id`, by binary search in `order`.
fn find<'a, T>(order: &'a [usize], items: &[T], key: impl Fn(&T) -> &str, id: &str) -> &'a [usize] {
    let lo = order.partition_point(|&k| key(&items[k]) < id);
    let n = order[lo..].partition_point(|&k| key(&items[k]) <= id);
    &order[lo..lo + n]
}

/// Copies of the records of `items` whose key is one of `ids`, in their
/// order in `items`.
fn pick<T: Clone>(items: &[T], order: &[usize], key: impl Fn(&T) -> &str, ids: &[&str]) -> Vec<T> {
    let mut at: Vec<usize> = ids
        .iter()
        .flat_map(|id| find(order, items, &key, id).iter().copied())
        .collect();
    at.sort_unstable();
    at.dedup();
    at.into_iter().map(|k| items[k].clone()).collect()
}

impl Sorted {
    fn of(inv: &Inventory) -> Sorted {
        Sorted {
            identities: sorted_by(&inv.identities, |i| i.id.as_str()),
            credentials: sorted_by(&inv.credentials, |c| c.identity.as_str()),
            grants: sorted_by(&inv.grants, |g| g.identity.as_str()),
            trusts: sorted_by(&inv.trusts, |t| t.from.as_str()),
            entitlements: sorted_by(&inv.entitlements, |e| e.id.as_str()),
            approvals: sorted_by(&inv.approvals, |a| a.subject.as_str()),
        }
    }

    fn has_identity(&self, inv: &Inventory, id: &str) -> bool {
        !find(&self.identities, &inv.identities, |i| i.id.as_str(), id).is_empty()
    }
}

/// What a targeted pass evaluates, and what it still needs of the whole.
pub(crate) struct Scoped {
    /// The subjects, every identity they may assume (directly or through
    /// others), and what those hold, are approved by and authenticate with.
    pub estate: Estate,
    /// Every approval (the approval sources' and the inventories'): the
    /// daemon's timers and issuance follow all of them. The sources' list
    /// itself when no inventory carries approvals.
    pub approvals: Arc<Vec<Approval>>,
    /// Credentials per source of the whole estate, for the blast-radius rail.
    pub source_credentials: Vec<usize>,
    /// When `approvals` end, sorted (kept while they stay the same list).
    pub expiries: Arc<Expiries>,
}

/// How a source came out of a targeted read.
pub(crate) enum Read {
    /// Its cached inventory is its state.
    Cached,
    /// It could not be read: unknown this pass.
    Failed(String),
}

impl InventoryCache {
    /// An empty cache (the first pass fills it).
    pub fn new() -> InventoryCache {
        InventoryCache::default()
    }

    /// Whether no source is cached.
    pub fn is_empty(&self) -> bool {
        self.inventories.is_empty()
    }

    /// Source `name`'s inventory.
    pub fn get(&self, name: &str) -> Option<&Inventory> {
        self.inventories.get(name)
    }

    /// Keep `inv` as source `name`'s inventory.
    pub fn insert(&mut self, name: &str, inv: Inventory) {
        self.index = None;
        self.combined = None;
        self.inventories.insert(name.to_string(), inv);
    }

    /// Forget source `name` (it failed: a targeted pass scans it whole).
    pub fn remove(&mut self, name: &str) {
        if self.inventories.remove(name).is_some() {
            self.index = None;
            self.combined = None;
        }
    }

    /// Every cached identity id, for what a targeted pass must still ask
    /// of the whole estate (an exception's pattern).
    pub fn identity_ids(&self) -> impl Iterator<Item = &str> {
        self.inventories
            .values()
            .flat_map(|inv| inv.identities.iter().map(|i| i.id.as_str()))
    }

    /// Build the index for `order` now, so the next targeted pass does not
    /// pay for it (a full daemon pass calls this after filling the cache).
    pub fn index_for(&mut self, order: &[&str]) {
        if self.index.as_ref().is_some_and(|ix| {
            ix.order
                .iter()
                .map(String::as_str)
                .eq(order.iter().copied())
        }) {
            return;
        }
        let parts: Vec<Option<Sorted>> = order
            .par_iter()
            .map(|name| self.inventories.get(*name).map(Sorted::of))
            .collect();
        // A full pass joins a credential to the last identity of that id
        // (in source order) and counts it for that identity's source.
        let owner = |id: &str| {
            (0..order.len()).rev().find(|&s| {
                matches!(
                    (&parts[s], self.inventories.get(order[s])),
                    (Some(p), Some(inv)) if p.has_identity(inv, id)
                )
            })
        };
        let mut source_credentials = vec![0usize; order.len()];
        for name in order {
            let Some(inv) = self.inventories.get(*name) else {
                continue;
            };
            let owners: Vec<Option<usize>> = inv
                .credentials
                .par_iter()
                .map(|c| owner(c.identity.as_str()))
                .collect();
            for s in owners.into_iter().flatten() {
                source_credentials[s] += 1;
            }
        }
        self.index = Some(Index {
            order: order.iter().map(|s| s.to_string()).collect(),
            parts,
            source_credentials,
        });
    }

    /// Build what targeted passes on `approvals` look up (the index, the
    /// approvals by subject, their ends) now, in the full pass that filled
    /// the cache, so the first targeted pass after it does not pay for it.
    pub(crate) fn warm(&mut self, sources: &[(&str, Provider)], approvals: Arc<Vec<Approval>>) {
        let reads: Vec<(&str, Provider, Read)> = sources
            .iter()
            .map(|(name, provider)| {
                let read = match self.inventories.contains_key(*name) {
                    true => Read::Cached,
                    false => Read::Failed("not read".into()),
                };
                (*name, *provider, read)
            })
            .collect();
        let _ = self.scoped(&reads, &[], approvals);
    }

    /// The estate a targeted pass evaluates for `subjects`: each source in
    /// pass order (as `reads` says it came out), holding the subjects and
    /// every identity they may assume, directly or through others (their
    /// privilege and scope are the subjects' facts), with those
    /// identities' credentials, grants, trusts and approvals, and the
    /// entitlements their grants name. Records keep their estate order, so
    /// ids resolve as in a full pass. `approvals` are the approval
    /// sources'.
    pub(crate) fn scoped(
        &mut self,
        sources: &[(&str, Provider, Read)],
        subjects: &[String],
        approvals: Arc<Vec<Approval>>,
    ) -> Scoped {
        let order: Vec<&str> = sources.iter().map(|(n, _, _)| *n).collect();
        self.index_for(&order);
        if !self
            .by_subject
            .as_ref()
            .is_some_and(|(from, _)| Arc::ptr_eq(from, &approvals))
        {
            let sorted = sorted_by(&approvals, |a| a.subject.as_str());
            self.by_subject = Some((Arc::clone(&approvals), sorted));
        }
        let by_subject = self.by_subject.as_ref().map_or(&[][..], |(_, o)| &o[..]);
        let Some(index) = self.index.as_ref() else {
            unreachable!("index_for builds the index")
        };
        let cached = |s: usize| -> Option<(&Inventory, &Sorted)> {
            if !matches!(sources[s].2, Read::Cached) {
                return None;
            }
            Some((self.inventories.get(order[s])?, index.parts[s].as_ref()?))
        };
        // Breadth-first over trust edges, across sources (an id names the
        // same principal wherever it is read).
        let reach =
            crate::engine::graph::assume_reach(subjects.iter().map(String::as_str), |id, visit| {
                for (inv, part) in (0..sources.len()).filter_map(cached) {
                    for &t in find(&part.trusts, &inv.trusts, |t| t.from.as_str(), id) {
                        visit(inv.trusts[t].to.as_str())
                    }
                }
            });
        let mut estate = Estate {
            approvals: pick(&approvals, by_subject, |a| &a.subject, &reach),
            ..Estate::default()
        };
        // Entitlements are joined by id to the first one of the estate.
        let mut named: Vec<&str> = Vec::new();
        for s in 0..sources.len() {
            let Some((inv, part)) = cached(s) else {
                continue;
            };
            for id in &reach {
                for &g in find(&part.grants, &inv.grants, |g| g.identity.as_str(), id) {
                    named.push(inv.grants[g].entitlement.as_str());
                }
            }
        }
        named.sort_unstable();
        named.dedup();
        for (s, (name, provider, read)) in sources.iter().enumerate() {
            if let Read::Failed(error) = read {
                estate.add_failed(name, *provider, error.clone());
                continue;
            }
            let Some((inv, part)) = cached(s) else {
                estate.add_failed(name, *provider, "not in the cache".into());
                continue;
            };
            let part_inv = Inventory {
                identities: pick(&inv.identities, &part.identities, |i| &i.id, &reach),
                credentials: pick(&inv.credentials, &part.credentials, |c| &c.identity, &reach),
                entitlements: pick(&inv.entitlements, &part.entitlements, |e| &e.id, &named),
                grants: pick(&inv.grants, &part.grants, |g| &g.identity, &reach),
                trusts: pick(&inv.trusts, &part.trusts, |t| &t.from, &reach),
                approvals: pick(&inv.approvals, &part.approvals, |a| &a.subject, &reach),
                coverage: inv.coverage.clone(),
            };
            estate.add_inventory(name, *provider, part_inv);
        }
        // Every approval, as a full pass has them: the sources' first, then
        // each inventory's in source order.
        let carried =
            (0..sources.len()).any(|s| cached(s).is_some_and(|(inv, _)| !inv.approvals.is_empty()));
        let all = match &self.combined {
            _ if !carried => Arc::clone(&approvals),
            Some((from, all)) if Arc::ptr_eq(from, &approvals) => Arc::clone(all),
            _ => {
                let mut all = (*approvals).clone();
                for s in 0..sources.len() {
                    if let Some((inv, _)) = cached(s) {
                        all.extend(inv.approvals.iter().cloned());
                    }
                }
                Arc::new(all)
            }
        };
        let source_credentials = index.source_credentials.clone();
        if carried {
            self.combined = Some((approvals, Arc::clone(&all)));
        }
        let expiries = match &self.expiries {
            Some((of, e)) if Arc::ptr_eq(of, &all) => Arc::clone(e),
            _ => {
                let e = Arc::new(Expiries::of(&all));
                self.expiries = Some((Arc::clone(&all), Arc::clone(&e)));
                e
            }
        };
        Scoped {
            estate,
            approvals: all,
            source_credentials,
            expiries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::findings;
    use crate::engine::plan::Protected;
    use crate::engine::rules::{RuleSet, RulesConfig};
    use crate::synth::{generate, synth_now, SynthSpec};

    /// Two sources whose ids collide (the same principal names read in two
    /// places, the later one winning the join as in a full pass), trust
    /// from one into the other, and a failed source between them.
    fn estate_parts() -> (Inventory, Inventory, Vec<Approval>) {
        let spec = |seed| SynthSpec {
            identities: 2_000,
            credentials: 6_000,
            seed,
        };
        let (a, mut approvals) = generate(spec(7));
        let (mut b, more) = generate(spec(8));
        // Half of b's principals are distinct, half share a's ids.
        let rename = |s: &mut String| *s = format!("{s}-b");
        let odd = |id: &str| id.bytes().last().is_some_and(|c| c % 2 == 1);
        b.identities
            .iter_mut()
            .filter(|i| odd(&i.id))
            .for_each(|i| rename(&mut i.id));
        b.credentials
            .iter_mut()
            .filter(|c| odd(&c.identity))
            .for_each(|c| rename(&mut c.identity));
        b.grants
            .iter_mut()
            .filter(|g| odd(&g.identity))
            .for_each(|g| rename(&mut g.identity));
        for t in b.trusts.iter_mut() {
            if odd(&t.from) {
                rename(&mut t.from);
            }
        }
        // a's users may assume b's renamed roles: chains cross sources.
        let mut a = a;
        let b_roles: Vec<String> = b
            .identities
            .iter()
            .filter(|i| i.id.ends_with("-b") && i.id.contains(":role/"))
            .map(|i| i.id.clone())
            .take(50)
            .collect();
        let users: Vec<String> = a
            .identities
            .iter()
            .filter(|i| i.id.contains(":user/"))
            .map(|i| i.id.clone())
            .take(50)
            .collect();
        for (u, r) in users.iter().zip(&b_roles) {
            a.trusts.push(nhi_contract::Trust {
                from: u.clone(),
                to: r.clone(),
            });
        }
        approvals.extend(more.into_iter().filter(|x| odd(&x.subject)).map(|mut x| {
            rename(&mut x.subject);
            x.id = format!("{}-b", x.id);
            x
        }));
        (a, b, approvals)
    }

    type View = Vec<(String, String)>;

    /// Findings and plan of `estate`, for the identities `keep` accepts.
    fn view(estate: &Estate, rules: &RuleSet, keep: &dyn Fn(&str) -> bool) -> (View, View) {
        let eval = crate::engine::evaluate(estate, rules, &Protected::default(), synth_now());
        let hits: Vec<_> = eval
            .hits
            .iter()
            .filter(|h| keep(findings::subject_id(estate, rules, h)))
            .copied()
            .collect();
        let mut found: View =
            findings::materialize_with_subjects(estate, &eval.facts, &eval.graph, rules, &hits)
                .into_iter()
                .map(|m| {
                    (
                        m.finding.identity_id.clone(),
                        serde_json::to_string(&m.finding).expect("json"),
                    )
                })
                .collect();
        found.sort();
        let mut plan: View = eval
            .plan
            .resolve(estate, &eval.facts, rules)
            .into_iter()
            .filter(|a| keep(&a.request.identity_id))
            .map(|a| {
                (
                    a.request.identity_id.clone(),
                    serde_json::to_string(&a).expect("json"),
                )
            })
            .collect();
        plan.sort();
        (found, plan)
    }

    #[test]
    fn a_scoped_estate_judges_its_subjects_as_the_whole_estate_does() {
        let (a, b, approvals) = estate_parts();
        let rules =
            RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
        let mut whole = Estate {
            approvals: approvals.clone(),
            ..Estate::default()
        };
        let approvals = Arc::new(approvals);
        whole.add_inventory("a", Provider::Aws, a.clone());
        whole.add_failed("c", Provider::Aws, "timeout".into());
        whole.add_inventory("b", Provider::Aws, b.clone());
        let eval = crate::engine::evaluate(&whole, &rules, &Protected::default(), synth_now());
        let mut counts = vec![0usize; 3];
        for i in eval.graph.credential_identity.iter().flatten() {
            counts[whole.identity_source[*i as usize] as usize] += 1;
        }
        let (all_found, all_plan) = view(&whole, &rules, &|_| true);

        let mut cache = InventoryCache::new();
        cache.insert("a", a);
        cache.insert("b", b);
        let sources = [
            ("a", Provider::Aws, Read::Cached),
            ("c", Provider::Aws, Read::Failed("timeout".into())),
            ("b", Provider::Aws, Read::Cached),
        ];
        // Subjects: users and roles of both sources, some chaining across
        // them, ids read in both, and an approval naming no identity.
        let mut subjects: Vec<String> = whole
            .identities
            .iter()
            .step_by(41)
            .map(|i| i.id.clone())
            .chain(whole.trusts.iter().step_by(97).map(|t| t.from.clone()))
            .collect();
        subjects.push("arn:aws:iam::1:user/nobody".into());
        subjects.sort();
        subjects.dedup();
        assert!(subjects.len() > 80, "{}", subjects.len());
        let (mut reached, mut nonempty) = (0usize, 0usize);
        for id in &subjects {
            let scoped = cache.scoped(&sources, std::slice::from_ref(id), approvals.clone());
            assert_eq!(scoped.source_credentials, counts);
            assert_eq!(*scoped.approvals, whole.approvals);
            assert!(
                Arc::ptr_eq(&scoped.approvals, &approvals),
                "shared, not copied"
            );
            assert_eq!(
                scoped.estate.sources.len(),
                3,
                "every source, failed included"
            );
            reached = reached.max(scoped.estate.identities.len());
            let mine = |s: &str| s == id;
            let (found, plan) = view(&scoped.estate, &rules, &mine);
            let want = |v: &View| -> View { v.iter().filter(|(s, _)| s == id).cloned().collect() };
            assert_eq!(found, want(&all_found), "findings of {id}");
            assert_eq!(plan, want(&all_plan), "plan of {id}");
            nonempty += usize::from(!found.is_empty());
        }
        assert!(
            nonempty > subjects.len() / 2,
            "{nonempty} of {}",
            subjects.len()
        );
        assert!(
            reached < whole.identities.len() / 10,
            "a subject's estate is what it reaches: {reached} of {}",
            whole.identities.len()
        );
    }

    #[test]
    fn the_index_follows_every_change_to_the_cache() {
        let (a, b, approvals) = estate_parts();
        let approvals = Arc::new(approvals);
        let mut cache = InventoryCache::new();
        cache.insert("a", a.clone());
        let sources = [("a", Provider::Aws, Read::Cached)];
        let id = a.credentials[0].identity.clone();
        let before = cache.scoped(&sources, std::slice::from_ref(&id), approvals.clone());
        let n = before.estate.credentials.len();
        assert!(n > 0);
        // A re-read that drops the subject's credentials is what the next
        // scoped estate holds: the index was rebuilt, not reused.
        let mut changed = a;
        changed.credentials.retain(|c| c.identity != id);
        cache.insert("a", changed);
        let after = cache.scoped(&sources, std::slice::from_ref(&id), approvals.clone());
        assert!(after.estate.credentials.is_empty());
        assert_eq!(
            after.source_credentials[0] + n,
            before.source_credentials[0]
        );
        // A source that left the cache is unknown, never empty.
        cache.remove("a");
        cache.insert("b", b);
        let gone = cache.scoped(&sources, std::slice::from_ref(&id), approvals);
        assert!(matches!(
            gone.estate.sources[0].state,
            crate::engine::estate::SourceState::Failed { .. }
        ));
    }
}
