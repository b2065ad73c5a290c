//! The Jira source against a local Jira serving the documented shapes.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nhi_contract::{ApprovalConnector, ApprovalSource, SourceError, Unmapped};
use nhi_jira::JiraSource;
use serde_json::{json, Value};
use support::*;

const JQL: &str = "project = ACC AND issuetype = \"Machine access\"";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn testdata(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The documented search example's issue, re-keyed.
fn documented(key: &str) -> Value {
    let mut i = testdata("search-jql.json")["issues"][0].clone();
    i["key"] = json!(key);
    i
}

const FIELDS: &str = "status,reporter,assignee,resolutiondate,updated,customfield_10040,customfield_10042,customfield_10041,customfield_10044,labels,customfield_10043";

#[tokio::test]
async fn every_page_is_read_asking_only_the_mapped_fields() {
    let issues = (1..=5).map(|n| documented(&format!("ACC-{n}"))).collect();
    let server = Server::start(Jira {
        issues,
        ..Jira::default()
    })
    .await;
    let mut config = server.config(JQL);
    config.page_size = 2;
    let source = JiraSource::new(config);
    let read = source.read().await.expect("read");

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "{seen:#?}");
    let tokens: Vec<Option<&str>> = seen.iter().map(|s| s.param("nextPageToken")).collect();
    assert_eq!(tokens, [None, Some("tok-2"), Some("tok-4")]);
    for s in &seen {
        assert_eq!(s.path, "/rest/api/3/search/jql");
        assert_eq!(s.param("jql"), Some(JQL));
        assert_eq!(s.param("fields"), Some(FIELDS));
        assert_eq!(s.param("maxResults"), Some("2"));
        assert_eq!(s.param("expand"), Some("changelog"));
    }
    assert_eq!(source.calls(), 3);

    assert_eq!(read.unmapped, []);
    assert_eq!(read.approvals.len(), 5);
    let a = &read.approvals[0];
    assert_eq!(a.id, "jira:ACC-1");
    assert_eq!(a.subject, "arn:aws:iam::123456789012:user/ci-deployer");
    assert_eq!(a.credentials, ["AKIAEXAMPLEKEY000001"]);
    assert_eq!(
        a.scope.actions,
        ["s3:GetObject", "s3:PutObject", "sqs:SendMessage"]
    );
    // The approver is the author of the move into "Approved", not the reporter.
    assert_eq!(a.requester, "5b10a2844c20165700ede21g");
    assert_eq!(a.approver, "5b109f2e9729b51b54dc274d");
    assert_eq!(a.assignee.as_deref(), Some("5b10ac8d82e05b22cc7d4ef5"));
    assert_eq!(a.approved_at, at("2026-11-02T09:15:00Z"));
    assert_eq!(a.starts_at, None);
    // A date-picker expiry includes its day.
    assert_eq!(a.expires_at, at("2027-04-01T00:00:00Z"));
    assert_eq!(a.revoked_at, None);
    assert_eq!(a.reference.as_deref(), Some("ACC-1"));
    assert_eq!(a.source, "jira:ACC-1");
    assert_eq!(
        a.url.as_deref(),
        Some("https://example.atlassian.net/browse/ACC-1")
    );
    let keys: Vec<&str> = read
        .approvals
        .iter()
        .filter_map(|a| a.reference.as_deref())
        .collect();
    assert_eq!(keys, ["ACC-1", "ACC-2", "ACC-3", "ACC-4", "ACC-5"]);
}

#[tokio::test]
async fn a_changelog_longer_than_the_search_embeds_is_read_to_the_end() {
    // Approved, reopened, re-approved by someone else: the last approval
    // counts, and it is beyond what the search embeds.
    let mut h = approved_by("boss");
    h.push(moved(
        3,
        "dev",
        "2026-11-03T08:00:00.000+0000",
        "Approved",
        "Waiting for approval",
    ));
    h.push(moved(
        4,
        "ciso",
        "2026-11-04T08:00:00.000+0000",
        "Waiting for approval",
        "Approved",
    ));
    let server = Server::start(Jira {
        issues: vec![issue("ACC-1", "Approved", "dev", None, json!({}), h)],
        embed_histories: Some(2),
        ..Jira::default()
    })
    .await;
    let read = JiraSource::new(server.config(JQL))
        .read()
        .await
        .expect("read");
    assert_eq!(read.unmapped, []);
    assert_eq!(read.approvals[0].approver, "ciso");
    assert_eq!(read.approvals[0].approved_at, at("2026-11-04T08:00:00Z"));
    let seen = server.seen();
    let pages: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|s| (s.path.as_str(), s.param("startAt")))
        .collect();
    assert_eq!(
        pages,
        [
            ("/rest/api/3/search/jql", None),
            ("/rest/api/3/issue/ACC-1/changelog", Some("0")),
            ("/rest/api/3/issue/ACC-1/changelog", Some("2")),
        ]
    );
}

#[tokio::test]
async fn the_token_goes_as_basic_or_bearer_as_configured() {
    let server = Server::start(Jira {
        issues: vec![documented("ACC-1")],
        ..Jira::default()
    })
    .await;
    let basic = server.config(JQL);
    let mut oauth = server.config(JQL);
    oauth.auth = Some(Box::new(nhi_jira::JiraAuth::Oauth {
        token_env: TOKEN_ENV.into(),
    }));
    for config in [basic, oauth] {
        let read = JiraSource::new(config).read().await.expect("read");
        assert_eq!(read.approvals.len(), 1);
    }
    let auth: Vec<Option<String>> = server.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(
        auth,
        [
            // base64("integration@example.com:test-token-not-secret")
            Some("Basic aW50ZWdyYXRpb25AZXhhbXBsZS5jb206dGVzdC10b2tlbi1ub3Qtc2VjcmV0".to_string()),
            Some(format!("Bearer {TOKEN}")),
        ]
    );
}

#[tokio::test]
async fn an_unset_token_variable_is_an_auth_error_before_any_request() {
    let server = Server::start(Jira::default()).await;
    let mut config = server.config(JQL);
    config.auth = Some(Box::new(nhi_jira::JiraAuth::Oauth {
        token_env: "NHI_TEST_JIRA_UNSET_VARIABLE".into(),
    }));
    let err = JiraSource::new(config).read().await.unwrap_err();
    assert!(matches!(err, SourceError::Auth(_)), "{err:?}");
    assert!(
        err.to_string().contains("NHI_TEST_JIRA_UNSET_VARIABLE"),
        "{err}"
    );
    assert_eq!(server.seen().len(), 0);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let server = Server::start(Jira {
        issues: vec![documented("ACC-1")],
        faults: vec![Fault {
            status: 429,
            retry_after: Some("1".into()),
        }],
        ..Jira::default()
    })
    .await;
    let source = JiraSource::new(server.config(JQL));
    let t = Instant::now();
    let read = source.read().await.expect("read after the 429");
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(read.approvals.len(), 1);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_bound_waits_only_the_bound() {
    let server = Server::start(Jira {
        issues: vec![documented("ACC-1")],
        faults: vec![Fault {
            status: 429,
            retry_after: Some("3600".into()),
        }],
        ..Jira::default()
    })
    .await;
    let mut config = server.config(JQL);
    config.max_retry_secs = 1;
    let t = Instant::now();
    let read = JiraSource::new(config).read().await.expect("read");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(read.approvals.len(), 1);
}

#[tokio::test]
async fn a_401_is_an_auth_error_not_an_empty_set() {
    let server = Server::start(Jira {
        issues: vec![documented("ACC-1")],
        faults: vec![Fault {
            status: 401,
            retry_after: None,
        }],
        ..Jira::default()
    })
    .await;
    let err = JiraSource::new(server.config(JQL))
        .read()
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
    // Not retried: the credentials will not get better.
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_500_is_retried_and_persistent_ones_make_the_source_unavailable() {
    let fault = Fault {
        status: 500,
        retry_after: None,
    };
    let server = Server::start(Jira {
        issues: vec![documented("ACC-1")],
        faults: vec![fault.clone()],
        ..Jira::default()
    })
    .await;
    let read = JiraSource::new(server.config(JQL))
        .read()
        .await
        .expect("read");
    assert_eq!(read.approvals.len(), 1);
    assert_eq!(server.seen().len(), 2);

    let server = Server::start(Jira {
        issues: vec![documented("ACC-1")],
        faults: vec![fault; 10],
        ..Jira::default()
    })
    .await;
    let mut config = server.config(JQL);
    config.max_retries = 2;
    let err = JiraSource::new(config).read().await.unwrap_err();
    assert!(matches!(err, SourceError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_ticket_with_a_missing_or_malformed_field_is_unmapped_and_the_others_still_read() {
    let ok = issue(
        "ACC-1",
        "Approved",
        "req",
        None,
        json!({}),
        approved_by("boss"),
    );
    let missing = issue(
        "ACC-2",
        "Approved",
        "req",
        None,
        json!({"customfield_10042": null}),
        approved_by("boss"),
    );
    let malformed = issue(
        "ACC-3",
        "Approved",
        "req",
        None,
        json!({"customfield_10042": "next tuesday", "customfield_10040": ["role/a", "role/b"]}),
        approved_by("boss"),
    );
    let no_subject = issue(
        "ACC-4",
        "Approved",
        "req",
        None,
        json!({"customfield_10040": 42}),
        approved_by("boss"),
    );
    let too_long = issue(
        "ACC-5",
        "Approved",
        "req",
        None,
        json!({"customfield_10042": "2099-12-31"}),
        approved_by("boss"),
    );
    let server = Server::start(Jira {
        issues: vec![ok, missing, malformed, no_subject, too_long],
        ..Jira::default()
    })
    .await;
    let read = JiraSource::new(server.config(JQL))
        .read()
        .await
        .expect("read");
    assert_eq!(read.approvals.len(), 1);
    assert_eq!(read.approvals[0].id, "jira:ACC-1");
    let url = |k: &str| Some(format!("https://example.atlassian.net/browse/{k}"));
    assert_eq!(
        read.unmapped,
        [
            Unmapped {
                reference: "ACC-2".into(),
                url: url("ACC-2"),
                subjects: vec!["arn:aws:iam::123456789012:user/ci".into()],
                problem: "customfield_10042: missing (no expiry)".into(),
            },
            Unmapped {
                reference: "ACC-3".into(),
                url: url("ACC-3"),
                subjects: vec!["role/a".into(), "role/b".into()],
                problem: "customfield_10042: \"next tuesday\" is not a date".into(),
            },
            Unmapped {
                reference: "ACC-4".into(),
                url: url("ACC-4"),
                subjects: vec![],
                problem: "customfield_10040: 42 is not a list of ids".into(),
            },
            Unmapped {
                reference: "ACC-5".into(),
                url: url("ACC-5"),
                subjects: vec!["arn:aws:iam::123456789012:user/ci".into()],
                problem: "customfield_10042: expiry 2100-01-01 00:00:00 UTC is more than \
                          max_validity_days = 365 after the approval (2026-11-02 09:15:00 UTC)"
                    .into(),
            },
        ]
    );
}

#[tokio::test]
async fn ticket_states_become_approval_states() {
    let self_approved = issue(
        "ACC-1",
        "Approved",
        "dev",
        None,
        json!({}),
        approved_by("dev"),
    );
    let approver_assigned = issue("ACC-2", "In Progress", "dev", Some("boss"), json!({}), {
        let mut h = approved_by("boss");
        // Starting work (Approved → In Progress) is not an approval.
        h.push(moved(
            3,
            "boss",
            "2026-11-03T10:00:00.000+0000",
            "Approved",
            "In Progress",
        ));
        h
    });
    let mut done_h = approved_by("boss");
    done_h.push(moved(
        3,
        "ops",
        "2026-11-05T12:00:00.000+0000",
        "Approved",
        "Done",
    ));
    let done = issue(
        "ACC-3",
        "Done",
        "dev",
        Some("ops"),
        json!({"resolutiondate": "2026-11-05T12:00:00.000+0000"}),
        done_h,
    );
    let mut cancelled_h = approved_by("boss");
    cancelled_h.push(moved(
        3,
        "dev",
        "2026-11-04T07:30:00.000+0000",
        "Approved",
        "Canceled",
    ));
    let cancelled = issue("ACC-4", "Canceled", "dev", None, json!({}), cancelled_h);
    let never_approved = issue(
        "ACC-5",
        "Declined",
        "dev",
        None,
        json!({}),
        vec![moved(
            1,
            "boss",
            "2026-11-02T09:00:00.000+0000",
            "Waiting for approval",
            "Declined",
        )],
    );
    let waiting = issue(
        "ACC-6",
        "Waiting for approval",
        "dev",
        None,
        json!({}),
        vec![moved(
            1,
            "dev",
            "2026-11-01T08:00:00.000+0000",
            "Open",
            "Waiting for approval",
        )],
    );
    let mut reopened_h = approved_by("boss");
    reopened_h.push(moved(
        3,
        "dev",
        "2026-11-03T08:00:00.000+0000",
        "Approved",
        "Waiting for approval",
    ));
    let reopened = issue(
        "ACC-7",
        "Waiting for approval",
        "dev",
        None,
        json!({}),
        reopened_h,
    );
    let server = Server::start(Jira {
        issues: vec![
            reopened,
            self_approved,
            approver_assigned,
            done,
            cancelled,
            never_approved,
            waiting,
        ],
        ..Jira::default()
    })
    .await;
    let read = JiraSource::new(server.config(JQL))
        .read()
        .await
        .expect("read");
    assert_eq!(read.unmapped, []);
    let by_key = |k: &str| {
        read.approvals
            .iter()
            .find(|a| a.reference.as_deref() == Some(k))
            .unwrap_or_else(|| panic!("no approval from {k}: {:#?}", read.approvals))
    };
    // Kept as read, so the engine's approval-self-approved rule fires on it.
    let a = by_key("ACC-1");
    assert_eq!((a.requester.as_str(), a.approver.as_str()), ("dev", "dev"));

    let a = by_key("ACC-2");
    assert_eq!(a.approver, "boss");
    assert_eq!(a.assignee.as_deref(), Some("boss"));
    assert_eq!(a.approved_at, at("2026-11-02T09:15:00Z"));

    let a = by_key("ACC-3");
    assert_eq!(
        a.expires_at,
        at("2026-11-05T12:00:00Z"),
        "ended at resolution"
    );
    assert_eq!(a.revoked_at, None);

    let a = by_key("ACC-4");
    assert_eq!(a.revoked_at, Some(at("2026-11-04T07:30:00Z")));
    assert_eq!(a.approver, "boss");

    // Declined before any approval, still waiting, or sent back to
    // approval after it: nothing approved now.
    assert_eq!(read.approvals.len(), 4, "{:#?}", read.approvals);
}

#[tokio::test]
async fn jsm_approvals_give_the_approver_and_the_decision() {
    let mut jsm_issue = documented("ACC-1");
    // The changelog would say Ravi; the JSM record says Fred.
    jsm_issue.as_object_mut().map(|o| o.remove("changelog"));
    let unrecorded = issue("ACC-2", "Approved", "dev", None, json!({}), vec![]);
    let approvals = testdata("jsm-approvals.json")["values"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cancelled = issue(
        "ACC-3",
        "Canceled",
        "dev",
        None,
        json!({}),
        vec![moved(
            1,
            "dev",
            "2026-11-07T11:00:00.000+0000",
            "Approved",
            "Canceled",
        )],
    );
    let server = Server::start(Jira {
        issues: vec![jsm_issue, unrecorded, cancelled],
        approvals: [
            ("ACC-1".to_string(), approvals.clone()),
            ("ACC-3".to_string(), approvals),
        ]
        .into(),
        ..Jira::default()
    })
    .await;
    let mut config = server.config(JQL);
    config.use_jsm_approvals = true;
    let read = JiraSource::new(config).read().await.expect("read");
    let seen = server.seen();
    let mut paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    // The per-ticket calls run concurrently: their order is not fixed.
    paths[1..].sort_unstable();
    assert_eq!(
        paths,
        [
            "/rest/api/3/search/jql",
            "/rest/servicedeskapi/request/ACC-1/approval",
            "/rest/servicedeskapi/request/ACC-2/approval",
            "/rest/servicedeskapi/request/ACC-3/approval",
        ]
    );
    // The changelog still dates cancellations.
    assert_eq!(seen[0].param("expand"), Some("changelog"));
    assert_eq!(read.approvals.len(), 2);
    let a = &read.approvals[0];
    assert_eq!(
        a.approver,
        "qm:a713c8ea-1075-4e30-9d96-891a7d181739:5ad6d3581db05e2a66fa80b"
    );
    assert_eq!(a.approved_at, at("2026-11-06T10:00:00Z"));
    assert_eq!(a.revoked_at, None);
    // Revoked when the changelog says it was cancelled.
    assert_eq!(read.approvals[1].reference.as_deref(), Some("ACC-3"));
    assert_eq!(
        read.approvals[1].revoked_at,
        Some(at("2026-11-07T11:00:00Z"))
    );
    assert_eq!(read.unmapped.len(), 1);
    assert_eq!(read.unmapped[0].reference, "ACC-2");
    assert_eq!(
        read.unmapped[0].problem,
        "JSM approval: no approved decision recorded, yet status is \"Approved\""
    );
}

#[tokio::test]
async fn an_offline_export_reads_like_the_server() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("export");
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    let write = |p: &Path, v: &Value| {
        std::fs::write(p, serde_json::to_vec_pretty(v).expect("json")).expect("write")
    };
    let mut page1 = testdata("search-jql.json");
    page1["issues"][0]["key"] = json!("ACC-1");
    let mut d = documented("ACC-2");
    d["fields"]["customfield_10042"] = json!("soon");
    let page2 = json!({"issues": [d], "isLast": true});
    write(&dir.join("search-001.json"), &page1);
    write(&dir.join("search-002.json"), &page2);
    write(
        &dir.join("approvals/ACC-1.json"),
        &testdata("jsm-approvals.json"),
    );

    let config: nhi_jira::JiraConfig = serde_json::from_value(json!({
        "name": "tickets",
        "base_url": "https://example.atlassian.net",
        "export_dir": "export",
        "fields": {"subjects": "customfield_10040", "expires_at": "customfield_10042"},
    }))
    .expect("config");
    assert_eq!(config.problems(), []);
    assert_eq!(config.secret_variables(), []);
    // `export_dir` is relative to the config file's directory.
    let read = config.approvals(base.path()).read().await.expect("read");

    assert_eq!(read.approvals.len(), 1);
    assert_eq!(read.approvals[0].approver, "5b109f2e9729b51b54dc274d");
    assert_eq!(read.unmapped.len(), 1);
    assert_eq!(
        read.unmapped[0].problem,
        "customfield_10042: \"soon\" is not a date"
    );
}

#[tokio::test]
async fn the_config_names_its_secret_and_checks_its_ranges() {
    let server = Server::start(Jira::default()).await;
    let mut c = server.config(JQL);
    assert_eq!(c.problems(), []);
    let vars = c.secret_variables();
    assert_eq!(vars.len(), 1);
    assert_eq!(vars[0].variable, TOKEN_ENV);
    c.base_url = "http://example.atlassian.net".into();
    c.page_size = 0;
    c.fields.subjects = "customfield_1, labels".into();
    c.test_loopback = Some("10.0.0.1:80".into());
    let keys: Vec<String> = c.problems().iter().map(|p| p.key.join(".")).collect();
    assert_eq!(
        keys,
        ["base_url", "test_loopback", "fields.subjects", "page_size"]
    );
}

#[tokio::test]
async fn a_response_larger_than_the_bound_fails_the_read() {
    let server = Server::start(Jira {
        issues: vec![documented("ACC-1"), documented("ACC-2")],
        ..Jira::default()
    })
    .await;
    let mut config = server.config(JQL);
    config.max_response_bytes = 2048;
    let err = JiraSource::new(config).read().await.unwrap_err();
    assert!(matches!(err, SourceError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than 2048 bytes"), "{err}");
}

#[tokio::test]
async fn more_tickets_than_the_bound_fail_the_read() {
    let issues = (1..=5).map(|n| documented(&format!("ACC-{n}"))).collect();
    let server = Server::start(Jira {
        issues,
        ..Jira::default()
    })
    .await;
    let mut config = server.config(JQL);
    config.max_tickets = 4;
    config.page_size = 2;
    let err = JiraSource::new(config).read().await.unwrap_err();
    assert!(matches!(err, SourceError::Invalid { .. }), "{err:?}");
}

/// Requests and wall time per 1,000 tickets (printed; run with
/// `--nocapture` to see the figures).
#[tokio::test]
async fn a_thousand_tickets_take_ten_requests() {
    let issues = (1..=1000)
        .map(|n| {
            issue(
                &format!("ACC-{n}"),
                "Approved",
                "dev",
                Some("ops"),
                json!({"customfield_10040": [format!("arn:aws:iam::123456789012:user/svc-{n}")]}),
                approved_by("boss"),
            )
        })
        .collect();
    let server = Server::start(Jira {
        issues,
        ..Jira::default()
    })
    .await;
    let source = JiraSource::new(server.config(JQL));
    let t = Instant::now();
    let read = source.read().await.expect("read");
    let changelog_wall = t.elapsed();
    assert_eq!(read.approvals.len(), 1000);
    assert_eq!(source.calls(), 10);

    let mut config = server.config(JQL);
    config.use_jsm_approvals = true;
    let source = JiraSource::new(config);
    let t = Instant::now();
    let read = source.read().await.expect("read");
    let jsm_wall = t.elapsed();
    // No JSM approval records on these: each is unmapped, not dropped.
    assert_eq!(read.unmapped.len(), 1000);
    assert_eq!(source.calls(), 1010);
    println!(
        "1000 tickets: changelog mode 10 requests in {changelog_wall:?}; JSM mode 1010 requests in {jsm_wall:?}"
    );
}
