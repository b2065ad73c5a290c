//! The `nhi-assure` binary: parse arguments, run, map the outcome to the
//! documented exit codes (0 ran clean, 1 findings at or above --fail-on,
//! 2 error).

use std::process::ExitCode;

use std::io::IsTerminal;

use clap::Parser;

/// Findings, their evidence and the estate are millions of small
/// allocations at scale; glibc's malloc spent a third of a report in
/// consolidating and unlinking fragmented chunks. The crate's `override`
/// feature makes mimalloc the C libraries' `malloc` too (SQLite, zstd).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = nhi_assure::cli::Cli::parse();
    init_logging(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(nhi_assure::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr: human-readable on a terminal, JSON lines otherwise.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // sqlx warns about connect parameters it ignores with their values
    // (`sslpassword=…`): never at any level the user picks.
    let filter = match "sqlx_postgres::options::parse=error".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().try_init()
    };
}
