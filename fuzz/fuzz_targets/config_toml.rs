//! Config TOML with environment overrides: the input is a config file, and
//! the lines after a `%%` line are `KEY=VALUE` overrides under
//! `NHI_ASSURE_`. It loads or is refused, located; it never panics, and a
//! config that loads has every value in range.
//!
//!   cargo +nightly fuzz run config_toml -- -max_total_time=600
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nhi_assure::config::fuzz_one(data);
});
