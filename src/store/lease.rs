//! The leader lease. Several processes may share one store (daemon replicas
//! on PostgreSQL, or a manual `reconcile --enforce` beside a daemon); only
//! the holder of an unexpired lease runs passes and acts.
//!
//! Expiry is read on the store's clock, so replicas with skewed clocks still
//! agree on who leads. The lease carries a fencing token that grows on every
//! change of holder; each journal intent is written only if the writer's
//! token still holds an unexpired lease (see `journal_intent`), so a leader
//! that stalled past its lease cannot act after another took over. What is
//! left is the one provider call already past its intent — an inherent
//! window of any lease, bounded to a single action.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Row};

use super::{Backend, SqlStore, StoreError};

/// The lease name shared by every process that acts.
pub const LEADER: &str = "leader";

/// Proof of holding a lease, checked by the store at each journal intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Lease name.
    pub name: String,
    /// This process's holder id.
    pub holder: String,
    /// Fencing token: grows on every change of holder.
    pub token: i64,
}

/// The result of trying to take or renew a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Held by us.
    Held(Fence),
    /// Held by another holder for this many more milliseconds.
    Busy {
        /// The other holder.
        holder: String,
        /// Time left on its lease.
        remaining_ms: i64,
    },
}

/// A holder id unique to this process: host, pid and start instant.
pub fn holder_id() -> String {
    let host = hostname();
    let started = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{host}/{}/{started:x}", std::process::id())
}

impl SqlStore {
    /// The store's clock in Unix milliseconds, as SQL.
    pub(crate) fn now_ms_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Take the lease `name` for `ttl` if it is free or expired, or renew it
    /// if `holder` has it. Renewal keeps the token; a change of holder bumps it.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseState, StoreError> {
        let now = self.now_ms_sql();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let won: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO leases (name, holder, token, expires_ms) VALUES ($1, $2, 1, {now} + $3)
             ON CONFLICT (name) DO UPDATE SET
                 token = CASE WHEN leases.holder = excluded.holder THEN leases.token ELSE leases.token + 1 END,
                 holder = excluded.holder,
                 expires_ms = excluded.expires_ms
             WHERE leases.holder = excluded.holder OR leases.expires_ms <= {now}
             RETURNING token"
        )))
        .bind(name)
        .bind(holder)
        .bind(ttl_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(token) = won {
            return Ok(LeaseState::Held(Fence {
                name: name.to_string(),
                holder: holder.to_string(),
                token,
            }));
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT holder, expires_ms - {now} AS remaining FROM leases WHERE name = $1"
        )))
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(LeaseState::Busy {
            holder: row.try_get("holder")?,
            remaining_ms: row.try_get("remaining")?,
        })
    }

    /// Fail with [`StoreError::LeaseLost`] unless `fence` still holds an
    /// unexpired lease: for actions that write no new intent (recovery).
    pub async fn check_fence(&self, fence: &Fence) -> Result<(), StoreError> {
        let now = self.now_ms_sql();
        let held: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT token FROM leases WHERE name = $1 AND holder = $2 AND token = $3 AND expires_ms > {now}"
        )))
        .bind(&fence.name)
        .bind(&fence.holder)
        .bind(fence.token)
        .fetch_optional(&self.pool)
        .await?;
        held.map(|_| ()).ok_or(StoreError::LeaseLost)
    }

    /// Give the lease up now (if still ours), so a standby takes over at once.
    pub async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(&fence.name)
        .bind(&fence.holder)
        .bind(fence.token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// A held leader lease, renewed in the background every third of its TTL.
#[derive(Debug)]
pub struct Leadership {
    store: SqlStore,
    fence: Fence,
    lost: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Take the leader lease, or say who holds it.
    pub async fn acquire(
        store: &SqlStore,
        holder: &str,
        ttl: Duration,
    ) -> Result<Result<Leadership, LeaseState>, StoreError> {
        let fence = match store.try_lease(LEADER, holder, ttl).await? {
            LeaseState::Held(f) => f,
            busy => return Ok(Err(busy)),
        };
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = {
            let (store, fence, lost) = (store.clone(), fence.clone(), lost.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(ttl / 3);
                every.tick().await;
                loop {
                    every.tick().await;
                    match store.try_lease(&fence.name, &fence.holder, ttl).await {
                        Ok(LeaseState::Held(f)) if f.token == fence.token => {}
                        Ok(other) => {
                            tracing::error!(?other, "leader lease lost: standing down");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // The store is unreachable: keep trying. Journal
                        // intents are fenced on the store, so nothing acts
                        // on a lease that has run out meanwhile.
                        Err(e) => tracing::warn!(error = %e, "leader lease renewal failed"),
                    }
                }
            })
        };
        Ok(Ok(Leadership {
            store: store.clone(),
            fence,
            lost,
            renewal,
        }))
    }

    /// The fence to journal actions with.
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// Whether renewal found the lease taken by another holder.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stop renewing and give the lease up.
    pub async fn release(self) {
        self.renewal.abort();
        if let Err(e) = self.store.release_lease(&self.fence).await {
            tracing::warn!(error = %e, "could not release the leader lease; it expires on its own");
        }
    }
}

/// This machine's name, for the journal's actor and the lease holder.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}
