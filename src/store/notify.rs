//! The notification delivery journal (`notify_journal`): what was sent to
//! which sink, so a warning is not sent again every pass, and whether an
//! action's owner was told before it (the `hold_unnotified` rail).

use std::collections::HashSet;

use serde::Serialize;

use super::{SqlStore, StoreError};

/// Event kinds that tell an owner an action is coming.
pub const WARNING_KINDS: [&str; 2] = ["action.pending", "action.reminder"];

/// One event's delivery to one sink, as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Run whose pass delivered it.
    pub run_id: Option<i64>,
    /// Sink name.
    pub sink: String,
    /// Sink kind (`slack-webhook`, `file`, …).
    pub sink_kind: String,
    /// The owner the digest was for.
    pub owner: String,
    /// Event kind (`finding.opened`, `action.pending`, …).
    pub kind: String,
    /// The finding concerned.
    pub fingerprint: String,
    /// What makes the event one: the deadline of a warning, the run of
    /// the rest.
    pub dedup: String,
    /// Events in the message it went in.
    pub digest_size: i64,
    /// `sent` or `failed`.
    pub status: String,
    /// Tries made.
    pub attempts: i64,
    /// The last error (bounded, no secret), if it failed.
    pub error: Option<String>,
    /// When.
    pub at: String,
}

impl SqlStore {
    /// Journal deliveries, in one transaction.
    pub async fn notify_record(&self, rows: &[Delivery]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for d in rows {
            sqlx::query(
                "INSERT INTO notify_journal (at, run_id, sink, sink_kind, owner, kind, fingerprint,
                     dedup, digest_size, status, attempts, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&d.at)
            .bind(d.run_id)
            .bind(&d.sink)
            .bind(&d.sink_kind)
            .bind(&d.owner)
            .bind(&d.kind)
            .bind(&d.fingerprint)
            .bind(&d.dedup)
            .bind(i32::try_from(d.digest_size).unwrap_or(i32::MAX))
            .bind(&d.status)
            .bind(i32::try_from(d.attempts).unwrap_or(i32::MAX))
            .bind(&d.error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Events already sent to `sink` that a pass of run `run_id` could
    /// derive again, as (fingerprint, kind, dedup): those keyed on a
    /// deadline, and this run's own (past runs' are never derived again,
    /// so they are not read).
    pub async fn notify_sent(
        &self,
        sink: &str,
        run_id: i64,
    ) -> Result<HashSet<(String, String, String)>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT fingerprint, kind, dedup FROM notify_journal
             WHERE sink = $1 AND status = 'sent' AND (dedup NOT LIKE 'run %' OR dedup = $2)",
        )
        .bind(sink)
        .bind(format!("run {run_id}"))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Findings whose owner was sent a warning of a coming action, on any
    /// sink.
    pub async fn notify_warned(&self) -> Result<HashSet<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT fingerprint FROM notify_journal
             WHERE status = 'sent' AND kind IN ($1, $2)",
        )
        .bind(WARNING_KINDS[0])
        .bind(WARNING_KINDS[1])
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(f,)| f).collect())
    }

    /// The owner the last message about finding `fingerprint` went to, if
    /// any: a resolved finding whose identity is gone keeps its owner.
    pub async fn notify_owner_of(&self, fingerprint: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT owner FROM notify_journal WHERE fingerprint = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(o,)| o).filter(|o| o != "(no owner)"))
    }

    /// The whole journal, oldest first.
    pub async fn notify_journal(&self) -> Result<Vec<Delivery>, StoreError> {
        type Row = (
            String,
            Option<i64>,
            String,
            String,
            String,
            String,
            String,
            String,
            i64,
            String,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT at, run_id, sink, sink_kind, owner, kind, fingerprint, dedup,
                 CAST(digest_size AS BIGINT), status, CAST(attempts AS BIGINT), error
             FROM notify_journal ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Delivery {
                at: r.0,
                run_id: r.1,
                sink: r.2,
                sink_kind: r.3,
                owner: r.4,
                kind: r.5,
                fingerprint: r.6,
                dedup: r.7,
                digest_size: r.8,
                status: r.9,
                attempts: r.10,
                error: r.11,
            })
            .collect())
    }
}

impl SqlStore {
    /// The findings run `run_id` opened or resolved, as (audit kind,
    /// finding), in the order it recorded them: `finding.opened` /
    /// `finding.resolved`, whether the audit entry named one finding or a
    /// batch (`findings.opened` / `findings.resolved`).
    pub async fn run_changes(
        &self,
        run_id: i64,
    ) -> Result<Vec<(String, crate::engine::findings::Finding)>, StoreError> {
        let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT kind, subject, data FROM audit
             WHERE run_id = $1
               AND kind IN ('finding.opened', 'finding.resolved', 'findings.opened', 'findings.resolved')
             ORDER BY seq",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        let mut changes: Vec<(&'static str, String)> = Vec::new();
        for (kind, subject, data) in &rows {
            let kind = if kind.ends_with("resolved") {
                "finding.resolved"
            } else {
                "finding.opened"
            };
            if let Some(fp) = subject {
                changes.push((kind, fp.clone()));
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(data)?;
            for fp in v["fingerprints"].as_array().into_iter().flatten() {
                if let Some(fp) = fp.as_str() {
                    changes.push((kind, fp.to_string()));
                }
            }
        }
        let fps: Vec<&str> = changes.iter().map(|(_, fp)| fp.as_str()).collect();
        let mut data: std::collections::HashMap<String, String> = Default::default();
        let mut unpacker = super::packed::Unpacker::new()?;
        for chunk in fps.chunks(super::batch::rows_per_statement(
            super::batch::SQLITE_PARAMS,
            1,
            0,
        )) {
            let sql = format!(
                "SELECT fingerprint, {} FROM findings WHERE fingerprint IN ({})",
                super::FINDING_DATA,
                super::batch::list(chunk.len(), 0)
            );
            let mut q = sqlx::query_as::<_, (String, Option<String>, Option<Vec<u8>>)>(
                sqlx::AssertSqlSafe(sql),
            );
            for fp in chunk {
                q = q.bind(*fp);
            }
            for (fp, d, packed) in q.fetch_all(&self.pool).await? {
                let d = unpacker
                    .text(d, packed.as_deref())?
                    .ok_or_else(|| super::missing_data(&fp))?;
                data.insert(fp, d);
            }
        }
        changes
            .into_iter()
            .filter_map(|(kind, fp)| data.get(&fp).map(|d| (kind, d)))
            .map(|(kind, d)| Ok((kind.to_string(), serde_json::from_str(d)?)))
            .collect()
    }
}
