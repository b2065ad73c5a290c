//! Full engine pass on a synthetic estate: graph build, facts, all built-in
//! rules, plan. Prints time per stage and peak RSS.
//!
//!     cargo bench --bench engine_pass -- [--identities N] [--credentials N] [--runs N] [--seed N]
//!
//! Defaults: 300,000 identities, 1,000,000 credentials, 3 runs. Generating
//! the estate is not part of the pass and is reported separately.

use std::time::{Duration, Instant};

use nhi_assure::engine;
use nhi_assure::engine::estate::Estate;
use nhi_assure::engine::plan::Protected;
use nhi_assure::engine::rules::{RuleSet, RulesConfig};
use nhi_assure::synth::{generate, synth_now, SynthSpec};
use nhi_contract::Provider;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spec = SynthSpec {
        identities: arg(&args, "--identities", 300_000),
        credentials: arg(&args, "--credentials", 1_000_000),
        seed: arg(&args, "--seed", 7) as u64,
    };
    let runs = arg(&args, "--runs", 3).max(1);
    println!(
        "engine pass: {} identities, {} credentials, {} threads",
        spec.identities,
        spec.credentials,
        rayon::current_num_threads()
    );

    let t = Instant::now();
    let (inv, approvals) = generate(spec);
    let mut estate = Estate {
        approvals,
        ..Estate::default()
    };
    estate.add_inventory("synthetic", Provider::Aws, inv);
    println!(
        "generated in {:.0} ms: {} entitlements, {} grants, {} trusts, {} approvals; peak RSS {:.0} MiB",
        ms(t.elapsed()),
        estate.entitlements.len(),
        estate.grants.len(),
        estate.trusts.len(),
        estate.approvals.len(),
        peak_rss_mib()
    );

    let rules = match RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rules: {e}");
            std::process::exit(2);
        }
    };
    let protected = Protected::new(&["arn:aws:iam::*:user/synth-svc-1?".to_string()]);
    let mut totals = Vec::new();
    for run in 1..=runs {
        let t = Instant::now();
        let eval = engine::evaluate(&estate, &rules, &protected, synth_now());
        let total = t.elapsed();
        let tm = &eval.timings;
        println!(
            "run {run}: graph {:>6.0} ms | facts {:>6.0} ms | rules {:>6.0} ms | plan {:>5.0} ms | total {:>6.0} ms | {} findings, {} planned actions | peak RSS {:.0} MiB",
            ms(tm.graph),
            ms(tm.facts),
            ms(tm.rules),
            ms(tm.plan),
            ms(total),
            eval.hits.len(),
            eval.plan.actions.len(),
            peak_rss_mib()
        );
        totals.push(total);
        drop(eval);
    }
    totals.sort();
    println!(
        "best {:.0} ms, median {:.0} ms, peak RSS {:.0} MiB",
        ms(totals[0]),
        ms(totals[totals.len() / 2]),
        peak_rss_mib()
    );
}
