//! Facts per subject, computed from the graph: what rules are evaluated on.
//!
//! Facts are plain typed structs indexed like the estate's vectors, so the
//! compiled rule conditions read them directly (no per-subject maps).
//! Unknown stays unknown: an `Option` that is `None` makes every comparison
//! on it false, so a rule never fires on what could not be seen.

use chrono::Duration;
use nhi_contract::pattern::Syntax;
use nhi_contract::{Approval, CredentialKind, PrivilegeLevel, Timestamp, Usage};
use rayon::prelude::*;
use serde::Serialize;

use crate::engine::estate::Estate;
use crate::engine::federation;
use crate::engine::graph::Graph;

/// Approval scopes and protected ids: `*` only, ASCII case ignored.
const SCOPE: Syntax = Syntax::STAR_ASCII_CASELESS;

/// Where the best approval of a subject stands at evaluation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// No approval names it.
    None,
    /// Ended: past `expires_at`, or an emergency that was declared over.
    Expired,
    /// Revoked before its end.
    Revoked,
    /// Approved but not started yet.
    NotStarted,
    /// In force now.
    Valid,
}

impl ApprovalState {
    /// The snake_case name used in rules and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::None => "none",
            ApprovalState::Expired => "expired",
            ApprovalState::Revoked => "revoked",
            ApprovalState::NotStarted => "not_started",
            ApprovalState::Valid => "valid",
        }
    }
}

/// Facts about one approval record.
#[derive(Debug, Clone)]
pub struct ApprovalFacts {
    /// State at evaluation time.
    pub state: ApprovalState,
    /// When it effectively ends (expiry, or the emergency's end if earlier).
    pub end: Timestamp,
    /// Identity index of its subject, if the estate holds it.
    pub identity: Option<u32>,
    /// Approver and requester are the same person.
    pub self_approved: bool,
    /// The approver is also the assignee (who carries out the task).
    pub approver_is_assignee: bool,
    /// Whole hours from start to expiry.
    pub duration_hours: i64,
    /// An emergency approval whose emergency was declared over.
    pub emergency_ended: bool,
    /// An emergency approval still unexpired and unrevoked after its emergency ended.
    pub active_after_emergency: bool,
    /// Days until `end` (negative once past).
    pub expires_in_days: i64,
}

/// Facts about one identity.
#[derive(Debug, Clone, Default)]
pub struct IdentityFacts {
    /// Days since creation.
    pub age_days: Option<i64>,
    /// Days since last use.
    pub days_since_last_use: Option<i64>,
    /// Active credentials of any kind.
    pub active_credentials: i64,
    /// Active access keys.
    pub active_access_keys: i64,
    /// Admin-equivalent by what it holds itself (not through assume-role).
    pub admin_direct: bool,
    /// Admin-equivalent directly or through assume-role chains.
    pub admin: bool,
    /// Highest privilege reachable.
    pub privilege: PrivilegeLevel,
    /// At least one valid approval names it.
    pub approved: bool,
    /// Approvals naming it, in any state.
    pub approval_count: i64,
    /// Entitlements it holds itself (directly, through a group or as
    /// eligible) that no valid approval's scope covers, each once.
    pub overscope_direct: Vec<u32>,
    /// Those of `overscope_direct` it holds directly and actively (see
    /// [`held_directly`]): what detaching entitlements may remove. One held
    /// only through a group or as eligible is changed elsewhere (the
    /// membership, the eligibility), never by detaching it from this identity.
    pub detachable: Vec<u32>,
    /// Entitlements reachable only through assume-role chains, beyond scope.
    pub overscope_transitive: Vec<u32>,
    /// Identities reachable through assume-role chains.
    pub assumable: i64,
    /// Entitlements it holds directly and actively whose last use was read
    /// (see [`UnusedGrant`]), each once.
    pub unused: Vec<UnusedGrant>,
    /// The longest any of `unused` has gone without use, in days.
    pub entitlement_unused_days: Option<i64>,
    /// Whether it has an owner (an owner node in the graph).
    pub has_owner: bool,
}

/// How long an entitlement held directly has gone without use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnusedGrant {
    /// Entitlement index.
    pub entitlement: u32,
    /// Grant index (its `last_used`, for evidence).
    pub grant: u32,
    /// Whole days since its last use; for one never used in the provider's
    /// tracking period, the identity's age (the provider records no
    /// attachment time, so the grant is at most that old).
    pub days: i64,
}

/// Facts about one credential.
#[derive(Debug, Clone)]
pub struct CredentialFacts {
    /// Identity index, if known.
    pub identity: Option<u32>,
    /// Days since creation.
    pub age_days: Option<i32>,
    /// Days until expiry (negative once expired); `None` if it never expires.
    pub expires_in_days: Option<i32>,
    /// Days between creation and expiry.
    pub lifetime_days: Option<i32>,
    /// Days since last use; `None` if never used or unknown.
    pub days_since_last_use: Option<i32>,
    /// State of the best covering approval.
    pub approval_state: ApprovalState,
    /// The approval considered (best covering one), by index.
    pub approval: Option<u32>,
    /// Approvals covering it, in any state.
    pub approval_count: u32,
    /// Days until the considered approval ends.
    pub approval_expires_in_days: Option<i32>,
    /// Last use falls outside every valid covering approval's services/regions.
    pub used_outside_scope: bool,
    /// An expiry is recorded and is at or before now: it cannot
    /// authenticate, whatever the provider's own flag says.
    pub expired: bool,
    /// Whole days since the expiry, once expired (0 during the first day).
    pub days_since_expiry: Option<i32>,
    /// For a federated credential whose trust the source reported: what
    /// the rules read of it (boxed: most credentials hold a secret).
    pub federation: Option<Box<FederationFacts>>,
}

/// Whether a grant is held by the identity itself and in force: not
/// eligible (PIM, activated on demand) and not through a group (Entra ID
/// `group:<id>`, an AWS group ARN). An inline policy is the identity's own.
pub fn held_directly(g: &nhi_contract::Grant) -> bool {
    !g.eligible && !g.via.as_deref().is_some_and(via_group)
}

/// Whether a grant's `via` names a group: `group:<id>` (Entra ID), an AWS
/// group ARN, or `group/<name>` as snapshots write it (the snapshot
/// format's own example): a detach must never take such a grant for the
/// identity's own.
pub fn via_group(via: &str) -> bool {
    via.starts_with("group:")
        || via.starts_with("group/")
        || (via.starts_with("arn:") && via.contains(":group/"))
}

/// Whether a credential authenticates at `now`: the provider says it is
/// active and no recorded expiry has passed.
pub fn authenticates(cred: &nhi_contract::Credential, now: Timestamp) -> bool {
    cred.active && cred.expires.is_none_or(|e| e > now)
}

/// What the rules read of a federated credential's trust.
#[derive(Debug, Clone)]
pub struct FederationFacts {
    /// Why its trust is broad ([`crate::engine::federation::broad`]);
    /// `None` when it is not.
    pub broad: Option<String>,
    /// Its issuer's host, lowercase, when the issuer is an `https://` URL
    /// with a plain host.
    pub issuer_host: Option<String>,
    /// Its subjects, joined by `, ` (evidence).
    pub subjects: String,
    /// The condition keys it requires, joined by `, ` (evidence).
    pub conditions: String,
    /// It requires an `sts:ExternalId` value.
    pub requires_external_id: bool,
    /// It requires a condition pinning the caller to an organisation, an
    /// account or a principal ([`crate::engine::federation::restricted`]).
    pub restricted: bool,
}

/// All facts of a pass.
pub struct Facts {
    /// Evaluation instant.
    pub now: Timestamp,
    /// Per identity.
    pub identities: Vec<IdentityFacts>,
    /// Per credential.
    pub credentials: Vec<CredentialFacts>,
    /// Per approval.
    pub approvals: Vec<ApprovalFacts>,
}

/// Whole days, rounded down: something that expired an hour ago is at
/// -1 days, not 0.
fn days(d: Duration) -> i64 {
    d.num_seconds().div_euclid(86_400)
}

/// Days as stored per credential (i32 keeps a million of them small).
fn days32(d: Duration) -> i32 {
    days(d).clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

impl Facts {
    /// Compute every fact for the estate at `now`.
    pub fn compute(estate: &Estate, graph: &Graph, now: Timestamp) -> Facts {
        let approvals: Vec<ApprovalFacts> = estate
            .approvals
            .par_iter()
            .enumerate()
            .map(|(k, a)| approval_facts(a, now, graph.approval_subject(k as u32)))
            .collect();

        let n = estate.identities.len();
        let direct_priv: Vec<PrivilegeLevel> = (0..n as u32)
            .into_par_iter()
            .map(|i| {
                // The connector's assessment of the identity as a whole
                // (policies combined, boundary applied) wins over the
                // highest of its entitlements taken one by one.
                estate.identities[i as usize].privilege.unwrap_or_else(|| {
                    graph
                        .held(i)
                        .map(|e| estate.entitlements[e as usize].privilege)
                        .max()
                        .unwrap_or_default()
                })
            })
            .collect();
        let effective_priv = propagate_privilege(graph, &direct_priv);

        let ctx = Ctx {
            estate,
            graph,
            approvals: &approvals,
            now,
        };
        let identities: Vec<IdentityFacts> = (0..n as u32)
            .into_par_iter()
            .map_init(
                || Scratch::new(n),
                |scratch, i| {
                    ctx.identity_facts(
                        i,
                        direct_priv[i as usize],
                        effective_priv[i as usize],
                        scratch,
                    )
                },
            )
            .collect();
        let credentials: Vec<CredentialFacts> = (0..estate.credentials.len() as u32)
            .into_par_iter()
            .map(|c| ctx.credential_facts(c))
            .collect();
        Facts {
            now,
            identities,
            credentials,
            approvals,
        }
    }
}

/// An approval's state at `now` and its effective end (an emergency
/// declared over before `expires_at` ends it then).
pub fn approval_state(a: &Approval, now: Timestamp) -> (ApprovalState, Timestamp) {
    let ended_at = a.emergency.as_ref().and_then(|e| e.ended_at);
    let end = match ended_at {
        Some(e) if e < a.expires_at => e,
        _ => a.expires_at,
    };
    let state = if a.revoked_at.is_some_and(|r| r <= now) {
        ApprovalState::Revoked
    } else if now >= end {
        ApprovalState::Expired
    } else if now < a.starts() {
        ApprovalState::NotStarted
    } else {
        ApprovalState::Valid
    };
    (state, end)
}

fn approval_facts(a: &Approval, now: Timestamp, identity: Option<u32>) -> ApprovalFacts {
    let start = a.starts();
    let ended_at = a.emergency.as_ref().and_then(|e| e.ended_at);
    let (state, end) = approval_state(a, now);
    let revoked = state == ApprovalState::Revoked;
    let emergency_ended = ended_at.is_some_and(|e| e <= now);
    ApprovalFacts {
        state,
        end,
        identity,
        self_approved: a.approver.trim().eq_ignore_ascii_case(a.requester.trim()),
        approver_is_assignee: a
            .assignee
            .as_deref()
            .is_some_and(|s| a.approver.trim().eq_ignore_ascii_case(s.trim())),
        duration_hours: (a.expires_at - start).num_hours(),
        emergency_ended,
        active_after_emergency: emergency_ended && !revoked && now < a.expires_at,
        expires_in_days: days(end - now),
    }
}

/// Highest privilege reachable from each identity through assume-role
/// chains, by one pass over the trust graph's strongly connected components
/// (tarjan returns them so that every successor component comes first).
fn propagate_privilege(graph: &Graph, direct: &[PrivilegeLevel]) -> Vec<PrivilegeLevel> {
    let mut out = direct.to_vec();
    if graph.trust.edge_count() == 0 {
        return out;
    }
    for scc in petgraph::algo::tarjan_scc(&graph.trust) {
        let mut level = PrivilegeLevel::Read;
        for n in &scc {
            level = level.max(out[n.index()]);
            for m in graph.trust.neighbors(*n) {
                level = level.max(out[m.index()]);
            }
        }
        for n in &scc {
            out[n.index()] = level;
        }
    }
    out
}

/// Per-thread BFS scratch: a generation-stamped visited set, so each
/// identity's traversal costs only what it visits.
struct Scratch {
    seen: Vec<u32>,
    state: Vec<u8>,
    gen: u32,
    queue: Vec<(u32, bool)>,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch {
            seen: vec![0; n],
            state: vec![0; n],
            gen: 0,
            queue: Vec::new(),
        }
    }
}

struct Ctx<'a> {
    estate: &'a Estate,
    graph: &'a Graph,
    approvals: &'a [ApprovalFacts],
    now: Timestamp,
}

impl Ctx<'_> {
    fn identity_facts(
        &self,
        i: u32,
        direct: PrivilegeLevel,
        effective: PrivilegeLevel,
        scratch: &mut Scratch,
    ) -> IdentityFacts {
        let ident = &self.estate.identities[i as usize];
        let mut f = IdentityFacts {
            age_days: ident.created.map(|c| days(self.now - c)),
            days_since_last_use: ident.usage.last_used_at().map(|t| days(self.now - t)),
            admin_direct: direct == PrivilegeLevel::Admin,
            admin: effective == PrivilegeLevel::Admin,
            privilege: effective,
            has_owner: self.graph.owner_of(i).is_some(),
            ..IdentityFacts::default()
        };
        for c in self.graph.credentials_of(i) {
            let cred = &self.estate.credentials[c as usize];
            if authenticates(cred, self.now) {
                f.active_credentials += 1;
                if cred.kind == CredentialKind::AccessKey {
                    f.active_access_keys += 1;
                }
            }
        }
        self.unused_grants(i, &mut f);
        let mut valid: Vec<u32> = Vec::new();
        for a in self.graph.approvals_of(i) {
            f.approval_count += 1;
            if self.approvals[a as usize].state == ApprovalState::Valid {
                valid.push(a);
            }
        }
        f.approved = !valid.is_empty();
        let has_trust = self.graph.assumable(i).next().is_some();
        if !f.approved && !has_trust {
            return f;
        }
        // Walk the assume-role chains once: count what is reachable and, for
        // approved identities, what lies beyond every valid scope.
        let in_scope = |e: u32| self.entitlement_in_scope(e, &valid);
        if f.approved {
            let mut direct: Vec<u32> = Vec::new();
            for (e, g) in self.graph.held_grants(i) {
                if in_scope(e) {
                    continue;
                }
                if !f.overscope_direct.contains(&e) {
                    f.overscope_direct.push(e);
                }
                if held_directly(&self.estate.grants[g as usize]) {
                    direct.push(e);
                }
            }
            f.detachable = f
                .overscope_direct
                .iter()
                .copied()
                .filter(|e| direct.contains(e))
                .collect();
        }
        // Breadth-first over the trust graph. A node reached only through a
        // role the approval lets it assume is "covered": the approved role
        // brings its own approval, so nothing behind it counts as overscope.
        // Reached both ways, uncovered wins (state 2 beats 1).
        scratch.gen += 1;
        let gen = scratch.gen;
        scratch.seen[i as usize] = gen;
        scratch.state[i as usize] = 2;
        scratch.queue.clear();
        scratch.queue.push((i, false));
        let mut head = 0;
        while head < scratch.queue.len() {
            let (cur, covered) = scratch.queue[head];
            head += 1;
            for next in self.graph.assumable(cur) {
                let next_covered = covered || (f.approved && self.assume_approved(next, &valid));
                let want = if next_covered { 1 } else { 2 };
                let n = next as usize;
                if scratch.seen[n] == gen && scratch.state[n] >= want {
                    continue;
                }
                if scratch.seen[n] != gen {
                    f.assumable += 1;
                }
                scratch.seen[n] = gen;
                scratch.state[n] = want;
                if f.approved && !next_covered {
                    for e in self.graph.held(next) {
                        if !in_scope(e) && !f.overscope_transitive.contains(&e) {
                            f.overscope_transitive.push(e);
                        }
                    }
                }
                scratch.queue.push((next, next_covered));
            }
        }
        // Entitlements also held directly are reported as direct only.
        f.overscope_transitive
            .retain(|e| !f.overscope_direct.contains(e) && !self.holds(i, *e));
        f
    }

    /// Direct, active grants whose last use the source read: unknown (not
    /// read, or read as unknown) is left out, never taken as unused.
    fn unused_grants(&self, i: u32, f: &mut IdentityFacts) {
        for (e, g) in self.graph.held_grants(i) {
            let grant = &self.estate.grants[g as usize];
            if !held_directly(grant) {
                continue;
            }
            let days = match &grant.last_used {
                Some(Usage::Used { at, .. }) => Some(days(self.now - *at)),
                Some(Usage::Never) => f.age_days,
                Some(Usage::Unknown) | None => None,
            };
            let Some(days) = days else { continue };
            match f.unused.iter_mut().find(|u| u.entitlement == e) {
                // Held directly twice: the more recent use stands.
                Some(u) if days < u.days => {
                    u.days = days;
                    u.grant = g;
                }
                Some(_) => {}
                None => f.unused.push(UnusedGrant {
                    entitlement: e,
                    grant: g,
                    days,
                }),
            }
        }
        f.entitlement_unused_days = f.unused.iter().map(|u| u.days).max();
    }

    fn holds(&self, i: u32, e: u32) -> bool {
        self.graph.held(i).any(|x| x == e)
    }

    fn entitlement_in_scope(&self, e: u32, valid: &[u32]) -> bool {
        let ent = &self.estate.entitlements[e as usize];
        if valid.iter().any(|&a| {
            self.estate.approvals[a as usize]
                .scope
                .entitlements
                .iter()
                .any(|x| x == &ent.id)
        }) {
            return true;
        }
        // An entitlement whose contents the connector could not list is not
        // "nothing": only an explicit approval by id covers it.
        let actions = &ent.actions;
        !actions.is_empty()
            && actions.iter().all(|act| {
                valid.iter().any(|&a| {
                    self.estate.approvals[a as usize]
                        .scope
                        .actions
                        .iter()
                        .any(|p| SCOPE.covers(p, act))
                })
            })
    }

    fn assume_approved(&self, target: u32, valid: &[u32]) -> bool {
        let id = &self.estate.identities[target as usize].id;
        valid.iter().any(|&a| {
            self.estate.approvals[a as usize]
                .scope
                .assume
                .iter()
                .any(|p| SCOPE.matches(p, id))
        })
    }

    fn credential_facts(&self, c: u32) -> CredentialFacts {
        let cred = &self.estate.credentials[c as usize];
        let identity = self.graph.credential_identity[c as usize];
        let mut f = CredentialFacts {
            identity,
            age_days: cred.created.map(|t| days32(self.now - t)),
            expires_in_days: cred.expires.map(|t| days32(t - self.now)),
            lifetime_days: match (cred.created, cred.expires) {
                (Some(a), Some(b)) => Some(days32(b - a)),
                _ => None,
            },
            days_since_last_use: cred.usage.last_used_at().map(|t| days32(self.now - t)),
            approval_state: ApprovalState::None,
            approval: None,
            approval_count: 0,
            approval_expires_in_days: None,
            used_outside_scope: false,
            expired: cred.expires.is_some_and(|e| e <= self.now),
            days_since_expiry: cred
                .expires
                .filter(|e| *e <= self.now)
                .map(|e| days32(self.now - e)),
            federation: cred.federation.as_ref().map(|f| {
                Box::new(FederationFacts {
                    broad: federation::broad(f),
                    issuer_host: federation::issuer_host(&f.issuer),
                    subjects: f.subjects.join(", "),
                    conditions: f.conditions.join(", "),
                    requires_external_id: federation::requires_external_id(f),
                    restricted: federation::restricted(f),
                })
            }),
        };
        let Some(i) = identity else {
            return f;
        };
        let whole_identity = self
            .graph
            .approvals_of(i)
            .filter(|&a| self.estate.approvals[a as usize].credentials.is_empty());
        let named = self.graph.approvals_naming(c);
        let mut best: Option<(ApprovalState, Timestamp, u32)> = None;
        let mut any_valid_allows_use = false;
        let mut any_valid = false;
        for a in whole_identity.chain(named) {
            f.approval_count += 1;
            let af = &self.approvals[a as usize];
            let key = (af.state, af.end, a);
            if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                best = Some(key);
            }
            if af.state == ApprovalState::Valid {
                any_valid = true;
                if self.use_allowed(&cred.usage, &self.estate.approvals[a as usize]) {
                    any_valid_allows_use = true;
                }
            }
        }
        if let Some((state, end, a)) = best {
            f.approval_state = state;
            f.approval = Some(a);
            f.approval_expires_in_days = Some(days32(end - self.now));
        }
        f.used_outside_scope = any_valid && !any_valid_allows_use;
        f
    }

    /// Whether the recorded last use lies within an approval's services and
    /// regions. Unknown service or region counts as allowed: an anomaly is
    /// only raised on evidence.
    fn use_allowed(&self, usage: &Usage, a: &Approval) -> bool {
        let Usage::Used {
            service, region, ..
        } = usage
        else {
            return true;
        };
        let ok = |allowed: &[String], v: &Option<String>| match v {
            Some(v) if !allowed.is_empty() => allowed.iter().any(|p| SCOPE.matches(p, v)),
            _ => true,
        };
        ok(&a.scope.services, service) && ok(&a.scope.regions, region)
    }
}
