//! No snapshot text may panic the parser, and whatever it accepts has every
//! date in range: arbitrary bytes, the demo estate with hostile values put
//! at random places of its JSON tree, and with random bytes spliced into
//! its text. 256 cases per property. In each, the parallel reading gives
//! exactly what the streaming reader does.

use std::path::{Path, PathBuf};

use nhi_contract::time;
use proptest::prelude::*;
use serde_json::Value;

fn demo(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/demo/estate")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn config() -> ProptestConfig {
    // 256 cases in the normal run; PROPTEST_CASES for longer ones.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn hostile() -> Vec<Value> {
    let mut v: Vec<Value> = [
        "+262142-01-01T00:00:00Z",
        "-262143-01-01T00:00:00Z",
        "+10000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "2026-02-30T00:00:00Z",
        "",
        "aws",
        "never",
        "used",
        "\u{0}",
        "😀",
    ]
    .iter()
    .map(|s| Value::String(s.to_string()))
    .collect();
    v.extend([
        Value::Null,
        Value::Bool(true),
        Value::from(i64::MAX),
        Value::from(i64::MIN),
        Value::from(u64::MAX),
        Value::from(-1),
        Value::from(1e308),
        Value::Array(vec![]),
        serde_json::json!({}),
        serde_json::json!({"state": "used", "at": "+262142-01-01T00:00:00Z"}),
        serde_json::json!({"state": "used"}),
        serde_json::json!([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
    ]);
    v
}

/// Every leaf and container of `v`, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Whatever `text` is, the parallel reading gives what the streaming
/// reader gives: the same inventory, or the same located error.
fn read_as_streamed(text: &str) -> Result<nhi_contract::Inventory, nhi_contract::SourceError> {
    let path = Path::new("p.json");
    let read = nhi_snapshot::parse(path, text, None);
    let streamed = nhi_snapshot::parse_streaming(path, text, None);
    assert_eq!(format!("{read:?}"), format!("{streamed:?}"), "{text}");
    read
}

fn accepted_dates_in_range(text: &str) {
    let Ok(inv) = read_as_streamed(text) else {
        return;
    };
    let ok = |t: Option<nhi_contract::Timestamp>| t.is_none_or(|t| time::check(t).is_ok());
    for i in &inv.identities {
        assert!(ok(i.created) && ok(i.human_login_last_used) && ok(i.usage.last_used_at()));
    }
    for c in &inv.credentials {
        assert!(ok(c.created) && ok(c.expires) && ok(c.usage.last_used_at()));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        accepted_dates_in_range(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn hostile_values_in_the_tree_never_panic(
        file in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..4),
    ) {
        let name = ["aws.json", "azure.json", "github.json"][file];
        let mut v: Value = serde_json::from_str(&demo(name)).expect("demo json");
        let values = hostile();
        for (at, what) in edits {
            let mut ps = Vec::new();
            pointers(&v, String::new(), &mut ps);
            let p = at.get(&ps).clone();
            if let Some(slot) = v.pointer_mut(&p) {
                *slot = what.get(&values).clone();
            }
        }
        accepted_dates_in_range(&v.to_string());
    }

    #[test]
    fn bytes_spliced_into_the_text_never_panic(
        file in 0usize..3,
        at in any::<prop::sample::Index>(),
        cut in 0usize..64,
        insert in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let name = ["aws.json", "azure.json", "github.json"][file];
        let mut bytes = demo(name).into_bytes();
        let i = at.index(bytes.len());
        let end = (i + cut).min(bytes.len());
        bytes.splice(i..end, insert);
        accepted_dates_in_range(&String::from_utf8_lossy(&bytes));
    }
}
