//! Exceptions as code, end to end on the demo: the demo's EXC-7 accepts
//! that `user/marketing-sync`'s key stays unused until 2026-12-15. Its
//! finding is still recorded and reported (marked excepted in every
//! format), never planned; the same rule elsewhere is untouched; once the
//! exception ends the finding is plain open and the action plans again;
//! an exception no rule allows, or naming no rule, stops the run with its
//! file and line before the store exists.

#[path = "support/demo.rs"]
mod demo_support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");
const KEY: &str = "AKIA6IE7QDLNOXY5PBKS";
const USER: &str = "arn:aws:iam::444455556666:user/marketing-sync";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .expect("run nhi-assure")
}

fn json_list(o: &Output, key: &str) -> Vec<Value> {
    assert!(
        o.status.code().is_some_and(|c| c == 0 || c == 1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    v[key].as_array().cloned().expect("list")
}

fn cfg_str(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// How many findings the demo has with no exception file configured.
fn without_exceptions() -> usize {
    let (_dir, cfg) = demo_support::demo();
    let text = std::fs::read_to_string(&cfg).expect("config");
    let plain = text.replace(
        "[exceptions]\npath = \"exceptions\"\nmax_exception_days = 90\n",
        "",
    );
    assert_ne!(text, plain, "the demo config names its exception directory");
    std::fs::write(&cfg, plain).expect("write");
    let findings = json_list(
        &run(
            &["scan", "--config", cfg_str(&cfg), "--format", "json"],
            &[],
        ),
        "findings",
    );
    assert!(findings.iter().all(|f| f["exception"].is_null()));
    findings.len()
}

#[test]
fn an_excepted_finding_is_recorded_and_never_planned_and_the_rule_still_acts_elsewhere() {
    let (_dir, cfg) = demo_support::demo();
    let c = cfg_str(&cfg);
    let findings = json_list(
        &run(&["scan", "--config", c, "--format", "json"], &[]),
        "findings",
    );
    assert_eq!(
        findings.len(),
        without_exceptions(),
        "excepted findings are still recorded"
    );
    let excepted: Vec<&Value> = findings
        .iter()
        .filter(|f| !f["exception"].is_null())
        .collect();
    assert_eq!(excepted.len(), 1, "{excepted:?}");
    let f = excepted[0];
    assert_eq!(f["rule_id"], "credential-never-used");
    assert_eq!(f["credential_id"], KEY);
    assert_eq!(f["identity_id"], USER);
    assert_eq!(f["exception"]["id"], "EXC-7");
    assert_eq!(f["exception"]["approver"], "security-lead@example.com");
    assert_eq!(f["exception"]["expires_at"], "2026-12-15T00:00:00Z");
    assert!(
        f["exception"]["source"]
            .as_str()
            .is_some_and(|s| s.ends_with("exceptions/growth.yaml:4:5")),
        "{f}"
    );
    // The same rule on another subject is not excepted.
    assert!(
        findings
            .iter()
            .any(|f| f["rule_id"] == "credential-never-used"
                && f["credential_id"] != KEY
                && f["exception"].is_null()),
        "the exception covers its subject only"
    );

    let plan = json_list(
        &run(&["plan", "--config", c, "--format", "json"], &[]),
        "actions",
    );
    let key_action = plan
        .iter()
        .find(|a| a["credential_id"] == KEY)
        .expect("the excepted ask is shown, skipped");
    assert_eq!(key_action["status"], "skip");
    assert_eq!(
        key_action["reason"], "excepted: EXC-7 until 2026-12-15T00:00:00Z",
        "{key_action}"
    );
    // The rule still acts on what the exception does not cover.
    assert!(
        plan.iter().any(|a| a["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "credential-never-used"))
            && a["credential_id"] != KEY
            && a["status"] == "act"),
        "{plan:?}"
    );
}

#[test]
fn an_ended_exception_reopens_its_finding_and_the_action_plans_again() {
    let (_dir, cfg) = demo_support::demo();
    let c = cfg_str(&cfg);
    // At its end instant the exception no longer applies.
    let at_end = [("NHI_ASSURE_AS_OF", "2026-12-15T00:00:00Z")];
    let findings = json_list(
        &run(&["scan", "--config", c, "--format", "json"], &at_end),
        "findings",
    );
    let f = findings
        .iter()
        .find(|f| f["credential_id"] == KEY && f["rule_id"] == "credential-never-used")
        .expect("still found");
    assert!(f["exception"].is_null(), "{f}");
    let plan = json_list(
        &run(&["plan", "--config", c, "--format", "json"], &at_end),
        "actions",
    );
    let a = plan
        .iter()
        .find(|a| a["credential_id"] == KEY)
        .expect("planned");
    assert_eq!(a["status"], "act", "{a}");
    // Before its approval it does not apply either.
    let before = [("NHI_ASSURE_AS_OF", "2026-11-11T00:00:00Z")];
    let findings = json_list(
        &run(&["scan", "--config", c, "--format", "json"], &before),
        "findings",
    );
    assert!(findings.iter().all(|f| f["exception"].is_null()));
}

#[test]
fn reports_show_the_exception_in_every_format() {
    let (dir, cfg) = demo_support::demo();
    let c = cfg_str(&cfg);
    let o = run(&["scan", "--config", c], &[]);
    assert!(o.status.code().is_some(), "{o:?}");
    let out = dir.path().join("out");
    let o = run(
        &[
            "report",
            "--config",
            c,
            "--format",
            "json,csv,sarif,ocsf,html",
            "--out",
            cfg_str(&out),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect(name);

    let sarif: Value = serde_json::from_str(&read("report.sarif")).expect("sarif");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    let r = results
        .iter()
        .find(|r| r["properties"]["credential_id"] == KEY)
        .expect("an excepted finding is located at its exception file");
    let sup = &r["suppressions"][0];
    assert_eq!(sup["kind"], "external");
    assert_eq!(sup["status"], "accepted");
    assert_eq!(sup["properties"]["exception"], "EXC-7");
    assert!(
        sup["location"]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .is_some_and(|u| u.ends_with("exceptions/growth.yaml"))
    );
    assert!(
        results
            .iter()
            .filter(|r| r["properties"]["credential_id"] != KEY)
            .all(|r| r.get("suppressions").is_none()),
        "only the excepted finding is suppressed"
    );

    let ocsf: Value = serde_json::from_str(&read("report.ocsf.json")).expect("ocsf");
    let events = ocsf.as_array().expect("events");
    let suppressed: Vec<&Value> = events.iter().filter(|e| e["status_id"] == 3).collect();
    assert_eq!(suppressed.len(), 1, "{suppressed:?}");
    assert_eq!(suppressed[0]["status"], "Suppressed");
    assert_eq!(suppressed[0]["unmapped"]["exception"]["id"], "EXC-7");

    let findings_csv = read("findings.csv");
    let mut csv = csv::Reader::from_reader(findings_csv.as_bytes());
    let headers = csv.headers().expect("headers").clone();
    let col = headers
        .iter()
        .position(|h| h == "exception_id")
        .expect("exception_id column");
    let cred = headers
        .iter()
        .position(|h| h == "credential_id")
        .expect("credential_id column");
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), without_exceptions());
    for r in &rows {
        let want = if &r[cred] == KEY { "EXC-7" } else { "" };
        assert_eq!(&r[col], want, "{r:?}");
    }

    // Coverage counts the excepted subject apart from the failing ones.
    let report: Value = serde_json::from_str(&read("report.json")).expect("json");
    let owasp = report["frameworks"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["framework"] == "OWASP-NHI-2025"))
        .expect("owasp");
    let excepted: u64 = owasp["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .filter_map(|c| c["subjects"]["excepted"].as_u64())
        .sum();
    assert!(excepted >= 1, "{owasp}");

    let html = read("report.html");
    // One finding row marked excepted (the status filter's value).
    assert_eq!(
        html.matches("data-status=\"excepted\" data-text=").count(),
        1,
        "HTML marks it"
    );
}

#[test]
fn an_exception_only_an_approval_answers_or_naming_no_rule_stops_the_run_located() {
    for (rule, want) in [
        ("credential-unapproved", "growth.yaml:5:11"),
        ("approval-expired", "growth.yaml:5:11"),
        ("credential-no-such-rule", "growth.yaml:4:5"),
    ] {
        let (dir, cfg) = demo_support::demo();
        let file = dir.path().join("exceptions/growth.yaml");
        let text = std::fs::read_to_string(&file).expect("read");
        std::fs::write(&file, text.replace("credential-never-used", rule)).expect("write");
        let o = run(&["scan", "--config", cfg_str(&cfg)], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{rule}: {err}");
        assert!(err.contains(want), "{rule}: {err}");
        assert!(
            !dir.path().join("demo-store.db").exists(),
            "{rule}: nothing is recorded before every input is valid"
        );
        // check-approvals reports the same problem.
        let o = run(&["check-approvals", "--config", cfg_str(&cfg)], &[]);
        assert_eq!(o.status.code(), Some(1), "{rule}");
        assert!(String::from_utf8_lossy(&o.stdout).contains(want), "{rule}");
    }
}

#[test]
fn check_approvals_lists_exceptions_with_their_state() {
    let (_dir, cfg) = demo_support::demo();
    let o = run(&["check-approvals", "--config", cfg_str(&cfg)], &[]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("1 exception(s), no problem"), "{out}");
    assert!(
        out.contains(
            "exception EXC-7 (applies, until 2026-12-15T00:00:00Z): rule credential-never-used"
        ),
        "{out}"
    );
}
