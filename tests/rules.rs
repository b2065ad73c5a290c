//! Every built-in rule's cases (`rules/builtin/<id>/cases.yaml`), run
//! through the real evaluation by one runner (`nhi_assure::engine::rules::cases`).
//! Each case starts from the clean world (`rules/clean-world.yaml`), which
//! fires nothing, and changes one thing.

use std::path::Path;

use nhi_assure::engine::rules::cases::{self, CaseFile, World};
use nhi_assure::engine::rules::{RuleSet, RulesConfig};

fn world() -> World {
    World::clean().unwrap_or_else(|e| panic!("{e}"))
}

fn builtin() -> Vec<CaseFile> {
    cases::builtin().unwrap_or_else(|e| panic!("{e}"))
}

/// Run `files` with `cfg`, failing with every case failure listed.
fn assert_cases_hold(cfg: &RulesConfig, files: &[CaseFile]) {
    let failures =
        cases::run(cfg, Path::new("."), &world(), files).unwrap_or_else(|e| panic!("{e}"));
    let n: usize = files.iter().map(|f| f.cases.len()).sum();
    let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} of {n} case(s) failed:\n{}",
        failures.len(),
        list.join("\n")
    );
}

#[test]
fn every_builtin_rule_case_holds() {
    assert_cases_hold(&RulesConfig::default(), &builtin());
}

#[test]
fn clean_world_fires_nothing() {
    let case = "cases:\n  - name: the clean world fires nothing\n    fires: []\n";
    let file = CaseFile::parse("inline", case, None).unwrap_or_else(|e| panic!("{e}"));
    assert_cases_hold(&RulesConfig::default(), &[file]);
}

#[test]
fn every_builtin_rule_has_a_positive_and_a_negative_case() {
    let rules = RuleSet::load(&RulesConfig::default(), Path::new(".")).expect("load");
    let files = builtin();
    for r in &rules.rules {
        let own: Vec<&cases::Case> = files
            .iter()
            .filter(|f| f.rule.as_deref() == Some(r.id.as_str()))
            .flat_map(|f| &f.cases)
            .collect();
        assert!(
            own.iter().any(|c| c.positive_for(&r.id)),
            "rule {} needs a case where it fires, in rules/builtin/{}/cases.yaml",
            r.id,
            r.id
        );
        assert!(
            own.iter().any(|c| c.negative_for(&r.id)),
            "rule {} needs a case where it does not fire, in rules/builtin/{}/cases.yaml",
            r.id,
            r.id
        );
    }
    // Every cases file belongs to a loaded rule.
    for f in &files {
        assert!(
            rules.rules.iter().any(|r| Some(&r.id) == f.rule.as_ref()),
            "{}: no rule of that id",
            f.file
        );
    }
}

/// A user pack in the per-rule folder layout, with its own cases, loaded
/// beside the built-in pack.
#[test]
fn user_pack_cases_hold() {
    let dir = Path::new("tests/data/rules");
    let files = cases::pack(dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files.len(), 1, "the test pack's cases are found");
    let mut cfg = RulesConfig::default();
    cfg.paths.push(dir.into());
    assert_cases_hold(&cfg, &files);
}

/// Copy of the built-in pack as a user pack, with `id`'s condition replaced.
fn pack_with_condition(to: &Path, id: &str, condition: &str) {
    let src = Path::new("rules/builtin");
    for e in std::fs::read_dir(src).expect("rules/builtin") {
        let name = e.expect("entry").file_name();
        let (from, into) = (src.join(&name), to.join(&name));
        std::fs::create_dir_all(&into).expect("mkdir");
        for f in ["rule.yaml", "cases.yaml"] {
            let text = std::fs::read_to_string(from.join(f)).expect("read");
            let text = if f == "rule.yaml" && *name == *id {
                // The condition is one line or a folded block of indented lines.
                let mut out = Vec::new();
                let mut in_condition = false;
                for line in text.lines() {
                    if in_condition && line.starts_with(' ') {
                        continue;
                    }
                    in_condition = line.starts_with("condition:");
                    out.push(if in_condition {
                        format!("condition: {condition:?}")
                    } else {
                        line.to_string()
                    });
                }
                out.join("\n")
            } else {
                text
            };
            std::fs::write(into.join(f), text).expect("write");
        }
    }
}

/// The cases bite: with any one rule's condition made always false, or
/// always true, some case fails.
#[test]
fn every_builtin_rule_cases_catch_a_constant_condition() {
    let rules = RuleSet::load(&RulesConfig::default(), Path::new(".")).expect("load");
    for r in &rules.rules {
        for condition in ["false", "true"] {
            let dir = tempfile::tempdir().expect("tempdir");
            pack_with_condition(dir.path(), &r.id, condition);
            let cfg = RulesConfig {
                builtin: false,
                paths: vec![dir.path().to_path_buf()],
                ..RulesConfig::default()
            };
            let files = cases::pack(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            let failures = cases::run(&cfg, Path::new("."), &world(), &files)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !failures.is_empty(),
                "no case of {} fails when its condition is always {condition}",
                r.id
            );
        }
    }
}
