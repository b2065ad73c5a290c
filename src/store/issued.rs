//! Just-in-time sessions issued under approvals: what was issued, to whom,
//! until when — never the secret or the token. Each record is written with
//! its `session.issued` audit entry in one transaction.

use serde::Serialize;
use sqlx::AssertSqlSafe;

use super::audit::{append, NewEntry};
use super::{ts, SqlStore, StoreError};
use nhi_contract::Timestamp;

/// One issued session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedRecord {
    /// Approval it was issued under.
    pub approval_id: String,
    /// Provider (`aws`).
    pub provider: String,
    /// Config source it was issued through.
    pub source: String,
    /// Role assumed.
    pub role: String,
    /// Session name.
    pub session_name: String,
    /// Source identity the session carries.
    pub source_identity: String,
    /// The session's access key id (not a secret).
    pub access_key_id: String,
    /// Who asked.
    pub caller: String,
    /// When.
    pub issued_at: Timestamp,
    /// When the session ends.
    pub expires_at: Timestamp,
}

fn parse(s: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt(format!("issued_sessions timestamp {s:?}: {e}")))
}

impl SqlStore {
    /// Record an issued session and its audit entry; the record's id.
    pub async fn record_issued(&self, r: &IssuedRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO issued_sessions (approval_id, provider, source, role, session_name,
                 source_identity, access_key_id, caller, issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(&r.approval_id)
        .bind(&r.provider)
        .bind(&r.source)
        .bind(&r.role)
        .bind(&r.session_name)
        .bind(&r.source_identity)
        .bind(&r.access_key_id)
        .bind(&r.caller)
        .bind(ts(r.issued_at))
        .bind(ts(r.expires_at))
        .fetch_one(&mut *tx)
        .await?;
        append(
            &mut tx,
            &[NewEntry {
                kind: "session.issued",
                run_id: None,
                subject: Some(&r.approval_id),
                data: serde_json::to_value(r)?,
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Sessions issued under `approval_id` (every approval: `None`), oldest first.
    pub async fn issued_sessions(
        &self,
        approval_id: Option<&str>,
    ) -> Result<Vec<IssuedRecord>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
        );
        const SELECT: &str = "SELECT approval_id, provider, source, role, session_name,
                source_identity, access_key_id, caller, issued_at, expires_at
             FROM issued_sessions";
        let rows: Vec<Row> = match approval_id {
            Some(id) => {
                sqlx::query_as(AssertSqlSafe(format!(
                    "{SELECT} WHERE approval_id = $1 ORDER BY id"
                )))
                .bind(id)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as(AssertSqlSafe(format!("{SELECT} ORDER BY id")))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.into_iter()
            .map(|(a, p, s, role, n, si, k, c, i, e)| {
                Ok(IssuedRecord {
                    approval_id: a,
                    provider: p,
                    source: s,
                    role,
                    session_name: n,
                    source_identity: si,
                    access_key_id: k,
                    caller: c,
                    issued_at: parse(&i)?,
                    expires_at: parse(&e)?,
                })
            })
            .collect()
    }
}
