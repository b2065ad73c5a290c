//! Webhook requests: the input's first line is the timestamp header, the
//! second the signature header, the rest the body. Checked as sent and, so
//! the event parser is reached, signed correctly; never panics, and a
//! correct signature always verifies.
//!
//!   cargo +nightly fuzz run webhook -- -max_total_time=600
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nhi_assure::daemon::webhook::fuzz_one(data);
});
