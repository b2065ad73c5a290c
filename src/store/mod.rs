//! The store: runs and findings with their lifecycle (first seen, last seen,
//! resolved), the action journal, webhook revocations and the leader lease.
//! One implementation over sqlx's `Any` driver serves both backends: a SQLite
//! file by default, PostgreSQL when several replicas share state. Queries are
//! written once in the dialect both accept (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); each backend has its own migrations.
//!
//! Lifecycle rule: a finding absent from this run is resolved only if the
//! source it came from was read completely and its rule was evaluated.
//! A failed or partial source leaves its findings open — unknown is not
//! empty.

use std::path::Path;

use async_trait::async_trait;
use chrono::SecondsFormat;
use nhi_contract::{CredentialKind, Timestamp};
use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Row};

pub mod audit;
pub mod journal;
pub mod lease;
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
    /// The leader lease ran out or passed to another process: stop acting.
    #[error("the leader lease is no longer held by this process; not acting")]
    LeaseLost,
    /// The store location is not usable.
    #[error("store location {0}")]
    Location(String),
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
    conn: &mut AnyConnection,
    run_id: i64,
    now: &str,
    f: &SourcedFinding,
) -> Result<bool, StoreError> {
    let fp = f.finding.fingerprint();
    let data = serde_json::to_string(&f.finding)?;
    // A finding that was resolved and is back starts a new lifecycle.
    let existing: Option<Option<String>> =
        sqlx::query_scalar("SELECT resolved_at FROM findings WHERE fingerprint = $1")
            .bind(&fp)
            .fetch_optional(&mut *conn)
            .await?;
    let was_open = existing.map(|resolved_at| resolved_at.is_none());
    sqlx::query(
        "INSERT INTO findings (fingerprint, rule_id, severity, provider, source, identity_id,
             credential_id, credential_kind, first_seen, last_seen, resolved_at, first_run, last_run, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $13)
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

/// A store location with any password removed, for logs and errors.
pub fn redact(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if u.password().is_some() => {
            // Setting a password on a parsed URL with a host cannot fail.
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => location.to_string(),
    }
}

impl SqlStore {
    /// Record one extra finding for a run already recorded (enforce mode's
    /// findings about itself).
    pub async fn add_finding(&self, run_id: i64, f: &SourcedFinding) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let now = ts(chrono::Utc::now());
        upsert_finding(&mut conn, run_id, &now, f).await?;
        self.add_run_finding(run_id, f).await?;
        Ok(())
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Open the store at `location` and migrate it: a `postgres://` or
    /// `postgresql://` URL selects PostgreSQL, anything else is a SQLite file
    /// path (created if needed).
    pub async fn open(location: &str) -> Result<SqlStore, StoreError> {
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
        let mut tx = self.pool.begin().await?;
        let run_id: i64 = sqlx::query(
            "INSERT INTO runs (started_at, finished_at, as_of, command, sources, findings, opened, resolved)
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0) RETURNING id",
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
        let mut trail: Vec<(String, &str, serde_json::Value)> = Vec::new();
        for f in run.findings {
            if upsert_finding(&mut tx, run_id, &now, f).await? {
                opened += 1;
                trail.push((
                    f.finding.fingerprint(),
                    "finding.opened",
                    serde_json::json!({
                        "rule_id": f.finding.rule_id,
                        "identity_id": f.finding.identity_id,
                        "credential_id": f.finding.credential_id,
                        "severity": f.finding.severity.as_str(),
                    }),
                ));
            }
        }

        // Resolve what was not seen, only where this run could have seen it:
        // its source was read, and was not blind to the finding's credential
        // kind. Findings on approval records need every source complete.
        let all_complete = run.sources.iter().all(|s| s.state.is_complete());
        let open: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT fingerprint, source, rule_id, credential_kind FROM findings
             WHERE resolved_at IS NULL AND last_run <> $1",
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
                sqlx::query("UPDATE findings SET resolved_at = $1 WHERE fingerprint = $2")
                    .bind(&now)
                    .bind(&fp)
                    .execute(&mut *tx)
                    .await?;
                resolved += 1;
                trail.push((
                    fp,
                    "finding.resolved",
                    serde_json::json!({ "rule_id": rule }),
                ));
            }
        }
        sqlx::query("UPDATE runs SET opened = $1, resolved = $2 WHERE id = $3")
            .bind(opened)
            .bind(resolved)
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let mut entries: Vec<audit::NewEntry<'_>> = trail
            .iter()
            .map(|(fp, kind, data)| audit::NewEntry {
                kind,
                run_id: Some(run_id),
                subject: Some(fp),
                data: data.clone(),
            })
            .collect();
        entries.push(audit::NewEntry {
            kind: "run.recorded",
            run_id: Some(run_id),
            subject: None,
            data: serde_json::json!({
                "command": run.command,
                "started_at": now,
                "as_of": ts(run.as_of),
                "sources": run.sources,
                "findings": run.findings.len(),
                "opened": opened,
                "resolved": resolved,
            }),
        });
        audit::append(&mut tx, &entries).await?;
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
