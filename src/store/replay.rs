//! Webhook replay protection: the MACs of accepted events, until their
//! timestamps leave the window. In the store, so a replay is refused after
//! a restart and by every replica sharing it.

use super::{SqlStore, StoreError};

impl SqlStore {
    /// Record `mac` as accepted until `expires_at` (Unix seconds); true when
    /// it already was (a replay). Expired entries are dropped first.
    pub async fn webhook_seen(
        &self,
        mac: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM webhook_replays WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // One statement decides, so two replicas racing on one event
        // cannot both accept it.
        let inserted = sqlx::query(
            "INSERT INTO webhook_replays (mac, expires_at) VALUES ($1, $2)
             ON CONFLICT (mac) DO NOTHING",
        )
        .bind(hex::encode(mac))
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 0)
    }
}
