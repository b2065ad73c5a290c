//! Scan of a 1,000-user account on moto: wall time and IAM calls.
//!
//!     cargo bench -p nhi-aws --bench scan_moto -- [--users N] [--keys-per-user N] [--concurrency N] [--spread-keys]
//!
//! Bulk users' keys are all created in the same second, so a user's two
//! keys cannot be told apart in the credential report (each is asked of
//! GetAccessKeyLastUsed). `--spread-keys` seeds named users instead, each
//! key created on its own day (slower to seed), as keys usually are.
//!
//! Needs `moto[server]` (tests/run.sh installs it). Calls are counted twice:
//! by the connector (logical calls) and by the fixture's proxy (HTTP
//! requests, retries included).

use std::time::Instant;

use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsSource};
use nhi_contract::InventorySource;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users = arg(&args, "--users", 1000);
    let keys = arg(&args, "--keys-per-user", 1);
    let concurrency = arg(&args, "--concurrency", 8);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tempdir: {e}");
            std::process::exit(2);
        }
    };
    let scenario = dir.path().join("bulk.json");
    let text = if args.iter().any(|a| a == "--spread-keys") {
        let named: Vec<serde_json::Value> = (0..users)
            .map(|i| {
                let keys: Vec<serde_json::Value> = (0..keys)
                    .map(|j| serde_json::json!({"name": format!("svc-{i}-key-{j}"), "created_days_ago": 1 + j}))
                    .collect();
                serde_json::json!({"name": format!("svc-{i}"), "keys": keys})
            })
            .collect();
        serde_json::json!({"aws_managed_policies": "referenced", "users": named}).to_string()
    } else {
        format!(
            r#"{{"bulk_users": {{"count": {users}, "prefix": "svc-", "keys_per_user": {keys}}}}}"#
        )
    };
    if let Err(e) = std::fs::write(&scenario, text) {
        eprintln!("write scenario: {e}");
        std::process::exit(2);
    }
    let t = Instant::now();
    let moto = match Moto::start(scenario.to_str().unwrap_or_default(), &[]) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "moto seeded with {users} users x {keys} key(s) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut cfg = AwsConfig::named("bench");
    cfg.max_concurrency = concurrency;
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let src = AwsSource::with_sdk_config(cfg, sdk);
    let t = Instant::now();
    let inv = match src.scan().await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("scan failed: {e}");
            std::process::exit(1);
        }
    };
    let wall = t.elapsed();
    let ours = src.calls().snapshot();
    let (http, per_action) = moto.proxy_stats().unwrap_or_default();
    let logical: u64 = ours.values().sum();
    println!(
        "scanned {} identities, {} credentials in {:.2} s (concurrency {concurrency})",
        inv.identities.len(),
        inv.credentials.len(),
        wall.as_secs_f64()
    );
    println!(
        "IAM calls: {logical} logical, {http} HTTP requests (retries included); {:.2} logical calls per user, {:.0} HTTP requests per 100 users",
        logical as f64 / users.max(1) as f64,
        http as f64 * 100.0 / users.max(1) as f64
    );
    for (op, n) in &ours {
        println!(
            "  {op:<32} {n:>6}   (HTTP {})",
            per_action.get(*op).copied().unwrap_or(0)
        );
    }
    println!(
        "gaps: {:?}",
        inv.coverage
            .gaps
            .iter()
            .map(|g| g.unseen.to_string())
            .collect::<Vec<_>>()
    );
}
