//! End to end at scale, through the CLI as a user runs it: a synthetic
//! estate written as a snapshot and approval files → `scan` → a second,
//! unchanged `scan` → `report` in every format → `evidence export`, on
//! SQLite or PostgreSQL. Per step: wall time, the step's peak RSS (the
//! child process's, from `wait4`) and the store's size after it.
//!
//!     cargo bench --bench end_to_end -- [--credentials 100000] [--identities N] [--backend sqlite|postgres] [--keep DIR] [--targeted N] [--targeted-only] [--scans-only]
//!
//! `--identities` defaults to 30 % of the credentials (the 300,000
//! for 1,000,000). PostgreSQL is started from the Debian package's binaries
//! (tests/run.sh installs them) on a free loopback port. Last, in process,
//! `--targeted N` (default 20) daemon passes targeted at one identity each,
//! after a full pass that fills the cache: trigger to plan. The journaled
//! action against a provider is measured by the `daemon_latency` bench
//! against moto.

#[path = "../tests/support/pg.rs"]
#[allow(dead_code)]
mod pg;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("end_to_end: {msg}");
    std::process::exit(2);
}

/// One step's measure.
struct Step {
    wall: f64,
    peak_rss_mib: f64,
    code: i32,
}

/// The binary each step runs: this build's, or `END_TO_END_BIN` (an
/// earlier build, for before / after figures on the same estate).
fn bin() -> std::ffi::OsString {
    std::env::var_os("END_TO_END_BIN").unwrap_or_else(|| BIN.into())
}

/// The high-water mark of `pid`'s resident memory (`VmHWM`, KiB), polled
/// until it exits. Not `wait4`'s `ru_maxrss`: a child spawned by
/// `posix_spawn` shares this process's memory until it execs, and Linux
/// carries that memory's high-water mark over the exec, so every step
/// would report at least this process's own peak (the estate it wrote).
fn watch_hwm(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let path = format!("/proc/{pid}/status");
        let mut peak = 0u64;
        while let Ok(text) = std::fs::read_to_string(&path) {
            // A zombie has no memory lines left: the child has exited.
            let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            else {
                break;
            };
            peak = peak.max(kib);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        peak
    })
}

/// Run the CLI in `dir` with `args`, output to `log`; wall time and the
/// child's own peak RSS ([`watch_hwm`]).
fn step(dir: &Path, args: &[&str], log: &str) -> Step {
    let out = std::fs::File::create(dir.join(format!("{log}.out")))
        .unwrap_or_else(|e| fail(format!("log: {e}")));
    let err = std::fs::File::create(dir.join(format!("{log}.err")))
        .unwrap_or_else(|e| fail(format!("log: {e}")));
    let t = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| fail(format!("spawn: {e}")));
    let hwm = watch_hwm(child.id());
    let status = child.wait().unwrap_or_else(|e| fail(format!("wait: {e}")));
    let wall = t.elapsed().as_secs_f64();
    let code = status
        .code()
        .unwrap_or_else(|| fail(format!("{args:?} died by a signal ({status})")));
    if code >= 2 {
        let e = std::fs::read_to_string(dir.join(format!("{log}.err"))).unwrap_or_default();
        fail(format!("{args:?} exited {code}: {e}"));
    }
    Step {
        wall,
        peak_rss_mib: hwm.join().unwrap_or(0) as f64 / 1024.0,
        code,
    }
}

/// The store's size in bytes.
fn store_bytes(dir: &Path, pg_url: Option<&str>) -> u64 {
    match pg_url {
        None => ["s.db", "s.db-wal", "s.db-shm"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum(),
        Some(url) => {
            let o = Command::new("psql")
                .args([url, "-tAc", "SELECT pg_database_size(current_database())"])
                .output()
                .unwrap_or_else(|e| fail(format!("psql: {e}")));
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .unwrap_or(0)
        }
    }
}

fn write_estate(dir: &Path, identities: usize, credentials: usize) {
    let (inv, approvals) = nhi_assure::synth::generate(nhi_assure::synth::SynthSpec {
        identities,
        credentials,
        seed: 1,
    });
    let mut snap = serde_json::to_value(&inv).unwrap_or_else(|e| fail(e));
    snap["format"] = "nhi-assure.snapshot/v1".into();
    snap["provider"] = "aws".into();
    snap["exported_at"] = "2026-11-20T11:00:00Z".into();
    let bytes = serde_json::to_vec(&snap).unwrap_or_else(|e| fail(e));
    std::fs::write(dir.join("estate.json"), bytes).unwrap_or_else(|e| fail(e));
    drop(snap);
    std::fs::create_dir_all(dir.join("approvals")).unwrap_or_else(|e| fail(e));
    let list: Vec<serde_json::Value> = approvals
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_else(|e| fail(e));
            if let Some(o) = v.as_object_mut() {
                o.remove("source");
                // Approvals as code refuse self-approval; the synthetic set has some.
                if o.get("approver") == o.get("requester") {
                    o.insert("approver".into(), "reviewer@example.com".into());
                }
                o.retain(|_, x| !x.is_null());
            }
            v
        })
        .collect();
    // As a repository keeps them: many files (JSON is YAML).
    for (i, chunk) in list.chunks(10_000).enumerate() {
        let text = serde_json::to_string(&serde_json::json!({ "approvals": chunk }))
            .unwrap_or_else(|e| fail(e));
        std::fs::write(dir.join(format!("approvals/part-{i:03}.yaml")), text)
            .unwrap_or_else(|e| fail(e));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let credentials: usize = arg(&args, "--credentials")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let identities: usize = arg(&args, "--identities")
        .and_then(|v| v.parse().ok())
        .unwrap_or(credentials * 3 / 10);
    let backend = arg(&args, "--backend").unwrap_or("sqlite");
    // `--keep DIR`: work in DIR and leave it (estate, store, logs) for a
    // closer look; by default a temporary directory, removed after.
    let kept = arg(&args, "--keep").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(e));
    if let Some(k) = &kept {
        std::fs::create_dir_all(k).unwrap_or_else(|e| fail(e));
    }
    let d = kept.as_deref().unwrap_or(dir.path());
    let passes: usize = arg(&args, "--targeted")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // `--targeted-only` with `--keep DIR` of an earlier run: its estate and
    // store, the targeted passes alone.
    if kept.is_some() && args.iter().any(|a| a == "--targeted-only") {
        targeted(d, passes.max(1));
        return;
    }
    let t = Instant::now();
    write_estate(d, identities, credentials);
    println!(
        "estate: {identities} identities, {credentials} credentials written in {:.1} s ({:.0} MB snapshot)",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(d.join("estate.json"))
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    );
    let pg_url = match backend {
        "sqlite" => None,
        "postgres" => Some(pg::database()),
        other => fail(format!("--backend {other}: sqlite or postgres")),
    };
    let store = match &pg_url {
        Some(u) => u.clone(),
        None => "s.db".into(),
    };
    std::fs::write(
        d.join("nhi-assure.toml"),
        format!(
            "store = \"{store}\"\nas_of = \"2026-11-20T12:00:00Z\"\n[[sources]]\ntype = \"snapshot\"\nname = \"aws\"\nprovider = \"aws\"\npath = \"estate.json\"\n[[approvals]]\ntype = \"files\"\nname = \"a\"\npath = \"approvals\"\nmax_validity_days = 3650\n"
        ),
    )
    .unwrap_or_else(|e| fail(e));
    let cfg = "nhi-assure.toml";
    let mut steps: Vec<(String, Step, u64)> = Vec::new();
    let mut run = |name: &str, args: &[&str]| {
        let s = step(d, args, &name.replace(' ', "-"));
        let size = store_bytes(d, pg_url.as_deref());
        println!(
            "{name:<24} {:>8.2} s  peak RSS {:>7.0} MiB  store {:>8.1} MB  (exit {})",
            s.wall,
            s.peak_rss_mib,
            size as f64 / 1e6,
            s.code
        );
        steps.push((name.to_string(), s, size));
    };
    println!("backend: {backend}");
    let scan = [
        "scan", "--config", cfg, "--format", "csv", "--output", "scan.csv",
    ];
    run("scan", &scan);
    run("scan (unchanged)", &scan);
    // `--scans-only`: the two scans and the targeted passes.
    let reports = !args.iter().any(|a| a == "--scans-only");
    for f in ["json", "csv", "ocsf", "sarif", "html"]
        .into_iter()
        .filter(|_| reports)
    {
        run(
            &format!("report {f}"),
            &["report", "--config", cfg, "--format", f, "--out", "out"],
        );
    }
    if reports {
        run("evidence keygen", &["evidence", "keygen", "--out", "k"]);
        run(
            "evidence export",
            &[
                "evidence", "export", "--config", cfg, "--key", "k.key", "--out", "b.tar.gz",
            ],
        );
    }
    if let [(_, _, first), (_, _, second), ..] = steps.as_slice() {
        let growth = second.saturating_sub(*first);
        println!(
            "store growth of the unchanged scan: {:.1} MB ({:.1} % of the first run's {:.1} MB)",
            growth as f64 / 1e6,
            growth as f64 * 100.0 / (*first).max(1) as f64,
            *first as f64 / 1e6
        );
    }
    if reports {
        println!(
            "bundle: {:.1} MB",
            std::fs::metadata(d.join("b.tar.gz"))
                .map(|m| m.len() as f64 / 1e6)
                .unwrap_or(0.0)
        );
    }
    // Last: in this process, whose memory would otherwise count in the
    // children's peak (a forked child starts as large as its parent).
    if passes > 0 {
        targeted(d, passes);
    }
}

/// The daemon's targeted passes, in process as the daemon runs them: one
/// full pass fills the inventory cache, then `n` passes each re-read,
/// evaluate, record and plan for one identity (spread over the estate),
/// timed from trigger to plan. Acting is the provider's time, measured
/// against moto by `daemon_latency`; a snapshot source does not act.
fn targeted(d: &Path, n: usize) {
    use nhi_assure::pass::{Context, InventoryCache, Targets};
    std::env::set_current_dir(d).unwrap_or_else(|e| fail(e));
    // RUST_LOG=nhi_assure=debug shows each pass's phases.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(e));
    rt.block_on(async {
        let ctx = Context::load(Path::new("nhi-assure.toml")).unwrap_or_else(|e| fail(e));
        let mut cache = InventoryCache::new();
        let t = Instant::now();
        let full = ctx
            .pass_scoped("daemon", Some(&mut cache), None)
            .await
            .unwrap_or_else(|e| fail(e));
        println!(
            "daemon start (full pass)  {:>8.2} s  {} findings",
            t.elapsed().as_secs_f64(),
            full.findings.len()
        );
        let mut ids: Vec<String> = full.findings.iter().map(|f| f.identity_id.clone()).collect();
        ids.sort();
        ids.dedup();
        drop(full);
        // As the daemon does after a full pass.
        nhi_assure::pass::release_freed_memory();
        if ids.is_empty() {
            fail("no identity with findings to target");
        }
        let step = (ids.len() / n).max(1);
        let mut took: Vec<f64> = Vec::with_capacity(n);
        let mut recorded = 0usize;
        for id in ids.iter().step_by(step).take(n) {
            let only = Targets {
                identities: vec![id.clone()],
                ..Targets::default()
            };
            let t = Instant::now();
            let p = ctx
                .pass_scoped("daemon-targeted", Some(&mut cache), Some(&only))
                .await
                .unwrap_or_else(|e| fail(e));
            took.push(t.elapsed().as_secs_f64() * 1e3);
            recorded += p.findings.len();
        }
        took.sort_by(f64::total_cmp);
        let pct = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
        println!(
            "targeted pass ({} passes, {recorded} findings recorded)  p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            took.len(),
            pct(0.5),
            pct(0.99),
            took.last().copied().unwrap_or(0.0)
        );
    });
}
