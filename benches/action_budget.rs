//! What the action budget costs an enforce run: `Budget::load` (one indexed
//! count per configured window over the journal) on a journal of N intents,
//! and `Budget::spend` per action.
//!
//!     cargo bench --bench action_budget -- [--actions N] [--runs N]
//!
//! Defaults: 20,000 journaled actions over 20 sources, the default budget
//! (two overall windows, two per-source windows), 50 loads.

use std::time::{Duration, Instant};

use nhi_assure::act::Budget;
use nhi_assure::config::Budget as BudgetConfig;
use nhi_assure::store::journal::Intent;
use nhi_assure::store::lease::Leadership;
use nhi_assure::store::{RunRecord, SqlStore, Store};
use nhi_contract::{ActionRequest, CredentialKind, Operation, Provider};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("action_budget: {e}");
    std::process::exit(1)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--actions", 20_000);
    let runs = arg(&args, "--runs", 50).max(1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    let store = SqlStore::open(&dir.path().join("budget.db").display().to_string())
        .await
        .unwrap_or_else(|e| fail(e));
    let now = chrono::Utc::now();
    let run = store
        .record_run(RunRecord {
            started_at: now,
            as_of: now,
            command: "bench",
            sources: &[],
            rules: &[],
            findings: &[],
            held: &Default::default(),
            reading: None,
            scope: None,
        })
        .await
        .unwrap_or_else(|e| fail(e));
    let leader = Leadership::acquire(&store, "bench", Duration::from_secs(600))
        .await
        .unwrap_or_else(|e| fail(e))
        .unwrap_or_else(|_| fail("lease busy"));
    let started = Instant::now();
    for i in 0..n {
        let request = ActionRequest {
            operation: Operation::DisableCredential,
            provider: Provider::Aws,
            identity_id: format!("arn:aws:iam::123456789012:user/u{i}"),
            credential_id: Some(format!("AKIA{i:016}")),
            credential_kind: Some(CredentialKind::AccessKey),
            entitlements: Vec::new(),
            federated: None,
        };
        store
            .journal_intent(&Intent {
                run_id: run.run_id,
                request: &request,
                source: &format!("source-{}", i % 20),
                rules: &[],
                findings: &[],
                evidence: serde_json::Value::Null,
                actor: "bench",
                planned_undo: None,
                undo_of: None,
                fence: leader.fence(),
            })
            .await
            .unwrap_or_else(|e| fail(e));
    }
    println!(
        "journal: {n} intents written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cfg = BudgetConfig::default();
    let mut times = Vec::with_capacity(runs);
    let mut budget = None;
    for _ in 0..runs {
        let t = Instant::now();
        budget = Some(Budget::load(&store, &cfg).await.unwrap_or_else(|e| fail(e)));
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "Budget::load ({} windows): median {:.2} ms, best {:.2} ms, worst {:.2} ms",
        cfg.overall.len() + cfg.per_source.len(),
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    if let Some(mut b) = budget {
        let t = Instant::now();
        let mut granted = 0u32;
        for i in 0..100_000 {
            if b.spend(&format!("source-{}", i % 20)).is_ok() {
                granted += 1;
            }
        }
        println!(
            "Budget::spend: {:.0} ns per call (100,000 calls, {granted} granted)",
            t.elapsed().as_secs_f64() * 1e9 / 100_000.0
        );
    }
    leader.release().await;
}
