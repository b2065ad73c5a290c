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

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::config::Mode;
use crate::pass::{Context, Targets};
use crate::sources::Remediators;
use crate::store::lease::{holder_id, Leadership, LeaseState};

#[cfg(feature = "aws")]
pub mod broker;
pub mod events;
pub mod http;
mod metrics;
mod schedule;
pub mod webhook;

use metrics::Metrics;

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
    /// The ticket event routes, when any is configured.
    events: Option<events::Events>,
    /// Subjects of each ticket (approval or unmapped record `reference`)
    /// as the last pass read them: what a ticket event re-reads.
    tickets: Mutex<HashMap<String, Vec<String>>>,
    /// The credentials broker and the context it issues through, when
    /// `[daemon.broker]` is configured.
    #[cfg(feature = "aws")]
    broker: Option<(broker::Broker, Arc<Context>)>,
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

/// `POST /v1/credentials`: see [`broker`]. 404 when no broker is configured.
#[cfg(feature = "aws")]
async fn credentials(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 2],
    String,
) {
    let headers_out = [
        (axum::http::header::CONTENT_TYPE, "application/json"),
        (axum::http::header::CACHE_CONTROL, "no-store"),
    ];
    let Some((b, ctx)) = &s.broker else {
        return (
            StatusCode::NOT_FOUND,
            headers_out,
            serde_json::json!({"error": "no broker configured"}).to_string(),
        );
    };
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (status, json) = broker::handle(b, ctx, auth, &body).await;
    (status, headers_out, json.to_string())
}

/// The daemon's routes.
fn router(shared: Arc<Shared>, limits: &http::Limits) -> Router {
    #[cfg(feature = "aws")]
    let routes = Router::new().route("/v1/credentials", axum::routing::post(credentials));
    #[cfg(not(feature = "aws"))]
    let routes = Router::new();
    routes
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/webhook", axum::routing::post(webhook::handler))
        .route("/v1/events/jira", axum::routing::post(events::jira))
        .route(
            "/v1/events/servicenow",
            axum::routing::post(events::servicenow),
        )
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body))
        .with_state(shared)
}

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
    /// The Jira webhook's secret, when that route is on.
    jira: Option<Vec<u8>>,
    /// ServiceNow's proofs, when that route is on.
    servicenow: events::ServiceNowAuth,
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
    let rules = cfg.rule_set()?;
    // Exception files are read by every pass; a bad one is found here too.
    crate::pass::load_exceptions(&cfg, &rules)?;
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
    // Each secret from the variable its key names, never from the file.
    let named = |key: &str, var: &Option<String>| -> anyhow::Result<Option<Vec<u8>>> {
        let Some(var) = var else {
            return Ok(None);
        };
        let where_ = at(&["daemon", key]);
        let secret = env.get(var).ok_or_else(|| {
            anyhow::anyhow!("{where_}: [daemon] {key} names {var}, which is not set")
        })?;
        if secret.len() < MIN_SECRET_BYTES {
            anyhow::bail!(
                "{where_}: the secret in {var} ({key}) is shorter than {MIN_SECRET_BYTES} bytes"
            );
        }
        Ok(Some(secret.clone().into_bytes()))
    };
    let d = &cfg.daemon;
    let secret = named("webhook_secret_env", &d.webhook_secret_env)?;
    let jira = named("jira_webhook_secret_env", &d.jira_webhook_secret_env)?;
    let servicenow = events::ServiceNowAuth {
        hmac: named("servicenow_hmac_secret_env", &d.servicenow_hmac_secret_env)?,
        header: d.servicenow_signature_header.to_ascii_lowercase(),
        basic: named("servicenow_basic_auth_env", &d.servicenow_basic_auth_env)?,
    };
    if servicenow
        .basic
        .as_deref()
        .is_some_and(|b| !b.contains(&b':'))
    {
        anyhow::bail!(
            "{}: the value of servicenow_basic_auth_env is not user:password",
            at(&["daemon", "servicenow_basic_auth_env"])
        );
    }
    // A notification sink whose secret is missing would fail every
    // delivery (and, with hold_unnotified, hold every action): found here.
    for (name, sink) in &cfg.notify.sinks {
        for (key, var) in sink.secret_variables() {
            if env.get(var).is_none_or(String::is_empty) {
                anyhow::bail!(
                    "{}: [notify.sinks.{name}] {key} names {var}, which is not set",
                    at(&["notify", "sinks", name, key])
                );
            }
        }
    }
    if axum::http::HeaderName::from_bytes(servicenow.header.as_bytes()).is_err() {
        anyhow::bail!(
            "{}: [daemon] servicenow_signature_header {:?} is not a header name",
            at(&["daemon", "servicenow_signature_header"]),
            d.servicenow_signature_header
        );
    }
    Ok(Checked {
        cfg,
        schedule,
        addr,
        secret,
        jira,
        servicenow,
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
        jira,
        servicenow,
    } = check(&config, listen, &env)?;
    // Loaded once: every pass runs with this config, its rules and store.
    let ctx = Arc::new(Context::new(cfg, &config)?);
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
    let events =
        (jira.is_some() || servicenow.hmac.is_some() || servicenow.basic.is_some()).then(|| {
            events::Events {
                jira,
                servicenow,
                window: d.webhook_window_secs,
                store: store.clone(),
                limiter: webhook::FailureLimiter::new(
                    d.auth_failure_burst,
                    d.auth_failures_per_minute,
                ),
                body_timeout: limits.body_timeout,
                max_body: limits.max_body,
            }
        });
    let shared = Arc::new(Shared {
        metrics: Mutex::new(Metrics::new()),
        ready: AtomicBool::new(false),
        leader: AtomicBool::new(false),
        trigger: tokio::sync::Notify::new(),
        pending: Mutex::new(Targets::default()),
        revoked: Mutex::new(std::collections::HashSet::new()),
        webhook,
        events,
        tickets: Mutex::new(HashMap::new()),
        #[cfg(feature = "aws")]
        broker: match &ctx.cfg.daemon.broker {
            Some(b) => Some((broker::Broker::new(b.clone())?, ctx.clone())),
            None => None,
        },
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
        let stop = schedule::lead(&ctx, &rems, &shared, &schedule, &leader, &mut stop_rx).await;
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

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use axum::http::{HeaderValue, Request};
    use proptest::prelude::*;

    use super::*;
    use crate::config::DaemonConfig;
    use crate::store::SqlStore;
    use chrono::Utc;

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
                #[cfg(feature = "aws")]
                broker: None,
                webhook: Some(webhook::Webhook {
                    secret: SECRET.to_vec(),
                    window: 300,
                    store,
                    // Failures are what the cases are made of: let them through.
                    limiter: webhook::FailureLimiter::new(1_000_000, 60),
                    body_timeout: limits.body_timeout,
                    max_body: limits.max_body,
                }),
                events: None,
                tickets: Mutex::new(HashMap::new()),
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
        send(app().1.clone(), "/webhook", headers, body)
    }

    /// One POST to `path` through `app`'s real routes, from loopback.
    fn send(
        mut app: Router,
        path: &str,
        headers: Vec<(&'static str, Vec<u8>)>,
        body: Vec<u8>,
    ) -> StatusCode {
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
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

    const JIRA: &[u8] = b"jira-property-secret-0123456789ab";

    /// The ticket event routes over their own store, shared by every case.
    fn events_app() -> &'static (tempfile::TempDir, Router) {
        static APP: OnceLock<(tempfile::TempDir, Router)> = OnceLock::new();
        APP.get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("e.db").display().to_string();
            let store = rt().block_on(SqlStore::open(&path)).expect("store");
            let limits = http::Limits::from_config(&DaemonConfig::default());
            let shared = Arc::new(Shared {
                metrics: Mutex::new(Metrics::new()),
                ready: AtomicBool::new(false),
                leader: AtomicBool::new(false),
                trigger: tokio::sync::Notify::new(),
                pending: Mutex::new(Targets::default()),
                revoked: Mutex::new(std::collections::HashSet::new()),
                #[cfg(feature = "aws")]
                broker: None,
                webhook: None,
                events: Some(events::Events {
                    jira: Some(JIRA.to_vec()),
                    servicenow: events::ServiceNowAuth {
                        hmac: Some(SECRET.to_vec()),
                        header: "x-servicenow-signature".into(),
                        basic: Some(b"user:password-0123456789".to_vec()),
                    },
                    window: 300,
                    store,
                    limiter: webhook::FailureLimiter::new(1_000_000, 60),
                    body_timeout: limits.body_timeout,
                    max_body: limits.max_body,
                }),
                tickets: Mutex::new(HashMap::new()),
            });
            let app = router(shared, &limits);
            (dir, app)
        })
    }

    fn body_mac(secret: &[u8], body: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn answer_events(
        path: &str,
        headers: Vec<(&'static str, Vec<u8>)>,
        body: Vec<u8>,
    ) -> StatusCode {
        send(events_app().1.clone(), path, headers, body)
    }

    fn ticket_body() -> impl Strategy<Value = Vec<u8>> {
        let now = Utc::now();
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            (
                proptest::sample::select(&["jira:issue_updated", "jira:issue_created", "comment_created", ""][..]),
                proptest::option::of("[A-Z]{1,4}-[0-9]{1,4}"),
                prop_oneof![Just(now.timestamp_millis()), any::<i64>()],
            )
                .prop_map(|(e, key, ts)| {
                    serde_json::json!({"webhookEvent": e, "timestamp": ts, "issue": key.map(|k| serde_json::json!({"key": k})), "changelog": {"items": []}})
                        .to_string()
                        .into_bytes()
                }),
            ("[A-Z]{4}[0-9]{1,7}", prop_oneof![Just(now.timestamp()), any::<i64>()]).prop_map(|(n, ts)| {
                serde_json::json!({"number": n, "timestamp": ts}).to_string().into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random and half-right ticket events: never a panic, never a
        /// 5xx, and accepted only when the proof of origin holds.
        #[test]
        fn any_ticket_event_is_answered_without_a_panic(
            jira in any::<bool>(),
            proof in 0u8..4,
            junk in "\\PC{0,80}",
            body in ticket_body(),
        ) {
            let (path, headers): (&str, Vec<(&'static str, Vec<u8>)>) = match (jira, proof) {
                (true, 0) => ("/v1/events/jira", vec![("x-hub-signature", format!("sha256={}", body_mac(JIRA, &body)).into_bytes())]),
                (true, _) => ("/v1/events/jira", vec![("x-hub-signature", junk.clone().into_bytes())]),
                (false, 0) => ("/v1/events/servicenow", vec![("x-servicenow-signature", body_mac(SECRET, &body).into_bytes())]),
                (false, 1) => ("/v1/events/servicenow", vec![("authorization", b"Basic dXNlcjpwYXNzd29yZC0wMTIzNDU2Nzg5".to_vec())]),
                (false, _) => ("/v1/events/servicenow", vec![("authorization", junk.clone().into_bytes()), ("x-servicenow-signature", junk.clone().into_bytes())]),
            };
            let proven = proof == 0 || (!jira && proof == 1);
            let code = answer_events(path, headers, body);
            prop_assert!(!code.is_server_error(), "{}", code);
            if code == StatusCode::ACCEPTED || code == StatusCode::OK {
                prop_assert!(proven, "accepted an event without its proof");
            }
        }
    }

    /// A Jira delivery is accepted once, however the hex of its signature
    /// is spelt; another system's identical MAC is no replay of it.
    #[test]
    fn a_jira_delivery_is_accepted_once() {
        let body = format!(
            r#"{{"webhookEvent":"jira:issue_updated","timestamp":{},"issue":{{"key":"SEC-1"}},"changelog":{{"items":[]}}}}"#,
            Utc::now().timestamp_millis()
        )
        .into_bytes();
        let mac = body_mac(JIRA, &body);
        let send = |sig: String| {
            answer_events(
                "/v1/events/jira",
                vec![("x-hub-signature", sig.into_bytes())],
                body.clone(),
            )
        };
        assert_eq!(send(format!("sha256={mac}")), StatusCode::ACCEPTED);
        assert_eq!(
            send(format!("sha256={}", mac.to_uppercase())),
            StatusCode::CONFLICT
        );
        let stale = format!(
            r#"{{"webhookEvent":"jira:issue_updated","timestamp":{},"issue":{{"key":"SEC-1"}}}}"#,
            (Utc::now().timestamp() - 3600) * 1000
        )
        .into_bytes();
        assert_eq!(
            answer_events(
                "/v1/events/jira",
                vec![(
                    "x-hub-signature",
                    format!("sha256={}", body_mac(JIRA, &stale)).into_bytes()
                )],
                stale,
            ),
            StatusCode::UNAUTHORIZED,
            "outside the window"
        );
    }

    /// The event routes' secrets come from the variables the config
    /// names, checked before anything starts.
    #[test]
    fn ticket_event_secrets_are_checked_from_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("c.toml");
        std::fs::write(
            &cfg,
            "store = \"s.db\"\n[[sources]]\ntype = \"snapshot\"\nname = \"s\"\nprovider = \"aws\"\npath = \"e.json\"\n[daemon]\njira_webhook_secret_env = \"J\"\nservicenow_basic_auth_env = \"B\"\n",
        )
        .expect("config");
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let err = |e: &HashMap<String, String>| match check(&cfg, None, e) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        };
        let missing = err(&env(&[("B", "user:password-0123456789")]));
        assert!(
            missing.contains("jira_webhook_secret_env names J, which is not set"),
            "{missing}"
        );
        let no_colon = err(&env(&[
            ("J", "jira-secret-0123456789"),
            ("B", "no-colon-in-this-value"),
        ]));
        assert!(no_colon.contains("not user:password"), "{no_colon}");
        let ok = check(
            &cfg,
            None,
            &env(&[
                ("J", "jira-secret-0123456789"),
                ("B", "user:password-0123456789"),
            ]),
        )
        .expect("valid");
        assert_eq!(ok.jira.as_deref(), Some(&b"jira-secret-0123456789"[..]));
        assert!(ok.servicenow.hmac.is_none() && ok.servicenow.basic.is_some());
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
