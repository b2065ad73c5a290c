//! The ServiceNow source against a local server serving the documented
//! Table API shapes (tests/support, testdata/).

mod support;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use nhi_contract::{ApprovalConnector, ApprovalRead, ApprovalSource, SourceError, Timestamp};
use nhi_servicenow::{ServiceNowAuth, ServiceNowConfig, ServiceNowSource};
use serde_json::json;
use support::{Fault, Instance, Server, CLIENT_ID, PASSWORD, TOKEN, USER};

const REQ: &str = "5137153cc611227c000bbd1bd8cd2005";
const ASSIGNEE: &str = "681ccaf9c0a8016400b98a06818d57c7";
const APPROVER: &str = "46d44a23a9fe19810012d100cca80666";

const RITM_FIELDS: &str = "sys_id,number,approval,state,sys_updated_on,variables.identity_id,variables.credential_ids,variables.actions,variables.regions,variables.access_until,requested_for,assigned_to,closed_at";

fn ts(s: &str) -> Timestamp {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time");
    Utc.from_utc_datetime(&t)
}

fn env_var(name: &str, value: &str) -> String {
    // Distinct names per test: tests run in parallel threads.
    std::env::set_var(name, value);
    name.to_string()
}

/// A requested-item source on `server`, basic auth.
fn ritm_config(server: &Server, password_env: &str) -> ServiceNowConfig {
    serde_json::from_value(json!({
        "name": "snow",
        "instance_url": "https://example.service-now.com",
        "table": "sc_req_item",
        "query": "cat_item=0336c34407d0d010540bf2508c1ed096^active=true",
        "auth": {"method": "basic", "user": USER, "password_env": password_env},
        "mapping": {
            "subject": "variables.identity_id",
            "credentials": "variables.credential_ids",
            "actions": "variables.actions",
            "regions": "variables.regions",
            "expires_at": "variables.access_until"
        },
        "test_loopback": server.addr.to_string(),
        "initial_backoff_ms": 5,
        "max_retries": 2
    }))
    .expect("config")
}

/// Every record served (the test server's query filter ignores the
/// caller's own terms it does not know, so the whole table matches).
async fn serve_all() -> Server {
    let s = Server::start().await;
    for r in s
        .instance()
        .tables
        .get_mut("sc_req_item")
        .expect("table")
        .iter_mut()
    {
        r["cat_item"] = json!("0336c34407d0d010540bf2508c1ed096");
        r["active"] = json!("true");
    }
    s
}

async fn read(cfg: ServiceNowConfig) -> Result<ApprovalRead, SourceError> {
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    ServiceNowSource::new(cfg).read().await
}

fn by_ref<'a>(r: &'a ApprovalRead, number: &str) -> Option<&'a nhi_contract::Approval> {
    r.approvals
        .iter()
        .find(|a| a.reference.as_deref() == Some(number))
}

#[tokio::test]
async fn every_state_of_the_documented_examples_maps() {
    let s = serve_all().await;
    let r = read(ritm_config(&s, &env_var("SN_PW_STATES", PASSWORD)))
        .await
        .expect("read");

    // Approved and open: valid to the mapped expiry; approver from its row.
    let a = by_ref(&r, "RITM0010001").expect("RITM0010001");
    assert_eq!(a.id, "servicenow:RITM0010001");
    assert_eq!(a.source, "servicenow:RITM0010001");
    assert_eq!(a.subject, "arn:aws:iam::123456789012:user/ci-deployer");
    assert_eq!(a.scope.actions, ["s3:GetObject", "s3:ListBucket"]);
    assert_eq!(a.scope.regions, ["eu-west-1"]);
    assert!(a.credentials.is_empty());
    assert_eq!(a.requester, REQ);
    assert_eq!(a.approver, APPROVER);
    assert_eq!(a.assignee.as_deref(), Some(ASSIGNEE));
    assert_eq!(a.approved_at, ts("2026-01-05 10:00:00"));
    assert_eq!(a.expires_at, ts("2027-03-31 00:00:00"));
    assert_eq!(a.revoked_at, None);
    assert_eq!(
        a.url.as_deref(),
        Some("https://example.service-now.com/nav_to.do?uri=sc_req_item.do?sys_id=a1d5c3a1db2f0010c8d2f0f5ca9619a1")
    );

    // Approved by its own requester: kept, for the engine's rule.
    let a = by_ref(&r, "RITM0010002").expect("self-approved kept");
    assert_eq!(a.approver, a.requester);

    // Approved by its assignee.
    let a = by_ref(&r, "RITM0010003").expect("RITM0010003");
    assert_eq!(a.assignee.as_deref(), Some(a.approver.as_str()));

    // Closed complete: ends at the closing time.
    let a = by_ref(&r, "RITM0010004").expect("RITM0010004");
    assert_eq!(a.expires_at, ts("2026-02-01 16:30:00"));
    assert_eq!(a.revoked_at, None);

    // Closed cancelled: revoked at the closing time.
    let a = by_ref(&r, "RITM0010005").expect("RITM0010005");
    assert_eq!(a.revoked_at, Some(ts("2026-01-20 08:15:00")));

    // Rejected after an approval: revoked when rejected.
    let a = by_ref(&r, "RITM0010006").expect("RITM0010006");
    assert_eq!(a.approved_at, ts("2026-01-08 15:00:00"));
    assert_eq!(a.revoked_at, Some(ts("2026-01-12 12:00:00")));

    // Still awaiting approval: nothing granted, nothing unmapped.
    assert!(by_ref(&r, "RITM0010009").is_none());

    // Missing and malformed expiry: reported with the subject, not dropped.
    assert_eq!(r.unmapped.len(), 2, "{:?}", r.unmapped);
    let u = &r.unmapped[0];
    assert_eq!(u.reference, "RITM0010007");
    assert_eq!(u.problem, "variables.access_until: missing");
    assert_eq!(u.subjects, ["arn:aws:iam::123456789012:user/metrics-push"]);
    assert!(u
        .url
        .as_deref()
        .is_some_and(|l| l.ends_with("sys_id=a1d5c3a1db2f0010c8d2f0f5ca9619a7")));
    let u = &r.unmapped[1];
    assert_eq!(u.reference, "RITM0010008");
    assert!(
        u.problem.starts_with("variables.access_until: not a date"),
        "{}",
        u.problem
    );
    assert_eq!(u.subjects, ["arn:aws:iam::123456789012:user/cost-export"]);
    assert_eq!(r.approvals.len(), 6);

    // The strict read (approvals()) refuses the set, naming the record.
    let strict = ServiceNowSource::new(ritm_config(&s, "SN_PW_STATES"))
        .approvals()
        .await;
    match strict {
        Err(SourceError::Invalid { location, .. }) => assert!(location.contains("RITM0010007")),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn pages_by_offset_and_asks_for_the_mapped_fields_only() {
    let s = serve_all().await;
    let mut cfg = ritm_config(&s, &env_var("SN_PW_PAGES", PASSWORD));
    cfg.page_size = 4;
    let r = read(cfg).await.expect("read");
    assert_eq!(r.approvals.len(), 6);
    let seen = s.seen();
    let tables: Vec<_> = seen
        .iter()
        .filter(|q| q.path == "/api/now/table/sc_req_item")
        .collect();
    assert_eq!(tables.len(), 3, "9 records, 4 a page");
    for (q, offset) in tables.iter().zip(["0", "4", "8"]) {
        assert_eq!(q.method, "GET");
        assert_eq!(
            q.param("sysparm_query"),
            Some("cat_item=0336c34407d0d010540bf2508c1ed096^active=true^ORDERBYsys_id")
        );
        assert_eq!(q.param("sysparm_fields"), Some(RITM_FIELDS));
        assert_eq!(q.param("sysparm_limit"), Some("4"));
        assert_eq!(q.param("sysparm_offset"), Some(offset));
        assert_eq!(q.param("sysparm_display_value"), Some("false"));
        assert_eq!(q.param("sysparm_exclude_reference_link"), Some("true"));
    }
    let approvals: Vec<_> = seen
        .iter()
        .filter(|q| q.path == "/api/now/table/sysapproval_approver")
        .collect();
    // One query per page of records (4, 4, 1 sys_ids); the second has 5
    // rows (RITM0010006 was approved, then rejected): two pages.
    assert_eq!(approvals.len(), 4);
    let offsets: Vec<_> = approvals
        .iter()
        .map(|q| q.param("sysparm_offset"))
        .collect();
    assert_eq!(offsets, [Some("0"), Some("0"), Some("4"), Some("0")]);
    assert_eq!(
        approvals[1].param("sysparm_query"),
        approvals[2].param("sysparm_query")
    );
    assert_eq!(
        approvals[3].param("sysparm_query"),
        Some(
            "sysapprovalINa1d5c3a1db2f0010c8d2f0f5ca9619a9^stateINapproved,rejected^ORDERBYsys_id"
        )
    );
    assert!(approvals[0]
        .param("sysparm_query")
        .is_some_and(|q| q.starts_with(
            "sysapprovalINa1d5c3a1db2f0010c8d2f0f5ca9619a1,a1d5c3a1db2f0010c8d2f0f5ca9619a2,"
        )));
    assert_eq!(
        approvals[0].param("sysparm_fields"),
        Some("sysapproval,approver,state,sys_updated_on")
    );
    assert_eq!(seen.len(), 7);
    // Basic authentication on every call.
    let basic = format!(
        "Basic {}",
        support::b64(format!("{USER}:{PASSWORD}").as_bytes())
    );
    assert!(seen
        .iter()
        .all(|q| q.authorization.as_deref() == Some(basic.as_str())));
}

#[tokio::test]
async fn too_many_records_fail_the_read_rather_than_truncate() {
    let s = serve_all().await;
    let mut cfg = ritm_config(&s, &env_var("SN_PW_MAX", PASSWORD));
    cfg.page_size = 4;
    cfg.max_records = 5;
    let e = read(cfg).await.expect_err("over max_records");
    assert!(matches!(e, SourceError::Invalid { .. }), "{e}");
}

#[tokio::test]
async fn throttled_call_waits_for_retry_after() {
    let s = serve_all().await;
    s.instance().faults.push_back(Fault {
        status: 429,
        retry_after: Some("1".into()),
        body: json!({"error": {"message": "Too many requests"}, "status": "failure"}),
    });
    let started = Instant::now();
    let r = read(ritm_config(&s, &env_var("SN_PW_429", PASSWORD)))
        .await
        .expect("read after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(r.approvals.len(), 6);
    let seen = s.seen();
    assert_eq!(seen[0].param("sysparm_offset"), Some("0"));
    assert_eq!(
        seen[1].param("sysparm_offset"),
        Some("0"),
        "the same page again"
    );
}

#[tokio::test]
async fn refused_credentials_are_an_auth_error() {
    let s = serve_all().await;
    let e = read(ritm_config(&s, &env_var("SN_PW_401", "wrong")))
        .await
        .expect_err("401");
    assert!(
        matches!(e, SourceError::Auth(ref m) if m.contains("401") && m.contains("User Not Authenticated")),
        "{e}"
    );
    assert_eq!(s.seen().len(), 1, "a 401 is not retried");
    assert!(!e.to_string().contains("wrong"), "no secret in errors");
}

#[tokio::test]
async fn server_errors_are_retried_then_the_source_is_unavailable() {
    let s = serve_all().await;
    s.instance().faults.push_back(Fault {
        status: 500,
        retry_after: None,
        body: json!({"error": {"message": "Internal"}, "status": "failure"}),
    });
    let r = read(ritm_config(&s, &env_var("SN_PW_500", PASSWORD)))
        .await
        .expect("one 500 is retried");
    assert_eq!(r.approvals.len(), 6);

    let s = serve_all().await;
    s.instance().always = Some(500);
    let e = read(ritm_config(&s, "SN_PW_500"))
        .await
        .expect_err("always 500");
    assert!(matches!(e, SourceError::Unavailable(_)), "{e}");
    assert_eq!(s.seen().len(), 3, "first try and max_retries = 2");
}

#[tokio::test]
async fn oauth_client_credentials_token_is_exchanged_once() {
    let s = serve_all().await;
    let mut cfg = ritm_config(&s, "unused");
    cfg.auth = Some(ServiceNowAuth::OauthClientCredentials {
        client_id: CLIENT_ID.into(),
        client_secret_env: env_var("SN_OAUTH_SECRET", support::CLIENT_SECRET),
    });
    let r = read(cfg).await.expect("read");
    assert_eq!(r.approvals.len(), 6);
    let seen = s.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/oauth_token.do");
    assert_eq!(
        seen[0].body,
        format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={}",
            support::CLIENT_SECRET
        )
    );
    assert_eq!(
        seen.iter().filter(|q| q.path == "/oauth_token.do").count(),
        1
    );
    let bearer = format!("Bearer {TOKEN}");
    assert!(seen[1..]
        .iter()
        .all(|q| q.authorization.as_deref() == Some(bearer.as_str())));

    // A refused client: an auth error.
    let mut cfg = ritm_config(&s, "unused");
    cfg.auth = Some(ServiceNowAuth::OauthClientCredentials {
        client_id: "someone-else".into(),
        client_secret_env: "SN_OAUTH_SECRET".into(),
    });
    let e = read(cfg).await.expect_err("refused");
    assert!(
        matches!(e, SourceError::Auth(ref m) if m.starts_with("OAuth token")),
        "{e}"
    );
}

#[tokio::test]
async fn change_requests_map_from_their_own_fields() {
    let s = Server::start().await;
    let cfg: ServiceNowConfig = serde_json::from_value(json!({
        "name": "changes",
        "instance_url": "https://example.service-now.com",
        "table": "change_request",
        "query": "type=normal",
        "auth": {"method": "basic", "user": USER, "password_env": env_var("SN_PW_CHG", PASSWORD)},
        "mapping": {
            "subject": "u_identity",
            "entitlements": "u_entitlements",
            "starts_at": "start_date",
            "expires_at": "end_date",
            "requester": "requested_by"
        },
        "states": {"closed_complete": ["3"], "cancelled": ["4"]},
        "test_loopback": s.addr.to_string()
    }))
    .expect("config");
    let r = read(cfg).await.expect("read");
    assert!(r.unmapped.is_empty(), "{:?}", r.unmapped);
    let a = by_ref(&r, "CHG0030001").expect("open change");
    assert_eq!(
        a.scope.entitlements,
        ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
    );
    assert_eq!(a.starts_at, Some(ts("2026-01-20 00:00:00")));
    assert_eq!(a.expires_at, ts("2026-02-20 00:00:00"));
    assert_eq!(a.requester, REQ);
    let a = by_ref(&r, "CHG0030002").expect("closed change");
    assert_eq!(a.expires_at, ts("2026-01-25 17:00:00"));
    let q = &s.seen()[0];
    assert_eq!(q.path, "/api/now/table/change_request");
    assert_eq!(q.param("sysparm_query"), Some("type=normal^ORDERBYsys_id"));
    assert_eq!(
        q.param("sysparm_fields"),
        Some("sys_id,number,approval,state,sys_updated_on,u_identity,u_entitlements,start_date,end_date,requested_by,assigned_to,closed_at")
    );
}

#[tokio::test]
async fn an_export_dir_reads_like_the_instance() {
    // <base>/export/<table>/*.json and <base>/export/sysapproval_approver/*.json
    let dir = tempfile::tempdir().expect("dir");
    for t in ["sc_req_item", "sysapproval_approver"] {
        let to = dir.path().join("export").join(t);
        std::fs::create_dir_all(&to).expect("mkdir");
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(format!("{t}.json")),
            to.join("page-000.json"),
        )
        .expect("copy");
    }
    let cfg: ServiceNowConfig = serde_json::from_value(json!({
        "name": "snow-export",
        "instance_url": "https://example.service-now.com",
        "export_dir": "export",
        "mapping": {
            "subject": "variables.identity_id",
            "actions": "variables.actions",
            "expires_at": "variables.access_until"
        }
    }))
    .expect("config");
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let r = cfg.approvals(dir.path()).read().await.expect("read");
    assert_eq!(r.approvals.len(), 6);
    assert_eq!(r.unmapped.len(), 2);
    assert_eq!(
        by_ref(&r, "RITM0010004").map(|a| a.expires_at),
        Some(ts("2026-02-01 16:30:00"))
    );

    // A second saved page is read after the first; a file that is not a
    // Table API page fails the source (unknown, never partly read).
    let second = json!({"result": [{
        "sys_id": "e5b9a7e5bf6f0010acb6a4a9ae0d5de1", "number": "RITM0010010",
        "approval": "requested", "state": "1"
    }]});
    let pages = dir.path().join("export/sc_req_item");
    std::fs::write(pages.join("page-001.json"), second.to_string()).expect("write");
    let r = cfg.approvals(dir.path()).read().await.expect("read");
    assert_eq!((r.approvals.len(), r.unmapped.len()), (6, 2));
    std::fs::write(pages.join("page-002.json"), "{\"records\": []}").expect("write");
    match cfg.approvals(dir.path()).read().await {
        Err(SourceError::Invalid { location, .. }) => assert!(location.ends_with("page-002.json")),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn settings_are_checked_and_secrets_named() {
    let cfg: ServiceNowConfig = serde_json::from_value(json!({
        "name": "snow",
        "instance_url": "http://example.service-now.com",
        "auth": {"method": "oauth_client_credentials", "client_id": "c", "client_secret_env": "SN_SECRET"},
        "mapping": {"subject": "variables.identity_id", "expires_at": "variables.access_until"},
        "page_size": 0,
        "table": "sc_req_item; drop"
    }))
    .expect("config");
    let keys: Vec<String> = cfg
        .problems()
        .into_iter()
        .map(|p| p.key.join("."))
        .collect();
    assert_eq!(keys, ["page_size", "instance_url", "table"]);
    let vars = cfg.secret_variables();
    assert_eq!(vars.len(), 1);
    assert_eq!(vars[0].variable, "SN_SECRET");
    assert_eq!(vars[0].key, ["auth", "client_secret_env"]);
    let unknown = serde_json::from_value::<ServiceNowConfig>(json!({
        "name": "snow", "password": "x",
        "mapping": {"subject": "a", "expires_at": "b"}
    }));
    assert!(unknown.is_err(), "unknown keys refused");
}

/// Figures: requests per 1,000 records and wall time on the local server.
#[tokio::test]
async fn a_thousand_records_cost_twenty_requests() {
    let mut i = Instance::default();
    let mut records = Vec::new();
    let mut rows = Vec::new();
    for n in 0..1000 {
        let sys_id = format!("{n:032x}");
        records.push(json!({
            "sys_id": sys_id, "number": format!("RITM{:07}", 20000 + n), "approval": "approved",
            "state": "2", "sys_updated_on": "2026-01-10 09:00:00", "requested_for": REQ,
            "assigned_to": ASSIGNEE, "closed_at": "",
            "variables.identity_id": format!("arn:aws:iam::123456789012:user/bot-{n}"),
            "variables.actions": "s3:GetObject", "variables.access_until": "2027-01-01"
        }));
        rows.push(
            json!({"sys_id": format!("f{n:031x}"), "sysapproval": sys_id, "approver": APPROVER,
            "state": "approved", "sys_updated_on": "2026-01-05 10:00:00"}),
        );
    }
    i.tables.insert("sc_req_item".into(), records);
    i.tables.insert("sysapproval_approver".into(), rows);
    let s = Server::with(i).await;
    let mut cfg = ritm_config(&s, &env_var("SN_PW_1000", PASSWORD));
    cfg.query = String::new();
    let started = Instant::now();
    let r = read(cfg).await.expect("read");
    let wall = started.elapsed();
    assert_eq!(r.approvals.len(), 1000);
    assert!(r.unmapped.is_empty());
    let n = s.seen().len();
    eprintln!("servicenow: 1000 records, {n} requests, {wall:?} on loopback");
    assert_eq!(n, 20, "10 pages of records + 10 approval-row queries");
}

#[tokio::test]
async fn a_long_retry_after_is_bounded_by_max_retry_secs() {
    let s = serve_all().await;
    s.instance().faults.push_back(Fault {
        status: 429,
        retry_after: Some("3600".into()),
        body: json!({"error": {"message": "Too many requests"}, "status": "failure"}),
    });
    let mut cfg = ritm_config(&s, &env_var("SN_PW_LONG", PASSWORD));
    cfg.max_retry_secs = 1;
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), read(cfg))
        .await
        .expect("not an hour")
        .expect("read");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.approvals.len(), 6);
}

#[tokio::test]
async fn a_record_cannot_rewrite_the_approval_query_or_expire_before_it_starts() {
    let s = serve_all().await;
    {
        let mut i = s.instance();
        let t = i.tables.get_mut("sc_req_item").expect("table");
        // A sys_id carrying encoded-query syntax would widen the
        // sysapproval_approver query to other records' rows.
        t[0]["sys_id"] = json!("a1d5c3a1db2f0010c8d2f0f5ca9619a1^ORstate=requested");
        // Expires before it starts.
        t[1]["variables.access_until"] = json!("2025-01-01");
        t[1]["variables.start"] = json!("2026-01-01");
    }
    let mut cfg = ritm_config(&s, &env_var("SN_PW_INJECT", PASSWORD));
    cfg.mapping.starts_at = Some("variables.start".into());
    let r = read(cfg).await.expect("read");
    let problems: Vec<(&str, &str)> = r
        .unmapped
        .iter()
        .map(|u| (u.reference.as_str(), u.problem.as_str()))
        .collect();
    assert_eq!(
        problems[..2],
        [
            ("RITM0010001", "sys_id: malformed"),
            (
                "RITM0010002",
                "variables.access_until: 2025-01-01 00:00:00 UTC is not after the start 2026-01-01 00:00:00 UTC"
            )
        ]
    );
    assert!(s
        .seen()
        .iter()
        .filter_map(|q| q.param("sysparm_query"))
        .all(|q| !q.contains("^ORstate")));
}

#[tokio::test]
async fn an_expired_oauth_token_is_exchanged_again_once() {
    let s = serve_all().await;
    {
        let mut i = s.instance();
        // The token request passes; the first table call finds it expired.
        i.faults_after = 1;
        i.faults.push_back(Fault {
            status: 401,
            retry_after: None,
            body: support::testdata("error_401.json"),
        });
    }
    let mut cfg = ritm_config(&s, "unused");
    cfg.auth = Some(ServiceNowAuth::OauthClientCredentials {
        client_id: CLIENT_ID.into(),
        client_secret_env: env_var("SN_OAUTH_SECRET_2", support::CLIENT_SECRET),
    });
    let r = read(cfg).await.expect("read with a fresh token");
    assert_eq!(r.approvals.len(), 6);
    let paths: Vec<String> = s.seen().iter().take(4).map(|q| q.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/oauth_token.do",
            "/api/now/table/sc_req_item",
            "/oauth_token.do",
            "/api/now/table/sc_req_item"
        ]
    );
}

#[tokio::test]
async fn a_result_set_changing_while_paged_is_read_again() {
    let s = serve_all().await;
    s.instance().churn = Some("sc_req_item".into());
    let mut cfg = ritm_config(&s, &env_var("SN_PW_CHURN", PASSWORD));
    cfg.page_size = 4;
    let r = read(cfg).await.expect("read");
    // RITM0010001 left; by offset alone RITM0010005 would have been
    // skipped (it moved from the second page to the first).
    assert!(by_ref(&r, "RITM0010001").is_none());
    assert!(by_ref(&r, "RITM0010005").is_some(), "no record skipped");
    let offsets: Vec<_> = s
        .seen()
        .iter()
        .filter(|q| q.path == "/api/now/table/sc_req_item")
        .map(|q| q.param("sysparm_offset").map(str::to_string))
        .collect();
    let o = |v: &str| Some(v.to_string());
    assert_eq!(offsets, [o("0"), o("4"), o("0"), o("4")]);
}

#[tokio::test]
async fn forbidden_is_an_auth_error_too() {
    let s = serve_all().await;
    s.instance().faults.push_back(Fault {
        status: 403,
        retry_after: None,
        body: json!({"error": {"message": "Insufficient rights to query records", "detail": "Field(s) present in the query do not have permission to be read"}, "status": "failure"}),
    });
    let e = read(ritm_config(&s, &env_var("SN_PW_403", PASSWORD)))
        .await
        .expect_err("403");
    assert!(
        matches!(e, SourceError::Auth(ref m) if m.contains("403")),
        "{e}"
    );
}

#[tokio::test]
async fn an_unreadable_subject_field_leaves_the_subjects_unknown() {
    let s = serve_all().await;
    s.instance().tables.get_mut("sc_req_item").expect("table")[0]["variables.identity_id"] =
        json!(["not", "text"]);
    let r = read(ritm_config(&s, &env_var("SN_PW_SUBJ", PASSWORD)))
        .await
        .expect("read");
    let u = r
        .unmapped
        .iter()
        .find(|u| u.reference == "RITM0010001")
        .expect("unmapped");
    assert_eq!(u.problem, "variables.identity_id: not a text value");
    assert!(u.subjects.is_empty(), "unknown: every subject is held");
    assert_eq!(r.approvals.len(), 5);
}

/// A Kubernetes ConfigMap mount is made of symbolic links: they are read
/// when they stay inside the export directory, refused when they lead out.
#[cfg(unix)]
#[tokio::test]
async fn an_export_of_symbolic_links_is_read_inside_and_refused_outside() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("export/..data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for t in ["sc_req_item", "sysapproval_approver"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(format!("{t}.json")),
            data.join(format!("{t}.json")),
        )
        .expect("copy");
        let table = dir.path().join("export").join(t);
        std::fs::create_dir_all(&table).expect("mkdir");
        std::os::unix::fs::symlink(data.join(format!("{t}.json")), table.join("page-000.json"))
            .expect("link");
    }
    let cfg: ServiceNowConfig = serde_json::from_value(json!({
        "name": "snow-export",
        "export_dir": "export",
        "mapping": {
            "subject": "variables.identity_id",
            "actions": "variables.actions",
            "expires_at": "variables.access_until"
        }
    }))
    .expect("config");
    let r = cfg.approvals(dir.path()).read().await.expect("read");
    assert_eq!((r.approvals.len(), r.unmapped.len()), (6, 2));

    let outside = tempfile::tempdir().expect("dir");
    std::fs::write(outside.path().join("p.json"), r#"{"result": []}"#).expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("p.json"),
        dir.path().join("export/sc_req_item/page-001.json"),
    )
    .expect("link");
    match cfg.approvals(dir.path()).read().await {
        Err(SourceError::Invalid { location, message }) => {
            assert!(location.ends_with("page-001.json"), "{location}");
            assert!(message.contains("outside"), "{message}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn a_closed_record_without_closed_at_ends_at_its_last_update() {
    let s = serve_all().await;
    {
        let mut i = s.instance();
        let t = i.tables.get_mut("sc_req_item").expect("table");
        t[3]["closed_at"] = json!("");
        t[4]["closed_at"] = json!("");
    }
    let r = read(ritm_config(&s, &env_var("SN_PW_CLOSED", PASSWORD)))
        .await
        .expect("read");
    // Closed no later than its last update: access ends then, never later.
    let done = by_ref(&r, "RITM0010004").expect("closed complete");
    assert_eq!(done.expires_at, ts("2026-01-10 09:00:00"));
    let cancelled = by_ref(&r, "RITM0010005").expect("cancelled");
    assert_eq!(cancelled.revoked_at, Some(ts("2026-01-10 09:00:00")));
}
