//! A real PostgreSQL server for tests: one per test binary, started on a
//! free loopback port in a temporary directory from the Debian package's
//! binaries (`tests/run.sh` installs them), one database per test. A
//! watchdog stops the server and removes its directory when the test
//! process exits (statics are never dropped).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running server.
pub struct PgServer {
    /// Server URL without a database name.
    base: String,
    /// Keeps the data directory alive for the process.
    _dir: tempfile::TempDir,
    /// The watchdog shell, which outlives us only until it notices.
    _watchdog: std::process::Child,
}

fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| rd.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists());
    // Highest major version (directory names are numbers).
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect(
        "PostgreSQL server binaries not found under /usr/lib/postgresql: \
         run the tests through ./tests/run.sh, which installs the Debian package",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (initdb and the
/// server refuse to run as root).
fn as_pg(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start() -> PgServer {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("nhi-pg-")
        .tempdir()
        .expect("tempdir");
    let data = dir.path().join("data");
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "chown of the PostgreSQL test directory failed");
    }
    let out = as_pg(bin.join("initdb"))
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    // The watchdog stops the server once this test process is gone (it runs
    // as `postgres`, so it watches /proc: `kill -0` on root is refused).
    let script = format!(
        "{pg} -D {data} -p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c max_connections=200 2>{dir}/log & pg=$!; \
         while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done; \
         kill -INT $pg 2>/dev/null; wait $pg; rm -rf {dir}",
        pg = bin.join("postgres").display(),
        data = data.display(),
        sock = dir.path().display(),
        parent = std::process::id(),
        dir = dir.path().display(),
    );
    let mut cmd = as_pg(PathBuf::from("/bin/sh"));
    cmd.arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("start postgres");
    // Generous: on a loaded 2-core CI machine a cold start can take a while.
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = bin.join("pg_isready");
    loop {
        let ok = Command::new(&ready)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    PgServer {
        base: format!("postgres://postgres@127.0.0.1:{port}"),
        _dir: dir,
        _watchdog: child,
    }
}

/// A fresh, empty database on the shared test server; returns its URL.
pub fn database() -> String {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let server = SERVER.get_or_init(start);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let psql = bin_dir().join("psql");
    let out = Command::new(psql)
        .args([&format!("{}/postgres", server.base), "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "CREATE DATABASE failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}/{name}", server.base)
}
