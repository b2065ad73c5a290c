//! Reports on recorded runs, through the binary on the demo estate: control
//! coverage worked out independently from `scan`, `rules` and `controls`;
//! every format (table, JSON, CSV round trip, OCSF and SARIF validated
//! against their official schemas, HTML rendered in headless Chromium);
//! the per-subject trace; diffs between runs; reports on a past run.

#[path = "support/demo.rs"]
mod demo_copy;
use demo_copy::demo;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nhi-assure");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run nhi-assure")
}

fn ok(o: Output) -> Output {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).expect("json")
}

fn scan(dir: &Path) -> Vec<Value> {
    let o = ok(run_in(
        dir,
        &["scan", "--config", "nhi-assure.toml", "--format", "json"],
    ));
    json(&o)["findings"]
        .as_array()
        .expect("a scan document lists its findings")
        .clone()
}

fn report_json(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["report", "--config", "nhi-assure.toml", "--format", "json"];
    args.extend_from_slice(extra);
    json(&ok(run_in(dir, &args)))
}

/// `report --format <format> --out out` in `dir`, which must succeed.
fn report_out(dir: &Path, format: &str) -> Output {
    ok(run_in(
        dir,
        &[
            "report",
            "--config",
            "nhi-assure.toml",
            "--format",
            format,
            "--out",
            "out",
        ],
    ))
}

fn fingerprint(f: &Value) -> String {
    let subject = match (
        f["credential_id"].as_str(),
        f["evidence"]["approval_record"].as_str(),
    ) {
        (Some(c), _) => c.to_string(),
        (None, Some(a)) => format!("approval:{a}"),
        _ => String::new(),
    };
    format!(
        "{}|{}|{subject}",
        f["rule_id"].as_str().expect("rule"),
        f["identity_id"].as_str().expect("identity")
    )
}

/// Validate with the vendored official schema (tests/support/validate_json.py).
fn validate(schema: &str, instance: &Path, each: bool) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut c = Command::new(python);
    c.arg(Path::new(ROOT).join("tests/support/validate_json.py"))
        .arg(Path::new(ROOT).join("tests/data").join(schema))
        .arg(instance);
    if each {
        c.arg("--each");
    }
    let o = c
        .output()
        .expect("python3 (tests/run.sh installs jsonschema)");
    assert!(
        o.status.success(),
        "{} does not validate against {schema}:\n{}{}",
        instance.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn coverage_follows_the_findings_and_the_catalogs() {
    let (d, _) = demo();
    let findings = scan(d.path());
    let report = report_json(d.path(), &[]);
    let rules: Vec<Value> = json(&ok(run_in(d.path(), &["rules", "--format", "json"])))
        .as_array()
        .expect("rules")
        .clone();
    let controls: Vec<Value> = json(&ok(run_in(d.path(), &["controls", "--format", "json"])))
        .as_array()
        .expect("controls")
        .clone();

    // Every catalogued control appears exactly once.
    let mut seen = BTreeSet::new();
    for fw in report["frameworks"].as_array().expect("frameworks") {
        let totals = &fw["totals"];
        let list = fw["controls"].as_array().expect("controls");
        assert_eq!(totals["controls"], list.len());
        let count = |s: &str| list.iter().filter(|c| c["status"] == s).count();
        assert_eq!(totals["pass"], count("pass"));
        assert_eq!(totals["fail"], count("fail"));
        assert_eq!(totals["not_evaluated"], count("not_evaluated"));
        for c in list {
            assert!(seen.insert(c["reference"].as_str().expect("ref").to_string()));
        }
    }
    let catalogued: BTreeSet<String> = controls
        .iter()
        .map(|c| c["control"].as_str().expect("control").to_string())
        .collect();
    assert_eq!(seen, catalogued);

    let credentials_evaluated = report["frameworks"][0]["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .find(|c| c["evidence"]["subject_kinds"] == serde_json::json!(["credential"]))
        .map(|c| c["subjects"]["evaluated"].as_u64().expect("n"))
        .expect("a credential-only control");
    assert!(credentials_evaluated > 0);

    let cis = report["frameworks"]
        .as_array()
        .expect("frameworks")
        .iter()
        .find(|f| f["framework"] == "CIS-AWS-3.0")
        .expect("CIS AWS");
    assert_eq!(cis["providers"], serde_json::json!(["aws"]));
    for fw in report["frameworks"].as_array().expect("frameworks") {
        // A framework scoped to providers counts only their findings.
        let providers: Vec<&str> = fw["providers"]
            .as_array()
            .expect("providers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let findings: Vec<&Value> = findings
            .iter()
            .filter(|f| {
                providers.is_empty()
                    || f["provider"]
                        .as_str()
                        .is_some_and(|p| providers.contains(&p))
            })
            .collect();
        for c in fw["controls"].as_array().expect("controls") {
            let reference = c["reference"].as_str().expect("ref");
            let mapped: BTreeSet<&str> = rules
                .iter()
                .filter(|r| {
                    r["controls"]
                        .as_array()
                        .expect("controls")
                        .iter()
                        .any(|x| x == reference)
                })
                .map(|r| r["id"].as_str().expect("id"))
                .collect();
            let open_here = findings
                .iter()
                .filter(|f| mapped.contains(f["rule_id"].as_str().expect("rule")))
                .any(|f| f["exception"].is_null());
            let want: BTreeSet<String> = findings
                .iter()
                .filter(|f| mapped.contains(f["rule_id"].as_str().expect("rule")))
                .map(|f| fingerprint(f))
                .collect();
            let got: BTreeSet<String> = c["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .map(|x| x.as_str().expect("fp").to_string())
                .collect();
            assert_eq!(got, want, "{reference}");
            let status = if mapped.is_empty() {
                "not_evaluated"
            } else if want.is_empty() {
                "pass"
            } else if open_here {
                "fail"
            } else {
                // Every finding here is excepted (the demo's EXC-7).
                "excepted"
            };
            assert_eq!(c["status"], status, "{reference}");
            let got_rules: BTreeSet<&str> = c["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(got_rules, mapped, "{reference}");
            // Failing subjects: distinct credentials / identities / approvals
            // with a finding no exception covers; excepted ones apart.
            let subject_of = |f: &&&Value| {
                f["credential_id"]
                    .as_str()
                    .map(|c| format!("c:{c}"))
                    .or_else(|| {
                        f["evidence"]["approval_record"]
                            .as_str()
                            .map(|a| format!("a:{a}"))
                    })
                    .unwrap_or_else(|| format!("i:{}", f["identity_id"]))
            };
            let here: Vec<&&Value> = findings
                .iter()
                .filter(|f| mapped.contains(f["rule_id"].as_str().expect("rule")))
                .collect();
            let subjects: BTreeSet<String> = here
                .iter()
                .filter(|f| f["exception"].is_null())
                .map(subject_of)
                .collect();
            let excepted: BTreeSet<String> = here
                .iter()
                .filter(|f| !f["exception"].is_null())
                .map(subject_of)
                .filter(|s| !subjects.contains(s))
                .collect();
            assert_eq!(c["subjects"]["failing"], subjects.len(), "{reference}");
            assert_eq!(c["subjects"]["excepted"], excepted.len(), "{reference}");
            let s = &c["subjects"];
            if !mapped.is_empty() {
                assert_eq!(
                    s["passing"].as_u64().expect("n")
                        + s["failing"].as_u64().expect("n")
                        + s["excepted"].as_u64().expect("n"),
                    s["evaluated"].as_u64().expect("n"),
                    "{reference}"
                );
            }
        }
    }
    // The report's findings are the scan's, each once, with first-seen dates.
    let fps: BTreeSet<String> = findings.iter().map(fingerprint).collect();
    let rep: BTreeSet<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            assert!(f["first_seen"]
                .as_str()
                .is_some_and(|s| s.starts_with("20")));
            f["fingerprint"].as_str().expect("fp").to_string()
        })
        .collect();
    assert_eq!(rep, fps);
}

#[test]
fn framework_filter_and_table() {
    let (d, _) = demo();
    scan(d.path());
    let r = report_json(d.path(), &["--framework", "owasp-nhi-2025"]);
    let fws: Vec<&str> = r["frameworks"]
        .as_array()
        .expect("fws")
        .iter()
        .map(|f| f["framework"].as_str().expect("fw"))
        .collect();
    assert_eq!(fws, vec!["OWASP-NHI-2025"]);

    let bad = run_in(
        d.path(),
        &[
            "report",
            "--config",
            "nhi-assure.toml",
            "--framework",
            "SOC-9",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown framework \"SOC-9\""));

    let t = ok(run_in(d.path(), &["report", "--config", "nhi-assure.toml"]));
    let text = String::from_utf8_lossy(&t.stdout);
    for fw in [
        "OWASP-NHI-2025",
        "NIST-CSF-2.0",
        "NIST-800-53r5",
        "CSA-CCM-4",
        "CIS-AWS-3.0",
    ] {
        assert!(text.contains(&format!("{fw} (")), "{fw} missing:\n{text}");
    }
    // NHI7 (long-lived secrets) fails on the demo; NHI2 has no rule.
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("│ {id} ")))
            .unwrap_or_else(|| panic!("no row {id}"))
            .to_string()
    };
    assert!(line("NHI7").contains("FAIL"));
    assert!(line("NHI2").contains("NOT EVALUATED"));
}

#[test]
fn csv_round_trips_against_the_json_report() {
    let (d, _) = demo();
    scan(d.path());
    let report = report_json(d.path(), &[]);
    report_out(d.path(), "csv");
    let mut r = csv::Reader::from_path(d.path().join("out/coverage.csv")).expect("coverage.csv");
    let rows: Vec<BTreeMap<String, String>> =
        r.deserialize().collect::<Result<_, _>>().expect("rows");
    let controls: Vec<&Value> = report["frameworks"]
        .as_array()
        .expect("fws")
        .iter()
        .flat_map(|f| f["controls"].as_array().expect("controls").iter())
        .collect();
    assert_eq!(rows.len(), controls.len());
    for (row, c) in rows.iter().zip(&controls) {
        assert_eq!(
            format!("{}:{}", row["framework"], row["control"]),
            c["reference"].as_str().expect("ref")
        );
        assert_eq!(row["title"], c["title"].as_str().expect("title"));
        assert_eq!(row["status"], c["status"].as_str().expect("status"));
        assert_eq!(
            row["subjects_failing"],
            c["subjects"]["failing"].to_string()
        );
        assert_eq!(
            row["subjects_passing"],
            c["subjects"]["passing"].to_string()
        );
        let fps: Vec<&str> = c["findings"]
            .as_array()
            .expect("f")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(row["finding_fingerprints"], fps.join(" "));
        assert_eq!(row["findings"], fps.len().to_string());
        assert_eq!(c["findings_total"], fps.len());
    }

    // Coverage tallied while one format writes the findings (JSON alone,
    // CSV alone) is the coverage computed first for several formats.
    ok(run_in(
        d.path(),
        &[
            "report",
            "--config",
            "nhi-assure.toml",
            "--format",
            "json,csv,table",
            "--out",
            "both",
        ],
    ));
    let read = |p: &str| std::fs::read_to_string(d.path().join(p)).expect(p);
    assert_eq!(read("both/coverage.csv"), read("out/coverage.csv"));
    assert_eq!(read("both/findings.csv"), read("out/findings.csv"));
    let both: Value = serde_json::from_str(&read("both/report.json")).expect("json");
    assert_eq!(both["frameworks"], report["frameworks"]);
    assert_eq!(both["findings"], report["findings"]);

    let mut r = csv::Reader::from_path(d.path().join("out/findings.csv")).expect("findings.csv");
    let rows: Vec<BTreeMap<String, String>> =
        r.deserialize().collect::<Result<_, _>>().expect("rows");
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(rows.len(), findings.len());
    for (row, f) in rows.iter().zip(findings) {
        assert_eq!(row["fingerprint"], f["fingerprint"].as_str().expect("fp"));
        assert_eq!(row["identity_id"], f["identity_id"].as_str().expect("id"));
        assert_eq!(
            row["credential_id"],
            f["credential_id"].as_str().unwrap_or("")
        );
        assert_eq!(row["severity"], f["severity"].as_str().expect("sev"));
        assert_eq!(row["first_seen"], f["first_seen"].as_str().expect("first"));
        let controls: Vec<&str> = f["controls"]
            .as_array()
            .expect("c")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(row["controls"], controls.join(" "));
        // Evidence survives the trip byte for byte as JSON.
        let ev: Value = serde_json::from_str(&row["evidence"]).expect("evidence json");
        assert_eq!(ev, f["evidence"]);
    }
}

#[test]
fn ocsf_export_validates_against_the_official_schema() {
    let (d, _) = demo();
    let findings = scan(d.path());
    report_out(d.path(), "ocsf");
    let path = d.path().join("out/report.ocsf.json");
    validate(
        "ocsf-1.6.0-iam_analysis_finding-cloud.schema.json",
        &path,
        true,
    );
    let events: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    assert_eq!(events.len(), findings.len());
    let by_uid: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["finding_info"]["uid"].as_str().expect("uid"), e))
        .collect();
    for f in &findings {
        let e = by_uid[fingerprint(f).as_str()];
        assert_eq!(e["class_uid"], 2008);
        assert_eq!(
            e["type_uid"],
            200800 + e["activity_id"].as_i64().expect("activity")
        );
        let sev = ["info", "low", "medium", "high", "critical"]
            .iter()
            .position(|s| f["severity"] == *s)
            .expect("severity") as i64
            + 1;
        assert_eq!(e["severity_id"], sev);
        assert_eq!(e["user"]["uid"], f["identity_id"]);
        assert_eq!(e["finding_info"]["analytic"]["uid"], f["rule_id"]);
        assert_eq!(e["finding_info"]["types"], f["controls"]);
        if let Some(c) = f["credential_id"].as_str() {
            assert_eq!(e["user"]["credential_uid"], c);
            assert_eq!(e["user"]["programmatic_credentials"][0]["uid"], c);
        }
    }
    // A first run: every finding is a creation.
    assert!(events.iter().all(|e| e["activity_id"] == 1));
}

#[test]
fn sarif_locates_approval_findings_at_the_approval_file_and_line() {
    let (d, _) = demo();
    let findings = scan(d.path());
    report_out(d.path(), "sarif");
    let path = d.path().join("out/report.sarif");
    validate("sarif-schema-2.1.0.json", &path, false);
    let log: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    // Exactly the findings whose evidence names an approval recorded in a
    // file (`path:line:column`; a ticket such as `jira:SEC-77` is no place).
    let in_file = |a: &Value| {
        a["source"].as_str().is_some_and(|s| {
            let mut parts = s.rsplitn(3, ':');
            let col = parts.next().unwrap_or("");
            let line = parts.next().unwrap_or("");
            col.parse::<u32>().is_ok() && line.parse::<u32>().is_ok()
        })
    };
    let located: BTreeSet<String> = findings
        .iter()
        .filter(|f| {
            in_file(&f["evidence"]["approval"])
                || f["evidence"]["approvals"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(in_file))
                // An excepted finding is located at its exception file too.
                || in_file(&f["exception"])
        })
        .map(fingerprint)
        .collect();
    assert!(located.len() < findings.len());
    let got: BTreeSet<String> = results
        .iter()
        .map(|r| {
            r["partialFingerprints"]["nhiAssureFingerprint/v1"]
                .as_str()
                .expect("fp")
                .to_string()
        })
        .collect();
    assert_eq!(got, located);
    // Counted while the results streamed, written after them.
    assert_eq!(run["properties"]["findings"], findings.len());
    assert_eq!(
        run["properties"]["findings_without_approval_location"],
        findings.len() - located.len()
    );
    assert!(got.iter().any(|f| f.starts_with("approval-expired|")));
    for r in results {
        let idx = r["ruleIndex"].as_u64().expect("index") as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        let approvals = r["properties"]["located_approvals"]
            .as_array()
            .expect("approvals");
        let mut locations = r["locations"].as_array().expect("locs").clone();
        // The exception's place comes last, and its suppression says so.
        if let Some(sup) = r["suppressions"].as_array() {
            let exc = locations.pop().expect("the exception's location");
            assert_eq!(sup[0]["location"], exc);
            assert!(exc["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("exceptions/")));
        }
        assert_eq!(locations.len(), approvals.len());
        for (loc, id) in locations.iter().zip(approvals) {
            let pl = &loc["physicalLocation"];
            let uri = pl["artifactLocation"]["uri"].as_str().expect("uri");
            assert!(
                uri.starts_with("approvals/"),
                "relative to the working dir: {uri}"
            );
            let line = pl["region"]["startLine"].as_u64().expect("line") as usize;
            let text = std::fs::read_to_string(d.path().join(uri)).expect("approval file");
            let at = text.lines().nth(line - 1).expect("line exists");
            assert!(
                at.contains(&format!("id: {}", id.as_str().expect("id"))),
                "{uri}:{line} is {at:?}, not approval {id}"
            );
        }
    }
}

#[test]
fn check_approvals_reports_validation_errors_as_sarif() {
    let (d, _) = demo();
    let clean = run_in(
        d.path(),
        &["check-approvals", "--config", "nhi-assure.toml"],
    );
    assert_eq!(clean.status.code(), Some(0));
    let bad = "approvals:\n  - id: APR-X\n    subject: arn:aws:iam::111122223333:user/ci-deployer\n    scope: {actions: [\"s3:GetObject\"]}\n    requester: a@example.com\n    approver: a@example.com\n    approved_at: 2026-11-01T00:00:00Z\n    expires_at: 2026-12-01T00:00:00Z\n";
    std::fs::write(d.path().join("approvals/zz-bad.yaml"), bad).expect("write");
    let o = run_in(
        d.path(),
        &[
            "check-approvals",
            "--config",
            "nhi-assure.toml",
            "--format",
            "sarif",
            "--output",
            "check.sarif",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let path = d.path().join("check.sarif");
    validate("sarif-schema-2.1.0.json", &path, false);
    let log: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let results = log["runs"][0]["results"].as_array().expect("results");
    let sod = results
        .iter()
        .find(|r| {
            r["message"]["text"]
                .as_str()
                .is_some_and(|m| m.contains("separation of duties"))
        })
        .expect("separation of duties reported");
    assert_eq!(sod["ruleId"], "approval-invalid");
    assert_eq!(sod["level"], "error");
    let pl = &sod["locations"][0]["physicalLocation"];
    assert_eq!(pl["artifactLocation"]["uri"], "approvals/zz-bad.yaml");
    assert_eq!(pl["region"]["startLine"], 6);
}

#[test]
fn trace_shows_identity_credential_approval_findings() {
    let (d, _) = demo();
    scan(d.path());
    let key = "AKIA527DVR65XVCRX4WR";
    let t = json(&ok(run_in(
        d.path(),
        &["trace", "--config", "nhi-assure.toml", key],
    )));
    let user = "arn:aws:iam::111122223333:user/invoice-mailer";
    assert_eq!(t["subject"], key);
    assert_eq!(t["identity"]["id"], user);
    assert_eq!(t["identity"]["source"], "aws-org");
    assert_eq!(t["identity"]["source_state"], "complete");
    let creds = t["credentials"].as_array().expect("creds");
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["id"], key);
    assert_eq!(creds[0]["approval_state"], "expired");
    assert_eq!(creds[0]["approval"], "APR-PAY-004");
    // The approval as recorded in the approvals file.
    let text = std::fs::read_to_string(d.path().join("approvals/payments.yaml")).expect("read");
    let a = t["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .find(|a| a["id"] == "APR-PAY-004")
        .expect("APR-PAY-004 in the trace");
    assert_eq!(a["state"], "expired");
    let block: String = text
        .split("- id: ")
        .find(|b| b.starts_with("APR-PAY-004"))
        .expect("block")
        .to_string();
    for field in ["approver", "requester", "reference"] {
        let v = a[field].as_str().expect(field);
        assert!(block.contains(v), "{field} {v} not in the approval record");
    }
    assert!(a["source"]
        .as_str()
        .expect("src")
        .contains("payments.yaml:"));
    let rules: BTreeSet<&str> = t["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["rule_id"].as_str())
        .collect();
    assert!(rules.contains("approval-expired"), "{rules:?}");
    assert!(!t["entitlements"].as_array().expect("ents").is_empty());
    assert_eq!(t["actions"], serde_json::json!([]));

    let unknown = run_in(
        d.path(),
        &["trace", "--config", "nhi-assure.toml", "nobody"],
    );
    assert_eq!(unknown.status.code(), Some(2));
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
}

#[test]
fn diff_between_runs_new_resolved_still_open_and_time_to_remediate() {
    let (d, cfg) = demo();
    let first = scan(d.path());
    // Run 2: the expired key is deleted; the never-used threshold drops, so
    // more keys are flagged.
    let removed = "AKIA527DVR65XVCRX4WR";
    edit_json(&d.path().join("estate/aws.json"), |v| {
        let creds = v["credentials"].as_array_mut().expect("credentials");
        creds.retain(|c| c["id"] != removed);
    });
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    std::fs::write(
        &cfg,
        text.replace("never_used_days = 45", "never_used_days = 1"),
    )
    .expect("cfg");
    let second = scan(d.path());

    let a: BTreeSet<String> = first.iter().map(fingerprint).collect();
    let b: BTreeSet<String> = second.iter().map(fingerprint).collect();
    let diff = json(&ok(run_in(
        d.path(),
        &["diff", "--config", "nhi-assure.toml", "--format", "json"],
    )));
    assert_eq!(diff["from_run"], 1);
    assert_eq!(diff["to_run"], 2);
    let set = |k: &str| -> BTreeSet<String> {
        diff[k]
            .as_array()
            .expect(k)
            .iter()
            .map(|e| e["fingerprint"].as_str().expect("fp").to_string())
            .collect()
    };
    assert_eq!(set("new"), b.difference(&a).cloned().collect());
    assert_eq!(set("resolved"), a.difference(&b).cloned().collect());
    assert_eq!(set("still_open"), a.intersection(&b).cloned().collect());
    assert!(set("resolved").iter().all(|f| f.ends_with(removed)));
    assert!(!set("new").is_empty());

    // Dates: still-open findings were first seen by run 1, new ones by run 2;
    // time to remediate is run 2's start minus run 1's.
    let r1 = report_json(d.path(), &["--run", "1"]);
    let r2 = report_json(d.path(), &[]);
    let s1 = r1["run"]["started_at"].as_str().expect("start").to_string();
    let s2 = r2["run"]["started_at"].as_str().expect("start").to_string();
    for e in diff["still_open"].as_array().expect("still") {
        assert_eq!(e["first_seen"], s1.as_str());
    }
    for e in diff["new"].as_array().expect("new") {
        assert_eq!(e["first_seen"], s2.as_str());
    }
    let hours = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .expect("ts")
            .timestamp_micros() as f64
            / 3.6e9
    };
    let expected = hours(&s2) - hours(&s1);
    for e in diff["resolved"].as_array().expect("resolved") {
        assert_eq!(e["resolved_at"], s2.as_str());
        let h = e["hours_to_remediate"].as_f64().expect("hours");
        assert!((h - expected).abs() < 1e-6, "{h} vs {expected}");
    }
    let mttr = diff["mttr"].as_array().expect("mttr");
    let resolved = diff["resolved"].as_array().expect("resolved");
    for m in mttr {
        let n = resolved
            .iter()
            .filter(|e| e["severity"] == m["severity"])
            .count();
        assert_eq!(m["resolved"], n);
    }
    assert_eq!(
        mttr.iter()
            .map(|m| m["resolved"].as_u64().expect("n"))
            .sum::<u64>() as usize,
        resolved.len()
    );

    // The JSON report of run 2 lists what it resolved, and its OCSF export
    // closes exactly those (a SIEM's copy does not stay open), validated.
    let resolved_json: BTreeSet<String> = r2["resolved"]
        .as_array()
        .expect("resolved")
        .iter()
        .map(|f| f["fingerprint"].as_str().expect("fp").to_string())
        .collect();
    assert_eq!(resolved_json, set("resolved"));
    ok(run_in(
        d.path(),
        &[
            "report",
            "--config",
            "nhi-assure.toml",
            "--format",
            "ocsf",
            "--out",
            "run2",
        ],
    ));
    let path = d.path().join("run2/report.ocsf.json");
    validate(
        "ocsf-1.6.0-iam_analysis_finding-cloud.schema.json",
        &path,
        true,
    );
    let events: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    let by_activity = |a: i64| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e["activity_id"] == a)
            .map(|e| e["finding_info"]["uid"].as_str().expect("uid").to_string())
            .collect()
    };
    assert_eq!(by_activity(3), set("resolved"));
    assert_eq!(by_activity(1), set("new"));
    assert_eq!(by_activity(2), set("still_open"));
    assert!(events
        .iter()
        .filter(|e| e["activity_id"] == 3)
        .all(|e| e["status_id"] == 4 && e["type_uid"] == 200803));

    // A report on the past run shows what that run saw.
    let past: BTreeSet<String> = r1["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["fingerprint"].as_str().expect("fp").to_string())
        .collect();
    assert_eq!(past, a);

    // Run 3 with Azure broken: its findings are not resolved but unverified.
    std::fs::write(d.path().join("estate/azure.json"), "{ not json").expect("write");
    let blind = run_in(
        d.path(),
        &["scan", "--config", "nhi-assure.toml", "--format", "json"],
    );
    assert_eq!(blind.status.code(), Some(3), "a run that could not see");
    let diff = json(&ok(run_in(
        d.path(),
        &[
            "diff",
            "--config",
            "nhi-assure.toml",
            "--from",
            "2",
            "--format",
            "json",
        ],
    )));
    // Findings on Azure subjects, but not those on an approval record itself
    // (Jira ACC-214: its approver is its assignee), which the approval
    // sources still read and judge.
    let azure: BTreeSet<String> = second
        .iter()
        .filter(|f| f["provider"] == "azure")
        .map(fingerprint)
        .filter(|fp| !fp.contains("|approval:"))
        .collect();
    assert!(!azure.is_empty());
    let resolved: BTreeSet<String> = diff["resolved"]
        .as_array()
        .expect("resolved")
        .iter()
        .map(|e| e["fingerprint"].as_str().expect("fp").to_string())
        .collect();
    assert!(
        resolved.is_disjoint(&azure),
        "a failed source resolves nothing"
    );
    for e in diff["still_open"].as_array().expect("still") {
        let fp = e["fingerprint"].as_str().expect("fp");
        assert_eq!(e["unverified"], azure.contains(fp), "{fp}");
    }
    // And the coverage of run 3 cannot claim a pass.
    let r3 = report_json(d.path(), &[]);
    for fw in r3["frameworks"].as_array().expect("fws") {
        for c in fw["controls"].as_array().expect("controls") {
            assert_ne!(c["status"], "pass", "{}", c["reference"]);
        }
    }
}

fn chromium() -> PathBuf {
    let p = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "{} not found: tests/run.sh installs Debian's chromium",
        p.display()
    );
    p
}

fn headless(profile: &Path, extra: &[&str], url: &str) -> Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

#[test]
fn html_is_self_contained_and_renders_in_headless_chromium() {
    let (d, _) = demo();
    let findings = scan(d.path());
    report_out(d.path(), "html");
    let path = d.path().join("out/report.html");
    let html = std::fs::read_to_string(&path).expect("html");
    // Self-contained: nothing to fetch.
    for bad in ["<link", "src=\"http", "src='http", "@import", "url(http"] {
        assert!(!html.contains(bad), "external reference {bad}");
    }
    assert!(html.contains("Content-Security-Policy"));
    for id in [
        "chart-severity",
        "chart-control",
        "chart-source",
        "finding-table",
        "traces",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert_eq!(
        html.matches("<tr id=\"f-").count(),
        findings.len(),
        "one table row per finding"
    );

    let profile = tempfile::tempdir().expect("profile");
    let url = format!("file://{}", path.display());
    // JavaScript runs and filters: with #sev=critical only critical rows show.
    let critical = findings
        .iter()
        .filter(|f| f["severity"] == "critical")
        .count();
    let dom = headless(
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("{url}#sev=critical"),
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("data-ready=\"true\""),
        "script did not run: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        dom_text.contains(&format!("{critical} of {} shown", findings.len())),
        "filter did not apply"
    );
    assert!(critical > 0 && critical < findings.len());
    // A link to a subject's trace opens it.
    let dom = headless(
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=3000"],
        &format!("{url}#t-1"),
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("<details id=\"t-1\" open"),
        "trace not opened"
    );
    assert!(!dom_text.contains("<details id=\"t-2\" open"));

    // And it paints: a screenshot of real size.
    let shot = d.path().join("report.png");
    let o = headless(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,2200",
            "--hide-scrollbars",
        ],
        &url,
    );
    let png = std::fs::read(&shot)
        .unwrap_or_else(|_| panic!("no screenshot: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 50_000,
        "a blank page is small: {} bytes",
        png.len()
    );
    if let Ok(keep) = std::env::var("NHI_ASSURE_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keep screenshot");
    }
}

#[test]
fn html_escapes_names_from_the_cloud() {
    let (d, _) = demo();
    let evil = "<script>alert(1)</script>";
    edit_json(&d.path().join("estate/aws.json"), |v| {
        let ids = v["identities"].as_array_mut().expect("identities");
        let u = ids
            .iter_mut()
            .find(|i| i["id"] == "arn:aws:iam::111122223333:user/invoice-mailer")
            .expect("invoice-mailer");
        u["owner"] = Value::String(evil.into());
    });
    scan(d.path());
    let o = ok(run_in(
        d.path(),
        &["report", "--config", "nhi-assure.toml", "--format", "html"],
    ));
    let html = String::from_utf8_lossy(&o.stdout);
    assert!(!html.contains(evil));
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || html.contains("&lt;script&gt;")
    );
}

/// A synthetic estate of `identities` and `credentials` in `d`: the
/// snapshot, the approvals as code and a config (store `s.db`).
fn synth_estate(d: &Path, identities: usize, credentials: usize) {
    let (inv, approvals) = nhi_assure::synth::generate(nhi_assure::synth::SynthSpec {
        identities,
        credentials,
        seed: 1,
    });
    let mut snap = serde_json::to_value(&inv).expect("json");
    snap["format"] = "nhi-assure.snapshot/v1".into();
    snap["provider"] = "aws".into();
    snap["exported_at"] = "2026-11-20T11:00:00Z".into();
    std::fs::write(
        d.join("estate.json"),
        serde_json::to_vec(&snap).expect("json"),
    )
    .expect("w");
    std::fs::create_dir_all(d.join("approvals")).expect("mkdir");
    let list: Vec<Value> = approvals
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).expect("json");
            if let Some(o) = v.as_object_mut() {
                o.remove("source");
                // Approvals as code refuse self-approval; the synthetic set has some.
                if o.get("approver") == o.get("requester") {
                    o.insert("approver".into(), "reviewer@example.com".into());
                }
                o.retain(|_, x| !x.is_null());
            }
            v
        })
        .collect();
    let yaml =
        serde_json::to_string_pretty(&serde_json::json!({ "approvals": list })).expect("json");
    std::fs::write(d.join("approvals/all.yaml"), yaml).expect("w");
    std::fs::write(
        d.join("nhi-assure.toml"),
        "store = \"s.db\"\nas_of = \"2026-11-20T12:00:00Z\"\n[[sources]]\ntype = \"snapshot\"\nname = \"aws\"\nprovider = \"aws\"\npath = \"estate.json\"\n[[approvals]]\ntype = \"files\"\nname = \"a\"\npath = \"approvals\"\nmax_validity_days = 3650\n",
    )
    .expect("cfg");
}

/// An OCSF report of more findings than one batch renders (each batch's
/// buffers reused by the one after next): every finding an event, once,
/// one per line, the whole a JSON array.
#[test]
fn ocsf_events_of_several_batches_are_each_written_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    synth_estate(d, 2_000, 7_000);
    let o = ok(run_in(
        d,
        &["scan", "--config", "nhi-assure.toml", "--format", "json"],
    ));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("scan json");
    let fps: std::collections::BTreeSet<String> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(fingerprint)
        .collect();
    assert!(
        fps.len() > 2 * 4_096,
        "three batches at least: {}",
        fps.len()
    );
    report_out(d, "ocsf");
    let text = std::fs::read_to_string(d.join("out/report.ocsf.json")).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((lines.first(), lines.last()), (Some(&"["), Some(&"]")));
    let mut uids = std::collections::BTreeSet::new();
    for (i, line) in lines[1..lines.len() - 1].iter().enumerate() {
        let event = line.strip_suffix(',').unwrap_or(line);
        let e: Value =
            serde_json::from_str(event).unwrap_or_else(|err| panic!("line {}: {err}", i + 2));
        let uid = e["finding_info"]["uid"].as_str().expect("uid").to_string();
        assert!(uids.insert(uid), "event on line {} written twice", i + 2);
    }
    assert_eq!(uids, fps);
    let events: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    assert_eq!(events.len(), fps.len());
}

/// Scale figures (not run by default):
/// `cargo test --release --test report -- --ignored --nocapture report_scale`
/// with `NHI_SCALE=identities,credentials` (default 30000,100000).
#[test]
#[ignore]
fn report_scale() {
    use std::time::Instant;
    let (ni, nc) = std::env::var("NHI_SCALE")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once(',')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((30_000usize, 100_000usize));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    synth_estate(d, ni, nc);
    let t = Instant::now();
    let o = ok(run_in(
        d,
        &[
            "scan",
            "--config",
            "nhi-assure.toml",
            "--format",
            "csv",
            "--output",
            "scan.csv",
        ],
    ));
    println!(
        "scan: {:?} ({})",
        t.elapsed(),
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .next()
            .unwrap_or("")
    );
    for f in ["json", "csv", "ocsf", "sarif", "html", "table"] {
        let t = Instant::now();
        report_out(d, f);
        println!("report {f}: {:?}", t.elapsed());
    }
    let t = Instant::now();
    ok(run_in(d, &["evidence", "keygen", "--out", "k"]));
    ok(run_in(
        d,
        &[
            "evidence",
            "export",
            "--config",
            "nhi-assure.toml",
            "--key",
            "k.key",
            "--out",
            "b.tar.gz",
        ],
    ));
    println!(
        "evidence export: {:?}, {} bytes",
        t.elapsed(),
        std::fs::metadata(d.join("b.tar.gz")).expect("b").len()
    );
    let t = Instant::now();
    ok(run_in(
        d,
        &["evidence", "verify", "b.tar.gz", "--public-key", "k.pub"],
    ));
    println!("evidence verify: {:?}", t.elapsed());
    let db: u64 = ["s.db", "s.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(d.join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!("store after one run: {db} bytes");
    // A second pass over the same estate: per-run detail is kept by change.
    let t = Instant::now();
    ok(run_in(
        d,
        &[
            "scan",
            "--config",
            "nhi-assure.toml",
            "--format",
            "csv",
            "--output",
            "scan.csv",
        ],
    ));
    let db2: u64 = ["s.db", "s.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(d.join(f)).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "second scan: {:?}; store after two runs: {db2} bytes",
        t.elapsed()
    );
    let mut sizes = Vec::new();
    files_in(&d.join("out"), &mut sizes);
    println!("report files: {sizes:?}");
}

fn files_in(dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).expect("read").flatten() {
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            e.metadata().map(|m| m.len()).unwrap_or(0),
        ));
    }
    out.sort();
}

/// An approval's ticket (key and URL) is carried by the trace, the OCSF
/// events and the HTML report; only an http(s) URL becomes a link.
#[test]
fn the_approval_ticket_key_and_url_reach_trace_ocsf_and_html() {
    let codecov = "github.com/apps/codecov@example-org";
    let url = "https://example.atlassian.net/browse/SEC-77";
    let (d, _) = demo();
    scan(d.path());
    let t = json(&ok(run_in(
        d.path(),
        &["trace", "--config", "nhi-assure.toml", codecov],
    )));
    let a = &t["approvals"][0];
    assert_eq!(a["reference"], "SEC-77");
    assert_eq!(a["url"], url);
    assert_eq!(a["assignee"], "dana.kim@example.com");

    let o = ok(run_in(
        d.path(),
        &["report", "--config", "nhi-assure.toml", "--format", "ocsf"],
    ));
    let events: Vec<Value> = serde_json::from_slice(&o.stdout).expect("json");
    let tickets: Vec<&Value> = events
        .iter()
        .filter(|e| e["user"]["uid"] == codecov)
        .map(|e| &e["unmapped"]["ticket"])
        .collect();
    assert!(!tickets.is_empty());
    for t in tickets {
        assert_eq!(*t, serde_json::json!({ "reference": "SEC-77", "url": url }));
    }

    let html = |dir: &Path| {
        let o = ok(run_in(
            dir,
            &["report", "--config", "nhi-assure.toml", "--format", "html"],
        ));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let page = html(d.path());
    let href = "href=\"https:&#x2f;&#x2f;example.atlassian.net&#x2f;browse&#x2f;SEC-77\"";
    assert!(page.contains(href), "a link to the ticket");
    assert!(page.contains("SEC-77</a>"));

    // A URL that is no web address stays text.
    let (d2, _) = demo();
    edit_json(&d2.path().join("estate/github.json"), |v| {
        v["approvals"][0]["url"] = Value::String("javascript:alert(1)".into());
    });
    scan(d2.path());
    let page = html(d2.path());
    assert!(!page.contains("javascript:alert"), "never a link");
    assert!(!page.contains("SEC-77</a>"));
    assert!(page.contains("SEC-77"));
}
