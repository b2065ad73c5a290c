//! An evidence bundle's bytes: no input may panic the verifier or make it
//! hold more than a bounded amount of memory (run with `-rss_limit_mb`).
#![no_main]

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let _ = nhi_assure::report::evidence::verify_reader(data, &key);
});
