//! The daemon: full passes on a cron schedule, targeted passes at approval
//! expiry instants and on webhook events, one at a time, only while this
//! process holds the leader lease; `/healthz`, `/readyz`, `/metrics`;
//! graceful shutdown on SIGTERM / SIGINT.
//!
//! One loop runs the passes, so they never overlap. It sleeps until the
//! earlier of the next cron tick and the next approval end. A full pass
//! keeps each source's inventory; an approval end or an event then re-reads
//! only the subjects concerned on top of it and acts only on them, so a
//! credential whose approval ends is disabled within a fraction of a
//! second, not at the next tick.
//! A signal lets the pass in flight finish — each action is journaled, so
//! even a harder stop loses nothing — then stops the server and returns.
//!
//! The HTTP side is held to limits from `[daemon]` (`http`: connection
//! cap, header / idle timeouts; `webhook`: body deadline and size, signed
//! events, replays refused through the store, failed authentication
//! rate-limited per peer). [`check`] validates everything the daemon starts
//! from without opening anything (`daemon --check`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::Mode;
use crate::pass::{Context, InventoryCache, Targets};
use crate::sources::Remediators;
use crate::store::lease::{holder_id, Fence, Leadership, LeaseState};

pub mod http;
pub mod webhook;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The daemon's metrics.
struct Metrics {
    registry: Registry,
    passes: Counter,
    failed_passes: Counter,
    duration: Histogram,
    findings: Family<SeverityLabel, Gauge>,
    actions: Family<OutcomeLabel, Counter>,
    source_failures: Counter,
    leader: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nhi_assure");
        let passes = Counter::default();
        let failed_passes = Counter::default();
        let duration = Histogram::new([0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let findings = Family::<SeverityLabel, Gauge>::default();
        let actions = Family::<OutcomeLabel, Counter>::default();
        let source_failures = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register("passes", "Passes completed", passes.clone());
        registry.register(
            "failed_passes",
            "Passes that stopped with an error",
            failed_passes.clone(),
        );
        registry.register(
            "pass_duration_seconds",
            "Wall time of a pass",
            duration.clone(),
        );
        registry.register(
            "findings",
            "Findings of the last pass by severity",
            findings.clone(),
        );
        registry.register("actions", "Enforce actions by outcome", actions.clone());
        registry.register(
            "source_failures",
            "Sources failed or partial, per pass",
            source_failures.clone(),
        );
        Metrics {
            registry,
            passes,
            failed_passes,
            duration,
            findings,
            actions,
            source_failures,
            leader,
        }
    }
}

struct Shared {
    metrics: Mutex<Metrics>,
    /// A pass succeeded since this process became leader.
    ready: AtomicBool,
    /// This process holds the leader lease.
    leader: AtomicBool,
    /// Wakes the pass loop for an event-triggered pass.
    trigger: tokio::sync::Notify,
    /// What accepted events asked to re-read, drained by the next pass.
    pending: Mutex<Targets>,
    /// Revoked approval ids already acted on, so the poll for revocations
    /// stored by other replicas does not repeat this one's own.
    revoked: Mutex<std::collections::HashSet<String>>,
    webhook: Option<webhook::Webhook>,
}

impl Shared {
    fn set_leader(&self, leading: bool) {
        self.leader.store(leading, Ordering::Relaxed);
        if !leading {
            self.ready.store(false, Ordering::Relaxed);
        }
        if let Ok(m) = self.metrics.lock() {
            m.leader.set(i64::from(leading));
        }
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> (StatusCode, String) {
    let mut out = String::new();
    let ok = s
        .metrics
        .lock()
        .ok()
        .and_then(|m| prometheus_client::encoding::text::encode(&mut out, &m.registry).ok());
    match ok {
        Some(()) => (StatusCode::OK, out),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics unavailable\n".into(),
        ),
    }
}

/// Ready means leading with a successful pass: a load balancer then sends
/// webhook events to the replica that acts on them at once. (A standby
/// stores what it receives too; the leader picks revocations up from the
/// store within `REVOCATION_POLL`.)
async fn readyz(State(s): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if !s.leader.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby: another replica leads\n",
        )
    } else if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful pass yet\n")
    }
}

/// The daemon's routes.
fn router(shared: Arc<Shared>, limits: &http::Limits) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/webhook", axum::routing::post(webhook::handler))
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body))
        .with_state(shared)
}

/// How often the leader looks for revocations stored by other replicas.
const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// What the daemon needs from its config, validated: everything `--check`
/// verifies and `run` starts from.
pub struct Checked {
    /// The config, loaded with the environment's overrides.
    pub cfg: crate::config::Config,
    /// The full-pass schedule.
    pub schedule: cron::Schedule,
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The webhook's HMAC key, when the webhook is on.
    secret: Option<Vec<u8>>,
}

/// Shortest webhook secret accepted (bytes).
pub const MIN_SECRET_BYTES: usize = 16;

/// Load and check everything the daemon needs before it opens anything:
/// the config (with `env`'s overrides), the schedule, the listen address,
/// the rules, and the webhook secret in the variable the config names.
pub fn check(
    config: &Path,
    listen: Option<String>,
    env: &HashMap<String, String>,
) -> anyhow::Result<Checked> {
    let cfg = crate::config::Config::load(config, env.clone())?;
    let origin = cfg.origin();
    let at = |key: &[&str]| origin.locate(&key.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let schedule = cron::Schedule::from_str(&cfg.daemon.schedule).map_err(|e| {
        anyhow::anyhow!(
            "{}: [daemon] schedule {:?}: {e} (6 or 7 fields with seconds, e.g. \"0 */15 * * * *\")",
            at(&["daemon", "schedule"]),
            cfg.daemon.schedule
        )
    })?;
    let addr: SocketAddr =
        match listen {
            Some(l) => l
                .parse()
                .map_err(|e| anyhow::anyhow!("--listen {l:?}: {e}"))?,
            None => cfg.daemon.listen.parse().map_err(|e| {
                anyhow::anyhow!("{}: [daemon] listen: {e}", at(&["daemon", "listen"]))
            })?,
        };
    cfg.rule_set()?;
    let store = cfg.store_location();
    if crate::store::is_postgres(&store) {
        if let Err(e) = url::Url::parse(&store) {
            anyhow::bail!(
                "{}: store {}: not a valid URL ({e})",
                at(&["store"]),
                crate::store::redact(&store)
            );
        }
    }
    let secret = match &cfg.daemon.webhook_secret_env {
        None => None,
        Some(var) => {
            let where_ = at(&["daemon", "webhook_secret_env"]);
            let secret = env.get(var).ok_or_else(|| {
                anyhow::anyhow!(
                    "{where_}: [daemon] webhook_secret_env names {var}, which is not set"
                )
            })?;
            if secret.len() < MIN_SECRET_BYTES {
                anyhow::bail!(
                    "{where_}: the webhook secret in {var} is shorter than {MIN_SECRET_BYTES} bytes"
                );
            }
            Some(secret.clone().into_bytes())
        }
    };
    Ok(Checked {
        cfg,
        schedule,
        addr,
        secret,
    })
}

/// Run the daemon until a signal.
pub async fn run(config: PathBuf, listen: Option<String>) -> anyhow::Result<()> {
    // Validate everything before serving: a bad schedule fails with the file.
    let env: HashMap<String, String> = std::env::vars().collect();
    let Checked {
        cfg,
        schedule,
        addr,
        secret,
    } = check(&config, listen, &env)?;
    // Loaded once: every pass runs with this config, its rules and store.
    let ctx = Context::new(cfg, &config)?;
    let store = ctx.store().await?.clone();
    let d = &ctx.cfg.daemon;
    let limits = http::Limits::from_config(d);
    let webhook = secret.map(|secret| webhook::Webhook {
        secret,
        window: d.webhook_window_secs,
        store: store.clone(),
        limiter: webhook::FailureLimiter::new(d.auth_failure_burst, d.auth_failures_per_minute),
        body_timeout: limits.body_timeout,
        max_body: limits.max_body,
    });
    let shared = Arc::new(Shared {
        metrics: Mutex::new(Metrics::new()),
        ready: AtomicBool::new(false),
        leader: AtomicBool::new(false),
        trigger: tokio::sync::Notify::new(),
        pending: Mutex::new(Targets::default()),
        revoked: Mutex::new(std::collections::HashSet::new()),
        webhook,
    });
    let app = router(shared.clone(), &limits);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, schedule = %ctx.cfg.daemon.schedule, "daemon listening");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(http::serve(listener, app, limits, stop_rx.clone()));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received: finishing the pass in flight, then stopping");
        let _ = stop_tx.send(true);
    });

    let holder = holder_id();
    let ttl = std::time::Duration::from_secs(ctx.cfg.daemon.lease_secs);
    // Built once, when enforcing: clients and credentials are reused.
    let rems = if ctx.cfg.mode == Mode::Enforce {
        crate::sources::remediators(&ctx.cfg.sources).await
    } else {
        Remediators::new()
    };
    'standby: loop {
        // Stand by until this process leads: only the leader passes and acts.
        let leader = loop {
            match Leadership::acquire(&store, &holder, ttl).await {
                Ok(Ok(l)) => break l,
                Ok(Err(LeaseState::Busy {
                    holder,
                    remaining_ms,
                })) => {
                    tracing::info!(leader = %holder, remaining_ms, "standing by");
                }
                Ok(Err(LeaseState::Held(_))) => {}
                Err(e) => tracing::warn!(error = %e, "leader lease: store unreachable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(ttl / 3) => {}
                _ = stop_rx.changed() => break 'standby,
            }
        };
        tracing::info!(token = leader.fence().token, "leading");
        shared.set_leader(true);
        let stop = lead(&ctx, &rems, &shared, &schedule, &leader, &mut stop_rx).await;
        shared.set_leader(false);
        leader.release().await;
        if stop {
            break;
        }
    }
    let _ = server.await;
    tracing::info!("daemon stopped");
    Ok(())
}

/// Passes while this process leads: at start, on the schedule, at the next
/// approval end, on webhook events and on revocations other replicas
/// stored. Returns true when told to stop, false when the lease was lost.
async fn lead(
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
        let outcome = pass_once(
            ctx,
            rems,
            shared,
            leader.fence(),
            &mut cache,
            targets.take(),
        )
        .await;
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
                            approvals: Vec::new(),
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
                            identities: Vec::new(),
                            approvals: new,
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
        let outcomes = if ctx.cfg.mode == Mode::Enforce {
            crate::act::enforce(&pass, rems, fence, None).await?
        } else {
            Vec::new()
        };
        anyhow::Ok((pass, outcomes))
    }
    .await;
    let Ok(m) = shared.metrics.lock() else {
        return None;
    };
    m.duration.observe(start.elapsed().as_secs_f64());
    match result {
        Ok((pass, outcomes)) => {
            m.passes.inc();
            shared.ready.store(true, Ordering::Relaxed);
            for sev in ["info", "low", "medium", "high", "critical"] {
                let n = pass
                    .findings
                    .iter()
                    .filter(|f| f.severity.as_str() == sev)
                    .count();
                m.findings
                    .get_or_create(&SeverityLabel {
                        severity: sev.into(),
                    })
                    .set(n as i64);
            }
            for o in &outcomes {
                m.actions
                    .get_or_create(&OutcomeLabel {
                        outcome: o.status.as_str().into(),
                    })
                    .inc();
            }
            let bad = pass
                .sources
                .iter()
                .filter(|s| !s.state.is_complete())
                .count();
            m.source_failures.inc_by(bad as u64);
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
            m.failed_passes.inc();
            tracing::error!(error = %format!("{e:#}"), "pass failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use axum::http::{HeaderValue, Request};
    use proptest::prelude::*;

    use super::*;
    use crate::config::DaemonConfig;
    use crate::store::SqlStore;

    const SECRET: &[u8] = b"property-secret-0123456789abcdef";

    fn rt() -> &'static tokio::runtime::Runtime {
        static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        RT.get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
        })
    }

    /// One daemon's routes over a SQLite store, shared by every case.
    fn app() -> &'static (tempfile::TempDir, Router) {
        static APP: OnceLock<(tempfile::TempDir, Router)> = OnceLock::new();
        APP.get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("s.db").display().to_string();
            let store = rt().block_on(SqlStore::open(&path)).expect("store");
            let limits = http::Limits::from_config(&DaemonConfig::default());
            let shared = Arc::new(Shared {
                metrics: Mutex::new(Metrics::new()),
                ready: AtomicBool::new(false),
                leader: AtomicBool::new(false),
                trigger: tokio::sync::Notify::new(),
                pending: Mutex::new(Targets::default()),
                revoked: Mutex::new(std::collections::HashSet::new()),
                webhook: Some(webhook::Webhook {
                    secret: SECRET.to_vec(),
                    window: 300,
                    store,
                    // Failures are what the cases are made of: let them through.
                    limiter: webhook::FailureLimiter::new(1_000_000, 60),
                    body_timeout: limits.body_timeout,
                    max_body: limits.max_body,
                }),
            });
            let app = router(shared, &limits);
            (dir, app)
        })
    }

    fn sign(stamp: &str, body: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET).expect("key");
        mac.update(stamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn stamp() -> impl Strategy<Value = String> {
        let now = Utc::now().timestamp();
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            Just(i64::MIN.to_string()),
            Just(i64::MAX.to_string()),
            (-400i64..400).prop_map(move |d| (now + d).to_string()),
            "[-+0-9 ]{0,24}",
            "\\PC{0,16}",
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (
                proptest::sample::select(
                    &[
                        "approval.revoked",
                        "approval.created",
                        "task.completed",
                        "revocation.requested",
                        "other",
                        ""
                    ][..]
                ),
                proptest::option::of("[a-zA-Z0-9-]{0,12}"),
                proptest::option::of("\\PC{0,12}"),
            )
                .prop_map(|(e, id, subject)| {
                    serde_json::json!({"event": e, "approval_id": id, "subject": subject})
                        .to_string()
                        .into_bytes()
                }),
            Just(b"{\"event\":\"approval.created\",\"unknown\":1}".to_vec()),
        ]
    }

    /// Random and half-right requests through the real routes: never a
    /// panic, never a 5xx, and a 202 only for a correctly signed event.
    fn answer(headers: Vec<(&'static str, Vec<u8>)>, body: Vec<u8>) -> StatusCode {
        let mut req = Request::builder()
            .method("POST")
            .uri("/webhook")
            .body(axum::body::Body::from(body))
            .expect("request");
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                req.headers_mut().append(name, v);
            }
        }
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [127, 0, 0, 1],
                1,
            ))));
        let mut app = app().1.clone();
        rt().block_on(async move {
            <Router as tower::Service<_>>::call(&mut app, req)
                .await
                .map(|r| r.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_request_is_answered_without_a_panic(
            t in stamp(),
            sig in prop_oneof![
                "\\PC{0,80}",
                "sha256=[0-9a-fA-F]{0,70}",
                Just(String::new()),
            ],
            extra in proptest::collection::vec(
                (proptest::sample::select(&["x-nhi-assure-timestamp", "x-nhi-assure-signature", "content-type", "x-other"][..]),
                 proptest::collection::vec(any::<u8>(), 0..40)),
                0..3,
            ),
            body in body(),
            signed in any::<bool>(),
            upper in any::<bool>(),
        ) {
            let sig = if signed {
                let s = sign(&t, &body);
                format!("sha256={}", if upper { s.to_uppercase() } else { s })
            } else {
                sig
            };
            let mut headers = vec![
                (webhook::TIMESTAMP_HEADER, t.clone().into_bytes()),
                (webhook::SIGNATURE_HEADER, sig.into_bytes()),
            ];
            headers.extend(extra.clone());
            let code = answer(headers, body.clone());
            prop_assert!(!code.is_server_error(), "{}", code);
            if code == StatusCode::ACCEPTED {
                prop_assert!(signed, "accepted a request not signed correctly");
            }
        }

        #[test]
        fn the_fuzz_entry_point_holds_on_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            webhook::fuzz_one(&data);
        }
    }

    #[test]
    fn an_event_is_accepted_once_whatever_the_spelling_of_its_signature() {
        let t = Utc::now().timestamp().to_string();
        let body = br#"{"event":"approval.created","approval_id":"APR-ONCE"}"#.to_vec();
        let s = sign(&t, &body);
        let send = |sig: String| {
            answer(
                vec![
                    (webhook::TIMESTAMP_HEADER, t.clone().into_bytes()),
                    (webhook::SIGNATURE_HEADER, sig.into_bytes()),
                ],
                body.clone(),
            )
        };
        assert_eq!(send(format!("sha256={s}")), StatusCode::ACCEPTED);
        assert_eq!(
            send(format!("sha256={}", s.to_uppercase())),
            StatusCode::CONFLICT
        );
        let mixed: String = s
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(send(format!("sha256={mixed}")), StatusCode::CONFLICT);
    }
}
