//! The `nhi-assure` binary: parse arguments, run, map the outcome to the
//! documented exit codes (0 ran clean, 1 findings at or above --fail-on,
//! 2 error).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nhi_assure::cli::Cli::parse();
    nhi_assure::cli::init_logging(cli.verbose);
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
