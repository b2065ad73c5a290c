//! A snapshot file's text: no input may panic the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = nhi_snapshot::parse(std::path::Path::new("fuzz.json"), text, None);
});
