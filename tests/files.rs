//! Hostile files around the tool: dates no calendar arithmetic can hold in
//! approval files and snapshots, links planted where the tool writes, and
//! the permissions of every file it creates (issue 12).

#[path = "support/demo.rs"]
mod demo_copy;
use demo_copy::demo;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run nhi-assure")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let t = std::fs::read_to_string(path).expect("read");
    assert!(t.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, t.replacen(from, to, 1)).expect("write");
}

/// `approved_at: +262142-01-01T00:00:00Z` used to panic (exit 101) in every
/// command that reads approvals, `check-approvals` (the CI gate) included.
#[test]
fn a_far_future_approval_date_is_a_located_problem_not_a_panic() {
    let (dir, _) = demo();
    let d = dir.path();
    let file = d.join("approvals/payments.yaml");
    let t = std::fs::read_to_string(&file).expect("read");
    let (line, _) = t
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with("approved_at:"))
        .expect("approved_at");
    let old = t.lines().nth(line).expect("line").to_string();
    let indent = &old[..old.len() - old.trim_start().len()];
    replace_in(
        &file,
        &old,
        &format!("{indent}approved_at: +262142-01-01T00:00:00Z"),
    );
    let located = format!("payments.yaml:{}:", line + 1);

    let o = run_in(d, &["check-approvals", "--config", "nhi-assure.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&located) && out.contains("out of range"),
        "{}",
        text(&o)
    );

    let o = run_in(d, &["scan", "--config", "nhi-assure.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&located) && err.contains("out of range"),
        "{}",
        text(&o)
    );
}

/// A snapshot date outside the years 1970..=9999 is refused with its
/// location, like any other invalid value.
#[test]
fn a_snapshot_date_out_of_range_is_located() {
    let (dir, _) = demo();
    let d = dir.path();
    replace_in(
        &d.join("estate/aws.json"),
        "\"created\": \"2019-03-04T10:12:00Z\"",
        "\"created\": \"+262142-03-04T10:12:00Z\"",
    );
    let o = run_in(d, &["scan", "--config", "nhi-assure.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("aws.json:13:"), "{}", text(&o));
    assert!(err.contains("out of range"), "{}", text(&o));
    assert_ne!(o.status.code(), Some(101), "{}", text(&o));
}

#[test]
fn keygen_keeps_every_part_of_the_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let o = run_in(d, &["evidence", "keygen", "--out", "release.v2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(d.join("release.v2.key").is_file(), "{}", text(&o));
    assert!(d.join("release.v2.pub").is_file(), "{}", text(&o));
    assert!(!d.join("release.key").exists());
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Links planted where the tool writes are replaced, never written
/// through: the temporary name `evidence export` used (`<out>.partial`)
/// and a report's destination.
#[cfg(unix)]
#[test]
fn planted_links_are_never_followed() {
    use std::os::unix::fs::symlink;
    let (dir, _) = demo();
    let d = dir.path();
    let victim = d.join("victim.txt");
    std::fs::write(&victim, b"do not touch").expect("victim");
    let o = run_in(d, &["scan", "--config", "nhi-assure.toml"]);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    let o = run_in(d, &["evidence", "keygen", "--out", "signer"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for planted in ["bundle.tar.partial", "bundle.tar.gz.partial"] {
        symlink(&victim, d.join(planted)).expect("plant");
    }
    let o = run_in(
        d,
        &[
            "evidence",
            "export",
            "--config",
            "nhi-assure.toml",
            "--key",
            "signer.key",
            "--out",
            "bundle.tar.gz",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        std::fs::read(&victim).expect("victim") == b"do not touch",
        "written through the planted link"
    );
    assert_eq!(mode(&d.join("bundle.tar.gz")), 0o644);
    assert_eq!(mode(&d.join("signer.key")), 0o600);
    assert_eq!(mode(&d.join("signer.pub")), 0o644);

    std::fs::create_dir(d.join("out")).expect("mkdir");
    symlink(&victim, d.join("out/report.json")).expect("plant");
    let o = run_in(
        d,
        &[
            "report",
            "--config",
            "nhi-assure.toml",
            "--format",
            "json",
            "--out",
            "out",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        std::fs::read(&victim).expect("victim") == b"do not touch",
        "written through the planted link"
    );
    assert_eq!(mode(&d.join("out/report.json")), 0o644);

    // `scan --output` replaces a planted link instead of writing through it.
    symlink(&victim, d.join("findings.json")).expect("plant");
    let o = run_in(
        d,
        &[
            "scan",
            "--config",
            "nhi-assure.toml",
            "--format",
            "json",
            "--output",
            "findings.json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        std::fs::read(&victim).expect("victim") == b"do not touch",
        "written through the planted link"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("findings.json")).expect("written"))
            .expect("json");
    assert!(doc["findings"].is_array());
    assert_eq!(mode(&d.join("findings.json")), 0o644);
}

/// The SQLite store and its `-wal` / `-shm` are the owner's only, whatever
/// the umask says.
#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_store_and_its_wal_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("sub/store.db");
    let store = nhi_assure::store::SqlStore::open(db.to_str().expect("utf8"))
        .await
        .expect("open");
    let n = nhi_assure::store::Store::open_findings(&store)
        .await
        .expect("query")
        .len();
    assert_eq!(n, 0);
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("sub/store.db{suffix}"));
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
}

/// `evidence verify` on a FIFO is refused at once (exit 2), not a hang.
#[cfg(unix)]
#[test]
fn verify_refuses_a_fifo_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let o = run_in(d, &["evidence", "keygen", "--out", "k"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let made = Command::new("mkfifo")
        .arg(d.join("b.tar.gz"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let mut child = Command::new(BIN)
        .args(["evidence", "verify", "b.tar.gz", "--public-key", "k.pub"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.and_then(|s| s.code()), Some(2), "blocked on a FIFO");
}
