//! Just-in-time sessions on moto: what is sent to STS (moto answers
//! AssumeRole but enforces neither the session policy, nor the source
//! identity, nor the tags, nor the role's trust: those are asserted on the
//! request the fixture's proxy recorded), what comes back, and refusals
//! that send nothing.

use chrono::{Duration, Utc};
use nhi_aws::moto::Moto;
use nhi_aws::{AwsConfig, AwsIssuer, IssueError};
use nhi_contract::{Approval, Scope};

fn approval(moto: &Moto, hours_left: i64) -> Approval {
    let now = Utc::now();
    Approval {
        id: "APR-42".into(),
        subject: moto.role("deployer"),
        credentials: vec![],
        scope: Scope {
            actions: vec!["s3:GetObject".into()],
            regions: vec!["eu-west-1".into()],
            ..Scope::default()
        },
        requester: "alice@example.com".into(),
        approver: "bob@example.com".into(),
        assignee: None,
        approved_at: now - Duration::hours(1),
        starts_at: None,
        expires_at: now + Duration::hours(hours_left),
        revoked_at: None,
        reference: Some("CHG-42".into()),
        emergency: None,
        source: "test".into(),
        url: None,
        role: Some(moto.role("deployer")),
        issue_to: None,
    }
}

async fn issuer(moto: &Moto, cap: i64) -> AwsIssuer {
    let mut cfg = AwsConfig::named("aws-test");
    cfg.max_attempts = 2;
    cfg.initial_backoff_ms = 10;
    cfg.max_session_seconds = cap;
    let sdk = Moto::sdk_config(&moto.ready.proxy).await;
    AwsIssuer::with_sdk_config(&cfg, &sdk)
}

fn param<'a>(req: &'a std::collections::BTreeMap<String, Vec<String>>, k: &str) -> &'a str {
    req.get(k)
        .and_then(|v| v.first())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("request has no {k}: {req:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_is_scoped_named_and_capped_by_the_approval() {
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let a = approval(&moto, 10);
    let issued = issuer(&moto, 7200)
        .await
        .issue(&a, Utc::now())
        .await
        .expect("issued");

    // moto's roles have the default MaxSessionDuration (3600), read by
    // GetRole: it wins over the 7200 s cap and the 10 h left.
    assert_eq!(issued.request.duration_seconds, 3600);
    let left = (issued.expiration - Utc::now()).num_seconds();
    assert!((3500..=3600).contains(&left), "expiration {left} s away");
    assert!(
        issued.access_key_id.starts_with("ASIA"),
        "{}",
        issued.access_key_id
    );
    assert!(!issued.secret_access_key.is_empty() && !issued.session_token.is_empty());
    assert_eq!(
        issued.assumed_role_arn,
        format!(
            "arn:aws:sts::{}:assumed-role/deployer/{}",
            moto.ready.account, issued.request.session_name
        )
    );

    let reqs = moto.assume_role_requests().expect("requests");
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let r = &reqs[0];
    assert_eq!(param(r, "RoleArn"), moto.role("deployer"));
    assert_eq!(param(r, "SourceIdentity"), "APR-42");
    assert!(param(r, "RoleSessionName").starts_with("APR-42."));
    assert_eq!(param(r, "DurationSeconds"), "3600");
    let policy: serde_json::Value = serde_json::from_str(param(r, "Policy")).expect("policy");
    assert_eq!(
        policy["Statement"],
        serde_json::json!([{
            "Sid": "Approved", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": ["eu-west-1"]}}
        }])
    );
    assert_eq!(param(r, "Tags.member.1.Key"), "nhi-assure:approval");
    assert_eq!(param(r, "Tags.member.1.Value"), "APR-42");
    assert_eq!(param(r, "Tags.member.2.Key"), "nhi-assure:requester");
    assert_eq!(param(r, "Tags.member.2.Value"), "alice@example.com");
    // The secret is in the answer only, never in anything sent.
    assert!(!format!("{reqs:?}").contains(&issued.secret_access_key));
    assert!(!format!("{issued:?}").contains(&issued.secret_access_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_ending_soon_shortens_the_session_and_refusals_send_nothing() {
    let moto = Moto::start("smoke", &[]).expect("fixture");
    let iss = issuer(&moto, 3600).await;

    // 20 minutes left: the session lasts them, not the hour.
    let mut a = approval(&moto, 1);
    a.expires_at = Utc::now() + Duration::minutes(20);
    let s = iss.issue(&a, Utc::now()).await.expect("issued");
    assert!(
        (1190..=1200).contains(&s.request.duration_seconds),
        "{}",
        s.request.duration_seconds
    );

    let before = moto.assume_role_requests().expect("requests").len();
    let mut expired = approval(&moto, 1);
    expired.expires_at = Utc::now() - Duration::minutes(1);
    let mut revoked = approval(&moto, 5);
    revoked.revoked_at = Some(Utc::now() - Duration::minutes(5));
    let mut short = approval(&moto, 1);
    short.expires_at = Utc::now() + Duration::minutes(10);
    let mut roleless = approval(&moto, 5);
    roleless.role = None;
    for (a, want) in [
        (expired, "expired"),
        (revoked, "revoked"),
        (short, "minimum session"),
        (roleless, "no IAM role"),
    ] {
        match iss.issue(&a, Utc::now()).await {
            Err(IssueError::Refused { reason, .. }) => assert!(reason.contains(want), "{reason}"),
            other => panic!("{want}: {other:?}"),
        }
    }
    assert_eq!(moto.assume_role_requests().expect("requests").len(), before);

    // STS refusing (the role's trust no longer admits the broker) is an
    // error, not a panic.
    moto.refuse_role(&moto.role("deployer"), true)
        .expect("refuse");
    match iss.issue(&approval(&moto, 5), Utc::now()).await {
        Err(IssueError::Provider(e)) => assert!(e.to_string().contains("AccessDenied"), "{e}"),
        other => panic!("{other:?}"),
    }
}
