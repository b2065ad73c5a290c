//! Scan of an AWS organisation on moto: N member accounts of bulk users,
//! discovered through Organizations and read through the member role a few
//! accounts at a time. Prints wall time, requests (per 100 users and per
//! account) and the scanner's peak RSS (the fixture's Python process is
//! not counted).
//!
//!     cargo bench -p nhi-aws --features moto-fixture --bench scan_org -- [--users 5000] [--accounts 10] [--accounts-concurrency 4] [--concurrency 8]
//!
//! Needs `moto[server]` (tests/run.sh installs it).

use std::time::Instant;

use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsSource, OrganizationConfig};
use nhi_contract::InventorySource;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set of this process (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let users = arg(&args, "--users", 5000);
    let n = arg(&args, "--accounts", 10).clamp(1, 99);
    let parallel = arg(&args, "--accounts-concurrency", 4);
    let concurrency = arg(&args, "--concurrency", 8);
    let per_account = users / n;
    let id = |i: usize| format!("2100000000{i:02}");
    let accounts: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"id": id(i), "name": format!("member-{i}")}))
        .collect();
    let iam: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| {
            (
                id(i),
                serde_json::json!({"aws_managed_policies": "referenced",
                    "bulk_users": {"count": per_account, "prefix": format!("a{i}-svc-"), "keys_per_user": 1}}),
            )
        })
        .collect();
    let scenario = serde_json::json!({
        "aws_managed_policies": "referenced",
        "organization": {"role_name": "nhi-assure-member", "accounts": accounts},
        "accounts": iam,
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let path = dir.path().join("org.json");
    std::fs::write(&path, scenario.to_string()).unwrap_or_else(|e| fail("write scenario", e));
    let t = Instant::now();
    let moto =
        Moto::start(path.to_str().unwrap_or_default(), &[]).unwrap_or_else(|e| fail("fixture", e));
    println!(
        "moto seeded with {n} member accounts x {per_account} users in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut cfg = AwsConfig::named("bench-org");
    cfg.max_concurrency = concurrency;
    let mut org = OrganizationConfig::with_role("nhi-assure-member");
    // The management account has no bulk users and no member role to speak of.
    org.exclude_accounts = vec![moto.ready.account.clone()];
    org.max_accounts_concurrency = parallel;
    cfg.organization = Some(Box::new(org));
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    let src = AwsSource::with_sdk_config(cfg, sdk);
    let t = Instant::now();
    let inv = src.scan().await.unwrap_or_else(|e| fail("scan", e));
    let wall = t.elapsed();
    let logical = src.calls().total();
    let (http, per_action) = moto.proxy_stats().unwrap_or_default();
    let read: std::collections::BTreeSet<&str> =
        inv.identities.iter().map(|i| i.account.as_str()).collect();
    println!(
        "scanned {} accounts, {} identities, {} credentials in {:.1} s ({parallel} accounts at a time, {concurrency} calls each)",
        read.len(),
        inv.identities.len(),
        inv.credentials.len(),
        wall.as_secs_f64()
    );
    println!(
        "requests: {logical} logical, {http} HTTP (retries included): {:.0} per 100 users, {:.0} per account",
        http as f64 * 100.0 / (per_account * n).max(1) as f64,
        http as f64 / n as f64
    );
    for (op, k) in &per_action {
        println!("  {op:<32} {k:>6}");
    }
    match peak_rss_mib() {
        Some(m) => println!("scanner peak RSS: {m:.1} MiB"),
        None => println!("scanner peak RSS: unknown (no /proc/self/status)"),
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
