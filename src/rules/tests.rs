use super::*;

use std::collections::{BTreeMap, BTreeSet};

const KINDS: [Kind; 3] = [Kind::Credential, Kind::Identity, Kind::Approval];

/// Backticked `credential.x` / `identity.x` / `approval.x` tokens in the
/// first column of the markdown tables of `rules/README.md`.
fn documented_facts(readme: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in readme.lines().filter(|l| l.starts_with("| `")) {
        let first = line[1..].split('|').next().unwrap_or_default();
        for token in first.split('`').skip(1).step_by(2) {
            let Some((root, name)) = token.split_once('.') else {
                continue;
            };
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if matches!(root, "credential" | "identity" | "approval") && plain {
                out.insert(token.to_string());
            }
        }
    }
    out
}

#[test]
fn documented_facts_match_the_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let documented = documented_facts(&readme);
    let schema: BTreeSet<String> = KINDS.iter().flat_map(|&k| fields::names(k)).collect();
    let missing: Vec<&String> = schema.difference(&documented).collect();
    let extra: Vec<&String> = documented.difference(&schema).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "rules/README.md fact tables differ from src/rules/fields.rs: \
         undocumented {missing:?}, documented but not in the schema {extra:?}"
    );
}

#[test]
fn every_documented_fact_compiles() {
    for kind in KINDS {
        let names = fields::names(kind);
        assert!(!names.is_empty(), "{} has no facts", kind.as_str());
        for name in names {
            let source = format!("{name} == {name}");
            if let Err(e) = compile::compile(&source, kind, &BTreeMap::new()) {
                panic!("{} rule: {source}: {e}", kind.as_str());
            }
        }
    }
}
