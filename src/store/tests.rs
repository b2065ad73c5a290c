use super::*;
use crate::estate::SourceState;
use crate::rules::{Action, Severity};
use nhi_contract::Provider;

fn finding(rule: &str, cred: &str) -> SourcedFinding {
    SourcedFinding {
        finding: Finding {
            rule_id: rule.into(),
            title: "t".into(),
            severity: Severity::High,
            provider: Some("aws".into()),
            identity_id: "arn:aws:iam::1:user/ci".into(),
            credential_id: Some(cred.into()),
            controls: vec!["OWASP-NHI-2025:NHI7".into()],
            evidence: serde_json::json!({}),
            recommended_action: Action::Disable,
        },
        source: "aws".into(),
        credential_kind: Some(nhi_contract::CredentialKind::AccessKey),
    }
}

fn status(state: SourceState) -> Vec<SourceStatus> {
    vec![SourceStatus {
        name: "aws".into(),
        provider: Provider::Aws,
        state,
    }]
}

async fn run(
    store: &SqliteStore,
    sources: &[SourceStatus],
    findings: &[SourcedFinding],
) -> RunSummary {
    store
        .record_run(RunRecord {
            started_at: chrono::Utc::now(),
            as_of: chrono::Utc::now(),
            command: "scan",
            sources,
            rules: &["credential-stale".to_string()],
            findings,
        })
        .await
        .expect("record run")
}

#[tokio::test]
async fn lifecycle_open_seen_resolved_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
    let complete = status(SourceState::Complete);
    let f = finding("credential-stale", "AKIA1");

    let r1 = run(&store, &complete, std::slice::from_ref(&f)).await;
    assert_eq!((r1.findings, r1.opened, r1.resolved), (1, 1, 0));
    let first = store.open_findings().await.expect("open")[0]
        .first_seen
        .clone();

    let r2 = run(&store, &complete, std::slice::from_ref(&f)).await;
    assert_eq!((r2.opened, r2.resolved), (0, 0), "still open, not new");
    let open = store.open_findings().await.expect("open");
    assert_eq!(open[0].first_seen, first, "first seen is kept");

    let r3 = run(&store, &complete, &[]).await;
    assert_eq!(r3.resolved, 1);
    assert!(store.open_findings().await.expect("open").is_empty());

    let r4 = run(&store, &complete, &[f]).await;
    assert_eq!(r4.opened, 1, "back after resolution is a new occurrence");
}

#[tokio::test]
async fn failed_or_partial_source_never_resolves_its_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
    let f = finding("credential-stale", "AKIA1");
    run(&store, &status(SourceState::Complete), &[f]).await;

    let failed = status(SourceState::Failed {
        error: "throttled".into(),
    });
    assert_eq!(run(&store, &failed, &[]).await.resolved, 0);
    let partial = status(SourceState::Partial {
        gaps: vec!["account 2: timeout".into()],
        unseen_kinds: Vec::new(),
        unseen_other: true,
    });
    assert_eq!(run(&store, &partial, &[]).await.resolved, 0);
    let blind_to_keys = status(SourceState::Partial {
        gaps: vec!["access_key: refused".into()],
        unseen_kinds: vec![nhi_contract::CredentialKind::AccessKey],
        unseen_other: false,
    });
    assert_eq!(run(&store, &blind_to_keys, &[]).await.resolved, 0);
    assert_eq!(store.open_findings().await.expect("open").len(), 1);
    // Blind only to SSH keys: an access-key finding no longer seen resolves.
    let blind_to_ssh = status(SourceState::Partial {
        gaps: vec!["ssh_key: refused".into()],
        unseen_kinds: vec![nhi_contract::CredentialKind::SshKey],
        unseen_other: false,
    });
    assert_eq!(run(&store, &blind_to_ssh, &[]).await.resolved, 1);
}

#[tokio::test]
async fn findings_of_rules_not_evaluated_stay_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
    run(
        &store,
        &status(SourceState::Complete),
        &[finding("credential-unapproved", "AKIA1")],
    )
    .await;
    // This run evaluates only credential-stale (the other rule was disabled).
    assert_eq!(
        run(&store, &status(SourceState::Complete), &[])
            .await
            .resolved,
        0
    );
}

#[tokio::test]
async fn two_keys_on_one_user_are_two_findings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("s.db"))
        .await
        .expect("open");
    let both = [
        finding("credential-stale", "AKIA1"),
        finding("credential-stale", "AKIA2"),
    ];
    run(&store, &status(SourceState::Complete), &both).await;
    let r = run(&store, &status(SourceState::Complete), &both[1..]).await;
    assert_eq!(r.resolved, 1);
    let open = store.open_findings().await.expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].finding.credential_id.as_deref(), Some("AKIA2"));
}
