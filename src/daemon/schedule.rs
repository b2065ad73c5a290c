//! When the leader passes: at start, on the cron schedule, just after the
//! next approval end (a targeted pass for its subjects), on webhook events
//! and on revocations other replicas stored — one pass at a time.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;

use super::Shared;
use crate::config::Mode;
use crate::pass::{Context, InventoryCache, Targets};
use crate::sources::Remediators;
use crate::store::lease::{Fence, Leadership};

/// How often the leader looks for revocations stored by other replicas.
const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Passes while this process leads: at start, on the schedule, at the next
/// approval end, on webhook events and on revocations other replicas
/// stored. Returns true when told to stop, false when the lease was lost.
pub(super) async fn lead(
    ctx: &Context,
    rems: &Remediators,
    shared: &Shared,
    schedule: &cron::Schedule,
    leader: &Leadership,
    stop_rx: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let Ok(store) = ctx.store().await else {
        return false;
    };
    let mut cache = InventoryCache::new();
    let mut next_expiry: Option<(chrono::DateTime<Utc>, Vec<String>)> = None;
    if let (Ok(all), Ok(mut known)) = (store.revocations().await, shared.revoked.lock()) {
        known.extend(all.into_keys());
    }
    // The first pass is full: it fills the cache targeted passes build on.
    let mut targets: Option<Targets> = None;
    loop {
        if leader.lost() {
            return false;
        }
        let full = targets.is_none();
        let outcome = pass_once(
            ctx,
            rems,
            shared,
            leader.fence(),
            &mut cache,
            targets.take(),
        )
        .await;
        if full {
            crate::pass::release_freed_memory();
        }
        next_expiry = outcome.or(next_expiry).filter(|(t, _)| *t > Utc::now());
        if *stop_rx.borrow() {
            return true;
        }
        let now = Utc::now();
        let tick = schedule.after(&now).next();
        // Just past the end instant, so the approval reads as ended.
        let expiry = next_expiry
            .as_ref()
            .map(|(t, _)| *t + chrono::Duration::milliseconds(50));
        let (wake, at_expiry) = match (tick, expiry) {
            (Some(a), Some(b)) if b < a => (b, true),
            (Some(a), _) => (a, false),
            (None, Some(b)) => (b, true),
            (None, None) => (now + chrono::Duration::hours(24), false),
        };
        let wait = (wake - now).to_std().unwrap_or_default();
        tracing::debug!(%wake, at_expiry, "sleeping until the next pass");
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        let mut poll = tokio::time::interval(REVOCATION_POLL);
        poll.tick().await;
        loop {
            tokio::select! {
                _ = &mut sleep => {
                    if at_expiry {
                        targets = next_expiry.as_ref().map(|(_, ids)| Targets {
                            identities: ids.clone(),
                            ..Targets::default()
                        });
                    }
                    break;
                }
                _ = shared.trigger.notified() => {
                    let asked = shared
                        .pending
                        .lock()
                        .map(|mut p| std::mem::take(&mut *p))
                        .unwrap_or_default();
                    targets = Some(asked).filter(|t| *t != Targets::default());
                    break;
                }
                _ = stop_rx.changed() => return true,
                _ = poll.tick() => {
                    if leader.lost() {
                        return false;
                    }
                    // Revocations a standby stored: a targeted pass for them.
                    let Ok(now) = store.revocations().await else {
                        continue;
                    };
                    let new: Vec<String> = match shared.revoked.lock() {
                        Ok(mut known) => now
                            .into_keys()
                            .filter(|id| known.insert(id.clone()))
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    if !new.is_empty() {
                        targets = Some(Targets {
                            approvals: new,
                            ..Targets::default()
                        });
                        break;
                    }
                }
            }
        }
    }
}

/// One pass (enforcing when the config says so); updates the metrics and
/// returns the next approval end.
async fn pass_once(
    ctx: &Context,
    rems: &Remediators,
    shared: &Shared,
    fence: &Fence,
    cache: &mut InventoryCache,
    targets: Option<Targets>,
) -> Option<(chrono::DateTime<Utc>, Vec<String>)> {
    let start = Instant::now();
    let result = async {
        let command = if targets.is_some() {
            "daemon-targeted"
        } else {
            "daemon"
        };
        let pass = ctx
            .pass_scoped(command, Some(cache), targets.as_ref())
            .await?;
        let enforcing = ctx.cfg.mode == Mode::Enforce;
        // Owners are told before anything is done to their credentials.
        let mut notifier = crate::notify::Notifier::new(&pass, &ctx.path);
        notifier.pass_events(&pass, enforcing).await;
        let outcomes = if enforcing {
            let mut o = crate::act::enforce(&pass, rems, fence, None).await?;
            // Issuance follows its approvals: sessions denied when theirs
            // ended early, federated credentials added and removed with
            // the window.
            o.extend(crate::act::issuance(ctx, &pass, rems, fence).await?);
            o
        } else {
            Vec::new()
        };
        notifier.actions(&pass, &outcomes).await;
        anyhow::Ok((pass, outcomes, notifier.report))
    }
    .await;
    let Ok(m) = shared.metrics.lock() else {
        return None;
    };
    match result {
        Ok((pass, outcomes, delivered)) => {
            m.record_pass(start.elapsed(), &pass, &outcomes);
            m.record_notify(&delivered);
            shared.ready.store(true, Ordering::Relaxed);
            if let Ok(mut t) = shared.tickets.lock() {
                // A targeted pass read the keys it was asked about only.
                if pass.targeted.is_none() {
                    t.clone_from(&pass.tickets);
                } else {
                    t.extend(pass.tickets.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            tracing::info!(
                run = pass.summary.run_id,
                findings = pass.findings.len(),
                actions = outcomes.len(),
                next_expiry = ?pass.next_expiry.as_ref().map(|(t, _)| t),
                targeted = ?pass.targeted,
                "pass done"
            );
            pass.next_expiry
        }
        Err(e) => {
            m.record_failure(start.elapsed());
            tracing::error!(error = %format!("{e:#}"), "pass failed");
            None
        }
    }
}
