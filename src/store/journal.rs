//! The action journal: every enforce action is written as an
//! *intent* before the provider is called and completed with its outcome
//! after, in separate transactions, so a crash between the two leaves an
//! intent the next run reconciles instead of a lost or doubled action.

use nhi_contract::{ActionOutcome, ActionRequest, Timestamp};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::audit::{append, NewEntry};
use super::{ts, SqlStore, StoreError};

/// What is known before the provider call.
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    /// Run that decided it.
    pub run_id: i64,
    /// The request.
    pub request: &'a ActionRequest,
    /// Inventory source of the subject.
    pub source: &'a str,
    /// Rules that asked for it.
    pub rules: &'a [String],
    /// Fingerprints of the findings behind it.
    pub findings: &'a [String],
    /// The approval each finding considered (or `null`), as evidence.
    pub evidence: serde_json::Value,
    /// Who or what ran it (`user@host via nhi-assure reconcile`).
    pub actor: &'a str,
    /// Undo data the remediator can state before acting.
    pub planned_undo: Option<serde_json::Value>,
    /// For an undo: the action it reverses.
    pub undo_of: Option<i64>,
    /// The leader lease this intent is written under.
    pub fence: &'a super::lease::Fence,
}

/// One webhook revocation, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Revocation {
    /// The approval it ends.
    pub approval_id: String,
    /// When it ends it.
    pub revoked_at: String,
    /// Who asked (the webhook event's actor).
    pub requested_by: String,
    /// Why, as the event said.
    pub reason: Option<String>,
    /// When it was withdrawn, if it was.
    pub withdrawn_at: Option<String>,
    /// Who withdrew it.
    pub withdrawn_by: Option<String>,
    /// Why it was withdrawn.
    pub withdraw_reason: Option<String>,
    /// Since when it names no approval any source returns, if so.
    pub unmatched_since: Option<String>,
}

/// Where a journaled action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Journaled before the provider call; no outcome yet (interrupted if
    /// it stays so).
    Intent,
    /// The call succeeded.
    Done,
    /// The call failed.
    Failed,
    /// Interrupted, re-checked against a later pass and finished.
    Recovered,
    /// Interrupted, then no longer wanted: not re-applied.
    Abandoned,
    /// Done, then reversed by `undo`.
    Undone,
}

impl Status {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Intent => "intent",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Recovered => "recovered",
            Status::Abandoned => "abandoned",
            Status::Undone => "undone",
        }
    }

    /// Read the stored form; anything else is corrupt data, not a guess.
    pub fn parse(s: &str) -> Result<Status, StoreError> {
        [
            Status::Intent,
            Status::Done,
            Status::Failed,
            Status::Recovered,
            Status::Abandoned,
            Status::Undone,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown action status {s:?}")))
    }

    /// Whether the action changed the provider (what `undo` can reverse).
    pub fn took_effect(self) -> bool {
        matches!(self, Status::Done | Status::Recovered)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One journal row.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Action id.
    pub id: i64,
    /// Run id.
    pub run_id: i64,
    /// Where it stands.
    pub status: Status,
    /// The request.
    pub request: ActionRequest,
    /// Source name.
    pub source: String,
    /// Rule ids.
    pub rules: Vec<String>,
    /// Who ran it.
    pub actor: String,
    /// Undo data known before the call.
    pub planned_undo: Option<serde_json::Value>,
    /// State before, as read back by the remediator.
    pub before: Option<serde_json::Value>,
    /// State after.
    pub after: Option<serde_json::Value>,
    /// Undo data.
    pub undo: Option<serde_json::Value>,
    /// What cannot be undone.
    pub irreversible: Option<String>,
    /// Where and as whom it acted (account or tenant, role or credentials).
    pub via: Option<String>,
    /// Error, for failed actions.
    pub error: Option<String>,
    /// The action this one reverses.
    pub undo_of: Option<i64>,
    /// When the intent was written.
    pub intent_at: String,
    /// When the outcome was written.
    pub outcome_at: Option<String>,
}

fn json_opt(v: Option<String>) -> Result<Option<serde_json::Value>, StoreError> {
    v.map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(StoreError::from)
}

fn entry(r: &sqlx::any::AnyRow) -> Result<Entry, StoreError> {
    Ok(Entry {
        id: r.try_get("id")?,
        run_id: r.try_get("run_id")?,
        status: Status::parse(&r.try_get::<String, _>("status")?)?,
        request: serde_json::from_str(&r.try_get::<String, _>("request")?)?,
        source: r.try_get("source")?,
        rules: serde_json::from_str(&r.try_get::<String, _>("rules")?)?,
        actor: r.try_get("actor")?,
        planned_undo: json_opt(r.try_get("planned_undo")?)?,
        before: json_opt(r.try_get("before_state")?)?,
        after: json_opt(r.try_get("after_state")?)?,
        undo: json_opt(r.try_get("undo")?)?,
        irreversible: r.try_get("irreversible")?,
        via: r.try_get("via")?,
        error: r.try_get("error")?,
        undo_of: r.try_get("undo_of")?,
        intent_at: r.try_get("intent_at")?,
        outcome_at: r.try_get("outcome_at")?,
    })
}

impl SqlStore {
    /// Write an intent; committed before the provider is called. Written
    /// only while `fence` still holds an unexpired leader lease: otherwise
    /// [`StoreError::LeaseLost`] and nothing may be done.
    pub async fn journal_intent(&self, i: &Intent<'_>) -> Result<i64, StoreError> {
        let now = self.now_ms_sql();
        let mut tx = self.pool.begin().await?;
        let id: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO actions (run_id, status, operation, provider, source, identity_id, credential_id,
                 request, rules, findings, evidence, actor, planned_undo, undo_of, intent_at)
             SELECT $1, 'intent', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
             WHERE EXISTS (SELECT 1 FROM leases WHERE name = $15 AND holder = $16 AND token = $17
                           AND expires_ms > {now})
             RETURNING id"
        )))
        .bind(i.run_id)
        .bind(i.request.operation.as_str())
        .bind(i.request.provider.as_str())
        .bind(i.source)
        .bind(&i.request.identity_id)
        .bind(&i.request.credential_id)
        .bind(serde_json::to_string(i.request)?)
        .bind(serde_json::to_string(i.rules)?)
        .bind(serde_json::to_string(i.findings)?)
        .bind(serde_json::to_string(&i.evidence)?)
        .bind(i.actor)
        .bind(i.planned_undo.as_ref().map(serde_json::to_string).transpose()?)
        .bind(i.undo_of)
        .bind(ts(chrono::Utc::now()))
        .bind(&i.fence.name)
        .bind(&i.fence.holder)
        .bind(i.fence.token)
        .fetch_optional(&mut *tx)
        .await?;
        let id = id.ok_or(StoreError::LeaseLost)?;
        let subject = id.to_string();
        append(
            &mut tx,
            &[NewEntry {
                kind: "action.intent",
                run_id: Some(i.run_id),
                subject: Some(&subject),
                data: serde_json::json!({
                    "request": i.request,
                    "rules": i.rules,
                    "findings": i.findings,
                    "evidence": i.evidence,
                    "actor": i.actor,
                    "undo_of": i.undo_of,
                    "lease_token": i.fence.token,
                }),
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Complete an intent with the provider's outcome.
    pub async fn journal_outcome(
        &self,
        id: i64,
        status: Status,
        outcome: Result<&ActionOutcome, &str>,
    ) -> Result<(), StoreError> {
        let (before, after, undo, irreversible, via, error) = match outcome {
            Ok(o) => (
                Some(serde_json::to_string(&o.before)?),
                Some(serde_json::to_string(&o.after)?),
                o.undo.as_ref().map(serde_json::to_string).transpose()?,
                o.irreversible.clone(),
                o.via.clone(),
                None,
            ),
            Err(e) => (None, None, None, None, None, Some(e.to_string())),
        };
        let mut tx = self.pool.begin().await?;
        let run_id: Option<i64> = sqlx::query_scalar(
            "UPDATE actions SET status = $1, before_state = $2, after_state = $3, undo = $4,
                 irreversible = $5, error = $6, outcome_at = $7, via = $9 WHERE id = $8 RETURNING run_id",
        )
        .bind(status.as_str())
        .bind(&before)
        .bind(&after)
        .bind(&undo)
        .bind(&irreversible)
        .bind(&error)
        .bind(ts(chrono::Utc::now()))
        .bind(id)
        .bind(&via)
        .fetch_optional(&mut *tx)
        .await?;
        let parse = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        };
        let subject = id.to_string();
        append(
            &mut tx,
            &[NewEntry {
                kind: "action.outcome",
                run_id,
                subject: Some(&subject),
                data: serde_json::json!({
                    "status": status.as_str(),
                    "before": parse(&before),
                    "after": parse(&after),
                    "undo": parse(&undo),
                    "irreversible": irreversible,
                    "via": via,
                    "error": error,
                }),
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Mark an action undone.
    pub async fn journal_mark_undone(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let run_id: Option<i64> = sqlx::query_scalar(
            "UPDATE actions SET status = 'undone' WHERE id = $1 RETURNING run_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let subject = id.to_string();
        append(
            &mut tx,
            &[NewEntry {
                kind: "action.undone",
                run_id,
                subject: Some(&subject),
                data: serde_json::json!({}),
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Intents without an outcome: interrupted actions.
    pub async fn journal_open(&self) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM actions WHERE status = 'intent' ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(entry).collect()
    }

    /// One action.
    pub async fn journal_get(&self, id: i64) -> Result<Option<Entry>, StoreError> {
        let row = sqlx::query("SELECT * FROM actions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(entry).transpose()
    }

    /// Every action, or those of one run, in order.
    pub async fn journal_list(&self, run: Option<i64>) -> Result<Vec<Entry>, StoreError> {
        let rows = match run {
            Some(r) => {
                sqlx::query("SELECT * FROM actions WHERE run_id = $1 ORDER BY id")
                    .bind(r)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM actions ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(entry).collect()
    }

    /// Actions started at or after `since`, per source: what the action
    /// budget has spent. Undos restore access and do not count.
    pub async fn actions_since(
        &self,
        since: Timestamp,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT source, COUNT(*) FROM actions WHERE undo_of IS NULL AND intent_at >= $1
             GROUP BY source",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// When a credential was last disabled by us and not undone since.
    pub async fn disabled_since(&self, credential_id: &str) -> Result<Option<String>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(
            "SELECT outcome_at FROM actions WHERE credential_id = $1 AND operation = 'disable_credential'
               AND status IN ('done', 'recovered') ORDER BY id DESC LIMIT 1",
        )
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        Ok(at)
    }

    /// First seen of open findings, by fingerprint.
    pub async fn first_seen(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT fingerprint, first_seen FROM findings WHERE resolved_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }
}

impl SqlStore {
    /// Record that an approval was revoked (by a webhook event). The first
    /// revocation wins: a replay cannot move it. A revocation withdrawn
    /// earlier is revoked again.
    pub async fn add_revocation(
        &self,
        approval_id: &str,
        at: Timestamp,
        by: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let new = sqlx::query(
            "INSERT INTO revocations (approval_id, revoked_at, requested_by, reason)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (approval_id) DO UPDATE SET revoked_at = excluded.revoked_at,
                 requested_by = excluded.requested_by, reason = excluded.reason,
                 withdrawn_at = NULL, withdrawn_by = NULL, withdraw_reason = NULL,
                 unmatched_since = NULL
             WHERE revocations.withdrawn_at IS NOT NULL",
        )
        .bind(approval_id)
        .bind(ts(at))
        .bind(by)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if new > 0 {
            append(
                &mut tx,
                &[NewEntry {
                    kind: "approval.revoked",
                    run_id: None,
                    subject: Some(approval_id),
                    data: serde_json::json!({ "revoked_at": ts(at), "requested_by": by, "reason": reason }),
                }],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Withdraw a revocation: the approval counts again from the next pass.
    /// Kept in the table (marked) and in the audit log. `false` when no
    /// revocation in force names `approval_id`.
    pub async fn withdraw_revocation(
        &self,
        approval_id: &str,
        by: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let now = ts(chrono::Utc::now());
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE revocations SET withdrawn_at = $1, withdrawn_by = $2, withdraw_reason = $3
             WHERE approval_id = $4 AND withdrawn_at IS NULL",
        )
        .bind(&now)
        .bind(by)
        .bind(reason)
        .bind(approval_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n > 0 {
            append(
                &mut tx,
                &[NewEntry {
                    kind: "approval.revocation_withdrawn",
                    run_id: None,
                    subject: Some(approval_id),
                    data: serde_json::json!({ "withdrawn_at": now, "withdrawn_by": by, "reason": reason }),
                }],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Every revocation, withdrawn ones included, by approval id.
    pub async fn revocation_list(&self) -> Result<Vec<Revocation>, StoreError> {
        let rows = sqlx::query(
            "SELECT approval_id, revoked_at, requested_by, reason, withdrawn_at, withdrawn_by,
                    withdraw_reason, unmatched_since FROM revocations ORDER BY approval_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    approval_id: r.try_get("approval_id")?,
                    revoked_at: r.try_get("revoked_at")?,
                    requested_by: r.try_get("requested_by")?,
                    reason: r.try_get("reason")?,
                    withdrawn_at: r.try_get("withdrawn_at")?,
                    withdrawn_by: r.try_get("withdrawn_by")?,
                    withdraw_reason: r.try_get("withdraw_reason")?,
                    unmatched_since: r.try_get("unmatched_since")?,
                })
            })
            .collect()
    }

    /// Mark the revocations in force that name no approval in `known` (the
    /// approvals every approval source returned this pass), unmark those
    /// that do, and withdraw those unmatched for longer than `expire`: a
    /// revocation of nothing is shown, then dropped, never kept silently.
    /// Returns the revocations unmatched now.
    pub async fn match_revocations(
        &self,
        known: &std::collections::HashSet<&str>,
        expire: chrono::Duration,
    ) -> Result<Vec<Revocation>, StoreError> {
        let now = chrono::Utc::now();
        let mut unmatched = Vec::new();
        for r in self.revocation_list().await? {
            if r.withdrawn_at.is_some() {
                continue;
            }
            let id = r.approval_id.as_str();
            if known.contains(id) {
                if r.unmatched_since.is_some() {
                    sqlx::query(
                        "UPDATE revocations SET unmatched_since = NULL WHERE approval_id = $1",
                    )
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                }
                continue;
            }
            let since = r
                .unmatched_since
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            match since {
                None => {
                    sqlx::query(
                        "UPDATE revocations SET unmatched_since = $1 WHERE approval_id = $2",
                    )
                    .bind(ts(now))
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                    unmatched.push(Revocation {
                        unmatched_since: Some(ts(now)),
                        ..r
                    });
                }
                Some(t) if now.signed_duration_since(t) > expire => {
                    let why = format!(
                        "names no approval any source returned for {} day(s)",
                        expire.num_days()
                    );
                    self.withdraw_revocation(id, "nhi-assure", &why).await?;
                }
                Some(_) => unmatched.push(r),
            }
        }
        Ok(unmatched)
    }

    /// Revocations, by approval id.
    pub async fn revocations(
        &self,
    ) -> Result<std::collections::HashMap<String, Timestamp>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT approval_id, revoked_at FROM revocations WHERE withdrawn_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, at)| {
                chrono::DateTime::parse_from_rfc3339(&at)
                    .ok()
                    .map(|t| (id, t.with_timezone(&chrono::Utc)))
            })
            .collect())
    }
}
