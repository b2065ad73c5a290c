//! The store: runs and findings with their lifecycle (first seen, last seen,
//! resolved). SQLite by default, behind the [`Store`] trait that the
//! PostgreSQL backend will implement too.
//!
//! Lifecycle rule: a finding absent from this run is resolved only if the
//! source it came from was read completely and its rule was evaluated.
//! A failed or partial source leaves its findings open — unknown is not
//! empty.

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::SecondsFormat;
use nhi_contract::{CredentialKind, Timestamp};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

pub mod journal;
pub mod runs;

use crate::estate::SourceStatus;
use crate::findings::Finding;

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
}

/// A finding with the source it came from, ready to store.
#[derive(Debug, Clone)]
pub struct SourcedFinding {
    /// The finding.
    pub finding: Finding,
    /// Inventory source name; empty for findings on approval records.
    pub source: String,
    /// Kind of the credential concerned, for credential findings.
    pub credential_kind: Option<CredentialKind>,
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
}

/// Persistence of runs and findings.
#[async_trait]
pub trait Store: Send + Sync {
    /// Record a run and update the findings' lifecycle, atomically.
    async fn record_run(&self, run: RunRecord<'_>) -> Result<RunSummary, StoreError>;
    /// Findings not resolved.
    async fn open_findings(&self) -> Result<Vec<StoredFinding>, StoreError>;
}

/// Insert or refresh one finding; returns whether it was (re)opened.
async fn upsert_finding(
    conn: &mut sqlx::SqliteConnection,
    run_id: i64,
    now: &str,
    f: &SourcedFinding,
) -> Result<bool, StoreError> {
    let fp = f.finding.fingerprint();
    let data = serde_json::to_string(&f.finding)?;
    // A finding that was resolved and is back starts a new lifecycle.
    let was_open: Option<bool> =
        sqlx::query_scalar("SELECT resolved_at IS NULL FROM findings WHERE fingerprint = ?")
            .bind(&fp)
            .fetch_optional(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO findings (fingerprint, rule_id, severity, provider, source, identity_id,
             credential_id, credential_kind, first_seen, last_seen, resolved_at, first_run, last_run, data)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)
         ON CONFLICT (fingerprint) DO UPDATE SET
             first_seen = CASE WHEN findings.resolved_at IS NULL THEN findings.first_seen ELSE excluded.first_seen END,
             first_run  = CASE WHEN findings.resolved_at IS NULL THEN findings.first_run ELSE excluded.first_run END,
             severity = excluded.severity, provider = excluded.provider, source = excluded.source,
             last_seen = excluded.last_seen, last_run = excluded.last_run,
             resolved_at = NULL, data = excluded.data",
    )
    .bind(&fp)
    .bind(&f.finding.rule_id)
    .bind(f.finding.severity.as_str())
    .bind(&f.finding.provider)
    .bind(&f.source)
    .bind(&f.finding.identity_id)
    .bind(&f.finding.credential_id)
    .bind(f.credential_kind.map(|k| k.as_str()))
    .bind(now)
    .bind(now)
    .bind(run_id)
    .bind(run_id)
    .bind(&data)
    .execute(&mut *conn)
    .await?;
    Ok(was_open != Some(true))
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

fn ts(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl SqliteStore {
    /// Record one extra finding for a run already recorded (enforce mode's
    /// findings about itself).
    pub async fn add_finding(&self, run_id: i64, f: &SourcedFinding) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let now = ts(chrono::Utc::now());
        upsert_finding(&mut conn, run_id, &now, f).await?;
        self.add_run_finding(run_id, f).await?;
        Ok(())
    }

    /// Open (creating if needed) the store at `path` and migrate it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true);
        // Two processes opening a fresh store at once (a command beside the
        // daemon) race: switching the new file to WAL can find it locked, and
        // the loser of the migrations rolls back ("table already exists"). A
        // retry connects again and applies only what the winner has not; a
        // broken migration still fails, after the retries.
        let mut attempt = 0u64;
        loop {
            let opened = async {
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(opts.clone())
                    .await?;
                sqlx::migrate!("src/store/migrations/sqlite")
                    .run(&pool)
                    .await?;
                Ok::<_, StoreError>(pool)
            }
            .await;
            match opened {
                Ok(pool) => return Ok(SqliteStore { pool }),
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
impl Store for SqliteStore {
    async fn record_run(&self, run: RunRecord<'_>) -> Result<RunSummary, StoreError> {
        let now = ts(run.started_at);
        let finished = ts(chrono::Utc::now());
        let mut tx = self.pool.begin().await?;
        let run_id: i64 = sqlx::query(
            "INSERT INTO runs (started_at, finished_at, as_of, command, sources, findings, opened, resolved)
             VALUES (?, ?, ?, ?, ?, ?, 0, 0) RETURNING id",
        )
        .bind(&now)
        .bind(&finished)
        .bind(ts(run.as_of))
        .bind(run.command)
        .bind(serde_json::to_string(run.sources)?)
        .bind(run.findings.len() as i64)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;

        let mut opened = 0i64;
        for f in run.findings {
            if upsert_finding(&mut tx, run_id, &now, f).await? {
                opened += 1;
            }
        }

        // Resolve what was not seen, only where this run could have seen it:
        // its source was read, and was not blind to the finding's credential
        // kind. Findings on approval records need every source complete.
        let all_complete = run.sources.iter().all(|s| s.state.is_complete());
        let open: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT fingerprint, source, rule_id, credential_kind FROM findings
             WHERE resolved_at IS NULL AND last_run <> ?",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        let mut resolved = 0i64;
        for (fp, source, rule, kind) in open {
            let kind: Option<CredentialKind> =
                kind.and_then(|k| serde_json::from_value(serde_json::Value::String(k)).ok());
            let seeable = if source.is_empty() {
                all_complete
            } else {
                run.sources
                    .iter()
                    .find(|s| s.name == source)
                    .is_some_and(|s| s.state.sees(kind))
            };
            if seeable && run.rules.contains(&rule) {
                sqlx::query("UPDATE findings SET resolved_at = ? WHERE fingerprint = ?")
                    .bind(&now)
                    .bind(&fp)
                    .execute(&mut *tx)
                    .await?;
                resolved += 1;
            }
        }
        sqlx::query("UPDATE runs SET opened = ?, resolved = ? WHERE id = ?")
            .bind(opened)
            .bind(resolved)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RunSummary {
            run_id,
            findings: run.findings.len() as i64,
            opened,
            resolved,
        })
    }

    async fn open_findings(&self) -> Result<Vec<StoredFinding>, StoreError> {
        let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT data, first_seen, last_seen, resolved_at FROM findings
             WHERE resolved_at IS NULL ORDER BY fingerprint",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(data, first_seen, last_seen, resolved_at)| {
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
mod tests;
