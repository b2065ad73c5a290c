//! An approval file's text: no input may panic the parser, and whatever it
//! accepts has its dates in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nhi_contract::time;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The validity limit comes from the config: try the default and extremes.
    for max in [365, i64::MAX, i64::MIN] {
        let path = std::path::Path::new("fuzz.yaml");
        if let Ok(list) = nhi_approvals_as_code::parse_text(path, text, max) {
            for a in list {
                assert!(time::check(a.approved_at).is_ok());
                assert!(time::check(a.expires_at).is_ok());
            }
        }
    }
});
