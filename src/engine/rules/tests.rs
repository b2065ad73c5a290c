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
        "rules/README.md fact tables differ from src/engine/rules/fields.rs: \
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

#[test]
fn every_builtin_rule_maps_to_the_four_core_frameworks() {
    let set = RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("load");
    assert_eq!(set.rules.len(), 26);
    for r in &set.rules {
        for fw in [
            "OWASP-NHI-2025:",
            "NIST-CSF-2.0:",
            "NIST-800-53r5:",
            "CSA-CCM-4:",
        ] {
            assert!(
                r.controls.iter().any(|c| c.starts_with(fw)),
                "{} maps to no {fw} control",
                r.id
            );
        }
    }
}

fn load_one(rule: &str) -> Result<RuleSet, RuleError> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.yaml"), rule).expect("write");
    let cfg = RulesConfig {
        builtin: false,
        paths: vec![dir.path().to_path_buf()],
        ..RulesConfig::default()
    };
    RuleSet::load(&cfg, std::path::Path::new("."))
}

const RULE: &str = "id: r\ntitle: R\ndescription: d\nseverity: low\nsubject: credential\ncondition: credential.age_days > params.n\nparams:\n  n: 3\naction: flag\nremediation: x\ncontrols:\n  - \"OWASP-NHI-2025:NHI7\"\n";

#[test]
fn a_rule_detaching_unused_entitlements_needs_its_threshold() {
    let rule = "id: r\ntitle: t\ndescription: d\nseverity: low\nsubject: identity\ncondition: identity.entitlement_unused_days > 30\naction: disable\ntarget: unused_entitlements\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI5\"]\n";
    let err = load_one(rule).expect_err("no unused_days").to_string();
    assert!(
        err.contains("r.yaml:1:") && err.contains("int parameter unused_days"),
        "{err}"
    );
    let with = rule.replace("action:", "params: {unused_days: 30}\naction:");
    let set = load_one(&with).expect("loads");
    assert_eq!(set.rules[0].unused_days(), Some(30));
    assert_eq!(
        set.rules[0].operation(),
        Some(nhi_contract::Operation::DetachEntitlements)
    );
}

#[test]
fn a_user_rule_loads() {
    assert_eq!(load_one(RULE).expect("valid").rules.len(), 1);
}

#[test]
fn a_control_missing_from_the_catalogs_fails_with_line() {
    let err = load_one(&RULE.replace("NHI7", "NHI11"))
        .expect_err("unknown control")
        .to_string();
    assert!(
        err.contains("r.yaml:12:") && err.contains("not in the OWASP-NHI-2025 catalog"),
        "{err}"
    );
    let err = load_one(&RULE.replace("OWASP-NHI-2025:NHI7", "ISO-27001:A.5"))
        .expect_err("fw")
        .to_string();
    assert!(err.contains("unknown framework"), "{err}");
}

#[test]
fn rule_errors_are_located() {
    let cases = [
        (
            RULE.replace("severity: low", "severity: urgent"),
            "r.yaml:4:",
        ),
        (
            RULE.replace("remediation: x\n", "remediation: x\nowner: me\n"),
            "r.yaml:11:",
        ),
        (
            RULE.replace("params.n", "params.m"),
            "unknown parameter params.m",
        ),
        (RULE.replace("> params.n", "> 1.5"), "double literals"),
        (RULE.replace("> params.n", "&& true"), "must be bool"),
        (
            RULE.replace("credential.age_days > params.n", "credential.age_days >"),
            "CEL syntax",
        ),
        (
            RULE.replace("action: flag", "action: disable\ntarget: login"),
            "not possible",
        ),
    ];
    for (text, want) in cases {
        let err = load_one(&text).expect_err(want).to_string();
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}

#[test]
fn config_naming_unknown_rules_or_parameters_fails() {
    let mut cfg = RulesConfig::default();
    cfg.params.insert("stale_dayz".into(), Param::Int(3));
    assert!(RuleSet::load(&cfg, std::path::Path::new("."))
        .expect_err("typo")
        .to_string()
        .contains("unknown rule parameter"));
    let mut cfg = RulesConfig::default();
    cfg.overrides
        .insert("no-such-rule".into(), RuleOverride::default());
    assert!(RuleSet::load(&cfg, std::path::Path::new(".")).is_err());
    let mut cfg = RulesConfig::default();
    cfg.params
        .insert("stale_days".into(), Param::Str("ninety".into()));
    assert!(
        RuleSet::load(&cfg, std::path::Path::new(".")).is_err(),
        "type mismatch"
    );
}

#[test]
fn compiled_semantics_match_cel_on_constants() {
    let ok = |src: &str| {
        compile::compile(src, Kind::Credential, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    };
    // Constant expressions fold; evaluate them on an empty estate.
    let estate = crate::engine::estate::Estate::default();
    let facts = crate::engine::facts::Facts {
        now: chrono::Utc::now(),
        identities: Vec::new(),
        credentials: Vec::new(),
        approvals: Vec::new(),
    };
    let env = Env {
        estate: &estate,
        facts: &facts,
    };
    for (src, want) in [
        ("1 + 2 * 3 == 7", true),
        ("-3 < 2 && !(2 > 3)", true),
        ("\"a\" in [\"a\", \"b\"]", true),
        ("3 in [1, 2]", false),
        (
            "\"abc\".startsWith(\"ab\") && \"abc\".endsWith(\"bc\")",
            true,
        ),
        ("true ? 1 > 0 : false", true),
        ("size([\"a\", \"b\"]) == 2", true),
        (
            "\"EastUS.oic.prod-aks.azure.com\".matchesAny([\"gitlab.com\", \"*.oic.prod-aks.azure.com\"])",
            true,
        ),
        ("\"evil.example\".matchesAny([\"*.oic.prod-aks.azure.com\"])", false),
    ] {
        assert_eq!((ok(src).condition)(&env, 0), want, "{src}");
    }
}

#[test]
fn a_user_pack_loads_flat_files_and_rule_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("r.yaml"), RULE).expect("write");
    std::fs::create_dir(dir.path().join("s")).expect("mkdir");
    std::fs::write(
        dir.path().join("s").join(RULE_FILE),
        RULE.replace("id: r\n", "id: s\n"),
    )
    .expect("write");
    // A folder without a rule.yaml is not a rule (cases, notes).
    std::fs::create_dir(dir.path().join("notes")).expect("mkdir");
    std::fs::write(dir.path().join("notes").join("x.yaml"), "not: a rule").expect("write");
    let cfg = RulesConfig {
        builtin: false,
        paths: vec![dir.path().to_path_buf()],
        ..RulesConfig::default()
    };
    let set = RuleSet::load(&cfg, std::path::Path::new(".")).expect("valid");
    let origins: Vec<(&str, bool)> = set
        .rules
        .iter()
        .map(|r| (r.id.as_str(), r.origin.ends_with("s/rule.yaml")))
        .collect();
    assert_eq!(origins, [("r", false), ("s", true)]);

    std::fs::write(dir.path().join("s").join(RULE_FILE), RULE).expect("write");
    let err = RuleSet::load(&cfg, std::path::Path::new("."))
        .expect_err("id differs from folder")
        .to_string();
    assert!(
        err.contains("s/rule.yaml:1:") && err.contains("differs from its folder"),
        "{err}"
    );
}

#[test]
fn builtin_rules_come_from_their_folders() {
    let set = RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("load");
    for r in &set.rules {
        assert_eq!(r.origin, format!("rules/builtin/{}/rule.yaml", r.id));
    }
}

/// A rule depends on what the facts its condition reads depend on, derived
/// when it is compiled: no rule lists it by hand.
#[test]
fn each_builtin_rule_depends_on_what_its_condition_reads() {
    use crate::engine::facets::Facets;
    let set = RuleSet::load(&RulesConfig::default(), Path::new(".")).expect("builtin");
    let depends = |id: &str| {
        set.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.depends)
            .unwrap_or_else(|| panic!("rule {id}"))
    };
    for id in [
        "approval-expired",
        "credential-unapproved",
        "secret-long-lived",
        "credential-rotation-overdue",
        "identity-no-owner",
    ] {
        assert_eq!(depends(id), Facets::NONE, "{id}");
    }
    for id in [
        "credential-stale",
        "credential-never-used",
        "credential-used-outside-scope",
    ] {
        assert_eq!(depends(id), Facets::USAGE, "{id}");
    }
    assert_eq!(depends("nhi-human-login"), Facets::HUMAN_LOGIN);
    assert_eq!(depends("identity-overscoped"), Facets::PRIVILEGE);
    assert_eq!(
        depends("entitlement-unused"),
        Facets::ENTITLEMENT_USAGE.with(Facets::PRIVILEGE)
    );
    for id in [
        "identity-admin-equivalent",
        "identity-overscoped-via-assume",
    ] {
        assert!(depends(id).contains(Facets::PRIVILEGE), "{id}");
        assert!(depends(id).contains(Facets::ALL_IDENTITY_KINDS), "{id}");
    }
    assert_eq!(
        depends("identity-multiple-active-keys"),
        Facets::credential_kind(nhi_contract::CredentialKind::AccessKey)
    );
    // A fact named only under has() counts as read.
    let one = load_one(
        "id: r\ntitle: t\ndescription: d\nseverity: low\nsubject: credential\ncondition: has(credential.days_since_last_use)\naction: flag\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI1\"]\n",
    )
    .expect("rule loads");
    assert_eq!(one.rules[0].depends, Facets::USAGE);
}

/// Every declared field has an accessor, and a field is not usable unless
/// declared with its facets.
#[test]
fn every_declared_field_reads_and_only_declared_fields_exist() {
    for kind in KINDS {
        for path in fields::names(kind) {
            let (root, name) = path.split_once('.').expect("root.name");
            assert!(fields::field(kind, root, name).is_some(), "{path}");
            assert!(fields::facets(kind, root, name).is_some(), "{path}");
        }
        assert!(fields::field(kind, "credential", "no_such_fact").is_none());
    }
}
