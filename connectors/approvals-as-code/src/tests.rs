use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture");
}

const GOOD: &str = "approvals:
  - id: APR-1
    subject: arn:aws:iam::111122223333:user/ci
    credentials: [AKIAEXAMPLE1]
    scope:
      actions: [\"s3:GetObject\"]
      services: [s3]
    requester: alice@example.com
    approver: bob@example.com
    approved_at: 2026-01-01T00:00:00Z
    expires_at: 2026-06-01T00:00:00Z
    reference: CHG-1
";

fn load(text: &str) -> Result<Vec<Approval>, Problems> {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", text);
    load_dir(dir.path(), 365)
}

fn only_problem(text: &str) -> String {
    let p = load(text).expect_err("must fail");
    assert_eq!(p.0.len(), 1, "{p}");
    let one = &p.0[0];
    format!("a.yaml:{}:{}: {}", one.line, one.column, one.message)
}

#[test]
fn valid_file_loads_with_source_location() {
    let a = load(GOOD).expect("valid");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id, "APR-1");
    assert_eq!(a[0].scope.services, vec!["s3"]);
    assert!(a[0].source.ends_with("a.yaml:2:5"), "{}", a[0].source);
}

#[test]
fn unknown_field_is_reported_with_line() {
    let text = GOOD.replace(
        "    reference: CHG-1\n",
        "    reference: CHG-1\n    aproved_by: eve\n",
    );
    let msg = only_problem(&text);
    assert!(msg.starts_with("a.yaml:13:"), "{msg}");
    assert!(msg.contains("aproved_by"), "{msg}");
}

#[test]
fn missing_expiry_is_reported() {
    let text = GOOD.replace("    expires_at: 2026-06-01T00:00:00Z\n", "");
    let msg = only_problem(&text);
    assert!(msg.contains("expires_at"), "{msg}");
    assert!(!msg.starts_with("a.yaml:0:"), "needs a line: {msg}");
}

#[test]
fn self_approval_is_rejected_at_the_approver_line() {
    let text = GOOD.replace("approver: bob@example.com", "approver: Alice@example.com");
    let msg = only_problem(&text);
    assert!(msg.starts_with("a.yaml:9:"), "{msg}");
    assert!(msg.contains("separation of duties"), "{msg}");
}

#[test]
fn expiry_beyond_maximum_validity_is_rejected() {
    let text = GOOD.replace("2026-06-01T00:00:00Z", "2027-06-01T00:00:00Z");
    let msg = only_problem(&text);
    assert!(msg.starts_with("a.yaml:11:"), "{msg}");
    assert!(msg.contains("maximum validity"), "{msg}");
}

#[test]
fn expiry_before_start_is_rejected() {
    let text = GOOD.replace("2026-06-01T00:00:00Z", "2025-06-01T00:00:00Z");
    assert!(only_problem(&text).contains("is not after its start"));
}

#[test]
fn empty_scope_is_rejected() {
    let text = GOOD.replace("      actions: [\"s3:GetObject\"]\n", "");
    assert!(only_problem(&text).contains("scope approves nothing"));
}

#[test]
fn duplicate_ids_across_files_name_both_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", GOOD);
    write(dir.path(), "b.yml", GOOD);
    let p = load_dir(dir.path(), 365).expect_err("duplicate");
    assert_eq!(p.0.len(), 1, "{p}");
    let msg = p.to_string();
    assert!(
        msg.contains("b.yml:2:5: duplicate approval id \"APR-1\""),
        "{msg}"
    );
    assert!(msg.contains("a.yaml:2:5"), "{msg}");
}

#[test]
fn every_problem_in_every_file_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        &GOOD.replace("bob@example.com", "alice@example.com"),
    );
    write(dir.path(), "b.yaml", "approvals: [ {id: x");
    let p = load_dir(dir.path(), 365).expect_err("bad");
    assert_eq!(p.0.len(), 2, "{p}");
}

#[test]
fn missing_directory_is_an_error() {
    assert!(load_dir(Path::new("/nonexistent/approvals"), 365).is_err());
}

#[test]
fn dates_out_of_range_are_located_problems_not_panics() {
    for (field, value) in [
        ("approved_at", "+262142-01-01T00:00:00Z"),
        ("approved_at", "1969-12-31T00:00:00Z"),
        ("expires_at", "+262142-01-01T00:00:00Z"),
        ("expires_at", "+10000-01-01T00:00:00Z"),
    ] {
        let line = GOOD
            .lines()
            .find(|l| l.trim_start().starts_with(field))
            .expect("field");
        let text = GOOD.replace(line, &format!("    {field}: {value}"));
        let msg = only_problem(&text);
        let want_line = if field == "approved_at" { 10 } else { 11 };
        assert!(msg.starts_with(&format!("a.yaml:{want_line}:")), "{msg}");
        assert!(msg.contains("out of range"), "{msg}");
    }
    for optional in ["starts_at", "revoked_at"] {
        let text = GOOD.replace(
            "    reference: CHG-1\n",
            &format!("    reference: CHG-1\n    {optional}: +262142-01-01T00:00:00Z\n"),
        );
        let msg = only_problem(&text);
        assert!(msg.starts_with("a.yaml:13:"), "{msg}");
        assert!(msg.contains("out of range"), "{msg}");
    }
    let text = GOOD.replace(
        "    reference: CHG-1\n",
        "    reference: CHG-1\n    emergency: {incident: INC-1, ended_at: +262142-01-01T00:00:00Z}\n",
    );
    assert!(only_problem(&text).contains("out of range"));
}

#[test]
fn validity_limits_near_the_integer_range_do_not_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", GOOD);
    assert_eq!(load_dir(dir.path(), i64::MAX).expect("no limit").len(), 1);
    let p = load_dir(dir.path(), i64::MIN).expect_err("nothing is valid");
    assert!(p.to_string().contains("maximum validity"), "{p}");
}

#[cfg(unix)]
#[test]
fn a_fifo_named_yaml_is_refused_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yaml", GOOD);
    let fifo = dir.path().join("pipe.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.path().to_path_buf();
    std::thread::spawn(move || tx.send(load_dir(&d, 365)));
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("load_dir blocked on a FIFO");
    let p = got.expect_err("a FIFO is refused");
    assert_eq!(p.0.len(), 1, "{p}");
    assert_eq!(p.0[0].file, fifo);
    assert!(p.0[0].message.contains("not a regular file"), "{p}");
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_directory_are_refused_and_a_configmap_mount_reads_once() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret.yaml", GOOD);
    let dir = tempfile::tempdir().expect("tempdir");
    symlink(
        outside.path().join("secret.yaml"),
        dir.path().join("a.yaml"),
    )
    .expect("link");
    symlink(outside.path(), dir.path().join("sub")).expect("link");
    let p = load_dir(dir.path(), 365).expect_err("link out");
    assert_eq!(p.0.len(), 1, "{p}");
    assert_eq!(p.0[0].file, dir.path().join("a.yaml"));
    assert!(
        p.0[0].message.contains("outside the approvals directory"),
        "{p}"
    );

    // A Kubernetes ConfigMap volume: file links into `..data`, itself a
    // link to a timestamped directory. Each approval is read once.
    let dir = tempfile::tempdir().expect("tempdir");
    let stamped = dir.path().join("..2026_12_01_00_00_00.1");
    std::fs::create_dir(&stamped).expect("mkdir");
    write(&stamped, "a.yaml", GOOD);
    symlink("..2026_12_01_00_00_00.1", dir.path().join("..data")).expect("link");
    symlink("..data/a.yaml", dir.path().join("a.yaml")).expect("link");
    let list = load_dir(dir.path(), 365).expect("configmap mount");
    assert_eq!(list.len(), 1);
    assert!(list[0].source.contains("a.yaml:2:5"), "{}", list[0].source);
}

/// What `text` gives, read by [`parse_file`] (JSON first) and by the
/// YAML reader alone.
type Read = (Vec<Approval>, Vec<Problem>);
fn both_ways(text: &str) -> (Read, Read) {
    let f = Path::new("j.yaml");
    let (mut a, mut p) = (Vec::new(), Vec::new());
    parse_file(f, text, 365, &mut a, &mut p);
    let (mut b, mut q) = (Vec::new(), Vec::new());
    parse_yaml(f, text, 365, &mut b, &mut q);
    ((a, p), (b, q))
}

/// One approval as JSON; `extra` is spliced in before the closing brace.
fn json_approval(id: &str, approver: &str, extra: &str) -> String {
    format!(
        r#"{{"id":"{id}","subject":"arn:aws:iam::111122223333:user/ci","credentials":["AKIAEXAMPLE1"],"scope":{{"actions":["s3:GetObject"],"services":["s3"]}},"requester":"alice@example.com","approver":"{approver}","approved_at":"2026-01-01T00:00:00Z","expires_at":"2026-06-01T00:00:00Z"{extra}}}"#
    )
}

#[test]
fn json_files_read_exactly_as_the_yaml_reader_reads_them() {
    let a = json_approval(
        "APR-1",
        "bob@example.com",
        r#","reference":"Zürich — 日本 \u2028 ok""#,
    );
    // Raw non-ASCII and a raw line separator before later items: columns
    // are counted in characters, and U+2028 breaks no line.
    let b = json_approval("APR-2", "bob@example.com", ",\"reference\":\"é\u{2028}😀\"");
    let c = json_approval("APR-3", "carol@example.com", "");
    let compact = format!(r#"{{"approvals":[{a},{b},{c}]}}"#);
    let value: serde_json::Value = serde_json::from_str(&compact).expect("valid JSON");
    let pretty = serde_json::to_string_pretty(&value).expect("pretty");
    let crlf = pretty.replace('\n', "\r\n");
    let spaced = format!("\n\n  {{ \"approvals\" :\n[ {a} ,\n\t{b},   {c}\n ] }}\n");
    for text in [&compact, &pretty, &crlf, &spaced] {
        assert!(json_items(text).is_some(), "fast path not taken: {text}");
        let (fast, yaml) = both_ways(text);
        assert_eq!(fast.0.len(), 3, "{text}");
        assert!(fast.1.is_empty(), "{:?}", fast.1);
        assert_eq!(fast, yaml, "{text}");
    }
    // Sources name the same places as the YAML reader: spot-check one.
    let (fast, _) = both_ways(&spaced);
    assert_eq!(fast.0[0].source, "j.yaml:4:3");
}

#[test]
fn json_the_fast_path_refuses_is_decided_by_the_yaml_reader() {
    let good = json_approval("APR-1", "bob@example.com", "");
    let selfish = json_approval("APR-2", "alice@example.com", "");
    let cases = [
        // A problem found on the fast path: located by the YAML reader.
        format!("{{\"approvals\":[{good},\n  {selfish}]}}"),
        // Not the fast path's shape: YAML coerces the number to a string.
        format!(
            "{{\"approvals\":[{}]}}",
            json_approval("APR-3", "bob@example.com", r#","reference":5"#)
        ),
        // A lone CR is a line break to YAML only.
        format!("{{\"approvals\":[\r{good}]}}"),
        // Unknown field, duplicate key, and a BOM.
        format!(
            "{{\"approvals\":[{}]}}",
            json_approval("APR-4", "bob@example.com", r#","aproved_by":"eve""#)
        ),
        format!(
            "{{\"approvals\":[{}]}}",
            json_approval("APR-5", "bob@example.com", r#","id":"APR-6""#)
        ),
        format!("\u{feff}{{\"approvals\":[{good}]}}"),
    ];
    for text in &cases {
        let (fast, yaml) = both_ways(text);
        assert_eq!(fast, yaml, "{text}");
    }
    let (fast, _) = both_ways(&cases[0]);
    assert_eq!(fast.1.len(), 1, "{:?}", fast.1);
    assert_eq!((fast.1[0].line, fast.1[0].column), (2, 192), "{:?}", fast.1);
    assert!(fast.1[0].message.contains("separation of duties"));
}

/// No input may panic the parser, and whatever it accepts has dates in
/// range: arbitrary bytes, the valid file with hostile values spliced in,
/// and dates from the whole range chrono parses, each with any validity
/// limit. 256 cases per property.
mod props {
    use super::*;
    use proptest::prelude::*;

    const HOSTILE: &[&str] = &[
        "+262142-01-01T00:00:00Z",
        "-262143-01-01T00:00:00Z",
        "+10000-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "2026-13-45T99:99:99Z",
        "2026-01-01T00:00:00+23:59",
        "9223372036854775807",
        "-9223372036854775808",
        "~",
        "null",
        "[]",
        "{}",
        "\"\"",
        "!!binary aGVsbG8=",
        "&a x",
        "*a",
        ".nan",
        "-.inf",
        "'",
        "\"",
        ":",
        "- ",
        "\t",
        "\u{0}",
        "\u{feff}",
        "😀",
        "{a: [b, {c: d}]}",
        "|\n  x",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        "approvals: []",
        "<<: *a",
    ];

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

    fn accepted_dates_in_range(text: &str, max: i64) {
        if let Ok(list) = parse_text(Path::new("p.yaml"), text, max) {
            for a in list {
                for t in [
                    Some(a.approved_at),
                    a.starts_at,
                    Some(a.expires_at),
                    a.revoked_at,
                ] {
                    assert!(t.is_none_or(|t| time::check(t).is_ok()), "{t:?}");
                }
            }
        }
    }

    fn timestamp() -> impl Strategy<Value = String> {
        (
            -300_000i32..300_000,
            0u32..14,
            0u32..33,
            0u32..25,
            any::<bool>(),
        )
            .prop_map(|(y, m, d, h, plus)| {
                let sign = if plus || y < 0 { "" } else { "+" };
                format!("{sign}{y:04}-{m:02}-{d:02}T{h:02}:00:00Z")
            })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn json_reads_as_yaml_reads_it(
            references in proptest::collection::vec(any::<String>(), 1..4),
            gaps in proptest::collection::vec(
                prop::sample::select(vec!["", " ", "\n", "\t", "\r\n", "\n    "]), 8),
        ) {
            let items: Vec<String> = references
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let r = serde_json::to_string(r).expect("a string encodes");
                    json_approval(&format!("APR-{i}"), "bob@example.com", &format!(",\"reference\":{r}"))
                })
                .collect();
            let g = |k: usize| gaps[k % gaps.len()];
            let text = format!(
                "{}{{{}\"approvals\"{}:{}[{}]}}",
                g(0), g(1), g(2), g(3),
                items.join(&format!("{},{}", g(4), g(5)))
            );
            prop_assert!(json_items(&text).is_some(), "fast path not taken: {}", text);
            let (fast, yaml) = both_ways(&text);
            prop_assert_eq!(fast, yaml);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048),
            max in any::<i64>(),
        ) {
            accepted_dates_in_range(&String::from_utf8_lossy(&bytes), max);
        }

        #[test]
        fn hostile_values_spliced_into_a_valid_file_never_panic(
            edits in proptest::collection::vec(
                (0usize..12, 0usize..HOSTILE.len(), 0u8..3),
                1..4,
            ),
            max in any::<i64>(),
        ) {
            let mut lines: Vec<String> = GOOD.lines().map(str::to_string).collect();
            for (at, token, how) in edits {
                let at = at.min(lines.len().saturating_sub(1));
                let token = HOSTILE[token];
                match how {
                    0 => {
                        let line = &lines[at];
                        if let Some(colon) = line.find(": ") {
                            lines[at] = format!("{}: {token}", &line[..colon]);
                        }
                    }
                    1 => lines.insert(at, token.to_string()),
                    _ => lines[at] = token.to_string(),
                }
            }
            accepted_dates_in_range(&lines.join("\n"), max);
        }

        #[test]
        fn any_parsable_date_is_bounded_or_refused(
            approved in timestamp(),
            expires in timestamp(),
            starts in proptest::option::of(timestamp()),
            max in any::<i64>(),
        ) {
            let mut text = GOOD
                .replace("2026-01-01T00:00:00Z", &approved)
                .replace("2026-06-01T00:00:00Z", &expires);
            if let Some(s) = starts {
                text.push_str(&format!("    starts_at: {s}\n"));
            }
            accepted_dates_in_range(&text, max);
        }
    }
}

/// Nesting deep enough to exhaust a recursive parser's stack is refused,
/// not a crash (a stack overflow aborts the process: worse than a panic).
#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    for open in ["[", "{a: ", "- "] {
        let text = format!("approvals: {}", open.repeat(100_000));
        let p = parse_text(Path::new("p.yaml"), &text, 365).expect_err("refused");
        assert!(!p.0.is_empty());
    }
}

/// Tens of thousands of approvals in one file load (the YAML budget grows
/// with the file); an alias bomb of a few hundred bytes is still refused.
#[test]
fn a_large_approval_set_loads_and_an_alias_bomb_does_not() {
    let n = 40_000;
    let mut text = String::from("approvals:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - id: APR-{i}\n    subject: arn:aws:iam::111122223333:user/svc-{i}\n    scope:\n      actions: [\"s3:GetObject\", \"s3:PutObject\"]\n    requester: alice@example.com\n    approver: bob@example.com\n    approved_at: 2026-01-01T00:00:00Z\n    expires_at: 2026-06-01T00:00:00Z\n    reference: CHG-{i}\n"
        ));
    }
    let a = load(&text).expect("a large file loads");
    assert_eq!(a.len(), n);
    assert_eq!(a[n - 1].id, format!("APR-{}", n - 1));

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb.push_str("approvals: *a11\n");
    let p = load(&bomb).expect_err("an alias bomb is refused");
    assert_eq!(p.0.len(), 1, "{p}");
}

const ISSUANCE: &str = "    reference: CHG-1
    role: arn:aws:iam::111122223333:role/deploy
    issue_to:
      issuer: https://token.actions.githubusercontent.com
      subject: repo:org/app:environment:prod
";

#[test]
fn issuance_fields_load() {
    let text = GOOD.replace("    reference: CHG-1\n", ISSUANCE);
    let a = load(&text).expect("valid");
    assert_eq!(
        a[0].role.as_deref(),
        Some("arn:aws:iam::111122223333:role/deploy")
    );
    let w = a[0].issue_to.as_ref().expect("issue_to");
    assert_eq!(w.issuer, "https://token.actions.githubusercontent.com");
    assert_eq!(w.subject, "repo:org/app:environment:prod");
    // Without them the approval is what it was.
    let plain = load(GOOD).expect("valid");
    assert_eq!(plain[0].role, None);
    assert_eq!(plain[0].issue_to, None);
}

#[test]
fn azure_application_id_is_a_role() {
    let text = GOOD.replace(
        "    reference: CHG-1\n",
        "    reference: CHG-1\n    role: 5a1d3b6e-2c4f-4e8a-9b7d-0f1e2d3c4b5a\n",
    );
    assert!(load(&text).is_ok());
}

#[test]
fn bad_role_is_located() {
    for bad in [
        "arn:aws:iam::1111:role/deploy",
        "arn:aws:iam::111122223333:user/deploy",
        "arn:aws:iam::111122223333:role/*",
        "deploy",
        "\"\"",
    ] {
        let text = GOOD.replace(
            "    reference: CHG-1\n",
            &format!("    reference: CHG-1\n    role: {bad}\n"),
        );
        let msg = only_problem(&text);
        assert!(
            msg.starts_with("a.yaml:13:11: approval APR-1: role"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn bad_workload_is_located() {
    for (issuer, subject, want) in [
        ("http://issuer.example", "repo:o/a", "not an https URL"),
        ("https://issuer.example", "\"  \"", "subject is empty"),
        ("https://issuer.example", "repo:o/*", "wildcard"),
    ] {
        let text = GOOD.replace(
            "    reference: CHG-1\n",
            &format!(
                "    reference: CHG-1\n    role: arn:aws:iam::111122223333:role/deploy\n    issue_to:\n      issuer: {issuer}\n      subject: {subject}\n"
            ),
        );
        let msg = only_problem(&text);
        assert!(
            msg.starts_with("a.yaml:15:7: approval APR-1: issue_to"),
            "{msg}"
        );
        assert!(msg.contains(want), "{msg}");
    }
    let text = GOOD.replace(
        "    reference: CHG-1\n",
        "    reference: CHG-1\n    issue_to:\n      issuer: https://i.example\n      subject: s\n",
    );
    assert!(only_problem(&text).contains("without a role"));
    let text = GOOD.replace(
        "    reference: CHG-1\n",
        "    reference: CHG-1\n    role: arn:aws:iam::111122223333:role/deploy\n    issue_to:\n      issuer: https://i.example\n      subject: s\n      audience: x\n",
    );
    assert!(only_problem(&text).contains("audience"));
}

#[test]
fn a_reread_parses_only_changed_files_and_reads_as_a_fresh_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", GOOD);
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-2"));
    let mut parsed = Parsed::new();
    let ids = |v: Vec<Approval>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let fresh = |d: &Path| ids(load_dir(d, 365).expect("fresh"));
    assert_eq!(
        ids(load_dir_with(d, 365, &mut parsed).expect("1")),
        ["APR-1", "APR-2"]
    );
    assert_eq!(parsed.len(), 2);
    // Unchanged: the same approvals, from what was parsed.
    assert_eq!(
        ids(load_dir_with(d, 365, &mut parsed).expect("2")),
        fresh(d)
    );
    // A file changed: read as changed.
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-3"));
    assert_eq!(
        ids(load_dir_with(d, 365, &mut parsed).expect("3")),
        ["APR-1", "APR-3"]
    );
    // A file broken: the problem is reported, every time, not hidden by
    // what it held before.
    write(d, "b.yaml", &GOOD.replace("expires_at", "expires"));
    for _ in 0..2 {
        let p = load_dir_with(d, 365, &mut parsed).expect_err("broken");
        assert!(p.to_string().contains("b.yaml"), "{p}");
    }
    // Mended, and a duplicate across a kept and a new file still found.
    write(d, "b.yaml", GOOD);
    let p = load_dir_with(d, 365, &mut parsed).expect_err("duplicate");
    assert!(p.to_string().contains("duplicate approval id"), "{p}");
    // A file removed: its approvals are gone, and it is no longer kept.
    std::fs::remove_file(d.join("b.yaml")).expect("rm");
    assert_eq!(
        ids(load_dir_with(d, 365, &mut parsed).expect("4")),
        ["APR-1"]
    );
    assert_eq!(parsed.len(), 1);
}

#[tokio::test]
async fn a_reread_is_none_only_while_the_directory_reads_as_the_last_clean_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", GOOD);
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-2"));
    let src = FilesSource::new(FilesConfig {
        name: "files".into(),
        path: d.to_path_buf(),
        max_validity_days: 365,
    });
    let ids = |r: ApprovalRead| r.approvals.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let again = || async { src.reread().await };
    // Never read: read.
    assert_eq!(
        ids(again().await.expect("1").expect("first read")),
        ["APR-1", "APR-2"]
    );
    // Unchanged: nothing copied out.
    assert!(again().await.expect("2").is_none());
    // Changed, added, removed: read.
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-3"));
    assert_eq!(
        ids(again().await.expect("3").expect("changed")),
        ["APR-1", "APR-3"]
    );
    assert!(again().await.expect("4").is_none());
    write(d, "c.yaml", &GOOD.replace("APR-1", "APR-4"));
    assert_eq!(again().await.expect("5").expect("added").approvals.len(), 3);
    std::fs::remove_file(d.join("c.yaml")).expect("rm");
    assert_eq!(
        again().await.expect("6").expect("removed").approvals.len(),
        2
    );
    // Broken: an error every time, never "unchanged".
    write(d, "b.yaml", &GOOD.replace("expires_at", "expires"));
    for _ in 0..2 {
        assert!(again().await.is_err());
    }
    // Two clean files with one id: each parses, the read fails, and keeps
    // failing while nothing changes (the last read was not clean).
    write(d, "b.yaml", GOOD);
    for _ in 0..2 {
        let e = again().await.expect_err("duplicate");
        assert!(e.to_string().contains("duplicate approval id"), "{e}");
    }
    // Mended: read, then unchanged again; the strict read still answers.
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-2"));
    assert_eq!(
        again().await.expect("7").expect("mended").approvals.len(),
        2
    );
    assert!(again().await.expect("8").is_none());
    assert_eq!(src.approvals().await.expect("strict").len(), 2);
    // Released (a one-shot command's pass): nothing is kept, so the next
    // read is whole, never "unchanged".
    src.release();
    assert_eq!(
        ids(again().await.expect("9").expect("released")),
        ["APR-1", "APR-2"]
    );
    assert!(again().await.expect("10").is_none());
}

#[tokio::test]
async fn a_reread_trusts_a_stamp_only_once_its_file_is_older_than_the_racy_window() {
    use std::time::{Duration, SystemTime};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let src = FilesSource::new(FilesConfig {
        name: "files".into(),
        path: d.to_path_buf(),
        max_validity_days: 365,
    });
    let age = |name: &str, t: SystemTime| {
        let f = std::fs::File::options()
            .write(true)
            .open(d.join(name))
            .expect("open");
        f.set_modified(t).expect("set mtime");
    };
    let ids = |r: ApprovalRead| r.approvals.into_iter().map(|a| a.id).collect::<Vec<_>>();
    // Written just now: an in-place rewrite of the same length within the
    // same timestamp tick is still seen (the text is compared).
    write(d, "a.yaml", GOOD);
    assert_eq!(
        ids(src.reread().await.expect("1").expect("read")),
        ["APR-1"]
    );
    write(d, "a.yaml", &GOOD.replace("APR-1", "APR-2"));
    let old = SystemTime::now() - Duration::from_secs(3600);
    // Same mtime as the file it replaced would have: only the text tells.
    age("a.yaml", SystemTime::now());
    assert_eq!(
        ids(src.reread().await.expect("2").expect("changed")),
        ["APR-2"]
    );
    // Old enough: the stamp is trusted and nothing is read. The price, as
    // for a snapshot: a rewrite keeping length, inode and mtime is missed
    // until the file changes again.
    age("a.yaml", old);
    assert!(
        src.reread().await.expect("3").is_none(),
        "a new stamp, the same text: unchanged (and the stamp kept)"
    );
    assert!(src.reread().await.expect("4").is_none());
    write(d, "a.yaml", &GOOD.replace("APR-1", "APR-3"));
    age("a.yaml", old);
    assert!(src.reread().await.expect("5").is_none(), "stamp trusted");
    // Any change to it shows: a new mtime, a new file.
    age("a.yaml", old + Duration::from_secs(1));
    assert_eq!(
        ids(src.reread().await.expect("6").expect("read")),
        ["APR-3"]
    );
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-4"));
    age("b.yaml", old);
    assert_eq!(
        src.reread()
            .await
            .expect("7")
            .expect("added")
            .approvals
            .len(),
        2
    );
    // The strict read always reads.
    assert_eq!(src.approvals().await.expect("strict").len(), 2);
}

#[tokio::test]
async fn a_one_shot_read_keeps_nothing_and_refuses_what_a_read_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", GOOD);
    write(d, "b.yaml", &GOOD.replace("APR-1", "APR-2"));
    let src = FilesSource::new(FilesConfig {
        name: "files".into(),
        path: d.to_path_buf(),
        max_validity_days: 365,
    });
    let once = src.read_once().await.expect("valid");
    let read = src.read().await.expect("valid");
    assert_eq!(once.approvals, read.approvals);
    assert_eq!(once.approvals.len(), 2);
    // What the read kept is dropped by a one-shot read: a reread reads.
    assert!(src.reread().await.expect("unchanged").is_none());
    src.read_once().await.expect("valid");
    assert!(src.reread().await.expect("read").is_some());
    write(d, "b.yaml", GOOD);
    let err = src.read_once().await.expect_err("duplicate id").to_string();
    assert!(err.contains("duplicate approval id"), "{err}");
}
