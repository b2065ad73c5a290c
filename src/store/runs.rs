//! Per-run detail for reports on any past run: the findings each run saw
//! (as it saw them) and what it read (inventory per source, approvals as read,
//! rules evaluated), plus read access to runs.
//!
//! Stored by change, not by run (see migration `0004_run_detail.sql`): a
//! finding seen with the same data by consecutive runs is one *sighting*
//! whose `last_run` moves forward, and reading parts are kept once per
//! content. A daemon passing every few minutes over a stable estate adds
//! one small row per run, not a copy of the estate and its findings.
//!
//! Portable by construction: `$n` placeholders, columns read by name, no
//! dialect types in signatures, so the PostgreSQL backend can take this
//! file as it is.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Prepared, SourcedFinding, SqlStore, StoreError};
use crate::engine::estate::SourceStatus;
use crate::engine::findings::Finding;

/// What a run read, already serialised by the caller (the store does not
/// know the report's reading types).
#[derive(Debug, Clone, Copy)]
pub struct RunDetail<'a> {
    /// JSON: per source, its state and inventory.
    pub inventory: &'a str,
    /// JSON: the approvals as read.
    pub approvals: &'a str,
    /// JSON: the rules evaluated.
    pub rules: &'a str,
    /// The findings of the run.
    pub findings: &'a [SourcedFinding],
}

/// What a run read, serialised (as [`RunDetail`] without the findings,
/// which the run record carries).
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// JSON: per source, its state and inventory.
    pub inventory: &'a str,
    /// JSON: the approvals as read.
    pub approvals: &'a str,
    /// JSON: the rules evaluated.
    pub rules: &'a str,
    /// Per body (inventory, approvals, rules), what the caller did with it
    /// ahead of the run; a body named or cut ahead has its text left out.
    pub ahead: [Ahead<'a>; 3],
}

/// What a caller did with a reading's body before its run was recorded.
#[derive(Debug, Clone, Copy, Default)]
pub enum Ahead<'a> {
    /// Nothing: the body is its text.
    #[default]
    Nothing,
    /// Found stored, by this SHA-256 ([`SqlStore::has_blob`]).
    Stored(&'a str),
    /// Cut and packed ([`SqlStore::cut_pieces`]).
    Cut(&'a Chunked),
}

/// One recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Run id.
    pub id: i64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it was recorded.
    pub finished_at: String,
    /// Evaluation instant.
    pub as_of: String,
    /// Command that ran it (`scan`, `plan`, `reconcile`, `daemon`).
    pub command: String,
    /// Per-source status.
    pub sources: Vec<SourceStatus>,
    /// Findings seen.
    pub findings: i64,
    /// Findings (re)opened.
    pub opened: i64,
    /// Findings resolved.
    pub resolved: i64,
    /// Subjects held (their findings not resolved by this run).
    #[serde(skip_serializing_if = "crate::engine::plan::Held::is_empty")]
    pub held: crate::engine::plan::Held,
    /// A targeted run's subjects (it recorded only their findings and no
    /// reading); `None` for a full run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Vec<String>>,
}

/// A finding seen, with the same data, by the consecutive recorded runs
/// `first_run..=last_run`.
#[derive(Debug, Clone)]
pub struct Sighting {
    /// Fingerprint (stable across runs).
    pub fingerprint: String,
    /// First run of the stretch.
    pub first_run: i64,
    /// Last run of the stretch.
    pub last_run: i64,
    /// Rule id.
    pub rule_id: String,
    /// Severity, as stored.
    pub severity: String,
    /// Inventory source; empty for findings on approval records.
    pub source: String,
    /// Credential kind, for credential findings.
    pub credential_kind: Option<String>,
    /// What the finding depends on, as stored (JSON facets; `None` for
    /// sightings recorded before facets were kept).
    pub depends: Option<String>,
    /// The finding itself (`None` when only keys were asked for).
    pub finding: Option<Finding>,
}

/// The format of a run's reading this version writes; it reads this one
/// and every earlier one. 1: before the column existed, gaps as
/// `{"what": name}`; 2: typed gaps (`{"unseen": {"type": …}}`); 3: a
/// partial source's state names the facets its gaps blind (`blinds`)
/// instead of `unseen_kinds` / `unseen_other` (read as the facets they
/// stood for).
pub const READING_FORMAT: i64 = 3;

/// What a run read, as stored, as JSON text.
#[derive(Debug, Clone)]
pub struct StoredReading {
    /// The format it was written in ([`READING_FORMAT`] now).
    pub format_version: i64,
    /// Inventory per source.
    pub inventory: String,
    /// Approvals as read.
    pub approvals: String,
    /// Rules evaluated.
    pub rules: String,
}

/// A sighting's last run as read: an open-ended one reaches the latest run
/// with recorded detail.
const LAST_RUN: &str = "CASE WHEN open_ended = 1
     THEN COALESCE((SELECT MAX(run_id) FROM run_snapshots), last_run)
     ELSE last_run END AS last_run";

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

// Macros rather than functions: a helper would have to name the dialect's
// row or connection type, which the PostgreSQL port would then have to edit.
macro_rules! run_info {
    ($r:expr) => {{
        let r = $r;
        Ok::<RunInfo, StoreError>(RunInfo {
            id: r.try_get("id")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            as_of: r.try_get("as_of")?,
            command: r.try_get("command")?,
            sources: serde_json::from_str(&r.try_get::<String, _>("sources")?)?,
            findings: r.try_get("findings")?,
            opened: r.try_get("opened")?,
            resolved: r.try_get("resolved")?,
            held: match r.try_get::<Option<String>, _>("held")? {
                Some(h) => serde_json::from_str(&h)?,
                None => Default::default(),
            },
            scope: match r.try_get::<Option<String>, _>("scope")? {
                Some(s) => Some(serde_json::from_str(&s)?),
                None => None,
            },
        })
    }};
}

/// A sighting from a row; with its data when given an unpacker
/// (`Option<&mut Unpacker>`).
macro_rules! sighting {
    ($r:expr, $unpacker:expr) => {{
        let r = $r;
        let finding: Option<Finding> = match $unpacker {
            Some(unpacker) => {
                let fp: String = r.try_get("fingerprint")?;
                let packed: Option<Vec<u8>> = r.try_get("data_packed")?;
                let data = unpacker
                    .text(r.try_get("data")?, packed.as_deref())?
                    .ok_or_else(|| super::missing_data(&fp))?;
                Some(serde_json::from_str(&data)?)
            }
            None => None,
        };
        Ok::<Sighting, StoreError>(Sighting {
            fingerprint: r.try_get("fingerprint")?,
            first_run: r.try_get("first_run")?,
            last_run: r.try_get("last_run")?,
            rule_id: r.try_get("rule_id")?,
            severity: r.try_get("severity")?,
            source: r.try_get("source")?,
            credential_kind: r.try_get("credential_kind")?,
            depends: r.try_get("depends")?,
            finding,
        })
    }};
}

/// Whether a finding of a run has an open-ended sighting of its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// None: the finding starts one.
    No,
    /// One, with the finding's facets: nothing to write.
    Same,
    /// One, with other facets: they are updated.
    OtherFacets,
}

/// The open-ended sightings as they bear on a run's findings
/// ([`open_sightings`]).
pub(crate) struct OpenSightings {
    /// Per finding, in the order of the findings read against.
    of: Vec<Open>,
    /// The open-ended sightings (fingerprint, data hash) of no finding of
    /// the run: to close.
    unseen: Vec<(String, String)>,
}

impl OpenSightings {
    /// Each of `n` findings has an open-ended sighting of its data with
    /// its facets, and no other sighting is open-ended (a run whose
    /// findings match the kept open state, [`super::open_state`]).
    pub(crate) fn unchanged(n: usize) -> OpenSightings {
        OpenSightings {
            of: vec![Open::Same; n],
            unseen: Vec::new(),
        }
    }
}

/// The open-ended sightings, matched against `findings` (in fingerprint
/// byte order, one per fingerprint, as [`Prepared::all`] leaves them) as
/// they are read: no map of a million keys is built. Read from the
/// partial index alone (migration 0016), in pages; the row comparison is a
/// range on that index on both backends (PostgreSQL scanned the whole
/// index per page for the same test spelt with `OR`). The pages come in
/// the database's collation, so each row is found by binary search rather
/// than merged.
pub(crate) async fn open_sightings(
    conn: &mut sqlx::AnyConnection,
    findings: &[Prepared<'_>],
) -> Result<OpenSightings, StoreError> {
    let mut open = OpenSightings {
        of: vec![Open::No; findings.len()],
        unseen: Vec::new(),
    };
    let mut facets = super::DependsReader::default();
    let mut after = (String::new(), String::new());
    loop {
        let sql = super::batch::json_page(
            conn,
            "fingerprint, data_sha256, depends",
            "fingerprint, data_sha256",
            &format!(
                "SELECT fingerprint, data_sha256, depends FROM finding_sightings
                 WHERE open_ended = 1 AND (fingerprint, data_sha256) > ($1, $2)
                 ORDER BY fingerprint, data_sha256 LIMIT {}",
                super::batch::PAGE_ROWS
            ),
        );
        let (text,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&after.0)
            .bind(&after.1)
            .fetch_one(&mut *conn)
            .await?;
        let page: Vec<(String, String, Option<String>)> = serde_json::from_str(&text)?;
        let full = page.len() >= super::batch::PAGE_ROWS;
        if let Some((fp, hash, _)) = page.last() {
            after = (fp.clone(), hash.clone());
        }
        for (fp, hash, depends) in page {
            match findings.binary_search_by(|p| p.fp.as_str().cmp(&fp)) {
                Ok(i) if findings[i].hash.is(&hash) => {
                    let same =
                        facets.read(depends.as_deref()) == Some(findings[i].f.depends.known());
                    open.of[i] = if same { Open::Same } else { Open::OtherFacets };
                }
                _ => open.unseen.push((fp, hash)),
            }
        }
        if !full {
            break;
        }
    }
    Ok(open)
}

/// Record that run `run` saw `findings`; `prev` is the recorded run before
/// it; `open` the open-ended sightings as the run's transaction sees them
/// ([`open_sightings`] of the same findings). Sightings are open-ended: one
/// seen again with the same data and facets is not written at all; one
/// seen with other facets has them updated (they are as of its latest
/// run); one not seen, or seen with other data, is closed at `prev`; a
/// finding without an open-ended sighting of its data starts one. An
/// unchanged pass writes nothing.
///
/// Returns the findings whose sightings start, for the caller to insert
/// ([`insert_sightings`], [`sightings_stream`]).
async fn sight_all<'p, 'a>(
    conn: &mut sqlx::AnyConnection,
    prev: i64,
    findings: &'p [Prepared<'a>],
    open: OpenSightings,
) -> Result<Vec<&'p Prepared<'a>>, StoreError> {
    let max = super::batch::max_params(conn);
    // By `depends` (a handful of distinct values): one UPDATE sets one.
    let mut redepend: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut start: Vec<&Prepared<'_>> = Vec::new();
    for (p, of) in findings.iter().zip(&open.of) {
        match of {
            Open::Same => {}
            Open::OtherFacets => redepend
                .entry(p.f.depends.stored())
                .or_default()
                .push((p.fp.clone(), p.hash.hex())),
            Open::No => start.push(p),
        }
    }
    let close = open.unseen;
    // The sightings started are written (and the open state forgotten
    // for them) by the caller.
    if !(redepend.is_empty() && close.is_empty()) {
        super::open_state::forget(conn).await?;
    }
    // Found through the primary key's fingerprint (each pair's first
    // parameter, named again in the `IN` list), then the pair.
    let pairs = |chunk: &[(String, String)], fixed: usize| {
        let fps: Vec<String> = (0..chunk.len())
            .map(|i| format!("${}", fixed + 1 + 2 * i))
            .collect();
        format!(
            "open_ended = 1 AND fingerprint IN ({}) AND (fingerprint, data_sha256) IN (VALUES {})",
            fps.join(", "),
            super::batch::values(chunk.len(), 2, fixed)
        )
    };
    for (depends, keys) in &redepend {
        for chunk in keys.chunks(super::batch::rows_per_statement(max, 2, 1)) {
            let sql = format!(
                "UPDATE finding_sightings SET depends = $1 WHERE {}",
                pairs(chunk, 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(depends.as_str());
            for (fp, hash) in chunk {
                q = q.bind(fp).bind(hash);
            }
            q.execute(&mut *conn).await?;
        }
    }
    for chunk in close.chunks(super::batch::rows_per_statement(max, 2, 1)) {
        // Never before its own first run (a sighting started by this run
        // and added to twice is not in `open`, but a damaged store could be).
        let sql = format!(
            "UPDATE finding_sightings SET open_ended = 0,
                 last_run = CASE WHEN first_run > $1 THEN first_run ELSE $1 END
             WHERE {}",
            pairs(chunk, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(prev);
        for (fp, hash) in chunk {
            q = q.bind(fp).bind(hash);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(start)
}

/// Start open-ended sightings of `rows` at run `run`, a thousand rows to
/// a statement ([`super::batch::BulkRows`]), each one's data packed
/// ([`super::packed`]).
async fn insert_sightings(
    conn: &mut sqlx::AnyConnection,
    run: i64,
    rows: &[&Prepared<'_>],
) -> Result<(), StoreError> {
    let stream = sightings_stream(conn, run, rows);
    super::write_open(conn, &[stream]).await
}

/// [`insert_sightings`]'s rows as a [`super::batch::Stream`] (for
/// [`super::write_open`]).
pub(crate) fn sightings_stream<'s>(
    conn: &sqlx::AnyConnection,
    run: i64,
    rows: &'s [&Prepared<'_>],
) -> super::batch::Stream<'s> {
    use super::batch::Cell;
    use rayon::prelude::*;
    let bulk = super::batch::BulkRows::new(conn, 8, 1);
    // Each row: its 8 own values; the run (fixed 1) as first and last run.
    let cols: Vec<String> = (0..6).map(|i| bulk.col(i)).collect();
    let run_col = bulk.fixed(1);
    let sql = format!(
        "INSERT INTO finding_sightings (fingerprint, first_run, last_run, rule_id, severity,
             source, credential_kind, data_sha256, data, data_packed, depends, open_ended)
         SELECT {}, {run_col}, {run_col}, {}, '', {}, {}, 1 FROM {} WHERE true
         ON CONFLICT (fingerprint, first_run) DO NOTHING",
        cols[0],
        cols[1..].join(", "),
        bulk.bytes_col(6),
        bulk.col(7),
        super::batch::ROWS,
    );
    // A chunk's rows, their data packed on every core.
    let encode =
        |chunk: &[&Prepared<'_>], sink: &mut super::batch::Sink| -> Result<(), StoreError> {
            let packed: Vec<Vec<u8>> = chunk
                .par_iter()
                .map(|p| {
                    let data = p.data()?;
                    super::packed::with_packer(|packer| packer.pack(data.as_bytes()))
                })
                .collect::<Result<_, StoreError>>()?;
            for (p, packed) in chunk.iter().zip(&packed) {
                let hash = p.hash.hex_bytes();
                sink.row(&[
                    Cell::Text(&p.fp),
                    Cell::Text(&p.f.finding.rule_id),
                    Cell::Text(p.f.finding.severity.as_str()),
                    Cell::Text(&p.f.source),
                    p.f.credential_kind.map(|k| k.as_str()).into(),
                    Cell::Text(super::hex_str(&hash)),
                    Cell::Bytes(packed),
                    Cell::Text(&p.f.depends.stored()),
                ])?;
            }
            Ok(())
        };
    let fixed = vec![super::batch::Fixed::Int(run)];
    super::batch::Stream::new(&bulk, &sql, fixed, rows, encode)
}

/// Record what run `run_id` read and the findings it saw (its sightings),
/// on `conn` (the run's transaction); `open` the open-ended sightings read
/// against `findings` if the caller has read them, else they are read here.
pub(crate) async fn record_detail(
    conn: &mut sqlx::AnyConnection,
    run_id: i64,
    reading: Reading<'_>,
    findings: &[Prepared<'_>],
    open: Option<OpenSightings>,
) -> Result<(), StoreError> {
    let start = detail_but_new_sightings(conn, run_id, reading, findings, open).await?;
    insert_sightings(conn, run_id, &start).await
}

/// [`record_detail`] but the sightings it starts: their findings are
/// returned, for the caller to insert at `run_id` ([`sightings_stream`])
/// beside the run's other rows.
pub(crate) async fn detail_but_new_sightings<'p, 'a>(
    conn: &mut sqlx::AnyConnection,
    run_id: i64,
    reading: Reading<'_>,
    findings: &'p [Prepared<'a>],
    open: Option<OpenSightings>,
) -> Result<Vec<&'p Prepared<'a>>, StoreError> {
    let clock = std::time::Instant::now();
    let row = sqlx::query("SELECT MAX(run_id) AS prev FROM run_snapshots WHERE run_id < $1")
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
    let prev = row.try_get::<Option<i64>, _>("prev")?.unwrap_or(-1);
    let mut hashes = Vec::with_capacity(3);
    // The rules stay whole: `run_rules` reads them in one join.
    for ((body, may_chunk), stored) in [
        (reading.inventory, true),
        (reading.approvals, true),
        (reading.rules, false),
    ]
    .into_iter()
    .zip(reading.ahead)
    {
        hashes.push(match stored {
            Ahead::Stored(hash) => stored_blob(&mut *conn, hash).await?,
            Ahead::Cut(c) => put_chunked(&mut *conn, c).await?,
            Ahead::Nothing => put_blob(&mut *conn, body, may_chunk).await?,
        });
    }
    sqlx::query(
        "INSERT INTO run_snapshots (run_id, inventory_sha256, approvals_sha256, rules_sha256, format_version)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(run_id)
    .bind(&hashes[0])
    .bind(&hashes[1])
    .bind(&hashes[2])
    .bind(READING_FORMAT)
    .execute(&mut *conn)
    .await?;
    let stored = clock.elapsed();
    let open = match open {
        Some(open) => open,
        None => open_sightings(&mut *conn, findings).await?,
    };
    let start = sight_all(conn, prev, findings, open).await?;
    tracing::debug!(reading = ?stored, sightings = ?(clock.elapsed() - stored), "detail recorded");
    Ok(start)
}

/// `hash`, a body found stored before this transaction: still there (a
/// body is never deleted, but a run must not name one it cannot read).
async fn stored_blob(conn: &mut sqlx::AnyConnection, hash: &str) -> Result<String, StoreError> {
    let there = blob_there(conn, hash).await?.then(|| hash.to_string());
    there.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "snapshot {hash}: stored before this run, gone since"
        ))
    })
}

/// Bodies over this many bytes are stored as content-defined chunks.
const CHUNKED_OVER: usize = 1 << 20;
/// FastCDC sizes (minimum, average, maximum): at a million credentials a
/// reading is ~1,200 chunks, and one changed credential costs one chunk.
const CHUNK_SIZES: (usize, usize, usize) = (64 << 10, 256 << 10, 1 << 20);

/// `body` cut where its content says (FastCDC 2020, so an insertion moves
/// only the cuts near it), each cut moved forward to a UTF-8 boundary so
/// every chunk is text. Concatenated, the chunks are `body`. The
/// reference [`StreamChunks`] is held to (and how earlier readings were
/// cut: the same cuts share their chunks).
#[cfg(test)]
pub(crate) fn chunks(body: &str) -> Vec<&str> {
    let (min, avg, max) = CHUNK_SIZES;
    let bytes = body.as_bytes();
    let cdc = fastcdc::v2020::FastCDC::new(bytes, min, avg, max);
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let (_, cut) = cdc.cut(start, bytes.len() - start);
        let mut end = cut.clamp(start + 1, bytes.len());
        while !body.is_char_boundary(end) {
            end += 1;
        }
        out.push(&body[start..end]);
        start = end;
    }
    out
}

/// The chunks of a text given as consecutive pieces of its bytes, cut
/// where its content says (FastCDC 2020, so an insertion moves only the
/// cuts near it), each cut moved forward to a UTF-8 boundary so every
/// chunk is text; each chunk owned, the text never whole. A cut looks at most [`CHUNK_SIZES`]' maximum ahead (FastCDC's
/// cut depends only on the bytes from its start to there, or to the end),
/// and at most three bytes further to reach a character's boundary.
pub(crate) struct StreamChunks<I> {
    pieces: I,
    buf: Vec<u8>,
    /// Where the next chunk starts in `buf`.
    start: usize,
}

impl<I: Iterator<Item = Vec<u8>>> StreamChunks<I> {
    /// The chunks of the text `pieces` join into.
    pub(crate) fn new(pieces: I) -> StreamChunks<I> {
        StreamChunks {
            pieces,
            buf: Vec::new(),
            start: 0,
        }
    }
}

impl<I: Iterator<Item = Vec<u8>>> Iterator for StreamChunks<I> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let (min, avg, max) = CHUNK_SIZES;
        // A maximal cut and the longest move to a boundary, ahead.
        if self.buf.len() - self.start < max + 4 {
            // What is cut goes (at most a maximal cut's bytes move, about
            // once a piece).
            self.buf.drain(..self.start);
            self.start = 0;
            while self.buf.len() < max + 4 {
                let Some(piece) = self.pieces.next() else {
                    break;
                };
                self.buf.extend_from_slice(&piece);
            }
        }
        let ahead = &self.buf[self.start..];
        if ahead.is_empty() {
            return None;
        }
        let (_, cut) = fastcdc::v2020::FastCDC::new(ahead, min, avg, max).cut(0, ahead.len());
        let mut end = cut.clamp(1, ahead.len());
        // Forward past continuation bytes (`10xxxxxx`) to a boundary.
        while end < ahead.len() && ahead[end] & 0xC0 == 0x80 {
            end += 1;
        }
        let chunk = ahead[..end].to_vec();
        self.start += end;
        Some(chunk)
    }
}

/// Insert a blob row unless its hash is there; whether it was new.
async fn insert_blob(
    conn: &mut sqlx::AnyConnection,
    hash: &str,
    body: &str,
    packed: Option<&[u8]>,
) -> Result<bool, StoreError> {
    let r = sqlx::query(
        "INSERT INTO snapshot_blobs (sha256, body, body_packed) VALUES ($1, $2, $3)
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(hash)
    .bind(body)
    .bind(packed)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Whether a body or chunk with SHA-256 `hash` is stored.
async fn blob_there(conn: &mut sqlx::AnyConnection, hash: &str) -> Result<bool, StoreError> {
    let there: Option<(String,)> =
        sqlx::query_as("SELECT sha256 FROM snapshot_blobs WHERE sha256 = $1")
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(there.is_some())
}

/// A large reading body cut into content-defined chunks, those the store
/// did not hold packed: what [`put_blob`] writes of it, made ahead of
/// the run by [`SqlStore::cut_pieces`] so its text need not be held until
/// then. Chunks are never deleted: one stored when it was cut is there
/// when it is written.
pub struct Chunked {
    /// The whole body's SHA-256.
    hash: String,
    /// Each chunk's SHA-256, in order.
    chunks: Vec<String>,
    /// The chunks not stored when cut: their index and packed bytes.
    packed: Vec<(usize, Vec<u8>)>,
}

impl std::fmt::Debug for Chunked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunked")
            .field("hash", &self.hash)
            .field("chunks", &self.chunks.len())
            .field("packed", &self.packed.len())
            .finish()
    }
}

/// A body (with SHA-256 `hash`), given as the pieces of its bytes, cut
/// ([`StreamChunks`]); only the chunks no earlier reading has are packed:
/// a changed estate shares all but a few. A batch of chunks at a time,
/// hashed and packed on every core, then dropped, each piece once cut.
async fn cut_stream(
    conn: &mut sqlx::AnyConnection,
    pieces: impl Iterator<Item = Vec<u8>>,
    hash: String,
) -> Result<Chunked, StoreError> {
    use rayon::prelude::*;
    // Some 16 MB of text at a time, on average.
    const BATCH: usize = 64;
    let mut stream = StreamChunks::new(pieces);
    let mut hashes: Vec<String> = Vec::new();
    let mut packed: Vec<(usize, Vec<u8>)> = Vec::new();
    loop {
        let batch: Vec<Vec<u8>> = stream.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            break;
        }
        let first = hashes.len();
        let batch_hashes: Vec<String> = batch
            .par_iter()
            .map(|c| hex::encode(Sha256::digest(c)))
            .collect();
        let mut missing: Vec<usize> = Vec::new();
        for (i, c) in batch_hashes.iter().enumerate() {
            if !blob_there(conn, c).await? {
                missing.push(i);
            }
        }
        let new: Vec<Vec<u8>> = missing
            .par_iter()
            .map(|&i| super::packed::pack_plain(&batch[i]))
            .collect::<Result<_, _>>()?;
        packed.extend(missing.into_iter().map(|i| first + i).zip(new));
        hashes.extend(batch_hashes);
    }
    Ok(Chunked {
        hash,
        chunks: hashes,
        packed,
    })
}

/// Store a cut body: its row, its new chunks, their order.
async fn put_chunked(conn: &mut sqlx::AnyConnection, c: &Chunked) -> Result<String, StoreError> {
    // Already there: its chunks were written with it, in its transaction.
    if !insert_blob(conn, &c.hash, "", None).await? {
        return Ok(c.hash.clone());
    }
    for (i, packed) in &c.packed {
        let hash = c.chunks.get(*i).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "snapshot {}: chunk {i} of {}",
                c.hash,
                c.chunks.len()
            ))
        })?;
        insert_blob(conn, hash, "", Some(packed)).await?;
    }
    for (seq, chunk) in c.chunks.iter().enumerate() {
        let seq = i32::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("reading of {} chunks", seq)))?;
        sqlx::query(
            "INSERT INTO snapshot_chunks (blob_sha256, seq, chunk_sha256) VALUES ($1, $2, $3)",
        )
        .bind(&c.hash)
        .bind(seq)
        .bind(chunk)
        .execute(&mut *conn)
        .await?;
    }
    Ok(c.hash.clone())
}

/// Whether a body of `len` bytes that `may_chunk` is stored as chunks.
pub(crate) fn chunked(may_chunk: bool, len: usize) -> bool {
    may_chunk && len > CHUNKED_OVER
}

/// Store `body` by its SHA-256 (once: an identical body is not written
/// again) and return the hash. A large body that `may_chunk` is stored as
/// chunks, each by its own hash, so what two bodies share is stored once.
async fn put_blob(
    conn: &mut sqlx::AnyConnection,
    body: &str,
    may_chunk: bool,
) -> Result<String, StoreError> {
    let h = sha256_hex(body);
    if !chunked(may_chunk, body.len()) {
        insert_blob(conn, &h, body, None).await?;
        return Ok(h);
    }
    if blob_there(conn, &h).await? {
        return Ok(h);
    }
    let c = cut_stream(conn, in_pieces(body), h).await?;
    put_chunked(conn, &c).await
}

/// `body`'s bytes in pieces of 4 MiB, for [`cut_stream`]: copied a piece
/// at a time, not whole.
fn in_pieces(body: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    body.as_bytes().chunks(4 << 20).map(<[u8]>::to_vec)
}

impl SqlStore {
    /// A stored body by its hash: whole, or its chunks joined in order; the
    /// join is checked against the hash, so a damaged chunk is an error,
    /// never a wrong reading.
    async fn blob(&self, sha256: &str) -> Result<String, StoreError> {
        let parts: Vec<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT b.body, b.body_packed FROM snapshot_chunks c
             JOIN snapshot_blobs b ON b.sha256 = c.chunk_sha256
             WHERE c.blob_sha256 = $1 ORDER BY c.seq",
        )
        .bind(sha256)
        .fetch_all(&self.pool)
        .await?;
        if parts.is_empty() {
            let (body,): (String,) =
                sqlx::query_as("SELECT body FROM snapshot_blobs WHERE sha256 = $1")
                    .bind(sha256)
                    .fetch_one(&self.pool)
                    .await?;
            return Ok(body);
        }
        // Chunks written packed (migration 0019) and as text alike,
        // unpacked on every core straight into one buffer, each chunk's
        // length known from its text or its frame's header: a body of
        // 400 MB is neither copied once more nor held twice while its
        // pieces are joined.
        let corrupt = |why: &str| StoreError::Corrupt(format!("snapshot {sha256}: {why}"));
        let lens = parts
            .iter()
            .map(|(text, packed)| match (text.is_empty(), packed) {
                (false, _) => Ok(text.len()),
                (true, Some(p)) => super::packed::content_size(p),
                (true, None) => Err(corrupt("an empty chunk")),
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let total = lens
            .iter()
            .try_fold(0usize, |a, &n| a.checked_add(n))
            .ok_or_else(|| corrupt("chunks too large"))?;
        let mut body = vec![0u8; total];
        let mut rest = body.as_mut_slice();
        let mut pieces = Vec::with_capacity(lens.len());
        for n in lens {
            let (piece, after) = std::mem::take(&mut rest).split_at_mut(n);
            pieces.push(piece);
            rest = after;
        }
        use rayon::prelude::*;
        parts
            .into_par_iter()
            .zip(pieces)
            .try_for_each(|((text, packed), out)| match packed {
                Some(p) if text.is_empty() => {
                    super::packed::with_unpacker(|unpacker| unpacker.unpack_into(&p, out))
                }
                _ => {
                    out.copy_from_slice(text.as_bytes());
                    Ok(())
                }
            })?;
        let body = String::from_utf8(body).map_err(|_| corrupt("not UTF-8"))?;
        if sha256_hex(&body) != sha256 {
            return Err(StoreError::Corrupt(format!(
                "snapshot {sha256}: its chunks do not add up to it"
            )));
        }
        Ok(body)
    }

    /// Whether a reading's body with SHA-256 `hash` is stored (bodies are
    /// content-addressed and never deleted): a pass then records it by
    /// hash, without holding its text.
    pub async fn has_blob(&self, hash: &str) -> Result<bool, StoreError> {
        blob_there(&mut *self.pool.acquire().await?, hash).await
    }

    /// `body` (a reading's inventory or approvals, with SHA-256 `hash`) cut
    /// and packed ahead of its run, if it is large enough to be stored as
    /// chunks: a pass then drops its text and records it from this.
    pub async fn cut_body(&self, body: &str, hash: String) -> Result<Option<Chunked>, StoreError> {
        if !chunked(true, body.len()) {
            return Ok(None);
        }
        self.cut_pieces(in_pieces(body), hash).await.map(Some)
    }

    /// As [`SqlStore::cut_body`], for a body large enough to be stored as
    /// chunks ([`chunked`]) given as the pieces of its bytes, never joined
    /// into one text.
    pub(crate) async fn cut_pieces(
        &self,
        pieces: impl Iterator<Item = Vec<u8>>,
        hash: String,
    ) -> Result<Chunked, StoreError> {
        let mut conn = self.pool.acquire().await?;
        cut_stream(&mut conn, pieces, hash).await
    }

    /// Record what run `run_id` read and the findings it saw, in one
    /// transaction (a pass records both with the run: [`RunRecord::reading`](super::RunRecord)).
    /// Findings added later to the same run (enforce mode's findings about
    /// itself) go through [`SqlStore::add_run_finding`].
    pub async fn record_run_detail(
        &self,
        run_id: i64,
        detail: RunDetail<'_>,
    ) -> Result<(), StoreError> {
        let prepared = Prepared::all(detail.findings)?;
        let reading = Reading {
            inventory: detail.inventory,
            approvals: detail.approvals,
            rules: detail.rules,
            ahead: Default::default(),
        };
        let mut tx = self.pool.begin().await?;
        record_detail(&mut tx, run_id, reading, &prepared, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record one more finding of run `run_id` (after its detail): nothing
    /// if an open-ended sighting has its data, else one starts at `run_id`.
    pub async fn add_run_finding(&self, run_id: i64, f: &SourcedFinding) -> Result<(), StoreError> {
        let p = Prepared::new(f)?;
        let mut tx = self.pool.begin().await?;
        super::open_state::forget(&mut tx).await?;
        let open = sqlx::query(
            "UPDATE finding_sightings SET depends = $3
             WHERE open_ended = 1 AND fingerprint = $1 AND data_sha256 = $2",
        )
        .bind(&p.fp)
        .bind(p.hash.hex())
        .bind(p.f.depends.stored())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if open == 0 {
            insert_sightings(&mut tx, run_id, &[&p]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest run with a recorded reading (a full run), if any: what
    /// reports mean by `latest`.
    pub async fn latest_detailed_run_id(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(run_id) AS id FROM run_snapshots")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("id")?)
    }

    /// The newest run, if any.
    pub async fn latest_run_id(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(id) AS id FROM runs")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("id")?)
    }

    /// One run.
    pub async fn run_info(&self, id: i64) -> Result<Option<RunInfo>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| run_info!(r)).transpose()
    }

    /// Every run up to and including `upto`, oldest first.
    pub async fn runs_upto(&self, upto: i64) -> Result<Vec<RunInfo>, StoreError> {
        let rows = sqlx::query("SELECT * FROM runs WHERE id <= $1 ORDER BY id")
            .bind(upto)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| run_info!(r)).collect()
    }

    /// The findings run `run_id` saw, with their data as it saw them.
    pub async fn run_findings(&self, run_id: i64) -> Result<Vec<Sighting>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT fingerprint, first_run, {LAST_RUN}, rule_id, severity, source, credential_kind,
                 depends, data, data_packed
             FROM finding_sightings WHERE (last_run >= $1 OR open_ended = 1) AND first_run <= $1
             ORDER BY fingerprint"
        )))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        let mut unpacker = super::packed::Unpacker::new()?;
        rows.iter()
            .map(|r| sighting!(r, Some(&mut unpacker)))
            .collect()
    }

    /// The findings run `run_id` saw, as (fingerprint, severity), in
    /// fingerprint order: the sort keys of a report that reads the
    /// findings themselves page by page ([`SqlStore::sightings_of`]).
    pub async fn run_finding_keys(&self, run_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.fingerprint_pages(
            "fingerprint, severity",
            "first_run <= $2 AND (last_run >= $2 OR open_ended = 1)",
            run_id,
        )
        .await
    }

    /// Fingerprints with a sighting before run `run_id` and none that
    /// covers it, sorted: the findings that run may have
    /// resolved (the replay of each says whether it did).
    pub async fn resolved_candidates(&self, run_id: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .fingerprint_pages(
                "fingerprint",
                "first_run <= $2 AND open_ended = 0 AND last_run < $2
                 AND NOT EXISTS (SELECT 1 FROM finding_sightings t
                   WHERE t.fingerprint = s.fingerprint AND t.first_run <= $2
                     AND (t.last_run >= $2 OR t.open_ended = 1))",
                run_id,
            )
            .await?;
        // Byte order on both backends (PostgreSQL's collation may differ).
        let mut fps: Vec<String> = rows.into_iter().map(|(f,)| f).collect();
        fps.sort_unstable();
        fps.dedup();
        Ok(fps)
    }

    /// Rows `cols` of the sightings matching `filter` (on `$2` = `run`), in
    /// pages by fingerprint ([`super::batch::pages_by_fingerprint`]).
    async fn fingerprint_pages<T: serde::de::DeserializeOwned + super::batch::Keyed>(
        &self,
        cols: &str,
        filter: &str,
        run: i64,
    ) -> Result<Vec<T>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let mut out: Vec<T> = Vec::new();
        super::batch::pages_by_fingerprint(
            &mut conn,
            cols,
            &format!("finding_sightings s WHERE {filter}"),
            Some(run),
            |page| out.extend(page),
        )
        .await?;
        Ok(out)
    }

    /// Every sighting of the findings `fps` that began by run `upto`, with
    /// its data, ordered by fingerprint then first run: one page of a
    /// report, enough to replay each one's lifecycle and to show it as
    /// the run saw it.
    pub async fn sightings_of(
        &self,
        fps: &[String],
        upto: i64,
    ) -> Result<Vec<Sighting>, StoreError> {
        if fps.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        // A row's data is its JSON text, or (written packed) its packed
        // value as hex, unpacked below on every core.
        let cols = format!(
            "fingerprint, first_run, last_run, rule_id, severity, source, credential_kind, depends,
             CASE WHEN data = '' THEN NULL ELSE {} END, {}",
            super::batch::json_value(&conn, "data"),
            super::batch::hex_value(&conn, "data_packed")
        );
        let sql = super::batch::json_rows(
            &conn,
            &cols,
            &format!(
                "SELECT fingerprint, first_run, {LAST_RUN}, rule_id, severity, source, credential_kind,
                     depends, data, data_packed
                 FROM finding_sightings
                 WHERE fingerprint IN ({}) AND first_run <= $2",
                super::batch::json_list(&conn, 1)
            ),
        );
        let list = serde_json::to_string(fps)?;
        let (text,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(list)
            .bind(upto)
            .fetch_one(&mut *conn)
            .await?;
        type Row = (
            String,
            i64,
            i64,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<Finding>,
            Option<String>,
        );
        let mut page: Vec<Row> = serde_json::from_str(&text)?;
        drop(text);
        page.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        use rayon::prelude::*;
        page.into_par_iter()
            .map(
                |(
                    fingerprint,
                    first_run,
                    last_run,
                    rule_id,
                    severity,
                    source,
                    kind,
                    depends,
                    f,
                    packed,
                )| {
                    let finding = match (f, packed) {
                        (Some(f), _) => f,
                        (None, Some(hex)) => {
                            serde_json::from_slice(&super::packed::with_unpacker(|unpacker| {
                                unpacker.unpack_hex(&hex)
                            })?)?
                        }
                        (None, None) => return Err(super::missing_data(&fingerprint)),
                    };
                    Ok(Sighting {
                        fingerprint,
                        first_run,
                        last_run,
                        rule_id,
                        severity,
                        source,
                        credential_kind: kind,
                        depends,
                        finding: Some(finding),
                    })
                },
            )
            .collect()
    }

    /// Every sighting (no data) that began by run `upto`: enough to replay
    /// the lifecycle for diffs and first-seen dates.
    pub async fn sightings_upto(&self, upto: i64) -> Result<Vec<Sighting>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT fingerprint, first_run, {LAST_RUN}, rule_id, severity, source, credential_kind, depends
             FROM finding_sightings WHERE first_run <= $1 ORDER BY first_run, fingerprint"
        )))
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| sighting!(r, None::<&mut super::packed::Unpacker>))
            .collect()
    }

    /// The rules each run up to `upto` evaluated (JSON), by run id: which
    /// findings a run could have resolved.
    pub async fn run_rules(&self, upto: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.run_id AS run_id, b.body AS rules FROM run_snapshots s
             JOIN snapshot_blobs b ON b.sha256 = s.rules_sha256
             WHERE s.run_id <= $1 ORDER BY s.run_id",
        )
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("run_id")?, r.try_get("rules")?)))
            .collect()
    }

    /// What run `run_id` read, if it was recorded.
    pub async fn run_reading(&self, run_id: i64) -> Result<Option<StoredReading>, StoreError> {
        let row = sqlx::query(
            "SELECT format_version, inventory_sha256, approvals_sha256, rules_sha256
             FROM run_snapshots WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let hash = |k: &str| r.try_get::<String, _>(k);
        let (inventory, approvals, rules) = (
            hash("inventory_sha256")?,
            hash("approvals_sha256")?,
            hash("rules_sha256")?,
        );
        let (inventory, approvals, rules) = tokio::try_join!(
            self.blob(&inventory),
            self.blob(&approvals),
            self.blob(&rules)
        )?;
        Ok(Some(StoredReading {
            format_version: r.try_get("format_version")?,
            inventory,
            approvals,
            rules,
        }))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::engine::estate::SourceState;
    use crate::engine::rules::{Action, Severity};
    use crate::store::{RunRecord, Store};

    /// A stale-key finding on credential `cred` of one user.
    pub(in crate::store) fn finding(cred: &str) -> SourcedFinding {
        SourcedFinding {
            finding: Finding {
                rule_id: "credential-stale".into(),
                title: "t".into(),
                severity: Severity::High,
                provider: Some("aws".into()),
                identity_id: "arn:aws:iam::1:user/ci".into(),
                credential_id: Some(cred.into()),
                controls: ["OWASP-NHI-2025:NHI7".into()].into(),
                evidence: serde_json::json!({"credential.days_since_last_use": 120}).into(),
                recommended_action: Action::Disable,
                exception: None,
            },
            source: "aws".into(),
            credential_kind: Some(nhi_contract::CredentialKind::AccessKey),
            depends: crate::engine::facets::Facets::USAGE,
        }
    }

    /// A new SQLite store in `dir`.
    async fn fresh_store(dir: &std::path::Path) -> SqlStore {
        SqlStore::open(&dir.join("s.db").display().to_string())
            .await
            .expect("open")
    }

    /// One AWS source, read completely.
    fn complete_aws() -> Vec<SourceStatus> {
        vec![SourceStatus {
            name: "aws".into(),
            provider: nhi_contract::Provider::Aws,
            state: SourceState::Complete,
        }]
    }

    /// A full `scan` run of `findings` recorded without its reading.
    async fn scan_run(
        store: &SqlStore,
        sources: &[SourceStatus],
        rules: &[String],
        findings: &[SourcedFinding],
    ) -> crate::store::RunSummary {
        store
            .record_run(RunRecord {
                started_at: chrono::Utc::now(),
                as_of: chrono::Utc::now(),
                command: "scan",
                sources,
                rules,
                findings,
                held: &Default::default(),
                reading: None,
                scope: None,
            })
            .await
            .expect("run")
    }

    /// Record run `run`'s detail: `inventory` as read, no approvals,
    /// `rules`, and `findings`.
    async fn detail(
        store: &SqlStore,
        run: i64,
        inventory: &str,
        rules: &str,
        findings: &[SourcedFinding],
    ) {
        store
            .record_run_detail(
                run,
                RunDetail {
                    inventory,
                    approvals: "[]",
                    rules,
                    findings,
                },
            )
            .await
            .expect("detail");
    }

    async fn count(store: &SqlStore, table: &'static str) -> i64 {
        let sql = match table {
            "finding_sightings" => "SELECT COUNT(*) AS n FROM finding_sightings",
            "run_snapshots" => "SELECT COUNT(*) AS n FROM run_snapshots",
            _ => "SELECT COUNT(*) AS n FROM snapshot_blobs",
        };
        sqlx::query(sql)
            .fetch_one(&store.pool)
            .await
            .expect("count")
            .try_get("n")
            .expect("n")
    }

    /// Rows written in bulk, several statements of a thousand rows and a
    /// short last one, land column by column as written: every finding's
    /// row, its sighting and its data read back exactly (a value bound one
    /// place off would move every later column of the statement).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_writes_keep_every_column_of_every_row() {
        use crate::engine::facets::Facets;
        use nhi_contract::CredentialKind;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(dir.path()).await;
        let sources = complete_aws();
        let severities = [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ];
        let kinds = [
            None,
            Some(CredentialKind::AccessKey),
            Some(CredentialKind::Certificate),
        ];
        let rules = [
            "credential-stale",
            "credential-long-lived",
            "approval-expired",
        ];
        let list: Vec<SourcedFinding> = (0..2_345usize)
            .map(|i| {
                let mut f = finding(&format!("AKIA{i:06}"));
                f.finding.rule_id = rules[i % 3].into();
                f.finding.severity = severities[i % 5];
                f.finding.provider = (i % 4 != 0).then(|| "aws".into());
                f.finding.identity_id = format!("arn:aws:iam::{}:user/équipe-{i}", i % 7);
                f.finding.credential_id = (i % 11 != 0).then(|| format!("AKIA{i:06}"));
                f.finding.evidence = serde_json::json!({"n": i, "note": "a \"quoted\" ✓"}).into();
                f.source = ["aws", "aws-eu", ""][i % 3].into();
                f.credential_kind = kinds[(i / 3) % 3];
                f.depends = match i % 2 {
                    0 => Facets::USAGE,
                    _ => Facets::PRIVILEGE.with(Facets::USAGE),
                };
                f
            })
            .collect();
        let rule_ids: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        let s = scan_run(&store, &sources, &rule_ids, &list).await;
        assert_eq!(s.opened, list.len() as i64);
        detail(&store, s.run_id, "[]", "[]", &list).await;
        let mut want: Vec<&SourcedFinding> = list.iter().collect();
        want.sort_by_key(|f| f.finding.fingerprint());
        type Row = (
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT fingerprint, rule_id, severity, provider, source, identity_id,
                 credential_id, credential_kind, depends, data_sha256
             FROM findings ORDER BY fingerprint",
        )
        .fetch_all(&store.pool)
        .await
        .expect("rows");
        assert_eq!(rows.len(), want.len());
        for (row, f) in rows.iter().zip(&want) {
            let p = crate::store::Prepared::new(f).expect("prepared");
            let expect: Row = (
                f.finding.fingerprint(),
                f.finding.rule_id.to_string(),
                f.finding.severity.as_str().to_string(),
                f.finding.provider.as_deref().map(str::to_string),
                f.source.to_string(),
                f.finding.identity_id.clone(),
                f.finding.credential_id.clone(),
                f.credential_kind.map(|k| k.as_str().to_string()),
                f.depends.stored(),
                p.hash.hex(),
            );
            assert_eq!(row, &expect);
        }
        let open: Vec<Finding> = store
            .open_findings()
            .await
            .expect("open")
            .into_iter()
            .map(|s| s.finding)
            .collect();
        let data: Vec<Finding> = want.iter().map(|f| f.finding.clone()).collect();
        assert_eq!(open, data, "each finding's data, as written");
        let mut seen = store.run_findings(s.run_id).await.expect("sightings");
        seen.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        assert_eq!(seen.len(), want.len());
        for (got, f) in seen.iter().zip(&want) {
            assert_eq!(got.fingerprint, f.finding.fingerprint());
            assert_eq!((got.first_run, got.last_run), (s.run_id, s.run_id));
            assert_eq!(got.rule_id, &*f.finding.rule_id);
            assert_eq!(got.severity, f.finding.severity.as_str());
            assert_eq!(got.source, &*f.source);
            assert_eq!(
                got.credential_kind.as_deref(),
                f.credential_kind.map(|k| k.as_str())
            );
            assert_eq!(got.depends.as_deref(), Some(f.depends.stored().as_str()));
            assert_eq!(got.finding.as_ref(), Some(&f.finding));
        }
    }

    #[tokio::test]
    async fn sqlite_is_built_without_memory_statistics() {
        // `.cargo/config.toml` builds the bundled SQLite with
        // SQLITE_DEFAULT_MEMSTATUS=0: every allocation otherwise takes a
        // global mutex. A build that lost the setting fails here.
        let dir = tempfile::tempdir().unwrap();
        let store = fresh_store(dir.path()).await;
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_opens_of_a_fresh_store_all_migrate() {
        // Separate pools stand for separate processes (a command beside the daemon).
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.db");
            let opens = (0..4).map(|_| {
                let p = path.clone();
                tokio::spawn(
                    async move { SqlStore::open(&p.display().to_string()).await.map(|_| ()) },
                )
            });
            for r in futures_util::future::join_all(opens).await {
                r.expect("join")
                    .expect("open while another process migrates");
            }
        }
    }

    /// An inventory-like JSON body of `n` credentials, with non-ASCII names
    /// (so cuts land inside multi-byte characters too).
    fn big_body(n: usize, changed: Option<usize>) -> String {
        let items: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let days = if Some(i) == changed { 999 } else { i % 90 };
                serde_json::json!({"id": format!("AKIA{i:016}"), "name": format!("dépôt-équipe-{i}"),
                    "identity": format!("arn:aws:iam::1:user/u{}", i / 3), "last_used_days": days})
            })
            .collect();
        serde_json::to_string(&items).expect("json")
    }

    #[test]
    fn chunks_join_back_to_the_body_and_a_change_moves_few_cuts() {
        let a = big_body(40_000, None);
        let b = big_body(40_000, Some(20_000));
        let (ca, cb) = (chunks(&a), chunks(&b));
        assert_eq!(ca.concat(), a);
        assert_eq!(cb.concat(), b);
        assert!(ca.len() > 4, "{} chunks of {} bytes", ca.len(), a.len());
        assert!(ca.iter().all(|c| c.len() <= (1 << 20) + 4));
        let shared = cb.iter().filter(|c| ca.contains(c)).count();
        assert!(shared + 2 >= cb.len(), "{shared} of {} shared", cb.len());
        assert!(chunks("").is_empty());
        assert_eq!(chunks("é"), vec!["é"]);
    }

    /// Cut from pieces of any size, a text is cut where it is cut whole,
    /// multi-byte characters split across pieces and cuts included.
    #[test]
    fn streamed_chunks_are_the_chunks_of_the_joined_text() {
        let json = big_body(40_000, None);
        let wide: String = (0..300_000).map(|i| format!("{i}日本🦀é")).collect();
        for text in [json.as_str(), wide.as_str(), "", "é"] {
            let whole: Vec<&[u8]> = chunks(text).into_iter().map(str::as_bytes).collect();
            assert!(text.len() < 1 << 20 || whole.len() > 4, "{}", whole.len());
            for size in [1, 3, 4096, 65_537, 1 << 20, 4 << 20, usize::MAX] {
                let pieces = text.as_bytes().chunks(size).map(<[u8]>::to_vec);
                let streamed: Vec<Vec<u8>> = StreamChunks::new(pieces).collect();
                assert_eq!(streamed, whole, "pieces of {size} bytes");
            }
        }
    }

    #[tokio::test]
    async fn a_large_reading_is_stored_in_chunks_shared_between_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(dir.path()).await;
        let sources = complete_aws();
        let bytes = || async {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(LENGTH(CAST(body AS BLOB)) + COALESCE(LENGTH(body_packed), 0)), 0) AS BIGINT)
                 FROM snapshot_blobs",
            )
            .fetch_one(&store.pool)
            .await
            .expect("sum");
            n
        };
        let bodies = [
            big_body(40_000, None),
            big_body(40_000, None),
            big_body(40_000, Some(20_000)),
        ];
        let mut ids = Vec::new();
        let mut growth = Vec::new();
        for body in &bodies {
            let before = bytes().await;
            let run = scan_run(&store, &sources, &[], &[]).await;
            detail(&store, run.run_id, body, "[]", &[]).await;
            growth.push(bytes().await - before);
            ids.push(run.run_id);
        }
        let size = bodies[0].len() as i64;
        // The first run stores the body (in chunks, packed), the identical
        // second nothing, the changed third the chunk or two around the
        // change, not the body again.
        assert!(
            growth[0] > 0 && growth[0] < size / 2,
            "{growth:?} of {size}"
        );
        assert_eq!(growth[1], 0);
        assert!(
            growth[2] > 0 && growth[2] < growth[0] / 2,
            "{growth:?} of {size}"
        );
        let (text,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM snapshot_blobs b JOIN snapshot_chunks c ON b.sha256 = c.chunk_sha256
             WHERE b.body <> '' OR b.body_packed IS NULL",
        )
        .fetch_one(&store.pool)
        .await
        .expect("count");
        assert_eq!(text, 0, "every chunk is stored packed");
        for (id, body) in ids.iter().zip(&bodies) {
            let got = store.run_reading(*id).await.expect("read").expect("some");
            assert_eq!(&got.inventory, body);
            assert_eq!(got.approvals, "[]");
        }
        // A damaged chunk is an error, never a wrong reading: its packed
        // value (a frame without its content), or a text put in its place.
        for damage in [
            "UPDATE snapshot_blobs SET body_packed = X'0228B52FFD000000' WHERE sha256 =
             (SELECT chunk_sha256 FROM snapshot_chunks ORDER BY seq DESC LIMIT 1)",
            "UPDATE snapshot_blobs SET body = 'x' WHERE sha256 =
             (SELECT chunk_sha256 FROM snapshot_chunks ORDER BY seq LIMIT 1)",
        ] {
            sqlx::query(damage)
                .execute(&store.pool)
                .await
                .expect("damage");
            assert!(matches!(
                store.run_reading(ids[0]).await,
                Err(StoreError::Corrupt(_))
            ));
        }
    }

    #[tokio::test]
    async fn run_detail_is_kept_by_change_and_read_back_per_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = fresh_store(dir.path()).await;
        assert_eq!(store.latest_run_id().await.expect("latest"), None);
        let sources = complete_aws();
        let mut changed = finding("AKIA2");
        changed.finding.evidence =
            serde_json::json!({"credential.days_since_last_use": 121}).into();
        // Run 1: AKIA1, AKIA2. Run 2: the same. Run 3: AKIA2 with new
        // evidence. Run 4: AKIA1 again (after a gap), AKIA2 unchanged.
        let runs: Vec<Vec<SourcedFinding>> = vec![
            vec![finding("AKIA1"), finding("AKIA2")],
            vec![finding("AKIA1"), finding("AKIA2")],
            vec![changed.clone()],
            vec![finding("AKIA1"), changed.clone()],
        ];
        let mut ids = Vec::new();
        for list in &runs {
            let s = scan_run(&store, &sources, &["credential-stale".to_string()], list).await;
            detail(
                &store,
                s.run_id,
                "[]",
                r#"[{"id":"credential-stale"}]"#,
                list,
            )
            .await;
            ids.push(s.run_id);
        }
        assert_eq!(store.latest_run_id().await.expect("latest"), Some(ids[3]));
        // Each run reads back exactly what it saw, with the data it saw.
        for (i, list) in runs.iter().enumerate() {
            let got: Vec<Finding> = store
                .run_findings(ids[i])
                .await
                .expect("findings")
                .into_iter()
                .map(|s| s.finding.expect("data"))
                .collect();
            let want: Vec<Finding> = list.iter().map(|f| f.finding.clone()).collect();
            assert_eq!(got, want, "run {}", ids[i]);
        }
        // Stored by change: AKIA1 [1,2] and [4]; AKIA2 [1,2] and [3,4].
        assert_eq!(count(&store, "finding_sightings").await, 4);
        let spans: Vec<(String, i64, i64)> = store
            .sightings_upto(ids[3])
            .await
            .expect("sightings")
            .into_iter()
            .map(|s| {
                assert!(s.finding.is_none());
                (s.fingerprint, s.first_run, s.last_run)
            })
            .collect();
        let fp = |c: &str| finding(c).finding.fingerprint();
        assert!(spans.contains(&(fp("AKIA1"), ids[0], ids[1])));
        assert!(spans.contains(&(fp("AKIA1"), ids[3], ids[3])));
        assert!(spans.contains(&(fp("AKIA2"), ids[0], ids[1])));
        assert!(spans.contains(&(fp("AKIA2"), ids[2], ids[3])));
        // Identical reading parts are kept once.
        assert_eq!(count(&store, "run_snapshots").await, 4);
        assert_eq!(count(&store, "snapshot_blobs").await, 2);
        let snap = store
            .run_reading(ids[0])
            .await
            .expect("snap")
            .expect("some");
        assert_eq!(snap.rules, r#"[{"id":"credential-stale"}]"#);
        assert_eq!(snap.inventory, "[]");
        assert_eq!(store.run_rules(ids[3]).await.expect("rules").len(), 4);
        assert!(store.run_reading(999).await.expect("none").is_none());

        // A finding added to the last run (enforce's own), twice: once.
        store
            .add_run_finding(ids[3], &finding("AKIA3"))
            .await
            .expect("add");
        store
            .add_run_finding(ids[3], &finding("AKIA3"))
            .await
            .expect("add");
        store
            .add_run_finding(ids[3], &finding("AKIA1"))
            .await
            .expect("add");
        assert_eq!(store.run_findings(ids[3]).await.expect("f").len(), 3);
        assert_eq!(count(&store, "finding_sightings").await, 5);
        let info = store.run_info(ids[0]).await.expect("info").expect("run");
        assert_eq!(info.sources[0].state, SourceState::Complete);
        assert_eq!(store.runs_upto(ids[3]).await.expect("runs").len(), 4);
    }
}
