//! Broker issuance latency: a workload's OIDC token verified (JWKS cached),
//! the approval that binds it found (approval files read, the store's
//! revocations applied), the STS `AssumeRole` on moto, the session
//! recorded. p50 / p99 / max per phase over N sequential requests, and the
//! broker's own time (everything but the provider's call), which the issue
//! targets at ≤ 100 ms p99.
//!
//!     cargo bench --bench broker_latency -- [--requests N]
//!
//! Needs `moto[server]` and openssl (tests/run.sh installs moto). The same
//! local issuer and config as `tests/broker.rs`.

#[path = "../tests/support/oidc.rs"]
mod oidc;

use std::time::Duration;

use nhi_assure::daemon::broker::{handle_timed, Broker, Phases};
use nhi_assure::pass::Context;
use nhi_aws::moto::Moto;

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("broker_latency: {msg}");
    std::process::exit(2);
}

/// p50, p99 and max of `xs` in milliseconds.
fn quantiles(mut xs: Vec<Duration>) -> (f64, f64, f64) {
    xs.sort_unstable();
    let at = |q: f64| {
        let i = ((xs.len() as f64 - 1.0) * q).round() as usize;
        xs.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.99), at(1.0))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests: usize = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    // moto's dummy credentials for the broker's own identity.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::set_var("AWS_CONFIG_FILE", "/dev/null");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_SESSION_TOKEN");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e));
    rt.block_on(run(requests));
}

async fn run(requests: usize) {
    let moto = Moto::start("smoke", &[]).unwrap_or_else(|e| fail(format!("moto: {e}")));
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let (key, jwk) = oidc::rsa_key(dir.path(), "issuer", "k1");
    let (jwks_url, fetches) = oidc::serve_jwks(serde_json::json!({"keys": [jwk]})).await;
    let cfg = oidc::setup(&moto, dir.path(), &jwks_url);
    let ctx = Context::load(&cfg).unwrap_or_else(|e| fail(format!("config: {e:#}")));
    let broker_cfg = ctx
        .cfg
        .daemon
        .broker
        .clone()
        .unwrap_or_else(|| fail("no broker in the config"));
    let broker = Broker::new(broker_cfg).unwrap_or_else(|e| fail(e));
    let token = oidc::token(
        &key,
        "k1",
        oidc::claims(oidc::AUDIENCE, oidc::SUBJECT, chrono::Duration::minutes(30)),
    );
    let auth = format!("Bearer {token}");
    // Warm-up: the JWKS fetch, the store opened, connections made.
    for _ in 0..10 {
        let (status, body) =
            handle_timed(&broker, &ctx, Some(&auth), b"", &mut Phases::default()).await;
        if status != 200 {
            fail(format!("warm-up refused: {status} {body}"));
        }
    }
    let mut phases: Vec<Phases> = Vec::with_capacity(requests);
    let mut totals = Vec::with_capacity(requests);
    for _ in 0..requests {
        let mut p = Phases::default();
        let t = std::time::Instant::now();
        let (status, body) = handle_timed(&broker, &ctx, Some(&auth), b"", &mut p).await;
        totals.push(t.elapsed());
        if status != 200 {
            fail(format!("refused: {status} {body}"));
        }
        phases.push(p);
    }
    let row = |name: &str, xs: Vec<Duration>| {
        let (p50, p99, max) = quantiles(xs);
        println!("{name:<34} {p50:>9.2} {p99:>9.2} {max:>9.2}");
    };
    println!(
        "broker_latency: {requests} sequential requests after 10 warm-up, one approval file, SQLite store, moto STS; JWKS fetched {} time(s)",
        fetches.load(std::sync::atomic::Ordering::SeqCst)
    );
    println!(
        "{:<34} {:>9} {:>9} {:>9}",
        "phase (ms)", "p50", "p99", "max"
    );
    row("total (request → credentials)", totals);
    row(
        "broker's own (total − provider)",
        phases.iter().map(Phases::own).collect(),
    );
    row("  token verify", phases.iter().map(|p| p.verify).collect());
    row(
        "  approval lookup",
        phases.iter().map(|p| p.approvals).collect(),
    );
    row(
        "  issuing source resolved",
        phases.iter().map(|p| p.issue.resolve).collect(),
    );
    row(
        "  session recorded",
        phases.iter().map(|p| p.issue.record).collect(),
    );
    row(
        "provider (STS AssumeRole on moto)",
        phases.iter().map(|p| p.issue.provider).collect(),
    );
}
