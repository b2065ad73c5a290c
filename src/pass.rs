//! One pass, as a library: load → read approvals and sources → evaluate →
//! record. The CLI and the daemon call it; acting on its result is
//! [`crate::act`]'s, a layer above.
//!
//! Every input is validated before any source is contacted: the config and
//! rules when a [`Context`] is loaded, the approvals at the start of each
//! pass (a partly read approval set would make approved credentials look
//! unapproved). A source that fails to read is unknown, never empty.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nhi_contract::{ApprovalSource, InventorySource, Operation};
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::engine::estate::{Estate, SourceState, SourceStatus};
use crate::engine::facets::Facets;
use crate::engine::findings::{self, Finding};
use crate::engine::plan::{Held, Protected};
use crate::engine::rules::RuleSet;
use crate::store::journal::Entry;
use crate::store::{RunRecord, SourcedFinding, SqlStore, Store};

mod cache;
mod expiry;
pub use cache::InventoryCache;

/// What every pass runs with, loaded and checked once: the daemon keeps one
/// across passes, a one-shot command loads one. The store is opened by the
/// first pass, after its approvals are read, so invalid input never
/// creates or touches it.
pub struct Context {
    /// The configuration (shared with every pass's result).
    pub cfg: Arc<Config>,
    /// The rules it selects.
    pub rules: RuleSet,
    /// Subjects never acted on.
    pub protected: Protected,
    /// Where the config was read from (named in the audit log).
    pub path: PathBuf,
    inventory: Vec<Box<dyn InventorySource>>,
    approvals: Vec<Box<dyn ApprovalSource>>,
    /// The approvals as last read, shared while no source changed.
    approvals_read: tokio::sync::Mutex<SharedApprovals>,
    store: OnceCell<SqlStore>,
    /// Each AWS source's issuer, built on first issuance and kept: building
    /// one loads the SDK config and credential chain (most of a broker
    /// request's own time), and the SDK refreshes credentials itself.
    #[cfg(feature = "aws")]
    issuers: OnceCell<Vec<nhi_aws::AwsIssuer>>,
    /// The account each AWS source's own credentials belong to, by source,
    /// once `sts:GetCallerIdentity` has said (failures are not kept).
    #[cfg(feature = "aws")]
    caller_accounts: std::sync::Mutex<HashMap<String, String>>,
}

impl Context {
    /// Load and check the config at `path` (environment overrides applied)
    /// and its rules; build the sources from the registry.
    pub fn load(path: &Path) -> anyhow::Result<Context> {
        let cfg = Config::load(path, std::env::vars())?;
        Context::new(cfg, path)
    }

    /// A context for an already loaded `cfg` (read from `path`).
    pub fn new(cfg: Config, path: &Path) -> anyhow::Result<Context> {
        let rules = cfg.rule_set()?;
        Ok(Context {
            protected: Protected::new(&cfg.plan.protected),
            inventory: crate::sources::inventory_sources(&cfg.sources, &cfg.base),
            approvals: crate::sources::approval_sources(&cfg.approvals, &cfg.base),
            rules,
            cfg: Arc::new(cfg),
            path: path.to_path_buf(),
            approvals_read: tokio::sync::Mutex::default(),
            store: OnceCell::new(),
            #[cfg(feature = "aws")]
            issuers: OnceCell::new(),
            #[cfg(feature = "aws")]
            caller_accounts: std::sync::Mutex::default(),
        })
    }

    /// The issuer of every AWS source, in config order, built once.
    #[cfg(feature = "aws")]
    pub async fn aws_issuers(&self) -> &[nhi_aws::AwsIssuer] {
        self.issuers
            .get_or_init(|| async {
                let mut out = Vec::new();
                for s in &self.cfg.sources {
                    if let crate::sources::SourceConfig::Aws(c) = s {
                        out.push(nhi_aws::AwsIssuer::new(c).await);
                    }
                }
                out
            })
            .await
    }

    /// The account `issuer`'s own credentials belong to, asked once.
    #[cfg(feature = "aws")]
    pub async fn caller_account(
        &self,
        issuer: &nhi_aws::AwsIssuer,
    ) -> Result<String, nhi_contract::SourceError> {
        let known = self
            .caller_accounts
            .lock()
            .ok()
            .and_then(|m| m.get(issuer.source()).cloned());
        if let Some(a) = known {
            return Ok(a);
        }
        let a = issuer.caller_account().await?;
        if let Ok(mut m) = self.caller_accounts.lock() {
            m.insert(issuer.source().to_string(), a.clone());
        }
        Ok(a)
    }

    /// Add approval sources beyond the config's (an embedder's own ticket
    /// system, a test's): read by every pass like the configured ones.
    pub fn with_approval_sources(mut self, more: Vec<Box<dyn ApprovalSource>>) -> Context {
        self.approvals.extend(more);
        self
    }

    /// Read the exception files (see [`load_exceptions`]).
    pub fn read_exceptions(&self) -> anyhow::Result<Vec<nhi_contract::Exception>> {
        load_exceptions(&self.cfg, &self.rules).map_err(|p| {
            let lines: Vec<String> = p.0.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "{} problem(s) in exception files\n  {}",
                lines.len(),
                lines.join("\n  ")
            )
        })
    }

    /// Every approval as the next pass would see it: read from every
    /// source (a bad file fails here, located), with the webhook's
    /// revocations in force applied. For issuance, which must not hand out
    /// access a pass would already find revoked.
    pub async fn approvals_now(&self) -> anyhow::Result<Arc<Vec<nhi_contract::Approval>>> {
        let read = self.read_approvals(false).await?;
        let revoked = self.store().await?.revocations().await?;
        Ok(self.revoked(read.approvals, &revoked).await)
    }

    /// Every approval source read ([`read_approvals`]), sharing the last
    /// read while none changed. The lock keeps two readers (a pass, the
    /// broker) from pairing one source's "unchanged" with a read the other
    /// has not stored yet.
    /// With `once`, for a one-shot command: nothing is kept.
    pub async fn read_approvals(&self, once: bool) -> Result<ApprovalsRead, PassError> {
        let mut shared = self.approvals_read.lock().await;
        if once {
            *shared = SharedApprovals::default();
            return read_approvals(&self.approvals, None, true).await;
        }
        match read_approvals(&self.approvals, shared.read.as_ref(), false).await {
            Ok(read) => {
                shared.read = Some(read.clone());
                Ok(read)
            }
            Err(e) => {
                // Start again from whole reads.
                *shared = SharedApprovals::default();
                Err(e)
            }
        }
    }

    /// Forget the approvals kept for the next read: the shared read, its
    /// revoked copy, and what each source keeps.
    async fn release_approvals(&self) {
        *self.approvals_read.lock().await = SharedApprovals::default();
        for source in &self.approvals {
            source.release();
        }
    }

    /// `approvals` with the revocations in force applied: the same list
    /// when none names one of them, else a copy, kept for as long as the
    /// approvals and the revocations stay as they are.
    async fn revoked(
        &self,
        approvals: Arc<Vec<nhi_contract::Approval>>,
        revoked: &Revoked,
    ) -> Arc<Vec<nhi_contract::Approval>> {
        if revoked.is_empty() || !approvals.iter().any(|a| revoked.contains_key(&a.id)) {
            return approvals;
        }
        let mut shared = self.approvals_read.lock().await;
        if let Some((from, with, out)) = &shared.revoked {
            if Arc::ptr_eq(from, &approvals) && with == revoked {
                return Arc::clone(out);
            }
        }
        let mut copy = (*approvals).clone();
        apply_revocations(&mut copy, revoked);
        let out = Arc::new(copy);
        shared.revoked = Some((approvals, revoked.clone(), Arc::clone(&out)));
        out
    }

    /// The store, opened on first use.
    pub async fn store(&self) -> anyhow::Result<&SqlStore> {
        let location = self.cfg.store_location();
        Ok(self
            .store
            .get_or_try_init(|| async move { SqlStore::open(&location).await })
            .await?)
    }

    /// A full pass (`command` is recorded with the run).
    pub async fn pass(&self, command: &str) -> anyhow::Result<PassResult> {
        self.pass_scoped(command, None, None).await
    }
    /// A pass that keeps the inventories read in `cache`; with `targets`, it
    /// re-reads only their identities on top of the cache and plans actions
    /// only for them (everything else is as of the last full read, too old to
    /// act on). Targets naming nothing known fall back to a full pass.
    pub async fn pass_scoped(
        &self,
        command: &str,
        cache: Option<&mut InventoryCache>,
        targets: Option<&Targets>,
    ) -> anyhow::Result<PassResult> {
        let started = chrono::Utc::now();
        let mut laps = Laps::start();
        let progress = crate::progress::spinner();
        progress.set_message("reading config, rules and approvals");
        let (cfg, rules, protected) = (&self.cfg, &self.rules, &self.protected);
        let now = cfg.as_of.unwrap_or(started);
        // Approvals are local and strict: a bad file stops here, before the
        // store is touched or any provider is contacted.
        // A full pass that keeps no inventories is a one-shot command's:
        // nothing read is kept for a next pass.
        let once = cache.is_none() && targets.is_none();
        let read = self.read_approvals(once).await?;
        laps.lap("approvals");
        let exceptions = self.read_exceptions()?;
        // What records a source could not map may cover is held this pass.
        let held = read.held();
        let ApprovalsRead {
            approvals,
            unmapped,
        } = read;
        let store = self.store().await?;
        // A changed config is an audit event (its digest; the file may hold
        // nothing secret, but the log keeps only what identifies it).
        store
            .audit_config(&self.path.display().to_string(), &cfg.digest())
            .await?;
        // Revocations received by the webhook end approvals early; one naming
        // no approval is shown, then dropped, never kept silently.
        // Only whether each revocation's approval was read matters: a set
        // of those, not of every approval (270,000 at a million credentials).
        let asked: std::collections::HashSet<String> = store
            .revocation_list()
            .await?
            .into_iter()
            .filter(|r| r.withdrawn_at.is_none())
            .map(|r| r.approval_id)
            .collect();
        let known: std::collections::HashSet<&str> = match asked.is_empty() {
            true => Default::default(),
            false => approvals
                .iter()
                .map(|a| a.id.as_str())
                .filter(|id| asked.contains(*id))
                .collect(),
        };
        let unmatched_revocations = store
            .match_revocations(
                &known,
                nhi_contract::time::days(cfg.enforce.unmatched_revocation_days),
            )
            .await?;
        drop(known);
        let approvals = self.revoked(approvals, &store.revocations().await?).await;
        // A full pass that keeps no inventories is a one-shot command's:
        // nothing read is kept for a next pass, and the estate takes these
        // approvals rather than a copy (at a million credentials, each
        // copy is hundreds of megabytes held through the pass).
        if once {
            self.release_approvals().await;
        }
        // A targeted pass maps only the keys it was asked about: the whole
        // map (a key per ticket approval) is a full pass's to refresh.
        let tickets = ticket_subjects(&approvals, &unmapped, targets.map(|t| &t.tickets[..]));
        let unknown_ticket = targets.is_some_and(|t| {
            t.tickets
                .iter()
                .any(|k| tickets.get(k).is_none_or(Vec::is_empty))
        });
        let subjects: Option<Vec<String>> = targets
            .filter(|_| !unknown_ticket)
            .map(|t| {
                let mut ids = t.identities.clone();
                ids.extend(
                    approvals
                        .iter()
                        .filter(|a| t.approvals.contains(&a.id))
                        .map(|a| a.subject.clone()),
                );
                ids.extend(
                    t.tickets
                        .iter()
                        .filter_map(|k| tickets.get(k))
                        .flatten()
                        .cloned(),
                );
                ids.sort();
                ids.dedup();
                ids
            })
            .filter(|ids| !ids.is_empty());
        // Targets that made the pass full: so is its map.
        let tickets = if targets.is_some() && subjects.is_none() {
            ticket_subjects(&approvals, &unmapped, None)
        } else {
            tickets
        };
        laps.lap("store and targets");
        progress.set_message(format!("reading {} source(s)", cfg.sources.len()));
        // A targeted pass evaluates what its subjects reach, out of the
        // cache (one of its own when the caller keeps none); everything
        // else it needs of the whole estate comes with it.
        let mut local = None;
        let (mut estate, whole) = match (&subjects, cache) {
            (Some(ids), cache) => {
                let cache = match cache {
                    Some(c) => c,
                    None => local.insert(InventoryCache::new()),
                };
                let scoped = read_targeted(&self.inventory, approvals, cache, ids).await;
                let whole = Whole {
                    approvals: scoped.approvals,
                    expiries: scoped.expiries,
                    source_credentials: scoped.source_credentials,
                    cache: &*cache,
                };
                (scoped.estate, Some(whole))
            }
            // The estate owns its approvals: a copy of the shared read (the
            // read itself, in a one-shot pass: none is kept).
            (None, mut cache) => {
                let shared = cache.is_some().then(|| Arc::clone(&approvals));
                let estate = read_inventories(
                    &self.inventory,
                    Arc::unwrap_or_clone(approvals),
                    cache.as_deref_mut(),
                )
                .await;
                if let (Some(c), Some(shared)) = (cache, shared) {
                    let order: Vec<_> = self
                        .inventory
                        .iter()
                        .map(|s| (s.name(), s.provider()))
                        .collect();
                    c.warm(&order, shared);
                }
                (estate, None)
            }
        };
        estate.exceptions = exceptions;
        // An account a source could not read holds its subjects this pass.
        let mut held = held;
        held.hold_unread_accounts(&estate);
        progress.set_message(format!(
            "evaluating {} identities, {} credentials",
            estate.identities.len(),
            estate.credentials.len()
        ));
        laps.lap("inventories");
        // What a full pass read, kept with it so any past run can be
        // reported on (a targeted pass read its subjects only). Serialised
        // before the evaluation and the findings are made, and prepared
        // for the store (named by hash if read before, else cut and
        // packed), so its text and theirs are not held at once.
        let reading = match subjects {
            None => Some(
                crate::store::reading::Unprepared::of(&estate, rules)?
                    .prepare(store)
                    .await?,
            ),
            Some(_) => None,
        };
        laps.lap("serialise reading");
        let eval = crate::engine::evaluate(&estate, rules, protected, now);
        laps.lap("evaluate");
        tracing::info!(timings = ?eval.timings, hits = eval.hits.len(), "evaluated");
        // A targeted pass materialises and records its subjects' findings
        // only: the rest is as of the last full read, not seen by this pass.
        let scoped_hits: Vec<crate::engine::rules::Hit>;
        let hits = match &subjects {
            Some(ids) => {
                let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
                scoped_hits = eval
                    .hits
                    .iter()
                    .filter(|h| ids.contains(findings::subject_id(&estate, rules, h)))
                    .copied()
                    .collect();
                &scoped_hits
            }
            None => &eval.hits,
        };
        // Interrupted actions' targets, read before the grants are freed.
        let mut open = store.journal_open().await?;
        // A targeted pass read its subjects only: the rest is unseen.
        if let Some(ids) = &subjects {
            open.retain(|e| ids.contains(&e.request.identity_id));
        }
        let target_states = target_states(&estate, &held, &open);
        laps.lap("interrupted actions");
        // Each source's name shared by its findings.
        let source_names: Vec<Arc<str>> = estate
            .sources
            .iter()
            .map(|s| Arc::from(s.name.as_str()))
            .collect();
        let no_source: Arc<str> = Arc::from("");
        let mut sourced: Vec<SourcedFinding> =
            findings::materialize_with(&estate, &eval.facts, &eval.graph, rules, hits, |m| {
                SourcedFinding {
                    source: m.identity.map_or_else(
                        || Arc::clone(&no_source),
                        |i| Arc::clone(&source_names[estate.identity_source[i as usize] as usize]),
                    ),
                    credential_kind: m.credential_kind,
                    depends: m.depends,
                    finding: m.finding,
                }
            });
        // The run's own findings on what it could not map (a full pass's).
        sourced.extend(
            unmapped
                .iter()
                .filter(|_| subjects.is_none())
                .map(|u| SourcedFinding {
                    finding: u.finding(),
                    source: Arc::clone(&no_source),
                    credential_kind: None,
                    depends: Facets::NONE,
                }),
        );
        let mut rule_ids: Vec<String> = rules.rules.iter().map(|r| r.id.clone()).collect();
        // So a record mapped again resolves its finding.
        rule_ids.push(UNMAPPED_RULE.into());
        laps.lap("materialise");
        progress.set_message("recording the run");
        let (approvals, source_credentials) = match whole.as_ref() {
            Some(w) => (&w.approvals[..], w.source_credentials.clone()),
            None => {
                let mut counts = vec![0usize; estate.sources.len()];
                for i in eval.graph.credential_identity.iter().flatten() {
                    counts[estate.identity_source[*i as usize] as usize] += 1;
                }
                (&estate.approvals[..], counts)
            }
        };
        // The graph, the hits, the grants and the trusts are read no
        // further: freed before the plan step, not held through it (at a
        // million credentials, the pass's peak was that step's end). Here,
        // not aside: the step would allocate before they were gone.
        let crate::engine::Evaluation {
            graph,
            hits: all_hits,
            facts,
            plan: planned,
            ..
        } = eval;
        drop((
            graph,
            all_hits,
            std::mem::take(&mut estate.grants),
            std::mem::take(&mut estate.grant_source),
            std::mem::take(&mut estate.trusts),
        ));
        let mut plan = planned.resolve(&estate, &facts, rules);
        if let Some(ids) = &subjects {
            plan.retain(|a| ids.contains(&a.request.identity_id));
        }
        held.apply(&mut plan);
        // The credentials actions target, looked up once per credential
        // (FxHash: a million lookups of two ids each; SipHash was a tenth
        // of a second of them). On one core: filtered on every core, the
        // pass's peak grew by a hundred MiB the allocator kept.
        let targeted: rustc_hash::FxHashSet<(&str, &str)> = plan
            .iter()
            .filter_map(|a| {
                a.request
                    .credential_id
                    .as_deref()
                    .map(|c| (a.request.identity_id.as_str(), c))
            })
            .collect();
        let mut last_used = HashMap::new();
        let mut expires = HashMap::new();
        for c in estate
            .credentials
            .iter()
            .filter(|c| targeted.contains(&(c.identity.as_str(), c.id.as_str())))
        {
            if let Some(t) = c.usage.last_used_at() {
                last_used.insert(c.id.clone(), t);
            }
            if let Some(t) = c.expires {
                expires.insert((c.identity.clone(), c.id.clone()), t);
            }
        }
        // An exception ending re-opens its findings and lets enforce act:
        // its end is a pass too, on the identities it covers.
        let live_exceptions = || estate.exceptions.iter().filter(|e| e.expires_at > now);
        let exception_ends: Vec<_> = live_exceptions().map(|e| e.expires_at).collect();
        // Approvals and exceptions ending within a second of the next end
        // share its pass. An approval that federates a workload starts its
        // access at its start: the reconciler adds the credential then, not
        // at the next scheduled pass.
        let expiries = match whole.as_ref() {
            Some(w) => Arc::clone(&w.expiries),
            None => Arc::new(expiry::Expiries::of(approvals)),
        };
        let next_expiry = expiries
            .next(approvals, now, &exception_ends)
            .map(|(first, mut ids)| {
                let soon = first + chrono::Duration::seconds(1);
                for e in live_exceptions().filter(|e| e.expires_at <= soon) {
                    // Every identity it covers, not only those a targeted
                    // pass evaluated.
                    let all: Box<dyn Iterator<Item = &str>> = match &whole {
                        Some(w) => Box::new(w.cache.identity_ids()),
                        None => Box::new(estate.identities.iter().map(|i| i.id.as_str())),
                    };
                    ids.extend(
                        all.filter(|id| {
                            nhi_contract::pattern::Syntax::STAR_ASCII_CASELESS
                                .matches(&e.subject, id)
                        })
                        .map(str::to_string),
                    );
                }
                ids.sort();
                ids.dedup();
                (first, ids)
            });
        // Every identity's owner, for notify: a resolved finding's too.
        // Moved out, not copied: the estate ends below.
        let owners = estate
            .identities
            .iter_mut()
            .filter_map(|i| i.owner.take().map(|o| (std::mem::take(&mut i.id), o)))
            .collect();
        laps.lap("plan");
        // The estate ends here: its approvals, sources and exceptions move
        // into the result. The rest, and the evaluation, are not needed to
        // record the run: freed beside it, not held through its peak (at a
        // million credentials, gigabytes and a second to free).
        let approvals = match whole {
            Some(w) => w.approvals,
            None => Arc::new(std::mem::take(&mut estate.approvals)),
        };
        let sources = std::mem::take(&mut estate.sources);
        let exceptions = std::mem::take(&mut estate.exceptions);
        free_aside((estate, facts, planned));
        let summary = store
            .record_run(RunRecord {
                started_at: started,
                as_of: now,
                command,
                sources: &sources,
                rules: &rule_ids,
                findings: &sourced,
                held: &held,
                reading: reading.as_ref().map(|r| r.reading()),
                scope: subjects.as_deref(),
            })
            .await?;
        drop(reading);
        laps.lap("record");
        store.checkpoint().await;
        laps.lap("checkpoint");
        progress.finish_and_clear();
        tracing::debug!(run = summary.run_id, targeted = subjects.is_some(), phases = ?laps.marks, "pass timings");
        // Recorded: the findings move into the result, not copied.
        let list: Vec<Finding> = sourced.into_iter().map(|s| s.finding).collect();
        Ok(PassResult {
            approvals,
            owners,
            exceptions,
            unmatched_revocations,
            unmapped,
            tickets,
            target_states,
            next_expiry,
            targeted: subjects,
            cfg: Arc::clone(cfg),
            store: store.clone(),
            findings: list,
            plan,
            sources,
            source_credentials,
            last_used,
            expires,
            summary,
            now,
        })
    }
}

/// Drop `value` on a thread of its own, so the caller goes on while its
/// allocations are freed (inline if no thread can be started).
fn free_aside<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("free".into())
        .spawn(move || drop(value));
}

/// Where a pass spends its time, phase by phase (logged at debug level).
pub(crate) struct Laps {
    last: std::time::Instant,
    last_cpu: std::time::Duration,
    /// Each phase: its name, how long it took, the CPU time the process
    /// spent in it (against the wall time, how many cores it kept busy),
    /// and the process's resident memory (MiB) at its end and at its
    /// highest so far, where the platform tells: a phase whose highest is
    /// above its start's and its end's made the peak inside itself.
    pub(crate) marks: Vec<Mark>,
}

/// One phase of [`Laps`]: name, wall time, CPU time, memory.
pub(crate) type Mark = (
    &'static str,
    std::time::Duration,
    std::time::Duration,
    Option<Memory>,
);

/// Resident memory in MiB: now and the high-water mark so far.
#[derive(Clone, Copy)]
pub(crate) struct Memory {
    now: u64,
    peak: u64,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB (peak {})", self.now, self.peak)
    }
}

impl Laps {
    pub(crate) fn start() -> Laps {
        Laps {
            last: std::time::Instant::now(),
            last_cpu: cpu_time(),
            marks: Vec::with_capacity(10),
        }
    }

    /// Close the phase `name` ending now.
    pub(crate) fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        let cpu = cpu_time();
        let used = cpu.saturating_sub(self.last_cpu);
        self.marks.push((name, now - self.last, used, memory()));
        self.last = now;
        self.last_cpu = cpu;
    }
}

/// User and system CPU time of every thread of the process so far (zero
/// where the platform does not tell).
#[cfg(unix)]
fn cpu_time() -> std::time::Duration {
    // SAFETY: `getrusage` writes the struct it is given, which is
    // zero-initialised plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return std::time::Duration::ZERO;
    }
    let of = |t: libc::timeval| {
        std::time::Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + std::time::Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    of(usage.ru_utime) + of(usage.ru_stime)
}

#[cfg(not(unix))]
fn cpu_time() -> std::time::Duration {
    std::time::Duration::ZERO
}

/// The process's resident memory (Linux: `VmRSS` and `VmHWM` of
/// `/proc/self/status`), for phase logs; `None` elsewhere.
fn memory() -> Option<Memory> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(Memory {
        now: kib("VmRSS:")? / 1024,
        peak: kib("VmHWM:")? / 1024,
    })
}

/// Revocations in force, by approval id.
type Revoked = HashMap<String, chrono::DateTime<chrono::Utc>>;

/// The approvals a [`Context`] read last, and their revoked copy.
#[derive(Default)]
struct SharedApprovals {
    read: Option<ApprovalsRead>,
    /// The revoked copy of a read.
    revoked: Option<RevokedCopy>,
}

/// A revoked copy: the approvals it was made from (kept, so the pointer
/// it is recognised by stays theirs), the revocations, the copy.
type RevokedCopy = (
    Arc<Vec<nhi_contract::Approval>>,
    Revoked,
    Arc<Vec<nhi_contract::Approval>>,
);

/// End approvals early at the revocations in force (webhook events), by id;
/// an earlier recorded revocation stands.
fn apply_revocations(approvals: &mut [nhi_contract::Approval], revoked: &Revoked) {
    for a in approvals {
        if let Some(at) = revoked.get(&a.id) {
            a.revoked_at = Some(a.revoked_at.map_or(*at, |r| r.min(*at)));
        }
    }
}

/// Read the exception files of `cfg`, if it names a directory: every
/// problem located, and each exception's rule checked against `rules` (an
/// exception naming a rule that is not loaded would except nothing,
/// silently), before anything else runs.
pub fn load_exceptions(
    cfg: &Config,
    rules: &RuleSet,
) -> Result<Vec<nhi_contract::Exception>, nhi_approvals_as_code::Problems> {
    let Some(dir) = &cfg.exceptions.path else {
        return Ok(Vec::new());
    };
    let list = nhi_approvals_as_code::exceptions::load_dir(
        &cfg.base.join(dir),
        cfg.exceptions.max_exception_days,
    )?;
    let unknown: Vec<nhi_approvals_as_code::Problem> = list
        .iter()
        .filter(|e| !rules.rules.iter().any(|r| r.id == e.rule))
        .map(|e| {
            let (file, line, column) = nhi_approvals_as_code::split_source(&e.source);
            nhi_approvals_as_code::Problem {
                file,
                line,
                column,
                message: format!("exception {}: no loaded rule is named {}", e.id, e.rule),
            }
        })
        .collect();
    if unknown.is_empty() {
        Ok(list)
    } else {
        Err(nhi_approvals_as_code::Problems(unknown))
    }
}

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// An approval source failed: nothing is evaluated without approvals.
    #[error("approval source {name}: {error}")]
    Approvals {
        /// Source name.
        name: String,
        /// What went wrong (with file and line for files).
        error: nhi_contract::SourceError,
    },
}

/// A record an approval source could not map, with the source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmappedRecord {
    /// Approval source name.
    pub source: String,
    /// The record.
    pub record: nhi_contract::Unmapped,
}

impl UnmappedRecord {
    /// Why the subjects it may cover are held, as a skipped action says.
    pub fn reason(&self) -> String {
        format!(
            "held: approval record {} (source {}) could not be mapped ({}); the subjects it may cover are unknown this pass",
            self.record.reference, self.source, self.record.problem
        )
    }

    /// The finding the run records about it: rule-less, resolved by the
    /// first run that no longer reports it.
    pub fn finding(&self) -> Finding {
        Finding {
            rule_id: UNMAPPED_RULE.into(),
            title: "Approval record could not be mapped".into(),
            severity: crate::engine::rules::Severity::High,
            provider: None,
            identity_id: "nhi-assure".into(),
            credential_id: Some(format!("{}:{}", self.source, self.record.reference)),
            controls: ["NIST-800-53r5:AC-2".into(), "NIST-CSF-2.0:PR.AA-05".into()].into(),
            evidence: serde_json::json!({
                "source": self.source,
                "reference": self.record.reference,
                "url": self.record.url,
                "subjects": self.record.subjects,
                "problem": self.record.problem,
            })
            .into(),
            recommended_action: crate::engine::rules::Action::Flag,
            exception: None,
        }
    }
}

pub use crate::engine::findings::UNMAPPED_RULE;

/// Everything the approval sources read.
#[derive(Debug, Clone, Default)]
pub struct ApprovalsRead {
    /// Approvals, every source's.
    pub approvals: Arc<Vec<nhi_contract::Approval>>,
    /// Records found but not mapped, every source's.
    pub unmapped: Vec<UnmappedRecord>,
}

impl ApprovalsRead {
    /// What the unmapped records hold this pass: each subject one names,
    /// or everything when one names no subject (it may cover anyone).
    pub fn held(&self) -> Held {
        let mut held = Held::default();
        for u in &self.unmapped {
            if u.record.subjects.is_empty() {
                held.all.get_or_insert_with(|| u.reason());
            }
            for s in &u.record.subjects {
                held.subjects.entry(s.clone()).or_insert_with(|| u.reason());
            }
        }
        held
    }
}

/// Read every approval source. Any error stops the pass before an
/// inventory source is contacted; a record a source could not map does
/// not (it is returned, and holds what it may cover). When every source
/// says it reads as it last did ([`ApprovalSource::reread`]), `last` is
/// the read (shared, not copied). With `once`, each source reads whole
/// and keeps nothing ([`ApprovalSource::read_once`]).
pub async fn read_approvals(
    sources: &[Box<dyn ApprovalSource>],
    last: Option<&ApprovalsRead>,
    once: bool,
) -> Result<ApprovalsRead, PassError> {
    let failed = |src: &dyn ApprovalSource| {
        let name = src.name().to_string();
        move |error| PassError::Approvals { name, error }
    };
    let mut reads = Vec::with_capacity(sources.len());
    for src in sources {
        reads.push(match once {
            true => Some(src.read_once().await.map_err(failed(src.as_ref()))?),
            false => src.reread().await.map_err(failed(src.as_ref()))?,
        });
    }
    if let Some(last) = last.filter(|_| reads.iter().all(Option::is_none)) {
        tracing::debug!(
            approvals = last.approvals.len(),
            "approvals unchanged since the last read"
        );
        return Ok(last.clone());
    }
    let (mut approvals, mut unmapped) = (Vec::new(), Vec::new());
    for (src, read) in sources.iter().zip(reads) {
        // Unchanged itself, but its records are needed beside the others'.
        let read = match read {
            Some(r) => r,
            None => src.read().await.map_err(failed(src.as_ref()))?,
        };
        tracing::info!(
            source = src.name(),
            approvals = read.approvals.len(),
            unmapped = read.unmapped.len(),
            "approvals read"
        );
        // The first source's list taken whole, not copied.
        match approvals.is_empty() {
            true => approvals = read.approvals,
            false => approvals.extend(read.approvals),
        }
        unmapped.extend(read.unmapped.into_iter().map(|record| UnmappedRecord {
            source: src.name().to_string(),
            record,
        }));
    }
    Ok(ApprovalsRead {
        approvals: Arc::new(approvals),
        unmapped,
    })
}

/// The subjects of each ticket key: approvals' and unmapped records'
/// `reference`s (with `only`, of those keys alone).
fn ticket_subjects(
    approvals: &[nhi_contract::Approval],
    unmapped: &[UnmappedRecord],
    only: Option<&[String]>,
) -> HashMap<String, Vec<String>> {
    let wanted = |r: &str| only.is_none_or(|keys| keys.iter().any(|k| k == r));
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    if only.is_some_and(<[String]>::is_empty) {
        return out;
    }
    for a in approvals {
        if let Some(r) = a.reference.as_deref().filter(|r| wanted(r)) {
            out.entry(r.to_string())
                .or_default()
                .push(a.subject.clone());
        }
    }
    for u in unmapped.iter().filter(|u| wanted(&u.record.reference)) {
        out.entry(u.record.reference.clone())
            .or_default()
            .extend(u.record.subjects.iter().cloned());
    }
    for ids in out.values_mut() {
        ids.sort();
        ids.dedup();
    }
    out
}

/// Read every inventory source into an estate holding `approvals`,
/// concurrently. A source error marks that source failed (unknown) and the
/// pass goes on. What was read is kept in `cache` (the daemon
/// keeps one; a one-shot command does not pay for the copy), indexed for
/// the targeted passes that follow.
pub async fn read_inventories(
    sources: &[Box<dyn InventorySource>],
    approvals: Vec<nhi_contract::Approval>,
    mut cache: Option<&mut InventoryCache>,
) -> Estate {
    let mut estate = Estate {
        approvals,
        ..Estate::default()
    };
    // Sources are independent: read them concurrently.
    let reads = futures_util::future::join_all(sources.iter().map(|s| s.scan())).await;
    for (src, result) in sources.iter().zip(reads) {
        match result {
            Ok(inv) => {
                tracing::info!(
                    source = src.name(),
                    identities = inv.identities.len(),
                    credentials = inv.credentials.len(),
                    gaps = inv.coverage.gaps.len(),
                    "inventory read"
                );
                if let Some(c) = cache.as_deref_mut() {
                    c.insert(src.name(), inv.clone());
                }
                estate.add_inventory(src.name(), src.provider(), inv);
            }
            Err(e) => {
                tracing::error!(source = src.name(), error = %e, "source failed: its subjects are unknown this pass");
                if let Some(c) = cache.as_deref_mut() {
                    c.remove(src.name());
                }
                estate.add_failed(src.name(), src.provider(), e.to_string());
            }
        }
    }
    if let Some(c) = cache {
        let order: Vec<&str> = sources.iter().map(|s| s.name()).collect();
        c.index_for(&order);
    }
    estate
}

/// Collect the memory a full pass freed, while the daemon is idle: blocks
/// freed by another thread than their allocator's (the estate is freed
/// aside) wait on their pages until the allocating thread collects them,
/// and the next targeted pass (an approval's end) paid for that.
pub fn release_freed_memory() {
    let clock = std::time::Instant::now();
    // SAFETY: mi_collect takes no pointer; it walks mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) }
    tracing::debug!(took = ?clock.elapsed(), "freed memory collected");
}

/// What a targeted pass needs of the whole estate beside the part it
/// evaluates.
struct Whole<'a> {
    /// Every approval.
    approvals: Arc<Vec<nhi_contract::Approval>>,
    /// Credentials per source.
    source_credentials: Vec<usize>,
    /// When its approvals end.
    expiries: Arc<expiry::Expiries>,
    /// The inventories, for what covers identities by pattern.
    cache: &'a InventoryCache,
}

/// A targeted pass's read: each source's cached inventory with `subjects`
/// re-read on top (a source without one is scanned whole and cached), then
/// the estate of what the subjects reach ([`InventoryCache::scoped`]). A
/// source that fails is unknown this pass and leaves the cache.
async fn read_targeted(
    sources: &[Box<dyn InventorySource>],
    approvals: Arc<Vec<nhi_contract::Approval>>,
    cache: &mut InventoryCache,
    subjects: &[String],
) -> cache::Scoped {
    let reads = {
        let cache = &*cache;
        futures_util::future::join_all(sources.iter().map(|s| async move {
            match cache.get(s.name()) {
                Some(base) => s.refresh(base, subjects).await,
                None => s.scan().await.map(Some),
            }
        }))
        .await
    };
    let mut outcome = Vec::with_capacity(sources.len());
    for (src, result) in sources.iter().zip(reads) {
        let read = match result {
            Ok(fresh) => {
                let changed = fresh.is_some();
                if let Some(inv) = fresh {
                    cache.insert(src.name(), inv);
                }
                let inv = cache.get(src.name());
                tracing::info!(
                    source = src.name(),
                    identities = inv.map_or(0, |i| i.identities.len()),
                    credentials = inv.map_or(0, |i| i.credentials.len()),
                    gaps = inv.map_or(0, |i| i.coverage.gaps.len()),
                    subjects = subjects.len(),
                    changed,
                    "inventory read (targeted)"
                );
                cache::Read::Cached
            }
            Err(e) => {
                tracing::error!(source = src.name(), error = %e, "source failed: its subjects are unknown this pass");
                cache.remove(src.name());
                cache::Read::Failed(e.to_string())
            }
        };
        outcome.push((src.name(), src.provider(), read));
    }
    cache.scoped(&outcome, subjects, approvals)
}

/// What a pass produced, for the commands to print and enforce to act on.
pub struct PassResult {
    /// The configuration.
    pub cfg: Arc<Config>,
    /// The store the run was recorded in.
    pub store: SqlStore,
    /// Findings of the pass.
    pub findings: Vec<Finding>,
    /// The plan, in provider ids.
    pub plan: Vec<crate::engine::plan::ResolvedAction>,
    /// Source statuses.
    pub sources: Vec<crate::engine::estate::SourceStatus>,
    /// Credentials per source index, for the blast-radius share.
    pub source_credentials: Vec<usize>,
    /// Last use of each credential that an action targets, by id.
    pub last_used: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// Expiry of each credential an action targets, by (identity id,
    /// credential id), as this pass read it: the rails let the removal of
    /// an expired one skip the disable-first steps.
    pub expires: HashMap<(String, String), chrono::DateTime<chrono::Utc>>,
    /// The run as recorded.
    pub summary: crate::store::RunSummary,
    /// Evaluation instant.
    pub now: chrono::DateTime<chrono::Utc>,
    /// The next instant an approval ends (expiry, or an emergency's end),
    /// an exception ends or a federating approval starts, and the subjects
    /// concerned then: the daemon runs a targeted pass for them at that
    /// instant.
    pub next_expiry: Option<(chrono::DateTime<chrono::Utc>, Vec<String>)>,
    /// For a targeted pass, the identities it was limited to.
    pub targeted: Option<Vec<String>>,
    /// Subjects of each ticket (the `reference` of an approval or an
    /// unmapped record), as this pass read them: every ticket for a full
    /// pass, the keys it was asked about for a targeted one.
    pub tickets: HashMap<String, Vec<String>>,
    /// Approval records found but not mapped: what they may cover was held.
    pub unmapped: Vec<UnmappedRecord>,
    /// The approvals as this pass read them (revocations applied): what
    /// issuance follows after the plan's actions.
    pub approvals: Arc<Vec<nhi_contract::Approval>>,
    /// Webhook revocations in force that name no approval read this pass.
    pub unmatched_revocations: Vec<crate::store::journal::Revocation>,
    /// What this pass read of the targets of interrupted actions, by
    /// journal id (recovery re-checks them before finishing).
    pub target_states: HashMap<i64, TargetState>,
    /// The recorded owner of each identity read, by identity id (where
    /// notifications go).
    pub owners: HashMap<String, String>,
    /// The exceptions read this pass (notify says when one has ended).
    pub exceptions: Vec<nhi_contract::Exception>,
}

/// What a targeted pass is for: identities, and approvals whose subjects
/// are to be re-read (resolved once the approvals are read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Identity ids.
    pub identities: Vec<String>,
    /// Approval ids.
    pub approvals: Vec<String>,
    /// Ticket keys: the subjects of the approvals and unmapped records
    /// whose `reference` is one. A key naming nothing read makes the pass
    /// full (the ticket may approve anyone).
    pub tickets: Vec<String>,
}

impl PassResult {
    /// Why a command on this pass must not exit clean, if it must: a
    /// source failed or was partial (without `allow_partial`), every source
    /// failed, or `fail_on` was asked of a run with a failed source.
    /// An approval record that could not be mapped never lets a run exit
    /// clean, whatever `allow_partial` says: what it covers is unknown.
    pub fn unseen(&self, allow_partial: bool, fail_on: bool) -> Option<String> {
        if !self.unmapped.is_empty() {
            let refs: Vec<&str> = self
                .unmapped
                .iter()
                .map(|u| u.record.reference.as_str())
                .collect();
            return Some(format!(
                "{} approval record(s) could not be mapped ({}): the subjects they may cover were held",
                refs.len(),
                refs.join(", ")
            ));
        }
        unseen(&self.sources, allow_partial, fail_on)
    }

    /// Print the run summary and source warnings to stderr.
    pub fn report_summary(&self) {
        let s = &self.summary;
        eprintln!(
            "run {}: {} finding(s), {} new, {} resolved",
            s.run_id, s.findings, s.opened, s.resolved
        );
        for u in &self.unmapped {
            let url = u
                .record
                .url
                .as_deref()
                .map(|u| format!(" <{u}>"))
                .unwrap_or_default();
            let covers = if u.record.subjects.is_empty() {
                "it names no readable subject: every action of this run is held".to_string()
            } else {
                format!("held: {}", u.record.subjects.join(", "))
            };
            eprintln!(
                "warning: approval record {}{url} of source {} could not be mapped: {}; {covers}",
                u.record.reference, u.source, u.record.problem
            );
        }
        for r in &self.unmatched_revocations {
            eprintln!(
                "warning: the webhook revocation of {} names no approval any source returned (since {}); it is withdrawn after [enforce] unmatched_revocation_days (see `nhi-assure revocations list`)",
                r.approval_id,
                r.unmatched_since.as_deref().unwrap_or("now")
            );
        }
        for src in &self.sources {
            match &src.state {
                SourceState::Complete => {}
                SourceState::Failed { error } => eprintln!(
                    "warning: source {} is FAILED ({error}): everything it holds is unknown this run; its findings stay open and nothing of it is acted on",
                    src.name
                ),
                SourceState::Partial { gaps, blinds } => {
                    let held = if blinds.contains(Facets::WHOLE_SOURCE) {
                        "nothing of it is acted on or resolved this run".to_string()
                    } else {
                        format!(
                            "findings and actions that depend on {blinds} are held this run; the rest is judged"
                        )
                    };
                    eprintln!("warning: source {} is PARTIAL ({}): {held}", src.name, gaps.join("; "));
                }
            }
        }
    }
}

/// Why a run that read `sources` must not exit clean, if it must.
fn unseen(sources: &[SourceStatus], allow_partial: bool, fail_on: bool) -> Option<String> {
    let failed: Vec<&str> = sources
        .iter()
        .filter(|s| matches!(s.state, SourceState::Failed { .. }))
        .map(|s| s.name.as_str())
        .collect();
    let partial: Vec<&str> = sources
        .iter()
        .filter(|s| matches!(s.state, SourceState::Partial { .. }))
        .map(|s| s.name.as_str())
        .collect();
    if failed.len() == sources.len() {
        return Some("no source could be read: the run saw nothing".into());
    }
    if failed.is_empty() && partial.is_empty() {
        return None;
    }
    let what = || {
        let mut parts = Vec::new();
        if !failed.is_empty() {
            parts.push(format!("failed: {}", failed.join(", ")));
        }
        if !partial.is_empty() {
            parts.push(format!("partial: {}", partial.join(", ")));
        }
        parts.join("; ")
    };
    if !allow_partial {
        return Some(format!(
            "the run could not see everything ({}); --allow-partial accepts that",
            what()
        ));
    }
    if fail_on && !failed.is_empty() {
        return Some(format!(
            "--fail-on cannot pass on a run that could not see ({})",
            what()
        ));
    }
    None
}

/// What a pass read of an interrupted action's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Its source could not see what the action's outcome shows in (the
    /// credential's or identity's kind, the logins, who holds what) this
    /// pass: nothing can be said.
    Unseen,
    /// Already as the action leaves it (disabled, removed, detached): the
    /// call went through, or someone did it.
    Settled,
    /// Still as it was before the action.
    Unsettled,
}

/// The target state of each interrupted intent in `open`, by journal id,
/// as `estate` read it.
pub fn target_states(estate: &Estate, held: &Held, open: &[Entry]) -> HashMap<i64, TargetState> {
    let source = |name: &str| estate.sources.iter().find(|s| s.name == name);
    open.iter()
        .filter(|e| e.undo_of.is_none())
        .map(|e| {
            let r = &e.request;
            let identity = estate.identities.iter().find(|i| i.id == r.identity_id);
            // What the outcome shows in: the operation's own facet, the
            // credential's kind, the identity's kind (any kind, if the
            // identity is not there: a listing gap may be why).
            let needs = Facets::of_operation(r.operation)
                .with(
                    r.credential_kind
                        .map_or(Facets::NONE, Facets::credential_kind),
                )
                .with(identity.map_or(Facets::ALL_IDENTITY_KINDS, |i| {
                    Facets::identity_kind(i.kind)
                }));
            // A subject of an account the source could not read is absent
            // because it was not read, not because the action finished.
            let seen = source(&e.source).is_some_and(|s| s.state.sees(needs))
                && !held.unread(&r.identity_id);
            if !seen {
                return (e.id, TargetState::Unseen);
            }
            let credential = || {
                estate.credentials.iter().find(|c| {
                    Some(c.id.as_str()) == r.credential_id.as_deref() && c.identity == r.identity_id
                })
            };
            let settled = match r.operation {
                Operation::DisableCredential => credential().is_none_or(|c| !c.active),
                Operation::DeleteCredential => credential().is_none(),
                Operation::RemoveLogin => identity.is_none_or(|i| !i.human_login),
                Operation::DisableIdentity => identity.is_none_or(|i| !i.enabled),
                Operation::DetachEntitlements => !estate.grants.iter().any(|g| {
                    g.identity == r.identity_id && r.entitlements.contains(&g.entitlement)
                }),
                // Issuance actions are settled by their own reconcile step
                // (act::issue, act::federate), which read the journal, not
                // the estate.
                Operation::DenySessions
                | Operation::LiftSessionDeny
                | Operation::AddFederatedCredential
                | Operation::RemoveFederatedCredential => true,
            };
            let state = if settled {
                TargetState::Settled
            } else {
                TargetState::Unsettled
            };
            (e.id, state)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::Status;
    use nhi_contract::{
        ActionRequest, Coverage, Credential, CredentialKind, Gap, Identity, IdentityKind,
        Inventory, Provider, Unseen, Usage,
    };

    fn entry(id: i64, operation: Operation, credential: Option<&str>) -> Entry {
        Entry {
            id,
            run_id: 1,
            status: Status::Intent,
            request: ActionRequest {
                operation,
                provider: Provider::Azure,
                identity_id: "app-1".into(),
                credential_id: credential.map(str::to_string),
                credential_kind: credential.map(|_| CredentialKind::ClientSecret),
                entitlements: vec!["role-1".into()],
                federated: None,
            },
            source: "azure".into(),
            rules: Vec::new(),
            actor: "test".into(),
            planned_undo: None,
            before: None,
            after: None,
            undo: None,
            irreversible: None,
            via: None,
            error: None,
            undo_of: None,
            intent_at: String::new(),
            outcome_at: None,
        }
    }

    /// Directory roles unread: an interrupted disabling of a secret is
    /// still seen settled; an interrupted detaching is unknown.
    #[test]
    fn interrupted_actions_are_judged_by_what_their_outcome_shows_in() {
        let inv = Inventory {
            identities: vec![Identity {
                provider: Provider::Azure,
                id: "app-1".into(),
                kind: IdentityKind::Application,
                name: "app".into(),
                account: "tenant".into(),
                owner: None,
                created: None,
                usage: Usage::Unknown,
                enabled: true,
                tags: Default::default(),
                human_login: false,
                human_login_last_used: None,
                privilege: None,
                privilege_reason: None,
                provider_managed: false,
                attached_to: Vec::new(),
            }],
            credentials: vec![Credential {
                id: "secret-1".into(),
                identity: "app-1".into(),
                kind: CredentialKind::ClientSecret,
                created: None,
                expires: None,
                usage: Usage::Unknown,
                active: false,
                name: None,
                federation: None,
            }],
            coverage: Coverage {
                gaps: vec![Gap {
                    unseen: Unseen::DirectoryRoles,
                    reason: "403".into(),
                }],
            },
            ..Inventory::default()
        };
        let mut estate = Estate::default();
        estate.add_inventory("azure", Provider::Azure, inv);
        let open = [
            entry(1, Operation::DisableCredential, Some("secret-1")),
            entry(2, Operation::DetachEntitlements, None),
        ];
        let states = target_states(&estate, &Held::default(), &open);
        assert_eq!(states.get(&1), Some(&TargetState::Settled));
        assert_eq!(states.get(&2), Some(&TargetState::Unseen));
    }

    /// A target in an account its source could not read is absent from the
    /// pass because it was not read: unseen, never settled.
    #[test]
    fn an_interrupted_action_in_an_unread_account_is_unseen_not_settled() {
        let inv = Inventory {
            coverage: Coverage {
                gaps: vec![Gap {
                    unseen: Unseen::Account {
                        via_role: Some("arn:aws:iam::210987654321:role/scan".into()),
                        subjects: Some("app-".into()),
                    },
                    reason: "AccessDenied".into(),
                }],
            },
            ..Inventory::default()
        };
        let mut estate = Estate::default();
        estate.add_inventory("azure", Provider::Azure, inv);
        let mut held = Held::default();
        held.hold_unread_accounts(&estate);
        let open = [entry(1, Operation::DisableCredential, Some("secret-1"))];
        assert_eq!(
            target_states(&estate, &Held::default(), &open).get(&1),
            Some(&TargetState::Settled),
            "without the hold, a missing credential reads as removed"
        );
        assert_eq!(
            target_states(&estate, &held, &open).get(&1),
            Some(&TargetState::Unseen)
        );
        assert!(held
            .reason("app-1")
            .is_some_and(|r| r.contains("could not read account") && r.contains("AccessDenied")));
        assert!(held.reason("other-1").is_none());
    }
}
