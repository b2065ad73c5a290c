//! Progress on the terminal for interactive `scan` / `plan` / `reconcile`
//! runs. Hidden when stderr is not a terminal (CI, cron, the daemon): logs
//! are JSON lines there and a bar would only add noise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

static INTERACTIVE: AtomicBool = AtomicBool::new(false);

/// Allow progress for this process (one-shot commands call it; the daemon
/// does not). It shows only if stderr is a terminal.
pub fn enable() {
    INTERACTIVE.store(std::io::stderr().is_terminal(), Ordering::Relaxed);
}

fn on() -> bool {
    INTERACTIVE.load(Ordering::Relaxed)
}

/// A spinner for the stages of a pass.
pub fn spinner() -> ProgressBar {
    if !on() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar over `len` enforce actions.
pub fn actions(len: usize) -> ProgressBar {
    if !on() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} actions {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
