//! Reports on a recorded run, for auditors and for machines: control
//! coverage per framework ([`coverage`]), findings as table / JSON / CSV,
//! OCSF ([`ocsf`]), SARIF ([`sarif`]), a self-contained HTML page
//! ([`html`]), the per-subject trace ([`trace`]) and run diffs ([`diff`]).
//!
//! Everything is read from the store (the run, the findings it saw, the
//! reading (what it read), the action journal), never from live sources:
//! a report on run 12 is the same today and next year.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::findings::Finding;
use crate::engine::rules::catalog::Catalogs;
use crate::store::journal::Entry;
use crate::store::runs::{RunInfo, Sighting};
use crate::store::{SqlStore, StoreError};

pub mod access;
pub mod commands;
pub mod coverage;
pub mod diff;
pub mod evidence;
pub mod format;
pub mod html;
pub mod listing;
pub mod ocsf;
pub mod output;
pub mod pretty;
pub mod render;
pub mod sarif;
pub mod trace;

use crate::store::reading::RunReading;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing recorded yet.
    #[error("the store holds no run yet: run `nhi-assure scan` first")]
    NoRuns,
    /// No such run.
    #[error("no run {0} in the store")]
    NoRun(i64),
    /// The run predates per-run detail, or was a targeted pass (which
    /// keeps none).
    #[error("run {0} has no recorded detail (a targeted pass, or older than report support); report on a full run")]
    NoDetail(i64),
    /// Stored data could not be read.
    #[error("stored data: {0}")]
    Data(#[from] serde_json::Error),
    /// A framework filter names no catalog.
    #[error("unknown framework {name:?} (known: {known})")]
    UnknownFramework {
        /// What was asked.
        name: String,
        /// What exists.
        known: String,
    },
    /// Rendering failed.
    #[error("rendering {what}: {message}")]
    Render {
        /// Which output.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// Writing failed.
    #[error("{path}")]
    Io {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Which run: `latest` or an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSel {
    /// The newest run.
    Latest,
    /// This run.
    Id(i64),
}

impl FromStr for RunSel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("latest") {
            return Ok(RunSel::Latest);
        }
        s.parse::<i64>()
            .map(RunSel::Id)
            .map_err(|_| format!("{s:?} is neither `latest` nor a run id"))
    }
}

impl SqlStore {
    /// Resolve a run selector to a run id that exists.
    pub async fn resolve_run(&self, sel: RunSel) -> Result<i64, ReportError> {
        match sel {
            // A targeted run keeps no reading: the latest full run is the
            // latest that can be reported on.
            RunSel::Latest => self
                .latest_detailed_run_id()
                .await?
                .ok_or(ReportError::NoRuns),
            RunSel::Id(id) => self
                .run_info(id)
                .await?
                .map(|r| r.id)
                .ok_or(ReportError::NoRun(id)),
        }
    }
}

/// A finding of the reported run with its lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFinding {
    /// Stable key across runs.
    pub fingerprint: String,
    /// Inventory source (empty for approval records).
    pub source: String,
    /// When its current lifecycle began (RFC 3339).
    pub first_seen: String,
    /// The finding (contract form).
    #[serde(flatten)]
    pub finding: Finding,
}

/// A finding resolved by the reported run.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedFinding {
    /// The finding as last seen.
    #[serde(flatten)]
    pub finding: ReportFinding,
    /// Start of the last run that saw it.
    pub last_seen: String,
    /// Start of the run that resolved it (the reported run).
    pub resolved_at: String,
}

/// Everything a report needs about one run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run.
    pub run: RunInfo,
    /// Its findings, worst first, read from the store page by page.
    pub findings: Findings,
    /// Findings this run resolved, as last seen (for OCSF `Close` events),
    /// read page by page too.
    pub resolved: Resolved,
    /// What it read.
    pub reading: RunReading,
    /// Journal entries of the run.
    pub journal: Vec<Entry>,
    /// Every journal entry up to this run (for traces).
    pub journal_upto: Vec<Entry>,
    /// Standing vs issued access per approval.
    pub access: Vec<access::ApprovalAccess>,
    /// Control catalogs.
    pub catalogs: Catalogs,
    /// Tool version.
    pub version: &'static str,
}

/// Fingerprints per page a report reads: a page of findings with their
/// evidence is a few MB.
const PAGE: usize = 2_000;
/// Pages read ahead of the slowest reader of a list: what several
/// readers (an evidence bundle's reports, written at once) hold between
/// them.
const AHEAD: usize = 4;

/// Reads pages of one run's findings with their lifecycles. Reports are
/// written by synchronous serialisers; a page is read on the runtime the
/// report was loaded on, and a reader waiting for one hands its worker
/// thread over (`block_in_place`), so the command needs the
/// multi-threaded runtime it runs on.
#[derive(Debug, Clone)]
struct Pager {
    store: SqlStore,
    handle: tokio::runtime::Handle,
    replayer: Arc<diff::Replayer>,
    run: Arc<RunInfo>,
}

/// What a list's pages hold: a run's findings, or those it resolved.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Findings,
    Resolved,
}

/// A page as its readers read it: built once from the store's rows, then
/// shared, never copied, by every reader (an evidence bundle has six).
#[derive(Debug)]
pub enum Page {
    /// Findings of the run, in report order.
    Findings(Vec<ReportFinding>),
    /// Findings the run resolved.
    Resolved(Vec<ResolvedFinding>),
}

/// What a [`Page`] holds, read in place through [`Shared`].
pub trait Paged: Sized {
    /// The page's items, if it holds this kind (none otherwise).
    #[doc(hidden)]
    fn items(page: &Page) -> &[Self];
}

impl Paged for ReportFinding {
    fn items(page: &Page) -> &[Self] {
        match page {
            Page::Findings(v) => v,
            Page::Resolved(_) => &[],
        }
    }
}

impl Paged for ResolvedFinding {
    fn items(page: &Page) -> &[Self] {
        match page {
            Page::Resolved(v) => v,
            Page::Findings(_) => &[],
        }
    }
}

/// One item of a page every reader shares: it reads as a `&T`, and is
/// cloned only where a caller keeps it.
pub struct Shared<T: Paged> {
    page: Arc<Page>,
    at: usize,
    kind: std::marker::PhantomData<fn() -> T>,
}

impl<T: Paged> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // `at` is an index of this page's items of `T`, given out by
        // [`Pager::stream`] and by nothing else.
        &T::items(&self.page)[self.at]
    }
}

impl<T: Paged + Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<T: Paged + std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The pages of one list of fingerprints, each read once from the store
/// for every reader of the list, on whatever thread: an evidence bundle
/// writes its six reports at once from one read of the findings. A page
/// is kept until every reader still reading has passed it, and no page
/// is read more than [`AHEAD`] pages ahead of the slowest reader, so
/// memory is a few pages whatever the number of findings. A reader that
/// starts after a page was dropped reads it again. A thread must not read
/// one list through two readers at once, one paused behind the other:
/// the one ahead would wait for it.
#[derive(Debug)]
struct Pages {
    keys: Vec<String>,
    kind: Kind,
    shelf: std::sync::Mutex<Shelf>,
    changed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Shelf {
    /// Each live reader's next page.
    readers: HashMap<u64, usize>,
    next_reader: u64,
    /// Pages read and still needed; an error is handed to every reader.
    ready: HashMap<usize, Result<Arc<Page>, String>>,
    /// Pages being read.
    reading: std::collections::HashSet<usize>,
}

impl Shelf {
    /// The page the slowest live reader needs next.
    fn slowest(&self) -> usize {
        self.readers.values().copied().min().unwrap_or(usize::MAX)
    }

    /// Drop pages every live reader has passed.
    fn evict(&mut self) {
        let slowest = self.slowest();
        self.ready.retain(|&n, _| n >= slowest);
    }
}

impl Pages {
    fn new(keys: Vec<String>, kind: Kind) -> Arc<Self> {
        Arc::new(Pages {
            keys,
            kind,
            shelf: Default::default(),
            changed: Default::default(),
        })
    }

    fn count(&self) -> usize {
        self.keys.len().div_ceil(PAGE)
    }

    fn chunk(&self, n: usize) -> &[String] {
        let start = n.saturating_mul(PAGE).min(self.keys.len());
        &self.keys[start..start.saturating_add(PAGE).min(self.keys.len())]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shelf> {
        // A reader that panicked left the shelf consistent: every change
        // is made whole under the lock.
        self.shelf.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One reader of a [`Pages`] list; registered when it asks for its first
/// page, and gone when dropped.
struct Reader<'a> {
    pages: &'a Arc<Pages>,
    pager: &'a Pager,
    id: Option<u64>,
}

impl Reader<'_> {
    /// Start reading page `n` on the runtime if nobody is and it is
    /// within [`AHEAD`] of the slowest reader; the task shelves it.
    fn start(&self, shelf: &mut Shelf, n: usize) {
        if n >= self.pages.count()
            || shelf.ready.contains_key(&n)
            || shelf.reading.contains(&n)
            || n >= shelf.slowest().saturating_add(AHEAD)
        {
            return;
        }
        shelf.reading.insert(n);
        let (store, replayer, run) = (
            self.pager.store.clone(),
            self.pager.replayer.clone(),
            self.pager.run.clone(),
        );
        let shelving = Shelving {
            pages: self.pages.clone(),
            n,
            read: Some(Err("the page's reader stopped".into())),
        };
        self.pager.handle.spawn(async move {
            let mut shelving = shelving;
            let fps = shelving.pages.chunk(shelving.n);
            shelving.read = Some(match store.sightings_of(fps, run.id).await {
                Ok(sightings) => {
                    let lives = replayer.replay(&sightings);
                    Ok(Arc::new(match shelving.pages.kind {
                        Kind::Findings => {
                            Page::Findings(findings_page(&run, fps, sightings, lives))
                        }
                        Kind::Resolved => {
                            Page::Resolved(resolved_page(&run, &replayer, sightings, lives))
                        }
                    }))
                }
                Err(e) => Err(e.to_string()),
            });
        });
    }

    /// Ask for page `n` to be read ahead.
    fn prefetch(&mut self, n: usize) {
        let mut shelf = self.pages.lock();
        self.join(&mut shelf);
        self.start(&mut shelf, n);
    }

    fn join(&mut self, shelf: &mut Shelf) -> u64 {
        *self.id.get_or_insert_with(|| {
            let id = shelf.next_reader;
            shelf.next_reader = id.wrapping_add(1);
            shelf.readers.insert(id, 0);
            id
        })
    }

    /// Page `n`, read by this reader or another, shared by both.
    fn take(&mut self, n: usize) -> Result<Arc<Page>, ReportError> {
        let pages = self.pages;
        let mut shelf = pages.lock();
        let me = self.join(&mut shelf);
        shelf.readers.insert(me, n);
        let read = loop {
            if shelf.ready.contains_key(&n) {
                shelf.readers.insert(me, n.saturating_add(1));
                let read = if shelf.slowest() > n {
                    shelf.ready.remove(&n)
                } else {
                    shelf.ready.get(&n).cloned()
                };
                shelf.evict();
                pages.changed.notify_all();
                break read;
            }
            self.start(&mut shelf, n);
            shelf = tokio::task::block_in_place(|| {
                pages.changed.wait(shelf).unwrap_or_else(|p| p.into_inner())
            });
        };
        drop(shelf);
        match read {
            Some(Ok(read)) => Ok(read),
            Some(Err(e)) => Err(ReportError::Render {
                what: "store",
                message: format!("reading a page of findings: {e}"),
            }),
            None => Err(ReportError::Render {
                what: "store",
                message: format!("page {n} of findings went missing"),
            }),
        }
    }
}

/// Shelves a page when its reading task ends, however it ends: a task
/// that panicked or was dropped with the runtime shelves an error, never
/// leaves readers waiting for a page nobody reads.
struct Shelving {
    pages: Arc<Pages>,
    n: usize,
    read: Option<Result<Arc<Page>, String>>,
}

impl Drop for Shelving {
    fn drop(&mut self) {
        let mut shelf = self.pages.lock();
        shelf.reading.remove(&self.n);
        if let Some(read) = self.read.take() {
            shelf.ready.insert(self.n, read);
        }
        shelf.evict();
        self.pages.changed.notify_all();
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            let mut shelf = self.pages.lock();
            shelf.readers.remove(&id);
            shelf.evict();
            self.pages.changed.notify_all();
        }
    }
}

impl Pager {
    /// Each page of `pages` through `page`, flattened, the next page read
    /// while one is handed out; an error ends the stream after it is
    /// yielded.
    fn stream<'a, T: Paged + 'a>(
        &'a self,
        pages: &'a Arc<Pages>,
    ) -> impl Iterator<Item = Result<Shared<T>, ReportError>> + 'a {
        let mut reader = Reader {
            pages,
            pager: self,
            id: None,
        };
        let mut failed = false;
        (0..pages.count()).flat_map(move |n| {
            if failed {
                return Vec::new();
            }
            reader.prefetch(n.saturating_add(1));
            match reader.take(n) {
                Ok(page) => (0..T::items(&page).len())
                    .map(|at| {
                        Ok(Shared {
                            page: page.clone(),
                            at,
                            kind: std::marker::PhantomData,
                        })
                    })
                    .collect(),
                Err(e) => {
                    failed = true;
                    vec![Err(e)]
                }
            }
        })
    }
}

/// The sighting of `list` (one fingerprint's) that covers run `run`.
fn covering(list: &mut [Sighting], run: i64) -> Option<&mut Sighting> {
    list.iter_mut()
        .find(|k| k.first_run <= run && run <= k.last_run)
}

/// Sightings grouped by fingerprint (they come ordered by fingerprint).
fn by_fingerprint(sightings: Vec<Sighting>) -> HashMap<String, Vec<Sighting>> {
    let mut out: HashMap<String, Vec<Sighting>> = HashMap::new();
    for k in sightings {
        out.entry(k.fingerprint.clone()).or_default().push(k);
    }
    out
}

/// Page `fps` of a run's findings, from their sightings and lifecycles.
fn findings_page(
    run: &RunInfo,
    fps: &[String],
    sightings: Vec<Sighting>,
    lives: diff::Lifecycle,
) -> Vec<ReportFinding> {
    let mut by_fp = by_fingerprint(sightings);
    fps.iter()
        .filter_map(|fp| {
            let list = by_fp.get_mut(fp)?;
            let seen = covering(list, run.id)?;
            Some(ReportFinding {
                first_seen: lives
                    .open
                    .get(fp)
                    .map(|l| l.first_seen.clone())
                    .unwrap_or_else(|| run.started_at.clone()),
                fingerprint: fp.clone(),
                source: std::mem::take(&mut seen.source),
                finding: seen.finding.take()?,
            })
        })
        .collect()
}

/// A page of the findings run `run` resolved, among candidates'
/// sightings and lifecycles.
fn resolved_page(
    run: &RunInfo,
    replayer: &diff::Replayer,
    sightings: Vec<Sighting>,
    lives: diff::Lifecycle,
) -> Vec<ResolvedFinding> {
    let started = |id: i64| {
        replayer
            .runs
            .binary_search_by_key(&id, |r| r.id)
            .ok()
            .map(|n| replayer.runs[n].started_at.clone())
            .unwrap_or_default()
    };
    let mut by_fp = by_fingerprint(sightings);
    let mut out = Vec::new();
    for l in lives
        .closed
        .iter()
        .filter(|l| l.resolved_run == Some(run.id))
    {
        let Some(seen) = by_fp
            .get_mut(&l.fingerprint)
            .and_then(|list| covering(list, l.last_run))
        else {
            continue;
        };
        let Some(finding) = seen.finding.take() else {
            continue;
        };
        out.push(ResolvedFinding {
            finding: ReportFinding {
                fingerprint: l.fingerprint.clone(),
                source: l.source.clone(),
                first_seen: l.first_seen.clone(),
                finding,
            },
            last_seen: started(l.last_run),
            resolved_at: run.started_at.clone(),
        });
    }
    // In fingerprint order already: `closed` is sorted by (resolved run,
    // fingerprint), and only this run is kept.
    out
}

/// A run's findings in report order — worst first, then by rule, identity
/// and subject (credential, approval record) — read from the store a page
/// at a time: a report holds their sort keys (a fingerprint and a
/// severity each) and one page, not a million findings with evidence.
#[derive(Debug, Clone)]
pub struct Findings {
    pager: Pager,
    keys: Arc<Pages>,
}

impl Findings {
    /// How many.
    pub fn len(&self) -> usize {
        self.keys.keys.len()
    }

    /// None at all.
    pub fn is_empty(&self) -> bool {
        self.keys.keys.is_empty()
    }

    /// The fingerprints, in report order.
    pub fn fingerprints(&self) -> &[String] {
        &self.keys.keys
    }

    /// Each finding in report order, read a page at a time.
    pub fn iter(&self) -> impl Iterator<Item = Result<Shared<ReportFinding>, ReportError>> + '_ {
        self.pager.stream(&self.keys)
    }

    /// Every finding, in memory: for a subset ([`Findings::only`]).
    pub fn collect(&self) -> Result<Vec<ReportFinding>, ReportError> {
        self.iter().map(|f| f.map(|f| (*f).clone())).collect()
    }

    /// Only the findings whose fingerprint `keep` accepts, in the same
    /// order (a trace's subject: nothing is read to choose them).
    pub fn only(&self, keep: impl Fn(&str) -> bool) -> Findings {
        Findings {
            pager: self.pager.clone(),
            keys: Pages::new(
                self.keys.keys.iter().filter(|k| keep(k)).cloned().collect(),
                Kind::Findings,
            ),
        }
    }
}

/// The findings a run resolved, by fingerprint, as the last run that saw
/// them had them; read a page at a time like [`Findings`]. Candidates are
/// the findings with an earlier sighting and none covering the run; the
/// replay of each says whether this run is the one that resolved it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pager: Pager,
    candidates: Arc<Pages>,
}

impl Resolved {
    /// Each resolved finding, by fingerprint.
    pub fn iter(&self) -> impl Iterator<Item = Result<Shared<ResolvedFinding>, ReportError>> + '_ {
        self.pager.stream(&self.candidates)
    }
}

/// A stream as a JSON array, item by item; a read error fails the write.
fn serialize_stream<S: serde::Serializer, T: Serialize>(
    s: S,
    items: impl Iterator<Item = Result<T, ReportError>>,
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error as _, SerializeSeq};
    let mut seq = s.serialize_seq(None)?;
    for item in items {
        seq.serialize_element(&item.map_err(S::Error::custom)?)?;
    }
    seq.end()
}

impl Serialize for Findings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_stream(s, self.iter())
    }
}

impl Serialize for Resolved {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_stream(s, self.iter())
    }
}

/// Report order of stored findings from their keys (fingerprint,
/// severity): worst first, then rule, identity and subject (the
/// fingerprint's parts, compared as text) — the order
/// [`crate::engine::findings::report_order`] gives the engine's findings.
fn stored_report_order(keys: Vec<(String, String)>) -> Vec<String> {
    let rank = |s: &str| {
        crate::engine::rules::Severity::ALL
            .iter()
            .position(|x| x.as_str() == s)
            .unwrap_or(0)
    };
    let mut ranked: Vec<(usize, String)> =
        keys.into_iter().map(|(fp, sev)| (rank(&sev), fp)).collect();
    ranked.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.split('|').cmp(b.1.split('|')))
    });
    ranked.into_iter().map(|(_, fp)| fp).collect()
}

/// Load a run's data from the store: everything but its findings, which
/// are read as they are written ([`Findings`], [`Resolved`]).
pub async fn load(
    store: &SqlStore,
    sel: RunSel,
    catalogs: Catalogs,
) -> Result<RunData, ReportError> {
    let mut laps = crate::pass::Laps::start();
    let id = store.resolve_run(sel).await?;
    let run = store.run_info(id).await?.ok_or(ReportError::NoRun(id))?;
    // What the run read (parsed on a blocking thread), the findings' sort
    // keys and the resolved candidates are read at once.
    let reading = async {
        let stored = store
            .run_reading(id)
            .await?
            .ok_or(ReportError::NoDetail(id))?;
        tokio::task::spawn_blocking(move || RunReading::from_stored(&stored))
            .await
            .map_err(|e| ReportError::Render {
                what: "reading",
                message: e.to_string(),
            })?
            .map_err(ReportError::from)
    };
    let keys = async {
        let keys = store.run_finding_keys(id).await?;
        Ok::<_, ReportError>(stored_report_order(keys))
    };
    let candidates = async { Ok::<_, ReportError>(store.resolved_candidates(id).await?) };
    let (reading, keys, candidates, replayer) =
        tokio::try_join!(reading, keys, candidates, diff::Replayer::load(store, id))?;
    laps.lap("reading and keys");
    let pager = Pager {
        store: store.clone(),
        handle: tokio::runtime::Handle::current(),
        replayer: Arc::new(replayer),
        run: Arc::new(run.clone()),
    };
    let findings = Findings {
        keys: Pages::new(keys, Kind::Findings),
        pager: pager.clone(),
    };
    let resolved = Resolved {
        candidates: Pages::new(candidates, Kind::Resolved),
        pager,
    };
    let journal_upto: Vec<Entry> = store
        .journal_list(None)
        .await?
        .into_iter()
        .filter(|e| e.run_id <= id)
        .collect();
    let journal = journal_upto
        .iter()
        .filter(|e| e.run_id == id)
        .cloned()
        .collect();
    let access = {
        let as_of = parse_ts(&run.as_of).unwrap_or_else(Utc::now);
        let started = parse_ts(&run.started_at).unwrap_or(as_of);
        let issued = store.issued_sessions(None).await?;
        access::compute(&reading, as_of, started, &issued, &journal_upto)
    };
    laps.lap("journal and access");
    tracing::debug!(run = id, phases = ?laps.marks, "report load timings");
    Ok(RunData {
        access,
        run,
        findings,
        resolved,
        reading,
        journal,
        journal_upto,
        catalogs,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Parse an RFC 3339 timestamp kept as text.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
