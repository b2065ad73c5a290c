//! Per-run detail for reports on any past run: the findings each run saw
//! (as it saw them) and what it read (inventory snapshot, approvals as read,
//! rules evaluated), plus read access to runs.
//!
//! Portable by construction: `$n` placeholders, columns read by name, no
//! dialect types in signatures, so the PostgreSQL backend can take this
//! file as it is.

use serde::Serialize;
use sqlx::Row;

use super::{SourcedFinding, SqliteStore, StoreError};
use crate::estate::SourceStatus;
use crate::findings::Finding;

/// What a run read, already serialised by the caller (the store does not
/// know the report's snapshot types).
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
}

/// A finding as one run saw it.
#[derive(Debug, Clone)]
pub struct RunFinding {
    /// Run id.
    pub run_id: i64,
    /// Fingerprint (stable across runs).
    pub fingerprint: String,
    /// Rule id.
    pub rule_id: String,
    /// Severity, as stored.
    pub severity: String,
    /// Inventory source; empty for findings on approval records.
    pub source: String,
    /// Credential kind, for credential findings.
    pub credential_kind: Option<String>,
    /// The finding itself (`None` when only keys were asked for).
    pub finding: Option<Finding>,
}

/// The stored snapshot of what a run read, as JSON text.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    /// Inventory per source.
    pub inventory: String,
    /// Approvals as read.
    pub approvals: String,
    /// Rules evaluated.
    pub rules: String,
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
        })
    }};
}

// A finding recorded twice for a run (enforce re-adding its own) keeps the
// first: the run saw it once.
macro_rules! insert_run_finding {
    ($exec:expr, $run_id:expr, $f:expr) => {{
        let f: &SourcedFinding = $f;
        sqlx::query(
            "INSERT INTO run_findings (run_id, fingerprint, rule_id, severity, source, credential_kind, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id, fingerprint) DO NOTHING",
        )
        .bind($run_id)
        .bind(f.finding.fingerprint())
        .bind(&f.finding.rule_id)
        .bind(f.finding.severity.as_str())
        .bind(&f.source)
        .bind(f.credential_kind.map(|k| k.as_str()))
        .bind(serde_json::to_string(&f.finding)?)
        .execute($exec)
        .await?
    }};
}

impl SqliteStore {
    /// Record what run `run_id` read and the findings it saw, in one
    /// transaction. Findings added later to the same run (enforce mode's
    /// findings about itself) go through [`SqliteStore::add_run_finding`].
    pub async fn record_run_detail(
        &self,
        run_id: i64,
        detail: RunDetail<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO run_snapshots (run_id, inventory, approvals, rules) VALUES ($1, $2, $3, $4)",
        )
        .bind(run_id)
        .bind(detail.inventory)
        .bind(detail.approvals)
        .bind(detail.rules)
        .execute(&mut *tx)
        .await?;
        for f in detail.findings {
            insert_run_finding!(&mut *tx, run_id, f);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Record one more finding of run `run_id`.
    pub async fn add_run_finding(&self, run_id: i64, f: &SourcedFinding) -> Result<(), StoreError> {
        insert_run_finding!(&self.pool, run_id, f);
        Ok(())
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

    /// The findings run `run_id` saw, with their data.
    pub async fn run_findings(&self, run_id: i64) -> Result<Vec<RunFinding>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, fingerprint, rule_id, severity, source, credential_kind, data
             FROM run_findings WHERE run_id = $1 ORDER BY fingerprint",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(RunFinding {
                    run_id: r.try_get("run_id")?,
                    fingerprint: r.try_get("fingerprint")?,
                    rule_id: r.try_get("rule_id")?,
                    severity: r.try_get("severity")?,
                    source: r.try_get("source")?,
                    credential_kind: r.try_get("credential_kind")?,
                    finding: Some(serde_json::from_str(&data)?),
                })
            })
            .collect()
    }

    /// Keys (no data) of every finding seen by runs up to `upto`, by run:
    /// enough to replay the lifecycle for diffs and first-seen dates.
    pub async fn run_finding_keys(&self, upto: i64) -> Result<Vec<RunFinding>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, fingerprint, rule_id, severity, source, credential_kind
             FROM run_findings WHERE run_id <= $1 ORDER BY run_id, fingerprint",
        )
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunFinding {
                    run_id: r.try_get("run_id")?,
                    fingerprint: r.try_get("fingerprint")?,
                    rule_id: r.try_get("rule_id")?,
                    severity: r.try_get("severity")?,
                    source: r.try_get("source")?,
                    credential_kind: r.try_get("credential_kind")?,
                    finding: None,
                })
            })
            .collect()
    }

    /// The rules each run up to `upto` evaluated (JSON), by run id: which
    /// findings a run could have resolved.
    pub async fn run_rules(&self, upto: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT run_id, rules FROM run_snapshots WHERE run_id <= $1 ORDER BY run_id",
        )
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("run_id")?, r.try_get("rules")?)))
            .collect()
    }

    /// What run `run_id` read, if it was recorded.
    pub async fn run_snapshot(&self, run_id: i64) -> Result<Option<StoredSnapshot>, StoreError> {
        let row =
            sqlx::query("SELECT inventory, approvals, rules FROM run_snapshots WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(StoredSnapshot {
                inventory: r.try_get("inventory")?,
                approvals: r.try_get("approvals")?,
                rules: r.try_get("rules")?,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::SourceState;
    use crate::rules::{Action, Severity};
    use crate::store::{RunRecord, Store};

    fn finding(cred: &str) -> SourcedFinding {
        SourcedFinding {
            finding: Finding {
                rule_id: "credential-stale".into(),
                title: "t".into(),
                severity: Severity::High,
                provider: Some("aws".into()),
                identity_id: "arn:aws:iam::1:user/ci".into(),
                credential_id: Some(cred.into()),
                controls: vec!["OWASP-NHI-2025:NHI7".into()],
                evidence: serde_json::json!({"credential.days_since_last_use": 120}),
                recommended_action: Action::Disable,
            },
            source: "aws".into(),
            credential_kind: Some(nhi_contract::CredentialKind::AccessKey),
        }
    }

    #[tokio::test]
    async fn run_detail_round_trips_per_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("s.db"))
            .await
            .expect("open");
        assert_eq!(store.latest_run_id().await.expect("latest"), None);
        let sources = vec![SourceStatus {
            name: "aws".into(),
            provider: nhi_contract::Provider::Aws,
            state: SourceState::Complete,
        }];
        let mut ids = Vec::new();
        for creds in [&["AKIA1", "AKIA2"][..], &["AKIA2"][..]] {
            let list: Vec<SourcedFinding> = creds.iter().map(|c| finding(c)).collect();
            let s = store
                .record_run(RunRecord {
                    started_at: chrono::Utc::now(),
                    as_of: chrono::Utc::now(),
                    command: "scan",
                    sources: &sources,
                    rules: &["credential-stale".to_string()],
                    findings: &list,
                })
                .await
                .expect("run");
            store
                .record_run_detail(
                    s.run_id,
                    RunDetail {
                        inventory: "[]",
                        approvals: "[]",
                        rules: r#"[{"id":"credential-stale"}]"#,
                        findings: &list,
                    },
                )
                .await
                .expect("detail");
            ids.push(s.run_id);
        }
        assert_eq!(store.latest_run_id().await.expect("latest"), Some(ids[1]));
        // Each run keeps the findings it saw, as it saw them.
        let first = store.run_findings(ids[0]).await.expect("findings");
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[0].finding.as_ref().expect("data"),
            &finding("AKIA1").finding
        );
        assert_eq!(store.run_findings(ids[1]).await.expect("f").len(), 1);
        // A finding added twice to a run is kept once.
        store
            .add_run_finding(ids[1], &finding("AKIA2"))
            .await
            .expect("add");
        store
            .add_run_finding(ids[1], &finding("AKIA3"))
            .await
            .expect("add");
        assert_eq!(store.run_findings(ids[1]).await.expect("f").len(), 2);
        let keys = store.run_finding_keys(ids[1]).await.expect("keys");
        assert_eq!(keys.len(), 4);
        assert!(keys.iter().all(|k| k.finding.is_none()));
        let info = store.run_info(ids[0]).await.expect("info").expect("run");
        assert_eq!(info.sources[0].state, SourceState::Complete);
        assert_eq!(store.runs_upto(ids[1]).await.expect("runs").len(), 2);
        let snap = store
            .run_snapshot(ids[0])
            .await
            .expect("snap")
            .expect("some");
        assert_eq!(snap.rules, r#"[{"id":"credential-stale"}]"#);
        assert_eq!(store.run_rules(ids[1]).await.expect("rules").len(), 2);
        assert!(store.run_snapshot(999).await.expect("none").is_none());
    }
}
