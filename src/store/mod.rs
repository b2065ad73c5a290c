//! The store: runs and findings with their lifecycle (first seen, last seen,
//! resolved), the action journal, webhook revocations and the leader lease.
//! One implementation over sqlx's `Any` driver serves both backends: a SQLite
//! file by default, PostgreSQL when several replicas share state. Queries are
//! written once in the dialect both accept (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); each backend has its own migrations.
//!
//! Lifecycle rule: a finding absent from this run is resolved only if its
//! rule was evaluated and the source it came from saw everything the
//! finding depends on (its `depends` facets: what its rule reads, its
//! credential's and identity's kinds). A failed source, or one blind to
//! what the finding reads, leaves it open — unknown is not empty. A gap
//! holds only what it blinds: a source that could not read directory roles
//! still resolves an expired approval's finding.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use chrono::SecondsFormat;
use nhi_contract::{CredentialKind, Timestamp};
use serde::Serialize;
use sha2::Digest;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Row};

pub mod audit;
mod batch;
pub mod issued;
pub mod journal;
pub mod lease;
pub mod notify;
mod open_state;
pub use open_state::LOCK_KEY as OPEN_STATE_LOCK;
mod packed;
pub mod reading;
mod replay;
pub mod runs;

use crate::engine::estate::SourceStatus;
use crate::engine::facets::Facets;
use crate::engine::findings::Finding;
use batch::Cell;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored JSON could not be read back.
    #[error("store data: {0}")]
    Data(#[from] serde_json::Error),
    /// The leader lease ran out or passed to another process: stop acting.
    #[error("the leader lease is no longer held by this process; not acting")]
    LeaseLost,
    /// A stored value is not one this version writes.
    #[error("store data: {0}")]
    Corrupt(String),
    /// The store location is not usable.
    #[error("store location {0}")]
    Location(String),
    /// The store could not be opened (location and message redacted).
    #[error("opening store {location}: {message}")]
    Open {
        /// The location, redacted.
        location: String,
        /// Why, with any secret of the location removed.
        message: String,
    },
}

/// A finding with the source it came from, ready to store.
#[derive(Debug, Clone)]
pub struct SourcedFinding {
    /// The finding.
    pub finding: Finding,
    /// Inventory source name (shared by the source's findings); empty for
    /// findings on approval records.
    pub source: std::sync::Arc<str>,
    /// Kind of the credential concerned, for credential findings.
    pub credential_kind: Option<CredentialKind>,
    /// What judging the finding depends on
    /// ([`crate::engine::findings::depends`]); kept with it, so a later run
    /// resolves it only if it saw all of that.
    pub depends: Facets,
}

impl AsRef<Finding> for SourcedFinding {
    fn as_ref(&self) -> &Finding {
        &self.finding
    }
}

/// What a stored finding of `source` depends on: its `depends` column, or
/// for a row written before the column existed (or by a version naming
/// facets this one does not know) the conservative set that reproduces the
/// rule those rows were written under: a gap in another credential kind
/// does not hold it, any other gap does; a finding without a source needs
/// every source complete.
pub(crate) fn stored_depends(depends: Option<Facets>, source: &str, kind: Option<&str>) -> Facets {
    depends.unwrap_or_else(|| {
        if source.is_empty() {
            Facets::EVERYTHING
        } else {
            let kind: Option<CredentialKind> =
                kind.and_then(|k| serde_json::from_value(serde_json::Value::String(k.into())).ok());
            Facets::conservative(kind)
        }
    })
}

/// Reads `depends` columns, each distinct text parsed once: a store written
/// by earlier versions repeats a few long lists on every row.
#[derive(Default)]
pub(crate) struct DependsReader(HashMap<String, Option<Facets>>);

impl DependsReader {
    /// `text` read back ([`Facets::from_stored`]); `None` when absent or
    /// not readable.
    pub(crate) fn read(&mut self, text: Option<&str>) -> Option<Facets> {
        let text = text?;
        if let Some(f) = self.0.get(text) {
            return *f;
        }
        let f = Facets::from_stored(text);
        // Bounded whatever a damaged store holds.
        if self.0.len() < 4_096 {
            self.0.insert(text.to_string(), f);
        }
        f
    }
}

/// Whether a run that read `sources` could have seen a finding of `source`
/// (empty: an approval naming an identity no source listed, which every
/// source must have seen) depending on `depends`.
pub(crate) fn seeable(sources: &[SourceStatus], source: &str, depends: Facets) -> bool {
    if source.is_empty() {
        return sources.iter().all(|s| s.state.sees(depends));
    }
    sources
        .iter()
        .find(|s| s.name == source)
        .is_some_and(|s| s.state.sees(depends))
}

/// What one run did to the findings' lifecycle.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunSummary {
    /// Run id.
    pub run_id: i64,
    /// Findings seen this run.
    pub findings: i64,
    /// Seen for the first time (or again after being resolved).
    pub opened: i64,
    /// Resolved by this run.
    pub resolved: i64,
}

/// A stored finding with its lifecycle.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFinding {
    /// The finding as last seen.
    pub finding: Finding,
    /// First seen (since last reopened).
    pub first_seen: String,
    /// Last seen.
    pub last_seen: String,
    /// When resolved, if it is.
    pub resolved_at: Option<String>,
}

/// Everything needed to record one run.
pub struct RunRecord<'a> {
    /// Start of the run.
    pub started_at: Timestamp,
    /// Evaluation instant.
    pub as_of: Timestamp,
    /// `scan` or `plan`.
    pub command: &'a str,
    /// Per-source status.
    pub sources: &'a [SourceStatus],
    /// Rule ids evaluated this run.
    pub rules: &'a [String],
    /// Findings of this run.
    pub findings: &'a [SourcedFinding],
    /// Subjects held this run: none of their findings is resolved.
    pub held: &'a crate::engine::plan::Held,
    /// What the run read, recorded with it (its sightings too), in the same
    /// transaction; `None` records the lifecycle only. A targeted run keeps
    /// none (it did not read the estate).
    pub reading: Option<runs::Reading<'a>>,
    /// A targeted run: the identities it re-read. Only their findings are
    /// recorded, and only theirs resolved; `None` for a full run.
    pub scope: Option<&'a [String]>,
}

/// Persistence of runs and findings.
#[async_trait]
pub trait Store: Send + Sync {
    /// Record a run and update the findings' lifecycle, atomically.
    async fn record_run(&self, run: RunRecord<'_>) -> Result<RunSummary, StoreError>;
    /// Findings not resolved.
    async fn open_findings(&self) -> Result<Vec<StoredFinding>, StoreError>;
}

/// Where a written finding row keeps the finding's data.
#[derive(Clone, Copy)]
enum Data {
    /// In its `data` column (a targeted run, or a finding added to a run,
    /// records no sighting).
    Here,
    /// In the sighting of the same fingerprint and data hash, which the
    /// same transaction records; the row's `data` is `''` (never a
    /// finding's JSON). At a million findings this halves what a first
    /// pass writes of them (a gigabyte).
    InSighting,
}

/// A findings row's data as columns `data` and `data_packed`
/// ([`packed::Unpacker::text`] reads them): its own, or for a row written with
/// [`Data::InSighting`], its latest sighting's of the same data hash (any
/// sighting of the same fingerprint and data hash holds the same finding;
/// both columns from the same one).
pub(crate) const FINDING_DATA: &str = "CASE WHEN findings.data = '' THEN
     (SELECT s.data FROM finding_sightings s WHERE s.fingerprint = findings.fingerprint
        AND s.data_sha256 = findings.data_sha256 ORDER BY s.first_run DESC LIMIT 1)
     ELSE findings.data END AS data,
     CASE WHEN findings.data = '' THEN
     (SELECT s.data_packed FROM finding_sightings s WHERE s.fingerprint = findings.fingerprint
        AND s.data_sha256 = findings.data_sha256 ORDER BY s.first_run DESC LIMIT 1)
     END AS data_packed";

/// A finding row whose data is in no sighting: the store is damaged.
pub(crate) fn missing_data(fp: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "finding {fp}: its data is in no sighting of its data hash"
    ))
}

/// Findings listed by one `findings.opened` / `findings.resolved` audit entry, at most.
const AUDIT_BATCH: usize = 1_000;

/// Rows of `findings` a run writes from which, on PostgreSQL, the findings
/// tables are vacuumed and analysed as soon as it commits
/// ([`SqlStore::refresh_planner_view`]).
const BULK_ROWS: usize = 10_000;

/// `findings.*` audit entries built and appended at once, at most.
const AUDIT_BATCHES_AT_ONCE: usize = 32;

/// One finding of a run, hashed once (for the findings and the sightings
/// both); its data is serialised only when a row is written, and not
/// kept: a first pass writes a gigabyte of it at a million findings.
pub(crate) struct Prepared<'a> {
    pub(crate) fp: String,
    pub(crate) hash: Sha,
    pub(crate) f: &'a SourcedFinding,
}

/// A SHA-256 kept as its 32 bytes, written and compared as the lowercase
/// hex the store holds (as hex text, a million findings' hashes held
/// 110 MB at the record's peak).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sha([u8; 32]);

impl Sha {
    /// As stored.
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// As stored, without an allocation.
    pub(crate) fn hex_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        // 64 bytes is exactly what 32 take.
        let _ = hex::encode_to_slice(self.0, &mut out);
        out
    }

    /// Whether `stored` (hex, as the store holds it) is this hash.
    pub(crate) fn is(&self, stored: &str) -> bool {
        stored.as_bytes() == self.hex_bytes()
    }
}

impl serde::Serialize for Sha {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(hex_str(&self.hex_bytes()))
    }
}

/// [`Sha::hex_bytes`] as text.
pub(crate) fn hex_str(hex: &[u8; 64]) -> &str {
    // Hex digits are ASCII.
    std::str::from_utf8(hex).unwrap_or_default()
}

/// SHA-256 of what is written to it, hashed a buffer at a time: a
/// serialiser writes a few bytes at a time (a key, a quote), and a hash
/// update per write was half the cost of hashing a million findings.
struct HashWriter {
    sha: sha2::Sha256,
    buf: [u8; HASH_BUFFER],
    len: usize,
}

/// Bytes [`HashWriter`] gathers before it hashes them.
const HASH_BUFFER: usize = 4096;

impl HashWriter {
    fn new() -> HashWriter {
        HashWriter {
            sha: sha2::Sha256::new(),
            buf: [0; HASH_BUFFER],
            len: 0,
        }
    }

    /// The hash of everything written.
    fn finish(mut self) -> Sha {
        self.sha.update(&self.buf[..self.len]);
        Sha(self.sha.finalize().into())
    }
}

impl std::io::Write for HashWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() > HASH_BUFFER - self.len {
            self.sha.update(&self.buf[..self.len]);
            self.len = 0;
            if data.len() >= HASH_BUFFER {
                self.sha.update(data);
                return Ok(data.len());
            }
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> Prepared<'a> {
    /// `f` hashed: its fingerprint, the hash of its data, its facets. The
    /// data is hashed as it is serialised, not kept: a pass over an
    /// unchanged estate writes (and so keeps) none of it.
    pub(crate) fn new(f: &'a SourcedFinding) -> Result<Prepared<'a>, StoreError> {
        let mut h = HashWriter::new();
        serde_json::to_writer(&mut h, &f.finding)?;
        Ok(Prepared {
            fp: f.finding.fingerprint(),
            hash: h.finish(),
            f,
        })
    }

    /// The finding's data as stored.
    pub(crate) fn data(&self) -> Result<String, StoreError> {
        Ok(serde_json::to_string(&self.f.finding)?)
    }

    /// `findings` hashed (in parallel: the serialisation is the cost), a
    /// finding seen twice kept once, as last seen, in fingerprint order.
    ///
    /// The order is the indexes' (each leads with the fingerprint, or the
    /// identity that follows the rule in it): rows written in it fill each
    /// B-tree page once, where the engine's order dirtied pages all over
    /// indexes larger than the page cache, which SQLite then spilled and
    /// dirtied again. Rows stored in that order are read back in it too.
    pub(crate) fn all(findings: &'a [SourcedFinding]) -> Result<Vec<Prepared<'a>>, StoreError> {
        use rayon::prelude::*;
        let mut hashed: Vec<Prepared<'a>> = findings
            .par_iter()
            .map(Prepared::new)
            .collect::<Result<_, _>>()?;
        // Stable: a fingerprint's findings stay in the order seen.
        hashed.par_sort_by(|a, b| a.fp.cmp(&b.fp));
        // In place, the later of two kept (a second list of a million was
        // held beside the first at the record's peak).
        hashed.dedup_by(|later, kept| {
            let same = later.fp == kept.fp;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        Ok(hashed)
    }
}

/// An open finding as stored: enough to tell whether this run changes it
/// and whether this run may resolve it.
struct OpenRow {
    hash: Option<String>,
    /// As read back ([`Facets::from_stored`]); `None` if not readable.
    depends: Option<Facets>,
    source: String,
    /// Seen, as stored, by every run up to the latest.
    open_ended: bool,
}

/// An open finding's keys as read ([`OpenRow`] with its fingerprint).
type OpenTuple = (String, Option<String>, Option<String>, String, i64);

impl OpenRow {
    /// A row as read: its fingerprint and itself.
    fn read(
        (fp, hash, depends, source, open_ended): OpenTuple,
        facets: &mut DependsReader,
    ) -> (String, OpenRow) {
        let row = OpenRow {
            hash,
            depends: facets.read(depends.as_deref()),
            source,
            open_ended: open_ended != 0,
        };
        (fp, row)
    }
}

/// The latest full run (not a targeted one): id and start.
async fn latest_full(conn: &mut AnyConnection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, started_at FROM runs WHERE scope IS NULL ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?)
}

/// Every open finding's keys, in pages read from the covering index.
async fn open_all(conn: &mut AnyConnection) -> Result<HashMap<String, OpenRow>, StoreError> {
    let mut open: HashMap<String, OpenRow> = HashMap::new();
    let mut facets = DependsReader::default();
    batch::pages_by_fingerprint(
        conn,
        "fingerprint, data_sha256, depends, source, open_ended",
        "findings WHERE resolved_at IS NULL",
        None,
        |page: Vec<OpenTuple>| open.extend(page.into_iter().map(|t| OpenRow::read(t, &mut facets))),
    )
    .await?;
    Ok(open)
}

/// The open findings of the identities `ids` (a targeted run's scope).
async fn open_of(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<HashMap<String, OpenRow>, StoreError> {
    let mut open = HashMap::new();
    let mut facets = DependsReader::default();
    for chunk in ids.chunks(batch::rows_per_statement(batch::max_params(conn), 1, 0)) {
        let sql = format!(
            "SELECT fingerprint, data_sha256, depends, source, open_ended FROM findings
             WHERE identity_id IN ({}) AND resolved_at IS NULL",
            batch::list(chunk.len(), 0)
        );
        let mut q = sqlx::query_as::<_, OpenTuple>(sqlx::AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        open.extend(
            q.fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|t| OpenRow::read(t, &mut facets)),
        );
    }
    Ok(open)
}

/// What judging whether a run may resolve an unseen finding needs beyond
/// its keys: rule, identity, credential kind, by fingerprint. Read only for
/// the findings a run did not see (few, on a steady estate).
async fn unseen_subjects(
    conn: &mut AnyConnection,
    fps: &[&str],
) -> Result<HashMap<String, (String, String, Option<String>)>, StoreError> {
    let mut out = HashMap::with_capacity(fps.len());
    for chunk in fps.chunks(batch::rows_per_statement(batch::max_params(conn), 1, 0)) {
        let sql = format!(
            "SELECT fingerprint, rule_id, identity_id, credential_kind FROM findings
             WHERE fingerprint IN ({})",
            batch::list(chunk.len(), 0)
        );
        let mut q =
            sqlx::query_as::<_, (String, String, String, Option<String>)>(sqlx::AssertSqlSafe(sql));
        for fp in chunk {
            q = q.bind(*fp);
        }
        for (fp, rule, identity, kind) in q.fetch_all(&mut *conn).await? {
            out.insert(fp, (rule, identity, kind));
        }
    }
    Ok(out)
}

/// Insert or refresh `rows`, open-ended from this run, a thousand rows
/// to a statement ([`batch::BulkRows`]). A finding that was resolved and
/// is back starts a new lifecycle.
async fn upsert_findings(
    conn: &mut AnyConnection,
    run_id: i64,
    now: &str,
    rows: &[&Prepared<'_>],
    data: Data,
) -> Result<(), StoreError> {
    let stream = findings_stream(conn, run_id, now, rows, data);
    write_open(conn, &[stream]).await
}

/// Write `streams` of findings or sightings ([`batch::interleaved`]),
/// after forgetting the open state they change; nothing if they have no
/// rows.
async fn write_open(
    conn: &mut AnyConnection,
    streams: &[batch::Stream<'_>],
) -> Result<(), StoreError> {
    if streams.iter().all(batch::Stream::is_empty) {
        return Ok(());
    }
    open_state::forget(conn).await?;
    batch::interleaved(conn, streams).await
}

/// [`upsert_findings`]'s rows as a [`batch::Stream`] (for [`write_open`]).
fn findings_stream<'s>(
    conn: &AnyConnection,
    run_id: i64,
    now: &'s str,
    rows: &'s [&Prepared<'_>],
    data: Data,
) -> batch::Stream<'s> {
    let bulk = batch::BulkRows::new(conn, 11, 2);
    // Each row: its 11 own values, then the run's time (fixed 1) and id
    // (fixed 2) twice.
    let cols: Vec<String> = (0..11).map(|i| bulk.col(i)).collect();
    let (time, run) = (bulk.fixed(1), bulk.fixed(2));
    let sql = format!(
        "INSERT INTO findings (fingerprint, rule_id, severity, provider, source, identity_id,
             credential_id, credential_kind, data, depends, data_sha256, first_seen, last_seen, first_run, last_run,
             open_ended)
         SELECT {}, {time}, {time}, {run}, {run}, 1 FROM {} WHERE true
         ON CONFLICT (fingerprint) DO UPDATE SET
             first_seen = CASE WHEN findings.resolved_at IS NULL THEN findings.first_seen ELSE excluded.first_seen END,
             first_run  = CASE WHEN findings.resolved_at IS NULL THEN findings.first_run ELSE excluded.first_run END,
             severity = excluded.severity, provider = excluded.provider, source = excluded.source,
             last_seen = excluded.last_seen, last_run = excluded.last_run,
             resolved_at = NULL, data = excluded.data, depends = excluded.depends,
             data_sha256 = excluded.data_sha256, open_ended = 1",
        cols.join(", "),
        batch::ROWS,
    );
    let encode = move |chunk: &[&Prepared<'_>], sink: &mut batch::Sink| -> Result<(), StoreError> {
        for p in chunk {
            let data = match data {
                Data::Here => p.data()?,
                Data::InSighting => String::new(),
            };
            let hash = p.hash.hex_bytes();
            sink.row(&[
                Cell::Text(&p.fp),
                Cell::Text(&p.f.finding.rule_id),
                Cell::Text(p.f.finding.severity.as_str()),
                p.f.finding.provider.as_deref().into(),
                Cell::Text(&p.f.source),
                Cell::Text(&p.f.finding.identity_id),
                p.f.finding.credential_id.as_deref().into(),
                p.f.credential_kind.map(|k| k.as_str()).into(),
                Cell::Text(&data),
                Cell::Text(&p.f.depends.stored()),
                Cell::Text(hex_str(&hash)),
            ])?;
        }
        Ok(())
    };
    let fixed = vec![batch::Fixed::Text(now), batch::Fixed::Int(run_id)];
    batch::Stream::new(&bulk, &sql, fixed, rows, encode)
}

/// `UPDATE findings SET <set> WHERE fingerprint IN (…)` over `fps` in
/// chunks; `$1` and `$2` are `a` and `b`.
async fn update_findings(
    conn: &mut AnyConnection,
    set: &str,
    a: &str,
    b: Option<i64>,
    fps: &[&str],
) -> Result<(), StoreError> {
    if fps.is_empty() {
        return Ok(());
    }
    open_state::forget(conn).await?;
    let fixed = if b.is_some() { 2 } else { 1 };
    for chunk in fps.chunks(batch::rows_per_statement(batch::max_params(conn), 1, fixed)) {
        let sql = format!(
            "UPDATE findings SET {set} WHERE fingerprint IN ({})",
            batch::list(chunk.len(), fixed)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(a);
        if let Some(b) = b {
            q = q.bind(b);
        }
        for fp in chunk {
            q = q.bind(*fp);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Which database a [`SqlStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A local SQLite file (the default; one machine).
    Sqlite,
    /// A PostgreSQL server (several replicas, one leader).
    Postgres,
}

/// The store, on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Whether a store location names a PostgreSQL server (else a SQLite file).
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Query parameters whose values are secrets (libpq's `password`,
/// `sslpassword`, and anything named like one).
fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
    ]
    .iter()
    .any(|s| n.contains(s))
        && !matches!(
            n.as_str(),
            "sslkey" | "passfile" | "sslrootcert" | "sslcert"
        )
}

const HIDDEN: &str = "***";

/// A store location with every secret in it replaced by `***`, for logs and
/// errors: the password of the user info, secret query parameters
/// (`password`, `sslpassword`, …), and — when the location does not parse
/// as a URL — everything between `://` and the last `@` and every value
/// after a secret-looking `name=`. The one function every message showing
/// a store location goes through.
pub fn redact(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if location.contains("://") => {
            if u.password().is_some() {
                // Setting a password on a parsed URL with a host cannot fail.
                if u.set_password(Some(HIDDEN)).is_err() {
                    return conservative(location);
                }
            }
            if u.query_pairs().any(|(k, _)| secret_param(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret_param(&k) {
                            HIDDEN.to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            if u.fragment().is_some() {
                u.set_fragment(None);
            }
            u.to_string()
        }
        _ => conservative(location),
    }
}

/// Redaction for text that is not a URL (or not a valid one): the user
/// info goes whole, and so does each value after a secret-looking key.
fn conservative(text: &str) -> String {
    let mut out = match text.split_once("://") {
        Some((scheme, rest)) => match rest.rfind('@') {
            Some(at) => format!("{scheme}://{HIDDEN}@{}", &rest[at + 1..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    };
    // `name=value` pairs (query strings, libpq key/value strings).
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        let name_start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |i| i + 1);
        result.push_str(before);
        result.push('=');
        let after = &after[1..];
        let end = after
            .find(|c: char| c == '&' || c == ';' || c.is_whitespace())
            .unwrap_or(after.len());
        if secret_param(&before[name_start..]) {
            result.push_str(HIDDEN);
        } else {
            result.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    result.push_str(rest);
    out = result;
    out
}

/// `message` with every secret of `location` in it (as written and
/// percent-decoded) replaced by `***`, and the location itself redacted:
/// for errors from drivers that may echo what they were given.
pub fn redact_in(message: &str, location: &str) -> String {
    let mut out = message.replace(location, &redact(location));
    let mut secrets: Vec<String> = Vec::new();
    if let Ok(u) = url::Url::parse(location) {
        if let Some(p) = u.password() {
            secrets.push(p.to_string());
            if let Ok(d) = percent_decode(p) {
                secrets.push(d);
            }
        }
        secrets.extend(
            u.query_pairs()
                .filter(|(k, _)| secret_param(k))
                .map(|(_, v)| v.into_owned()),
        );
    }
    // Whatever the conservative form hides counts as secret too.
    if let Some((_, rest)) = location.split_once("://") {
        if let Some(at) = rest.rfind('@') {
            let userinfo = &rest[..at];
            secrets.push(userinfo.to_string());
            if let Some((_, pw)) = userinfo.split_once(':') {
                secrets.push(pw.to_string());
            }
        }
    }
    for part in location.split(|c: char| c == '&' || c == '?' || c == ';' || c.is_whitespace()) {
        if let Some((k, v)) = part.split_once('=') {
            if secret_param(
                k.rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or(k),
            ) {
                secrets.push(v.to_string());
                if let Ok(d) = percent_decode(v) {
                    secrets.push(d);
                }
            }
        }
    }
    secrets.retain(|s| s.len() >= 2 && s != HIDDEN);
    // Longest first, so a secret containing another is hidden whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(&s, HIDDEN);
    }
    out
}

fn percent_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
}

impl SqlStore {
    /// Vacuum and analyse the findings tables (PostgreSQL), after a run
    /// that wrote at least [`BULK_ROWS`] of their rows. Freshly written
    /// rows have no statistics, no visibility map (so no index-only scan)
    /// and no hint bits: the first reader after a first 1M run (a report,
    /// a targeted pass) planned blind and rewrote every page it read, while
    /// autovacuum started the same work beside it (`report` JSON 63.9 s
    /// against 17.8 s after this, which itself took 1.0 s). The run is
    /// committed: a failure here is logged and left to autovacuum.
    async fn refresh_planner_view(&self) {
        let started = std::time::Instant::now();
        match sqlx::raw_sql("VACUUM (ANALYZE) findings, finding_sightings")
            .execute(&self.pool)
            .await
        {
            Ok(_) => tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                "findings tables vacuumed and analysed after a bulk write"
            ),
            Err(error) => tracing::warn!(
                %error,
                "could not vacuum the findings tables after a bulk write; autovacuum will"
            ),
        }
    }

    /// After a pass's writes on SQLite, move the write-ahead log into the
    /// database and cut it to nothing: a pass writes a transaction as large
    /// as the findings it touches, and SQLite would otherwise keep the log
    /// at that size on disk (170 MB at 100,000 credentials). Best effort:
    /// a reader in the way (the daemon's HTTP handlers) leaves it for the
    /// next pass. Nothing to do on PostgreSQL: its upkeep after a bulk
    /// write is made by `record_run` itself, which knows the rows it wrote
    /// (`refresh_planner_view`).
    pub async fn checkpoint(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_optional(&self.pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint left for later");
        }
    }

    /// Record one extra finding for a run already recorded (enforce mode's
    /// findings about itself).
    pub async fn add_finding(&self, run_id: i64, f: &SourcedFinding) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = ts(chrono::Utc::now());
        let fp = f.finding.fingerprint();
        let was_open: Option<Option<String>> =
            sqlx::query_scalar("SELECT resolved_at FROM findings WHERE fingerprint = $1")
                .bind(&fp)
                .fetch_optional(&mut *tx)
                .await?;
        let p = Prepared::new(f)?;
        upsert_findings(&mut tx, run_id, &now, &[&p], Data::Here).await?;
        // A finding that was resolved, or never stored, is (re)opened.
        if was_open.map(|r| r.is_none()) != Some(true) {
            audit::append(
                &mut tx,
                &[audit::NewEntry {
                    kind: "finding.opened",
                    run_id: Some(run_id),
                    subject: Some(&fp),
                    data: serde_json::json!({
                        "rule_id": f.finding.rule_id,
                        "identity_id": f.finding.identity_id,
                        "credential_id": f.finding.credential_id,
                        "severity": f.finding.severity.as_str(),
                    }),
                }],
            )
            .await?;
        }
        tx.commit().await?;
        self.add_run_finding(run_id, f).await?;
        Ok(())
    }

    /// Resolve one open finding by fingerprint (enforce mode's findings
    /// about itself, when their condition has cleared). `false` if it was
    /// not open.
    pub async fn resolve_finding(
        &self,
        run_id: i64,
        fingerprint: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        open_state::forget(&mut tx).await?;
        // Open-ended, it was last seen by this run (the latest).
        let n = sqlx::query(
            "UPDATE findings SET resolved_at = $1,
                 last_seen = CASE WHEN open_ended = 1
                     THEN COALESCE((SELECT started_at FROM runs WHERE id = $3), last_seen)
                     ELSE last_seen END,
                 last_run = CASE WHEN open_ended = 1 AND $3 >= last_run THEN $3 ELSE last_run END,
                 open_ended = 0
             WHERE fingerprint = $2 AND resolved_at IS NULL",
        )
        .bind(ts(chrono::Utc::now()))
        .bind(fingerprint)
        .bind(run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            sqlx::query("UPDATE runs SET resolved = resolved + 1 WHERE id = $1")
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
            let rule = fingerprint.split('|').next().unwrap_or_default();
            audit::append(
                &mut tx,
                &[audit::NewEntry {
                    kind: "finding.resolved",
                    run_id: Some(run_id),
                    subject: Some(fingerprint),
                    data: serde_json::json!({ "rule_id": rule }),
                }],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Open the store at `location` and migrate it: a `postgres://` or
    /// `postgresql://` URL selects PostgreSQL, anything else is a SQLite file
    /// path (created if needed).
    pub async fn open(location: &str) -> Result<SqlStore, StoreError> {
        SqlStore::open_unredacted(location)
            .await
            .map_err(|e| StoreError::Open {
                location: redact(location),
                message: redact_in(&e.to_string(), location),
            })
    }

    async fn open_unredacted(location: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        if is_postgres(location) {
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(location)
                .await?;
            sqlx::migrate!("src/store/migrations/postgres")
                .run(&pool)
                .await?;
            return Ok(SqlStore {
                pool,
                backend: Backend::Postgres,
            });
        }
        let path = Path::new(location.strip_prefix("sqlite://").unwrap_or(location));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        // SQLite would create the file 0644 and its -wal/-shm like it; made
        // here 0600 first, they all stay private whatever the umask.
        crate::safe_file::ensure_exists(path, crate::safe_file::Access::Private)
            .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        let path = path
            .to_str()
            .ok_or_else(|| StoreError::Location(format!("{}: not UTF-8", path.display())))?;
        // sqlx's SQLite defaults keep foreign keys on and a 5 s busy timeout.
        let url = format!("sqlite://{path}?mode=rwc");
        // Two processes opening a fresh store at once (a command beside the
        // daemon) race: switching the new file to WAL can find it locked, and
        // the loser of the migrations rolls back ("table already exists"). A
        // retry connects again and applies only what the winner has not; a
        // broken migration still fails, after the retries.
        let mut attempt = 0u64;
        loop {
            let opened = async {
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    // A checkpointed WAL is cut back to 64 MiB: SQLite
                    // otherwise keeps it at the largest size a pass ever
                    // wrote (170 MB after one scan of 100,000 credentials).
                    // A 64 MiB page cache per connection (SQLite's default is
                    // 2 MiB): a pass over a million findings updates
                    // indexes of hundreds of MB in key order, not file order.
                    // A new store's pages are 16 KiB (SQLite's default is
                    // 4 KiB; a store that has tables keeps its size): a
                    // first pass over a million findings recorded in 50 s
                    // instead of 71 (a third less CPU: shallower B-trees,
                    // fewer pages to write), and a small transaction (a
                    // lease, a journal entry) still writes a few pages.
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::Executor::execute(
                                &mut *conn,
                                "PRAGMA page_size = 16384; PRAGMA journal_size_limit = 67108864; PRAGMA cache_size = -65536",
                            )
                            .await
                            .map(drop)
                        })
                    })
                    .connect(&url)
                    .await?;
                // WAL lets the daemon's HTTP handlers read while a pass
                // writes; the mode is stored in the file.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .fetch_optional(&pool)
                    .await?;
                sqlx::migrate!("src/store/migrations/sqlite")
                    .run(&pool)
                    .await?;
                Ok::<_, StoreError>(pool)
            }
            .await;
            match opened {
                Ok(pool) => {
                    return Ok(SqlStore {
                        pool,
                        backend: Backend::Sqlite,
                    })
                }
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "opening the store raced another process; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(25 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn record_run(&self, run: RunRecord<'_>) -> Result<RunSummary, StoreError> {
        let now = ts(run.started_at);
        let finished = ts(chrono::Utc::now());
        let clock = std::time::Instant::now();
        // Writers of the open findings one at a time, from before this run
        // reads them to its commit: on SQLite the write lock taken at
        // `BEGIN` (a deferred transaction that reads first is refused the
        // upgrade at once, "database is locked", where this one waits for
        // another writer within the busy timeout); on PostgreSQL the
        // advisory lock.
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        open_state::lock(&mut tx).await?;
        // The latest full run before this one: where the open-ended rows
        // reach.
        let latest = latest_full(&mut tx).await?;
        let scope: Option<std::collections::HashSet<&str>> =
            run.scope.map(|s| s.iter().map(String::as_str).collect());
        // A targeted run records its subjects' findings only (its caller
        // passes no others; any other is not recorded).
        let in_scope = |f: &SourcedFinding| {
            scope
                .as_ref()
                .is_none_or(|ids| ids.contains(f.finding.identity_id.as_str()))
        };
        let seen = run.findings.iter().filter(|f| in_scope(f)).count();
        let run_id: i64 = sqlx::query(
            "INSERT INTO runs (started_at, finished_at, as_of, command, sources, findings, opened, resolved, held, scope)
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $8) RETURNING id",
        )
        .bind(&now)
        .bind(&finished)
        .bind(ts(run.as_of))
        .bind(run.command)
        .bind(serde_json::to_string(run.sources)?)
        .bind(seen as i64)
        .bind(if run.held.is_empty() {
            None
        } else {
            Some(serde_json::to_string(run.held)?)
        })
        .bind(run.scope.map(serde_json::to_string).transpose()?)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;

        // The open findings as stored, in one read: a finding this run sees
        // with the same data is not written at all (its row is open-ended),
        // and what remains is what this run did not see.
        //
        // A full run reads the open sightings too, matched against its
        // findings as read (so it hashes them first), on a second
        // connection at the same time. The transaction holds the write
        // lock since it began (SQLite; on PostgreSQL the advisory lock, and
        // each of its statements sees what is committed, as that
        // connection does) and has written no sighting yet: that
        // connection reads what the transaction would.
        let clock_prepared = std::time::Instant::now();
        let mut prepared = Prepared::all(run.findings)?;
        prepared.retain(|p| in_scope(p.f));
        // A full run whose findings are what the store holds open, as the
        // latest full run left it and no write has changed since, has
        // nothing to compare: its findings are all unchanged.
        let digest = match (run.scope, run.reading) {
            (None, Some(_)) => Some(open_state::digest(&prepared)),
            _ => None,
        };
        let serialised = clock_prepared.elapsed();
        let unchanged = match &digest {
            Some(d) => open_state::read(&mut tx).await?.as_deref() == Some(d.as_str()),
            None => false,
        };
        let (mut open, sightings): (HashMap<String, OpenRow>, _) = match (run.scope, run.reading) {
            _ if unchanged => (
                HashMap::new(),
                Some(runs::OpenSightings::unchanged(prepared.len())),
            ),
            (Some(ids), _) => (open_of(&mut tx, ids).await?, None),
            (None, Some(_)) => {
                let mut other = self.pool.acquire().await?;
                let (open, sightings) = futures_util::future::try_join(
                    open_all(&mut tx),
                    runs::open_sightings(&mut other, &prepared),
                )
                .await?;
                (open, Some(sightings))
            }
            (None, None) => (open_all(&mut tx).await?, None),
        };
        let read_open = clock.elapsed() - serialised;

        let mut opened = 0i64;
        let mut opened_fps: Vec<&str> = Vec::new();
        // Seen unchanged after a run that did not see them (held).
        let mut seen_again: Vec<&str> = Vec::new();
        let mut write: Vec<&Prepared<'_>> = Vec::new();
        for p in prepared.iter().filter(|_| !unchanged) {
            match open.remove(&p.fp) {
                Some(row)
                    if row.hash.as_deref().is_some_and(|h| p.hash.is(h))
                        && row.depends == Some(p.f.depends.known())
                        && *row.source == *p.f.source =>
                {
                    // A targeted run's few are marked seen by it.
                    if !row.open_ended || scope.is_some() {
                        seen_again.push(&p.fp)
                    }
                }
                Some(_) => write.push(p),
                None => {
                    write.push(p);
                    opened += 1;
                    opened_fps.push(&p.fp);
                }
            }
        }
        // A full run keeps each finding's data once, in the sighting of it
        // it records in this transaction: the same bytes by their hash.
        let data = match (run.reading, run.scope) {
            (Some(_), None) => Data::InSighting,
            _ => Data::Here,
        };
        // What a full run read, and its sightings closed or changed, in
        // the same transaction; the sightings it starts are written with
        // its findings, a chunk of each in turn (`batch::interleaved`):
        // the findings' rows are the database's work, the sightings'
        // packing the cores', and one after the other each had a core
        // idle.
        let start = match (run.reading, run.scope) {
            (Some(reading), None) => {
                runs::detail_but_new_sightings(&mut tx, run_id, reading, &prepared, sightings)
                    .await?
            }
            _ => Vec::new(),
        };
        let detail = clock.elapsed() - read_open - serialised;
        let streams = [
            findings_stream(&tx, run_id, &now, &write, data),
            runs::sightings_stream(&tx, run_id, &start),
        ];
        write_open(&mut tx, &streams).await?;
        update_findings(
            &mut tx,
            "last_seen = $1, last_run = $2, open_ended = 1",
            &now,
            Some(run_id),
            &seen_again,
        )
        .await?;

        // Resolve what was not seen, only where this run could have seen it:
        // its source saw everything the finding depends on.
        // A held subject is as unseen: its findings stay open.
        let mut unseen: Vec<(String, OpenRow)> = open.into_iter().collect();
        unseen.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let fps: Vec<&str> = unseen.iter().map(|(fp, _)| fp.as_str()).collect();
        let subjects = unseen_subjects(&mut tx, &fps).await?;
        let mut resolve: Vec<&str> = Vec::new();
        // Not seen, resolved or held: last seen by the latest run before.
        let mut close: Vec<&str> = Vec::new();
        for (fp, row) in &unseen {
            if row.open_ended {
                close.push(fp);
            }
            let Some((rule, identity, kind)) = subjects.get(fp) else {
                continue;
            };
            let depends = stored_depends(row.depends, &row.source, kind.as_deref());
            let seeable = seeable(run.sources, &row.source, depends)
                && (rule == crate::engine::findings::UNMAPPED_RULE
                    || run.held.reason(identity).is_none());
            if seeable && run.rules.contains(rule) {
                resolve.push(fp);
            }
        }
        // Last seen by the latest full run before this one, never earlier
        // than its own last run (a targeted run's; with no full run yet,
        // that one).
        let (full_id, full_started) = latest.unwrap_or((-1, String::new()));
        update_findings(
            &mut tx,
            "last_seen = CASE WHEN last_run >= $2 THEN last_seen ELSE $1 END,
             last_run = CASE WHEN last_run >= $2 THEN last_run ELSE $2 END,
             open_ended = 0",
            &full_started,
            Some(full_id),
            &close,
        )
        .await?;
        update_findings(&mut tx, "resolved_at = $1", &now, None, &resolve).await?;
        let resolved = i64::try_from(resolve.len()).unwrap_or(i64::MAX);
        sqlx::query("UPDATE runs SET opened = $1, resolved = $2 WHERE id = $3")
            .bind(opened)
            .bind(resolved)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let findings_written = clock.elapsed() - read_open - serialised - detail;
        // Rows of `findings` this run wrote (its sightings are as many or
        // fewer): what decides a refresh of PostgreSQL's view of them.
        let rows_written = write.len() + seen_again.len() + close.len() + resolve.len();
        // What the run leaves open is its findings alone (all it did not
        // see was resolved): kept by their digest for the next full run.
        match &digest {
            Some(d) if resolve.len() == unseen.len() => {
                open_state::keep(&mut tx, d, run_id).await?
            }
            _ => open_state::forget(&mut tx).await?,
        }
        // Lifecycle events are audited per batch: one entry lists, in
        // fingerprint order, up to AUDIT_BATCH findings the run opened (or
        // resolved). The chain covers the batch as it covers any entry; a
        // finding's data is in the run's sightings.
        opened_fps.sort_unstable();
        // Appended some batches at a time, in the same order and chain:
        // a first run's thousand entries listing a million findings, held
        // at once as JSON values, were half a gigabyte at its peak.
        let mut batches: Vec<(&str, &[&str])> = Vec::new();
        for (kind, fps) in [
            ("findings.opened", &opened_fps),
            ("findings.resolved", &resolve),
        ] {
            batches.extend(fps.chunks(AUDIT_BATCH).map(|chunk| (kind, chunk)));
        }
        let mut entries: Vec<audit::NewEntry<'_>> = Vec::new();
        for (kind, chunk) in batches {
            if entries.len() == AUDIT_BATCHES_AT_ONCE {
                audit::append(&mut tx, &entries).await?;
                entries.clear();
            }
            entries.push(audit::NewEntry {
                kind,
                run_id: Some(run_id),
                subject: None,
                data: serde_json::json!({ "count": chunk.len(), "fingerprints": chunk }),
            });
        }
        entries.push(audit::NewEntry {
            kind: "run.recorded",
            run_id: Some(run_id),
            subject: None,
            data: serde_json::json!({
                "command": run.command,
                "started_at": now,
                "as_of": ts(run.as_of),
                "sources": run.sources,
                "scope": run.scope,
                "findings": seen,
                "opened": opened,
                "resolved": resolved,
            }),
        });
        audit::append(&mut tx, &entries).await?;
        let audited = clock.elapsed();
        tx.commit().await?;
        if self.backend == Backend::Postgres && rows_written >= BULK_ROWS {
            self.refresh_planner_view().await;
        }
        tracing::debug!(
            unchanged,
            ?read_open,
            ?serialised,
            ?findings_written,
            ?detail,
            audit = ?(audited - read_open - serialised - findings_written - detail),
            commit = ?(clock.elapsed() - audited),
            "run recorded"
        );
        Ok(RunSummary {
            run_id,
            findings: seen as i64,
            opened,
            resolved,
        })
    }

    async fn open_findings(&self) -> Result<Vec<StoredFinding>, StoreError> {
        // An open-ended finding was last seen by the latest full run, or by
        // a targeted run after it.
        let mut conn = self.pool.acquire().await?;
        let (latest, started) = latest_full(&mut conn)
            .await?
            .unwrap_or((i64::MAX, String::new()));
        type Row = (
            Option<String>,
            Option<Vec<u8>>,
            String,
            String,
            Option<String>,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {FINDING_DATA}, first_seen,
                 CASE WHEN open_ended = 1 AND last_run < $1 THEN $2 ELSE last_seen END AS last_seen,
                 resolved_at, fingerprint
             FROM findings WHERE resolved_at IS NULL ORDER BY fingerprint"
        )))
        .bind(latest)
        .bind(started)
        .fetch_all(&mut *conn)
        .await?;
        let mut unpacker = packed::Unpacker::new()?;
        rows.into_iter()
            .map(|(data, packed, first_seen, last_seen, resolved_at, fp)| {
                let data = unpacker
                    .text(data, packed.as_deref())?
                    .ok_or_else(|| missing_data(&fp))?;
                Ok(StoredFinding {
                    finding: serde_json::from_str(&data)?,
                    first_seen,
                    last_seen,
                    resolved_at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_in, HashWriter, Prepared, HASH_BUFFER};
    use proptest::prelude::*;
    use sha2::Digest;
    use std::io::Write;

    proptest! {
        /// Whatever the writes' sizes (tiny, a buffer's, several), the
        /// hash is the SHA-256 of their concatenation.
        #[test]
        fn a_buffered_hash_is_the_hash_of_everything_written(
            sizes in proptest::collection::vec(
                prop_oneof![0..8usize, 4090..4100usize, 9000..9100usize], 0..12),
        ) {
            let writes: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(n, &len)| (0..len).map(|i| (i * 31 + n) as u8).collect())
                .collect();
            let mut h = HashWriter::new();
            for w in &writes {
                h.write_all(w).expect("write");
            }
            let want: [u8; 32] = sha2::Sha256::digest(writes.concat()).into();
            prop_assert_eq!(h.finish().0, want);
            prop_assert!(HASH_BUFFER < 9000);
        }
    }

    /// A finding's data hash is the SHA-256 of its data as stored.
    #[test]
    fn prepared_hash_is_the_hash_of_the_data_stored() {
        let mut f = crate::store::runs::tests::finding("AKIAB");
        f.finding.evidence = serde_json::json!({ "note": "x".repeat(5000) }).into();
        let p = Prepared::new(&f).expect("hashed");
        let want: [u8; 32] = sha2::Sha256::digest(p.data().expect("data")).into();
        assert_eq!(p.hash.0, want);
    }

    /// Findings are kept in fingerprint order, each fingerprint once, as
    /// last seen: runs of three, two and one, shuffled.
    #[test]
    fn prepared_keeps_each_fingerprint_once_as_last_seen() {
        let seen = |cred: &str, n: i64| {
            let mut f = crate::store::runs::tests::finding(cred);
            f.finding.evidence = serde_json::json!({ "n": n }).into();
            f
        };
        let findings = vec![
            seen("AKIAB", 1),
            seen("AKIAA", 2),
            seen("AKIAC", 3),
            seen("AKIAB", 4),
            seen("AKIAA", 5),
            seen("AKIAB", 6),
        ];
        let kept: Vec<(String, String)> = Prepared::all(&findings)
            .expect("hashed")
            .iter()
            .map(|p| {
                let cred = p.f.finding.credential_id.clone().unwrap_or_default();
                (cred, p.f.finding.evidence.json().into_owned())
            })
            .collect();
        let want = [("AKIAA", 5), ("AKIAB", 6), ("AKIAC", 3)]
            .map(|(c, n)| (c.to_string(), format!("{{\"n\":{n}}}")));
        assert_eq!(kept, want);
    }

    /// Every form a store location can carry a secret in, and what must
    /// remain visible to be useful.
    #[test]
    fn redaction_removes_every_form_of_secret() {
        let cases = [
            ("postgres://nhi:Pw1@db:5432/nhi", "Pw1", "db:5432/nhi"),
            ("postgres://nhi:P%40w2@db/nhi", "P%40w2", "db/nhi"),
            (
                "postgres://nhi@db/nhi?password=Pw3&sslmode=require",
                "Pw3",
                "sslmode=require",
            ),
            ("postgresql://nhi@db/nhi?sslpassword=Pw4", "Pw4", "db/nhi"),
            ("postgres://nhi@db/nhi?PASSWORD=Pw5", "Pw5", "db/nhi"),
            ("postgres://nhi:Pw6@[bad/nhi", "Pw6", "[bad/nhi"),
            ("postgres://nhi:Pw7@db:99999999/nhi", "Pw7", "nhi"),
            ("postgres://nhi@db/nhi?password=Pw8&x=%zz", "Pw8", "db/nhi"),
            ("host=db password=Pw9 dbname=nhi", "Pw9", "host=db"),
            ("postgres://nhi:Pw10@db/nhi#frag-Pw10", "Pw10", "db/nhi"),
        ];
        for (location, secret, kept) in cases {
            let shown = redact(location);
            assert!(!shown.contains(secret), "{location} -> {shown}");
            assert!(shown.contains(kept), "{location} -> {shown}");
            assert!(shown.contains("***"), "{location} -> {shown}");
            let message = format!("cannot connect to {location}: password {secret} rejected");
            let clean = redact_in(&message, location);
            assert!(!clean.contains(secret), "{clean}");
        }
        // The decoded form of an encoded password is hidden too.
        let clean = redact_in("auth failed for P@w2", "postgres://nhi:P%40w2@db/nhi");
        assert!(!clean.contains("P@w2"), "{clean}");
        // A plain SQLite path is shown as it is.
        assert_eq!(
            redact("/var/lib/nhi-assure/nhi.db"),
            "/var/lib/nhi-assure/nhi.db"
        );
    }
}
