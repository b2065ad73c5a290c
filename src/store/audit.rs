//! The hash-chained audit log. Every entry (run recorded, finding opened or
//! resolved, action intent and outcome, undo, approval revoked, config
//! changed) carries the SHA-256 of the entry before it; `verify` walks the
//! chain and names the first entry that was edited, removed or moved.
//!
//! A chain alone cannot show that its newest entries were cut off: `verify`
//! prints the head hash, which signed evidence bundles carry, so a bundle
//! exported earlier proves what the log held then.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::{SqlStore, StoreError};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was written (RFC 3339, UTC).
    pub at: String,
    /// What happened: `run.recorded`, `finding.opened`, `finding.resolved`,
    /// `action.intent`, `action.outcome`, `action.undone`,
    /// `approval.revoked`, `config.changed`.
    pub kind: String,
    /// Run it belongs to, if any.
    pub run_id: Option<i64>,
    /// What it is about (fingerprint, action id, approval id, config path).
    pub subject: Option<String>,
    /// Details (ids and metadata only).
    pub data: serde_json::Value,
    /// Hash of the entry before.
    pub prev_hash: String,
    /// Hash of this entry.
    pub hash: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Verdict {
    /// The chain holds: entries and head hash.
    Intact {
        /// Number of entries.
        entries: i64,
        /// Hash of the newest entry ([`GENESIS`] when empty).
        head: String,
    },
    /// The first break, in words.
    Broken {
        /// Sequence number where the chain breaks.
        seq: i64,
        /// What is wrong there.
        reason: String,
    },
}

/// The hash of an entry: SHA-256 over the JSON array of its fields, so no
/// two different entries share an encoding.
pub fn entry_hash(
    seq: i64,
    at: &str,
    kind: &str,
    run_id: Option<i64>,
    subject: Option<&str>,
    data: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([seq, at, kind, run_id, subject, data, prev_hash]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// An entry to append.
pub struct NewEntry<'a> {
    /// Kind (see [`AuditEntry::kind`]).
    pub kind: &'a str,
    /// Run, if any.
    pub run_id: Option<i64>,
    /// Subject, if any.
    pub subject: Option<&'a str>,
    /// Details.
    pub data: serde_json::Value,
}

/// Append entries on `conn`, inside the caller's transaction when it has
/// one (so the entries commit or vanish with what they record). Concurrent
/// appenders are kept apart by the unique `seq`: the loser's transaction
/// fails rather than forking the chain.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    entries: &[NewEntry<'_>],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_string()));
    let at = super::ts(chrono::Utc::now());
    // Hashes are chained in order here; rows go in as multi-row inserts
    // (a pass that opens a million findings appends a million entries).
    let mut rows: Vec<(i64, &NewEntry<'_>, String, String, String)> =
        Vec::with_capacity(entries.len());
    for e in entries {
        seq += 1;
        let data = serde_json::to_string(&e.data)?;
        let hash = entry_hash(seq, &at, e.kind, e.run_id, e.subject, &data, &prev);
        rows.push((
            seq,
            e,
            data,
            std::mem::replace(&mut prev, hash.clone()),
            hash,
        ));
    }
    const COLS: usize = 8;
    for chunk in rows.chunks(super::batch::rows_per_statement(
        super::batch::max_params(conn),
        COLS,
        0,
    )) {
        let sql = format!(
            "INSERT INTO audit (seq, at, kind, run_id, subject, data, prev_hash, hash) VALUES {}",
            super::batch::values(chunk.len(), COLS, 0)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (seq, e, data, prev_hash, hash) in chunk {
            q = q
                .bind(*seq)
                .bind(&at)
                .bind(e.kind)
                .bind(e.run_id)
                .bind(e.subject)
                .bind(data)
                .bind(prev_hash)
                .bind(hash);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn row(r: &sqlx::any::AnyRow) -> Result<(AuditEntry, String), StoreError> {
    let data: String = r.try_get("data")?;
    Ok((
        AuditEntry {
            seq: r.try_get("seq")?,
            at: r.try_get("at")?,
            kind: r.try_get("kind")?,
            run_id: r.try_get("run_id")?,
            subject: r.try_get("subject")?,
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data.clone())),
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        },
        data,
    ))
}

impl SqlStore {
    /// Append entries in their own transaction.
    pub async fn audit_append(&self, entries: &[NewEntry<'_>]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        append(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Entries in order: all, or those of one run.
    pub async fn audit_entries(&self, run: Option<i64>) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match run {
            Some(r) => {
                sqlx::query("SELECT * FROM audit WHERE run_id = $1 ORDER BY seq")
                    .bind(r)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(|r| row(r).map(|(e, _)| e)).collect()
    }

    /// Walk the whole chain; the first break is reported.
    pub async fn audit_verify(&self) -> Result<Verdict, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let mut prev = GENESIS.to_string();
        let mut expected = 1i64;
        for r in &rows {
            let (e, data) = row(r)?;
            if e.seq != expected {
                return Ok(Verdict::Broken {
                    seq: expected,
                    reason: format!("entry {expected} is missing (next present is {})", e.seq),
                });
            }
            if e.prev_hash != prev {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: format!(
                        "entry {} does not follow entry {} (removed, replaced or reordered)",
                        e.seq,
                        e.seq - 1
                    ),
                });
            }
            let hash = entry_hash(
                e.seq,
                &e.at,
                &e.kind,
                e.run_id,
                e.subject.as_deref(),
                &data,
                &e.prev_hash,
            );
            if hash != e.hash {
                return Ok(Verdict::Broken {
                    seq: e.seq,
                    reason: format!(
                        "entry {} ({}) was edited: its hash does not match",
                        e.seq, e.kind
                    ),
                });
            }
            prev = e.hash;
            expected += 1;
        }
        Ok(Verdict::Intact {
            entries: expected - 1,
            head: prev,
        })
    }

    /// Record the config's digest when it differs from the last one recorded.
    pub async fn audit_config(&self, path: &str, sha256: &str) -> Result<bool, StoreError> {
        let last: Option<String> = sqlx::query_scalar(
            "SELECT data FROM audit WHERE kind = 'config.changed' AND subject = $1
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        let same = last
            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .is_some_and(|d| d["sha256"] == sha256);
        if same {
            return Ok(false);
        }
        self.audit_append(&[NewEntry {
            kind: "config.changed",
            run_id: None,
            subject: Some(path),
            data: serde_json::json!({ "sha256": sha256 }),
        }])
        .await?;
        Ok(true)
    }
}
