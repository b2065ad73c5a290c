//! The store on both backends: the same scenarios on a SQLite file and on a
//! real PostgreSQL server (started by `support/pg.rs`): findings lifecycle,
//! the journal's fencing, and the leader lease.

#[path = "support/demo.rs"]
mod demo_copy;
#[path = "support/pg.rs"]
mod pg;

use std::collections::BTreeSet;
use std::time::Duration;

use nhi_assure::engine::estate::{SourceState, SourceStatus};
use nhi_assure::engine::facets::Facets;
use nhi_assure::engine::findings::Finding;
use nhi_assure::engine::rules::{Action, Severity};
use nhi_assure::store::audit::Verdict;
use nhi_assure::store::lease::{Fence, Leadership, LeaseState, LEADER};
use nhi_assure::store::{RunRecord, RunSummary, SourcedFinding, SqlStore, Store, StoreError};
use nhi_contract::{CredentialKind, Provider};

fn finding(rule: &str, cred: &str) -> SourcedFinding {
    SourcedFinding {
        finding: Finding {
            rule_id: rule.into(),
            title: "t".into(),
            severity: Severity::High,
            provider: Some("aws".into()),
            identity_id: "arn:aws:iam::1:user/ci".into(),
            credential_id: Some(cred.into()),
            controls: ["OWASP-NHI-2025:NHI7".into()].into(),
            evidence: serde_json::json!({}).into(),
            recommended_action: Action::Disable,
            exception: None,
        },
        source: "aws".into(),
        credential_kind: Some(nhi_contract::CredentialKind::AccessKey),
        depends: Facets::USAGE
            .with(Facets::credential_kind(
                nhi_contract::CredentialKind::AccessKey,
            ))
            .with(Facets::identity_kind(nhi_contract::IdentityKind::User)),
    }
}

fn status(state: SourceState) -> Vec<SourceStatus> {
    vec![SourceStatus {
        name: "aws".into(),
        provider: Provider::Aws,
        state,
    }]
}

/// Record a run evaluating `credential-stale`, with a reading or not, full
/// or targeted at `scope`.
async fn record_with(
    store: &SqlStore,
    sources: &[SourceStatus],
    findings: &[SourcedFinding],
    reading: Option<nhi_assure::store::runs::Reading<'_>>,
    scope: Option<&[String]>,
) -> RunSummary {
    store
        .record_run(RunRecord {
            started_at: chrono::Utc::now(),
            as_of: chrono::Utc::now(),
            command: if scope.is_some() {
                "daemon-targeted"
            } else {
                "scan"
            },
            sources,
            rules: &["credential-stale".to_string()],
            findings,
            held: &Default::default(),
            reading,
            scope,
        })
        .await
        .expect("record run")
}

async fn run(
    store: &SqlStore,
    sources: &[SourceStatus],
    findings: &[SourcedFinding],
) -> RunSummary {
    record_with(store, sources, findings, None, None).await
}

async fn lifecycle_open_seen_resolved_reopened(store: SqlStore) {
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

async fn failed_or_partial_source_never_resolves_its_findings(store: SqlStore) {
    let f = finding("credential-stale", "AKIA1");
    run(&store, &status(SourceState::Complete), &[f]).await;

    let failed = status(SourceState::Failed {
        error: "throttled".into(),
    });
    assert_eq!(run(&store, &failed, &[]).await.resolved, 0);
    let partial = status(SourceState::Partial {
        gaps: vec!["account 2: timeout".into()],
        blinds: Facets::WHOLE_SOURCE,
    });
    assert_eq!(run(&store, &partial, &[]).await.resolved, 0);
    let blind_to_keys = status(SourceState::Partial {
        gaps: vec!["access_key: refused".into()],
        blinds: Facets::credential_kind(nhi_contract::CredentialKind::AccessKey),
    });
    assert_eq!(run(&store, &blind_to_keys, &[]).await.resolved, 0);
    assert_eq!(store.open_findings().await.expect("open").len(), 1);
    // Blind only to SSH keys: an access-key finding no longer seen resolves.
    let blind_to_ssh = status(SourceState::Partial {
        gaps: vec!["ssh_key: refused".into()],
        blinds: Facets::credential_kind(nhi_contract::CredentialKind::SshKey),
    });
    assert_eq!(run(&store, &blind_to_ssh, &[]).await.resolved, 1);
}

async fn findings_of_rules_not_evaluated_stay_open(store: SqlStore) {
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

async fn two_keys_on_one_user_are_two_findings(store: SqlStore) {
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

async fn lease_is_exclusive_renewable_and_taken_over_after_expiry(store: SqlStore) {
    let ttl = Duration::from_millis(1500);
    let LeaseState::Held(a) = store.try_lease(LEADER, "a", ttl).await.expect("a") else {
        panic!("a free lease is taken");
    };
    match store.try_lease(LEADER, "b", ttl).await.expect("b") {
        LeaseState::Busy {
            holder,
            remaining_ms,
        } => {
            assert_eq!(holder, "a");
            assert!(remaining_ms > 0 && remaining_ms <= 1500, "{remaining_ms}");
        }
        other => panic!("b must wait, got {other:?}"),
    }
    let renewed = store.try_lease(LEADER, "a", ttl).await.expect("renew");
    assert_eq!(
        renewed,
        LeaseState::Held(a.clone()),
        "renewal keeps the token"
    );
    store.check_fence(&a).await.expect("a holds it");

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let LeaseState::Held(b) = store.try_lease(LEADER, "b", ttl).await.expect("b") else {
        panic!("an expired lease is taken over");
    };
    assert_eq!(b.token, a.token + 1, "a new holder gets a new token");
    assert!(matches!(
        store.check_fence(&a).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(matches!(
        store.try_lease(LEADER, "a", ttl).await.expect("a again"),
        LeaseState::Busy { ref holder, .. } if holder == "b"
    ));

    store.release_lease(&b).await.expect("release");
    let LeaseState::Held(a2) = store.try_lease(LEADER, "a", ttl).await.expect("a") else {
        panic!("a released lease is free at once");
    };
    assert_eq!(a2.token, b.token + 1);
}

/// A finding depending on `depends` (besides a user's kind).
fn depending(
    rule: &str,
    subject: Option<&str>,
    kind: Option<CredentialKind>,
    depends: Facets,
) -> SourcedFinding {
    let mut f = finding(rule, subject.unwrap_or_default());
    f.finding.credential_id = subject.map(str::to_string);
    f.credential_kind = kind;
    f.depends = depends
        .with(kind.map_or(Facets::NONE, Facets::credential_kind))
        .with(Facets::identity_kind(nhi_contract::IdentityKind::User));
    f
}

async fn record(
    store: &SqlStore,
    sources: &[SourceStatus],
    findings: &[SourcedFinding],
) -> RunSummary {
    let rules: Vec<String> = [
        "approval-expired",
        "credential-stale",
        "credential-unapproved",
        "identity-admin-equivalent",
        "nhi-human-login",
    ]
    .map(String::from)
    .to_vec();
    store
        .record_run(RunRecord {
            started_at: chrono::Utc::now(),
            as_of: chrono::Utc::now(),
            command: "scan",
            sources,
            rules: &rules,
            findings,
            held: &Default::default(),
            reading: None,
            scope: None,
        })
        .await
        .expect("record run")
}

async fn open_rules(store: &SqlStore) -> Vec<String> {
    open_sorted(store, |f| Some(f.rule_id.to_string())).await
}

/// What `field` gives of each open finding, sorted.
async fn open_sorted(store: &SqlStore, field: fn(Finding) -> Option<String>) -> Vec<String> {
    let mut v: Vec<String> = store
        .open_findings()
        .await
        .expect("open")
        .into_iter()
        .filter_map(|f| field(f.finding))
        .collect();
    v.sort();
    v
}

/// A finding no longer seen is resolved by a partial source unless it
/// depends on what the source's gaps blind.
async fn each_gap_resolves_only_what_does_not_depend_on_it(store: SqlStore) {
    let access = Some(CredentialKind::AccessKey);
    let all = [
        depending("approval-expired", Some("AKIA1"), access, Facets::NONE),
        depending("credential-stale", Some("AKIA2"), access, Facets::USAGE),
        depending(
            "credential-unapproved",
            Some("fed-1"),
            Some(CredentialKind::Federated),
            Facets::NONE,
        ),
        depending("identity-admin-equivalent", None, None, Facets::PRIVILEGE),
        depending("nhi-human-login", None, None, Facets::HUMAN_LOGIN),
    ];
    let partial = |gap: &str, blinds: Facets| {
        status(SourceState::Partial {
            gaps: vec![format!("{gap}: 403")],
            blinds,
        })
    };
    let cases = [
        (
            partial("directory roles", Facets::PRIVILEGE),
            vec!["identity-admin-equivalent"],
        ),
        (partial("usage", Facets::USAGE), vec!["credential-stale"]),
        (
            partial("credential_report", Facets::USAGE.with(Facets::HUMAN_LOGIN)),
            vec!["credential-stale", "nhi-human-login"],
        ),
        (
            partial(
                "federated",
                Facets::credential_kind(CredentialKind::Federated),
            ),
            vec!["credential-unapproved"],
        ),
        (
            partial(
                "user identities",
                Facets::identity_kind(nhi_contract::IdentityKind::User),
            ),
            vec![
                "approval-expired",
                "credential-stale",
                "credential-unapproved",
                "identity-admin-equivalent",
                "nhi-human-login",
            ],
        ),
        (
            partial("account", Facets::WHOLE_SOURCE),
            vec![
                "approval-expired",
                "credential-stale",
                "credential-unapproved",
                "identity-admin-equivalent",
                "nhi-human-login",
            ],
        ),
    ];
    for (sources, held) in cases {
        record(&store, &status(SourceState::Complete), &all).await;
        let r = record(&store, &sources, &[]).await;
        assert_eq!(open_rules(&store).await, held, "{sources:?}");
        assert_eq!(r.resolved as usize, all.len() - held.len(), "{sources:?}");
    }
}

/// Rows and runs stored before findings kept their facets: a run's old
/// partial state reads back as the facets it stood for, and an old finding
/// is held by any gap but one in another credential kind, as it was.
async fn findings_and_runs_stored_before_facets_are_judged_as_before(
    store: SqlStore,
    location: String,
) {
    let db = raw(&location).await;
    let f = finding("credential-stale", "AKIA1");
    let first = run(
        &store,
        &status(SourceState::Complete),
        std::slice::from_ref(&f),
    )
    .await;
    exec(&db, "UPDATE findings SET depends = NULL").await;
    exec(
        &db,
        &format!(
            r#"UPDATE runs SET sources = '[{{"name":"aws","provider":"aws","state":{{"state":"partial","gaps":["usage: 403"],"unseen_kinds":["token"],"unseen_other":true}}}}]' WHERE id = {}"#,
            first.run_id
        ),
    )
    .await;
    let info = store
        .run_info(first.run_id)
        .await
        .expect("read run")
        .expect("the run");
    assert_eq!(
        info.sources[0].state,
        SourceState::Partial {
            gaps: vec!["usage: 403".into()],
            blinds: Facets::WHOLE_SOURCE.with(Facets::credential_kind(CredentialKind::Token)),
        }
    );
    // A privilege gap did not hold a stale key before facets; an old row
    // cannot tell, so it is held as it was then.
    let privilege = status(SourceState::Partial {
        gaps: vec!["directory roles: 403".into()],
        blinds: Facets::PRIVILEGE,
    });
    assert_eq!(run(&store, &privilege, &[]).await.resolved, 0);
    // A gap in another credential kind never held it.
    let ssh = status(SourceState::Partial {
        gaps: vec!["ssh_key: 403".into()],
        blinds: Facets::credential_kind(CredentialKind::SshKey),
    });
    assert_eq!(run(&store, &ssh, &[]).await.resolved, 1);
}

fn intent<'a>(
    run_id: i64,
    request: &'a nhi_contract::ActionRequest,
    fence: &'a Fence,
) -> nhi_assure::store::journal::Intent<'a> {
    nhi_assure::store::journal::Intent {
        run_id,
        request,
        source: "aws",
        rules: &[],
        findings: &[],
        evidence: serde_json::json!({}),
        actor: "test",
        planned_undo: None,
        undo_of: None,
        fence,
    }
}

async fn journal_intents_are_fenced_by_the_lease(store: SqlStore) {
    let run_id = run(&store, &status(SourceState::Complete), &[])
        .await
        .run_id;
    let request = nhi_contract::ActionRequest {
        operation: nhi_contract::Operation::DisableCredential,
        provider: Provider::Aws,
        identity_id: "arn:aws:iam::1:user/ci".into(),
        credential_id: Some("AKIA1".into()),
        credential_kind: Some(nhi_contract::CredentialKind::AccessKey),
        entitlements: Vec::new(),
        federated: None,
    };
    let ttl = Duration::from_millis(800);
    let LeaseState::Held(old) = store.try_lease(LEADER, "old", ttl).await.expect("old") else {
        panic!("free lease");
    };
    store
        .journal_intent(&intent(run_id, &request, &old))
        .await
        .expect("the holder journals");

    // The old leader stalls past its lease; another process takes over.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        matches!(
            store.journal_intent(&intent(run_id, &request, &old)).await,
            Err(StoreError::LeaseLost)
        ),
        "an expired lease journals nothing"
    );
    let LeaseState::Held(new) = store.try_lease(LEADER, "new", ttl).await.expect("new") else {
        panic!("expired lease taken over");
    };
    assert!(
        matches!(
            store.journal_intent(&intent(run_id, &request, &old)).await,
            Err(StoreError::LeaseLost)
        ),
        "a stale token journals nothing"
    );
    store
        .journal_intent(&intent(run_id, &request, &new))
        .await
        .expect("the new holder journals");
    assert_eq!(store.journal_list(None).await.expect("list").len(), 2);
}

async fn leadership_renews_in_the_background_and_releases(store: SqlStore) {
    let ttl = Duration::from_millis(900);
    let leader = Leadership::acquire(&store, "a", ttl)
        .await
        .expect("store")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        matches!(
            store.try_lease(LEADER, "b", ttl).await.expect("b"),
            LeaseState::Busy { .. }
        ),
        "renewed past several TTLs"
    );
    assert!(!leader.lost());
    store.check_fence(leader.fence()).await.expect("still held");
    leader.release().await;
    assert!(Leadership::acquire(&store, "b", ttl)
        .await
        .expect("store")
        .is_ok());
}

/// Raw access to the database behind a store, to tamper with it.
async fn raw(location: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if location.starts_with("postgres") {
        location.to_string()
    } else {
        format!("sqlite://{location}")
    };
    sqlx::AnyPool::connect(&url).await.expect("raw connection")
}

async fn exec(pool: &sqlx::AnyPool, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(pool)
        .await
        .expect(sql);
}

async fn broken_at(store: &SqlStore) -> (i64, String) {
    match store.audit_verify().await.expect("verify") {
        Verdict::Broken { seq, reason } => (seq, reason),
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
}

/// A run opening more findings than one append takes lists each once, in
/// fingerprint order, over entries of at most a thousand that chain as
/// one; resolving them all lists each once again.
async fn lifecycle_entries_of_many_findings_chain_and_list_each_once(store: SqlStore) {
    let complete = status(SourceState::Complete);
    // Past 32 entries of a thousand (what one append takes) and not a
    // multiple of a thousand.
    let n: usize = 33_517;
    let findings: Vec<SourcedFinding> = (0..n)
        .map(|i| finding("credential-stale", &format!("AKIA{:06}", (i * 7_919) % n)))
        .collect();
    let mut want: Vec<String> = findings.iter().map(|f| f.finding.fingerprint()).collect();
    want.sort();
    let opened = run(&store, &complete, &findings).await;
    assert_eq!((opened.opened, opened.resolved), (n as i64, 0));
    let resolved = run(&store, &complete, &[]).await;
    assert_eq!(resolved.resolved, n as i64);
    for (run_id, kind) in [
        (opened.run_id, "findings.opened"),
        (resolved.run_id, "findings.resolved"),
    ] {
        let entries = store.audit_entries(Some(run_id)).await.expect("entries");
        let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
        let mut expect = vec![kind; n.div_ceil(1_000)];
        expect.push("run.recorded");
        assert_eq!(kinds, expect);
        let mut listed: Vec<String> = Vec::new();
        for e in &entries[..entries.len() - 1] {
            let fps = e.data["fingerprints"].as_array().expect("a list");
            assert_eq!(e.data["count"].as_u64(), Some(fps.len() as u64));
            assert!(fps.len() <= 1_000);
            listed.extend(fps.iter().map(|f| f.as_str().expect("text").to_string()));
        }
        assert_eq!(listed, want, "{kind}: each once, in order");
        assert!(entries
            .windows(2)
            .all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash));
    }
    assert!(matches!(
        store.audit_verify().await.expect("verify"),
        Verdict::Intact { .. }
    ));
}

async fn audit_chain_detects_edits_removals_and_reordering(store: SqlStore, location: String) {
    let f = finding("credential-stale", "AKIA1");
    run(
        &store,
        &status(SourceState::Complete),
        std::slice::from_ref(&f),
    )
    .await;
    run(&store, &status(SourceState::Complete), &[]).await;
    store
        .audit_config("/etc/nhi-assure.toml", "abc")
        .await
        .expect("config");
    assert!(!store
        .audit_config("/etc/nhi-assure.toml", "abc")
        .await
        .expect("same"));
    let entries = store.audit_entries(None).await.expect("entries");
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "findings.opened",
            "run.recorded",
            "findings.resolved",
            "run.recorded",
            "config.changed"
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.run_id.is_some() || e.kind == "config.changed"));
    let Verdict::Intact { entries: n, head } = store.audit_verify().await.expect("verify") else {
        panic!("a fresh chain holds");
    };
    assert_eq!((n, head.as_str()), (5, entries[4].hash.as_str()));

    let db = raw(&location).await;
    // Edited: a finding "resolved" turned into something else.
    exec(
        &db,
        "UPDATE audit SET data = '{\"rule_id\":\"other\"}' WHERE seq = 3",
    )
    .await;
    let (seq, why) = broken_at(&store).await;
    assert_eq!(seq, 3);
    assert!(why.contains("edited"), "{why}");
    // Put back as it was.
    let original = serde_json::to_string(&entries[2].data).expect("json");
    assert!(!original.contains('\''));
    exec(
        &db,
        &format!("UPDATE audit SET data = '{original}' WHERE seq = 3"),
    )
    .await;
    assert!(matches!(
        store.audit_verify().await.expect("verify"),
        Verdict::Intact { .. }
    ));

    // Edited and re-hashed by someone without the rest of the chain.
    let e2 = &entries[1];
    let forged = nhi_assure::store::audit::entry_hash(
        2,
        &e2.at,
        "run.recorded",
        e2.run_id,
        None,
        "{}",
        &e2.prev_hash,
    );
    exec(
        &db,
        &format!("UPDATE audit SET data = '{{}}', hash = '{forged}' WHERE seq = 2"),
    )
    .await;
    let (seq, why) = broken_at(&store).await;
    assert_eq!(seq, 3, "the next entry no longer follows");
    assert!(why.contains("does not follow"), "{why}");
    let original = serde_json::to_string(&e2.data)
        .expect("json")
        .replace('\'', "''");
    exec(
        &db,
        &format!(
            "UPDATE audit SET data = '{original}', hash = '{}' WHERE seq = 2",
            e2.hash
        ),
    )
    .await;
    assert!(matches!(
        store.audit_verify().await.expect("verify"),
        Verdict::Intact { .. }
    ));

    // Removed.
    exec(&db, "UPDATE audit SET seq = 100 WHERE seq = 4").await;
    let (seq, why) = broken_at(&store).await;
    assert_eq!(seq, 4);
    assert!(why.contains("missing"), "{why}");
    exec(&db, "UPDATE audit SET seq = 4 WHERE seq = 100").await;

    // Reordered: entries 2 and 3 swapped.
    exec(&db, "UPDATE audit SET seq = -2 WHERE seq = 2").await;
    exec(&db, "UPDATE audit SET seq = 2 WHERE seq = 3").await;
    exec(&db, "UPDATE audit SET seq = 3 WHERE seq = -2").await;
    let (seq, why) = broken_at(&store).await;
    assert_eq!(seq, 2);
    assert!(why.contains("does not follow"), "{why}");
}

/// A large reading is stored in chunks (over 1 MiB) and reads back exactly,
/// the same body twice and a body changed in one place alike; non-ASCII
/// text cut anywhere stays text.
async fn large_readings_read_back_exactly(store: SqlStore) {
    let body = |changed: usize| {
        let items: Vec<serde_json::Value> = (0..40_000)
            .map(|i| {
                serde_json::json!({"id": format!("AKIA{i:016}"), "name": format!("équipe-数据-{i}"),
                    "days": if i == changed { 999 } else { i % 90 }})
            })
            .collect();
        serde_json::to_string(&items).expect("json")
    };
    let complete = status(SourceState::Complete);
    let bodies = [body(usize::MAX), body(usize::MAX), body(15_000)];
    assert!(bodies[0].len() > 2 << 20, "{}", bodies[0].len());
    let mut ids = Vec::new();
    for b in &bodies {
        let r = run(&store, &complete, &[]).await;
        store
            .record_run_detail(
                r.run_id,
                nhi_assure::store::runs::RunDetail {
                    inventory: b,
                    approvals: b,
                    rules: "[]",
                    findings: &[],
                },
            )
            .await
            .expect("detail");
        ids.push(r.run_id);
    }
    for (id, b) in ids.iter().zip(&bodies) {
        let got = store.run_reading(*id).await.expect("read").expect("some");
        assert!(got.inventory == *b && got.approvals == *b, "run {id}");
        assert_eq!(got.rules, "[]");
    }
}

/// A reading the store holds already is recorded by its hash, without
/// its text, and reads back whole; one named by a hash the store does not
/// hold fails the run, which records nothing.
async fn a_stored_reading_is_named_by_hash(store: SqlStore) {
    use nhi_assure::store::runs::{Ahead, Reading};
    let complete = status(SourceState::Complete);
    let big: String = serde_json::to_string(
        &(0..60_000)
            .map(|i| format!("AKIA{i:016}"))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let rules = r#"[{"id":"credential-stale"}]"#;
    let first = Reading {
        inventory: &big,
        approvals: "[]",
        rules,
        ahead: Default::default(),
    };
    let r1 = record_with(&store, &complete, &[], Some(first), None).await;
    let hash = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    for body in [big.as_str(), "[]"] {
        assert!(store.has_blob(&hash(body)).await.expect("has"));
    }
    assert!(!store.has_blob(&hash("[1]")).await.expect("has"));
    let (inventory, approvals) = (hash(&big), hash("[]"));
    let second = Reading {
        inventory: "",
        approvals: "",
        rules,
        ahead: [
            Ahead::Stored(&inventory),
            Ahead::Stored(&approvals),
            Ahead::Nothing,
        ],
    };
    let r2 = record_with(&store, &complete, &[], Some(second), None).await;
    for id in [r1.run_id, r2.run_id] {
        let got = store.run_reading(id).await.expect("read").expect("some");
        assert!(got.inventory == big && got.approvals == "[]", "run {id}");
        assert_eq!(got.rules, rules);
    }
    // A new large body cut ahead: recorded from its chunks (all but the
    // changed one stored already), read back whole; cut ahead again once
    // stored, it is not written twice.
    let big2 = big.replacen("AKIA0000000000000001", "AKIA9999999999999999", 1);
    let cut = store
        .cut_body(&big2, hash(&big2))
        .await
        .expect("cut")
        .expect("large enough to cut");
    assert!(store
        .cut_body("[]", hash("[]"))
        .await
        .expect("cut")
        .is_none());
    for _ in 0..2 {
        let third = Reading {
            inventory: "",
            approvals: "[]",
            rules,
            ahead: [Ahead::Cut(&cut), Ahead::Nothing, Ahead::Nothing],
        };
        let r = record_with(&store, &complete, &[], Some(third), None).await;
        let got = store
            .run_reading(r.run_id)
            .await
            .expect("read")
            .expect("some");
        assert!(got.inventory == big2 && got.approvals == "[]");
    }
    let missing = hash("[1]");
    let bad = Reading {
        inventory: "",
        approvals: "[]",
        rules,
        ahead: [Ahead::Stored(&missing), Ahead::Nothing, Ahead::Nothing],
    };
    let latest = store.latest_run_id().await.expect("latest");
    let e = store
        .record_run(RunRecord {
            started_at: chrono::Utc::now(),
            as_of: chrono::Utc::now(),
            command: "scan",
            sources: &complete,
            rules: &["credential-stale".to_string()],
            findings: &[],
            held: &Default::default(),
            reading: Some(bad),
            scope: None,
        })
        .await
        .expect_err("a reading the store does not hold");
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert_eq!(store.latest_run_id().await.expect("latest"), latest);
}

/// Record a run with its reading (as a pass does), `sources` as given.
async fn pass(store: &SqlStore, sources: &[SourceStatus], findings: &[SourcedFinding]) -> i64 {
    pass_with(store, sources, findings).await.run_id
}

/// [`pass`], with what the store says it did.
async fn pass_with(
    store: &SqlStore,
    sources: &[SourceStatus],
    findings: &[SourcedFinding],
) -> RunSummary {
    let reading = nhi_assure::store::runs::Reading {
        inventory: "[]",
        approvals: "[]",
        rules: r#"[{"id":"credential-stale"}]"#,
        ahead: Default::default(),
    };
    record_with(store, sources, findings, Some(reading), None).await
}

/// Every finding and sighting row as stored.
async fn rows(pool: &sqlx::AnyPool) -> (Vec<String>, Vec<String>) {
    type FindingRow = (String, String, i64, i64, Option<String>, Option<String>);
    let findings: Vec<FindingRow> = sqlx::query_as(
        "SELECT fingerprint, last_seen, CAST(last_run AS BIGINT), CAST(open_ended AS BIGINT),
             resolved_at, depends FROM findings ORDER BY fingerprint",
    )
    .fetch_all(pool)
    .await
    .expect("findings");
    let sightings: Vec<(String, i64, i64, i64, Option<String>)> = sqlx::query_as(
        "SELECT fingerprint, CAST(first_run AS BIGINT), CAST(last_run AS BIGINT),
             CAST(open_ended AS BIGINT), depends FROM finding_sightings ORDER BY fingerprint, first_run",
    )
    .fetch_all(pool)
    .await
    .expect("sightings");
    (
        findings.into_iter().map(|r| format!("{r:?}")).collect(),
        sightings.into_iter().map(|r| format!("{r:?}")).collect(),
    )
}

/// Facets are stored in their short form (`x` and bits); rows an earlier
/// version wrote with the contract's list read as the same facets, so an
/// upgrade rewrites nothing, and a row whose facets did change is written
/// again in the short form.
async fn depends_written_by_earlier_versions_read_as_the_same_facets(
    store: SqlStore,
    location: String,
) {
    let pool = raw(&location).await;
    let complete = status(SourceState::Complete);
    let a = depending(
        "credential-stale",
        Some("AKIA1"),
        Some(CredentialKind::AccessKey),
        Facets::USAGE,
    );
    let b = depending(
        "credential-stale",
        Some("AKIA2"),
        Some(CredentialKind::AccessKey),
        Facets::USAGE,
    );
    pass(&store, &complete, &[a.clone(), b.clone()]).await;
    let short = a.depends.stored();
    let stored: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT depends FROM findings UNION ALL SELECT depends FROM finding_sightings",
    )
    .fetch_all(&pool)
    .await
    .expect("depends");
    assert_eq!(stored.len(), 4);
    assert!(
        stored
            .iter()
            .all(|(d,)| d.as_deref() == Some(short.as_str())),
        "{stored:?}"
    );

    // As an earlier version stored them.
    let legacy = serde_json::to_string(&a.depends).expect("json");
    assert!(legacy.starts_with("[{"), "{legacy}");
    for table in ["findings", "finding_sightings"] {
        exec(&pool, &format!("UPDATE {table} SET depends = '{legacy}'")).await;
    }
    let before = rows(&pool).await;
    pass(&store, &complete, &[a.clone(), b.clone()]).await;
    assert_eq!(
        rows(&pool).await,
        before,
        "the upgrade rewrote unchanged rows"
    );

    // AKIA2 now also depends on privilege: its rows are written again.
    let mut b2 = b.clone();
    b2.depends = b.depends.with(Facets::PRIVILEGE);
    pass(&store, &complete, &[a.clone(), b2.clone()]).await;
    let of = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let r: Vec<(String, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT fingerprint, depends FROM {table} ORDER BY fingerprint"
            )))
            .fetch_all(&pool)
            .await
            .expect("rows");
            r.into_iter()
                .map(|(_, d)| d.unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(of("findings").await, [legacy.clone(), b2.depends.stored()]);
    assert_eq!(of("finding_sightings").await, [legacy, b2.depends.stored()]);
    // Read back as facets, both forms judge alike: a usage gap holds both.
    let usage_gap = status(SourceState::Partial {
        gaps: vec!["usage: 403".into()],
        blinds: Facets::USAGE,
    });
    assert_eq!(pass_with(&store, &usage_gap, &[]).await.resolved, 0);
    assert_eq!(pass_with(&store, &complete, &[]).await.resolved, 2);
}

/// The store's open findings, by identity.
async fn open(store: SqlStore) -> Vec<nhi_assure::engine::findings::Finding> {
    let mut open: Vec<_> = store
        .open_findings()
        .await
        .expect("open")
        .into_iter()
        .map(|f| f.finding)
        .collect();
    open.sort_by(|a, b| a.identity_id.cmp(&b.identity_id));
    open
}

/// A full pass keeps each finding's data once, in its sighting (the
/// finding row's is empty); a targeted pass, which records no sighting,
/// keeps it in the row. Readers get the finding either way, and a row
/// whose sighting is gone is an error, not a finding dropped.
async fn a_finding_s_data_is_kept_once_and_read_from_where_it_is(
    store: SqlStore,
    location: String,
) {
    let pool = raw(&location).await;
    let complete = status(SourceState::Complete);
    let on = |who: &str, cred: &str, days: u64| {
        let mut f = finding("credential-stale", cred);
        f.finding.identity_id = format!("arn:aws:iam::1:user/{who}");
        f.finding.evidence = serde_json::json!({ "credential.days_since_last_use": days }).into();
        f
    };
    let (x, y) = (on("x", "AKIAX", 100), on("y", "AKIAY", 200));
    pass(&store, &complete, &[x.clone(), y.clone()]).await;
    let row_data = || {
        let pool = pool.clone();
        async move {
            let r: Vec<(String, String)> =
                sqlx::query_as("SELECT fingerprint, data FROM findings ORDER BY fingerprint")
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
            r.into_iter().map(|(_, d)| d).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        row_data().await,
        ["", ""],
        "a full pass writes the data once"
    );
    assert_eq!(
        open(store.clone()).await,
        [x.finding.clone(), y.finding.clone()]
    );

    // A targeted pass changes x: its row keeps its own data.
    let x2 = on("x", "AKIAX", 101);
    let scope = vec![x.finding.identity_id.clone()];
    record_with(
        &store,
        &complete,
        std::slice::from_ref(&x2),
        None,
        Some(&scope),
    )
    .await;
    let rows = row_data().await;
    assert_eq!(rows[1], "", "y untouched");
    assert_eq!(
        serde_json::from_str::<nhi_assure::engine::findings::Finding>(&rows[0]).expect("x's data"),
        x2.finding
    );
    assert_eq!(
        open(store.clone()).await,
        [x2.finding.clone(), y.finding.clone()]
    );

    // y's sighting lost (a damaged store): reading says so.
    exec(
        &pool,
        "DELETE FROM finding_sightings WHERE fingerprint LIKE '%AKIAY'",
    )
    .await;
    let err = store.open_findings().await.expect_err("y has no data left");
    assert!(err.to_string().contains("AKIAY"), "{err}");
}

/// A sighting's data is stored packed (not as its JSON text), a sighting
/// written before packing (its text, no packed value) reads alike through
/// every reader, and a damaged packed value is an error naming the store's
/// data, not a finding dropped or a panic.
async fn sighting_data_is_packed_and_text_rows_from_before_still_read(
    store: SqlStore,
    location: String,
) {
    let pool = raw(&location).await;
    let complete = status(SourceState::Complete);
    let on = |who: &str, cred: &str| {
        let mut f = finding("credential-stale", cred);
        f.finding.identity_id = format!("arn:aws:iam::1:user/{who}");
        f.finding.evidence =
            serde_json::json!({ "credential.last_used": "2026-01-02T03:04:05Z" }).into();
        f
    };
    let (x, y) = (on("x", "AKIAX"), on("y", "AKIAY"));
    let run = pass(&store, &complete, &[x.clone(), y.clone()]).await;
    let stored: Vec<(String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT fingerprint, data, data_packed FROM finding_sightings ORDER BY fingerprint",
    )
    .fetch_all(&pool)
    .await
    .expect("rows");
    assert_eq!(stored.len(), 2);
    for ((fp, data, packed), f) in stored.iter().zip([&x, &y]) {
        let json = serde_json::to_string(&f.finding).expect("json");
        let packed = packed.as_deref().expect("packed");
        assert_eq!(
            data, "",
            "{fp}: the text is not kept beside its packed value"
        );
        assert!(
            packed.len() < json.len(),
            "{fp}: {} of {}",
            packed.len(),
            json.len()
        );
        assert!(
            !packed
                .windows(8)
                .any(|w| w == b"AKIAX\"," || w == b"AKIAY\","),
            "{fp}: stored as text"
        );
    }

    // y's sighting as an earlier version wrote it.
    let legacy = serde_json::to_string(&y.finding).expect("json");
    sqlx::query(
        "UPDATE finding_sightings SET data = $1, data_packed = NULL WHERE fingerprint LIKE '%AKIAY'",
    )
    .bind(&legacy)
    .execute(&pool)
    .await
    .expect("legacy row");
    assert_eq!(
        open(store.clone()).await,
        [x.finding.clone(), y.finding.clone()]
    );
    let seen: Vec<_> = store
        .run_findings(run)
        .await
        .expect("run findings")
        .into_iter()
        .map(|s| s.finding.expect("data"))
        .collect();
    assert_eq!(seen, [x.finding.clone(), y.finding.clone()]);
    let fps: Vec<String> = [&x, &y].iter().map(|f| f.finding.fingerprint()).collect();
    let page: Vec<_> = store
        .sightings_of(&fps, run)
        .await
        .expect("page")
        .into_iter()
        .map(|s| s.finding.expect("data"))
        .collect();
    assert_eq!(page, [x.finding.clone(), y.finding.clone()]);

    // x's packed value damaged: every reader says so.
    sqlx::query("UPDATE finding_sightings SET data_packed = $1 WHERE fingerprint LIKE '%AKIAX'")
        .bind(vec![1u8, 0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0])
        .execute(&pool)
        .await
        .expect("damage");
    let err = store
        .open_findings()
        .await
        .expect_err("damaged")
        .to_string();
    assert!(err.contains("stored data"), "{err}");
    assert!(store.run_findings(run).await.is_err());
    let err = store
        .sightings_of(&fps, run)
        .await
        .expect_err("damaged")
        .to_string();
    assert!(err.contains("stored data"), "{err}");
}

/// An unchanged pass writes no finding or sighting row, and every reader
/// still sees it as seen by that pass; what a pass does not see, or sees
/// changed, is closed at the last pass that saw it.
async fn an_unchanged_pass_writes_nothing_and_reads_as_seen(store: SqlStore, location: String) {
    let pool = raw(&location).await;
    let complete = status(SourceState::Complete);
    let (a, b, c) = (
        finding("credential-stale", "AKIA1"),
        finding("credential-stale", "AKIA2"),
        finding("credential-stale", "AKIA3"),
    );
    let started = |id: i64| {
        let store = store.clone();
        async move {
            store
                .run_info(id)
                .await
                .expect("info")
                .expect("run")
                .started_at
        }
    };
    let seen = |id: i64| {
        let store = store.clone();
        async move {
            let mut ids: Vec<String> = store
                .run_findings(id)
                .await
                .expect("run findings")
                .into_iter()
                .map(|s| s.finding.expect("data").credential_id.expect("cred"))
                .collect();
            ids.sort();
            ids
        }
    };
    let all = [a.clone(), b.clone(), c.clone()];
    let r1 = pass(&store, &complete, &all).await;
    let before = rows(&pool).await;
    let r2 = pass(&store, &complete, &all).await;
    assert_eq!(rows(&pool).await, before, "an unchanged pass wrote rows");
    let open = store.open_findings().await.expect("open");
    assert_eq!(open.len(), 3);
    let t = started(r2).await;
    assert!(open.iter().all(|f| f.last_seen == t), "{open:?}");
    let t = started(r1).await;
    assert!(open.iter().all(|f| f.first_seen == t), "{open:?}");
    assert_eq!(seen(r1).await, ["AKIA1", "AKIA2", "AKIA3"]);
    assert_eq!(seen(r2).await, ["AKIA1", "AKIA2", "AKIA3"]);

    // Run 3: AKIA1 unchanged, AKIA2 changed, AKIA3 gone (resolved).
    let mut b2 = b.clone();
    b2.finding.evidence = serde_json::json!({"credential.days_since_last_use": 200}).into();
    let r3 = pass(&store, &complete, &[a.clone(), b2.clone()]).await;
    assert_eq!(
        seen(r2).await,
        ["AKIA1", "AKIA2", "AKIA3"],
        "the past is kept"
    );
    assert_eq!(seen(r3).await, ["AKIA1", "AKIA2"]);
    let data = |id: i64, cred: &'static str| {
        let store = store.clone();
        async move {
            store
                .run_findings(id)
                .await
                .expect("run findings")
                .into_iter()
                .filter_map(|s| s.finding)
                .find(|f| f.credential_id.as_deref() == Some(cred))
                .expect("seen")
                .evidence
        }
    };
    assert_eq!(data(r2, "AKIA2").await, b.finding.evidence);
    assert_eq!(data(r3, "AKIA2").await, b2.finding.evidence);

    // Run 4: the source failed. Nothing resolves; nothing was seen.
    let failed = status(SourceState::Failed {
        error: "throttled".into(),
    });
    let r4 = pass(&store, &failed, &[]).await;
    assert!(seen(r4).await.is_empty());
    let open = store.open_findings().await.expect("open");
    assert_eq!(open.len(), 2);
    let t = started(r3).await;
    assert!(open.iter().all(|f| f.last_seen == t), "{open:?}");

    // Run 5: seen again, unchanged: seen by run 5, not by run 4.
    let r5 = pass(&store, &complete, &[a.clone(), b2.clone()]).await;
    assert_eq!(seen(r5).await, ["AKIA1", "AKIA2"]);
    assert!(seen(r4).await.is_empty());
    let open = store.open_findings().await.expect("open");
    let t = started(r5).await;
    assert!(open.iter().all(|f| f.last_seen == t), "{open:?}");
    // Lifecycle from the sightings: AKIA3 resolved by run 3; AKIA1 and
    // AKIA2 open through run 5 (the failed run 4 did not resolve them).
    let spans: Vec<(String, i64, i64)> = store
        .sightings_upto(r5)
        .await
        .expect("sightings")
        .into_iter()
        .map(|s| (s.fingerprint, s.first_run, s.last_run))
        .collect();
    let fp = |f: &SourcedFinding| f.finding.fingerprint();
    for want in [
        (fp(&a), r1, r3),
        (fp(&a), r5, r5),
        (fp(&b), r1, r2),
        (fp(&b2), r3, r3),
        (fp(&b2), r5, r5),
        (fp(&c), r1, r2),
    ] {
        assert!(spans.contains(&want), "{want:?} not in {spans:?}");
    }
    assert_eq!(spans.len(), 6, "{spans:?}");
    let before = rows(&pool).await;
    pass(&store, &complete, &[a, b2]).await;
    assert_eq!(rows(&pool).await, before, "an unchanged pass wrote rows");
}

/// The run that kept it, if the open state's digest is kept.
async fn kept_by(pool: &sqlx::AnyPool) -> Option<i64> {
    sqlx::query_scalar("SELECT CAST(run_id AS BIGINT) FROM open_state")
        .fetch_optional(pool)
        .await
        .expect("open state")
}

/// A full run whose findings are what the store holds open does not read
/// them back; every other write to the findings forgets that digest, so
/// the next full run compares them again (here, each write is one the
/// next run must undo, and would not if the digest were still trusted).
async fn the_open_state_digest_is_forgotten_by_every_other_write(
    store: SqlStore,
    location: String,
) {
    let pool = raw(&location).await;
    let complete = status(SourceState::Complete);
    let (a, b, c) = (
        finding("credential-stale", "AKIA1"),
        finding("credential-stale", "AKIA2"),
        finding("credential-stale", "AKIA3"),
    );
    let both = [a.clone(), b.clone()];
    let counts = |s: &RunSummary| (s.findings, s.opened, s.resolved);
    let open_creds = || open_sorted(&store, |f| f.credential_id);

    let r1 = pass_with(&store, &complete, &both).await;
    assert_eq!(counts(&r1), (2, 2, 0));
    assert_eq!(kept_by(&pool).await, Some(r1.run_id));
    let before = rows(&pool).await;
    let r2 = pass_with(&store, &complete, &both).await;
    assert_eq!(counts(&r2), (2, 0, 0));
    assert_eq!(kept_by(&pool).await, Some(r2.run_id), "unchanged, kept");
    assert_eq!(rows(&pool).await, before, "an unchanged pass wrote rows");

    // Resolved by enforce: the next full run sees it again, and opens it.
    assert!(store
        .resolve_finding(r2.run_id, &b.finding.fingerprint())
        .await
        .expect("resolve"));
    assert_eq!(kept_by(&pool).await, None);
    let r3 = pass_with(&store, &complete, &both).await;
    assert_eq!(counts(&r3), (2, 1, 0), "resolved, then seen again");
    assert_eq!(kept_by(&pool).await, Some(r3.run_id));

    // Added by enforce: the next full run did not see it, and resolves it.
    store.add_finding(r3.run_id, &c).await.expect("add");
    assert_eq!(kept_by(&pool).await, None);
    let r4 = pass_with(&store, &complete, &both).await;
    assert_eq!(counts(&r4), (2, 0, 1));
    assert_eq!(open_creds().await, ["AKIA1", "AKIA2"]);

    // A targeted run changes one finding's data: the next full run puts
    // back what it sees.
    let mut a2 = a.clone();
    a2.finding.evidence = serde_json::json!({"credential.days_since_last_use": 200}).into();
    let scope = [a.finding.identity_id.clone()];
    record_with(&store, &complete, &[a2, b.clone()], None, Some(&scope)).await;
    assert_eq!(kept_by(&pool).await, None);
    let r5 = pass_with(&store, &complete, &both).await;
    let seen = store.run_findings(r5.run_id).await.expect("run findings");
    let evidence = seen
        .iter()
        .filter_map(|s| s.finding.as_ref())
        .find(|f| f.credential_id.as_deref() == Some("AKIA1"))
        .map(|f| f.evidence.clone());
    assert_eq!(evidence, Some(a.finding.evidence.clone()));
    assert_eq!(kept_by(&pool).await, Some(r5.run_id));

    // A run that leaves open what it could not see keeps no digest: the
    // next run, seeing it, must not be judged against it.
    let failed = status(SourceState::Failed {
        error: "throttled".into(),
    });
    pass_with(&store, &failed, &[]).await;
    assert_eq!(kept_by(&pool).await, None);
    let r7 = pass_with(&store, &complete, std::slice::from_ref(&a)).await;
    assert_eq!(counts(&r7), (1, 0, 1), "AKIA2 resolved once seen gone");
    assert_eq!(open_creds().await, ["AKIA1"]);
    assert_eq!(kept_by(&pool).await, Some(r7.run_id));
    // And a full run without a reading keeps none either.
    run(&store, &complete, &[a]).await;
    assert_eq!(kept_by(&pool).await, None);
}

/// Writers of the open findings wait for each other's transactions: on
/// PostgreSQL through the advisory lock every writer takes
/// (`OPEN_STATE_LOCK`), on SQLite through the write lock (a run takes it
/// at `BEGIN`, so it waits for another writer rather than being refused).
/// Held here by a transaction outside the store, a run and an enforce
/// resolution both wait for it, then go through: no write lands between
/// a run's read of the open state and its keeping the digest.
async fn writers_of_the_open_findings_wait_for_each_other(store: SqlStore, location: String) {
    let pool = raw(&location).await;
    let complete = status(SourceState::Complete);
    let f = finding("credential-stale", "AKIA1");
    let r1 = pass_with(&store, &complete, std::slice::from_ref(&f)).await;
    let mut holder = pool.acquire().await.expect("conn");
    if location.starts_with("postgres") {
        sqlx::query("BEGIN")
            .execute(&mut *holder)
            .await
            .expect("begin");
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(nhi_assure::store::OPEN_STATE_LOCK)
            .execute(&mut *holder)
            .await
            .expect("lock");
    } else {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *holder)
            .await
            .expect("begin");
    }
    let resolve = tokio::spawn({
        let (store, fp) = (store.clone(), f.finding.fingerprint());
        async move { store.resolve_finding(r1.run_id, &fp).await }
    });
    let again = tokio::spawn({
        let (store, complete, f) = (store.clone(), complete.clone(), f.clone());
        async move { pass_with(&store, &complete, &[f]).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!resolve.is_finished(), "a resolution did not wait");
    assert!(!again.is_finished(), "a run did not wait");
    sqlx::query("COMMIT")
        .execute(&mut *holder)
        .await
        .expect("commit");
    assert!(resolve.await.expect("join").expect("resolve"));
    again.await.expect("join");
}

/// A targeted run records and resolves its subjects' findings only: the
/// rest are neither resolved by omission nor marked seen by it; it keeps no
/// reading, so reports still read the latest full run.
async fn a_targeted_run_records_only_its_subjects(store: SqlStore) {
    let complete = status(SourceState::Complete);
    let on = |who: &str, cred: &str| {
        let mut f = finding("credential-stale", cred);
        f.finding.identity_id = format!("arn:aws:iam::1:user/{who}");
        f
    };
    let (x, y) = (on("x", "AKIAX"), on("y", "AKIAY"));
    let targeted = |scope: Vec<String>, findings: Vec<SourcedFinding>| {
        let store = store.clone();
        let complete = complete.clone();
        async move { record_with(&store, &complete, &findings, None, Some(&scope)).await }
    };
    // Targeted runs before any full run: one opens x's finding, the next
    // (x seen again without it) resolves it, closed at its own run.
    let x_only = vec![x.finding.identity_id.clone()];
    let t0 = targeted(x_only.clone(), vec![x.clone()]).await;
    assert_eq!((t0.findings, t0.opened, t0.resolved), (1, 1, 0));
    let t00 = targeted(x_only, vec![]).await;
    assert_eq!((t00.findings, t00.opened, t00.resolved), (0, 0, 1));
    let full = pass(&store, &complete, &[x.clone(), y.clone()]).await;
    let last_seen = |cred: &'static str| {
        let store = store.clone();
        async move {
            store
                .open_findings()
                .await
                .expect("open")
                .into_iter()
                .find(|f| f.finding.credential_id.as_deref() == Some(cred))
                .map(|f| f.last_seen)
        }
    };
    let started = |id: i64| {
        let store = store.clone();
        async move {
            store
                .run_info(id)
                .await
                .expect("info")
                .expect("run")
                .started_at
        }
    };
    // x's finding is gone: resolved. y is out of scope (and a finding of y
    // passed in anyway is not recorded): untouched.
    let mut y_changed = y.clone();
    y_changed.finding.evidence = serde_json::json!({"changed": true}).into();
    let t1 = targeted(vec![x.finding.identity_id.clone()], vec![y_changed.clone()]).await;
    assert_eq!((t1.findings, t1.opened, t1.resolved), (0, 0, 1));
    assert_eq!(last_seen("AKIAX").await, None);
    assert_eq!(last_seen("AKIAY").await, Some(started(full).await));
    // y re-read, changed: recorded, seen by the targeted run.
    let t2 = targeted(vec![y.finding.identity_id.clone()], vec![y_changed.clone()]).await;
    assert_eq!((t2.findings, t2.opened, t2.resolved), (1, 0, 0));
    assert_eq!(last_seen("AKIAY").await, Some(started(t2.run_id).await));
    let info = store.run_info(t2.run_id).await.expect("info").expect("run");
    assert_eq!(info.scope, Some(vec![y.finding.identity_id.clone()]));
    assert!(store
        .run_reading(t2.run_id)
        .await
        .expect("reading")
        .is_none());
    assert_eq!(
        store.latest_detailed_run_id().await.expect("latest"),
        Some(full)
    );
    // A full run whose source failed keeps y open, last seen by t2 (not
    // moved back to the earlier full run).
    let failed = status(SourceState::Failed {
        error: "throttled".into(),
    });
    let f2 = pass(&store, &failed, &[]).await;
    assert_eq!(last_seen("AKIAY").await, Some(started(t2.run_id).await));
    assert_eq!(
        store.latest_detailed_run_id().await.expect("latest"),
        Some(f2)
    );
    // Seen again by a full run: open-ended, last seen by it.
    let f3 = pass(&store, &complete, &[y_changed]).await;
    assert_eq!(last_seen("AKIAY").await, Some(started(f3).await));
    let f4 = pass(&store, &complete, &[]).await;
    assert_eq!(
        store
            .run_info(f4)
            .await
            .expect("info")
            .expect("run")
            .resolved,
        1
    );
}

/// The rules [`report_run`] evaluates, as a reading keeps them.
const RULES: &str = r#"[
  {"id": "credential-stale", "title": "t", "description": "d", "severity": "high",
   "subject": "credential", "action": "disable", "remediation": "r",
   "controls": ["OWASP-NHI-2025:NHI7"]},
  {"id": "credential-long-lived", "title": "t", "description": "d", "severity": "medium",
   "subject": "credential", "action": "flag", "remediation": "r",
   "controls": ["OWASP-NHI-2025:NHI7"]}
]"#;

/// A full or targeted run evaluating `credential-stale` and
/// `credential-long-lived`, with its reading (so reports can read it).
async fn report_run(
    store: &SqlStore,
    sources: &[SourceStatus],
    findings: &[SourcedFinding],
    scope: Option<&[String]>,
) -> i64 {
    let rules = [
        "credential-stale".to_string(),
        "credential-long-lived".to_string(),
    ];
    let reading = nhi_assure::store::runs::Reading {
        inventory: "[]",
        approvals: "[]",
        rules: RULES,
        ahead: Default::default(),
    };
    store
        .record_run(RunRecord {
            started_at: chrono::Utc::now(),
            as_of: chrono::Utc::now(),
            command: if scope.is_some() {
                "daemon-targeted"
            } else {
                "scan"
            },
            sources,
            rules: &rules,
            findings,
            held: &Default::default(),
            reading: scope.is_none().then_some(reading),
            scope,
        })
        .await
        .expect("record run")
        .run_id
}

/// What the report of run `id` must hold, from the whole replay and every
/// finding the run saw (as reports were read before they were paged):
/// (fingerprint, source, first seen, finding JSON) of its findings, and
/// (fingerprint, first seen, last seen, finding JSON) of those it resolved.
async fn whole_replay(
    store: &SqlStore,
    id: i64,
) -> (
    BTreeSet<(String, String, String, String)>,
    BTreeSet<(String, String, String, String)>,
) {
    let life = nhi_assure::report::diff::replay(store, id)
        .await
        .expect("replay");
    let started = store
        .run_info(id)
        .await
        .expect("info")
        .expect("run")
        .started_at;
    let open = store
        .run_findings(id)
        .await
        .expect("findings")
        .into_iter()
        .map(|s| {
            let first = life
                .open
                .get(&s.fingerprint)
                .map_or(started.clone(), |l| l.first_seen.clone());
            let data = serde_json::to_string(&s.finding.expect("data")).expect("json");
            (s.fingerprint, s.source, first, data)
        })
        .collect();
    let mut resolved = BTreeSet::new();
    let mut seen_by: std::collections::HashMap<i64, Vec<_>> = Default::default();
    for l in life.closed.iter().filter(|l| l.resolved_run == Some(id)) {
        if let std::collections::hash_map::Entry::Vacant(e) = seen_by.entry(l.last_run) {
            e.insert(store.run_findings(l.last_run).await.expect("findings"));
        }
        let seen = seen_by[&l.last_run]
            .iter()
            .find(|s| s.fingerprint == l.fingerprint)
            .expect("last seen")
            .clone();
        let last = life
            .runs
            .iter()
            .find(|r| r.id == l.last_run)
            .expect("run")
            .started_at
            .clone();
        let data = serde_json::to_string(&seen.finding.expect("data")).expect("json");
        resolved.insert((l.fingerprint.clone(), l.first_seen.clone(), last, data));
    }
    (open, resolved)
}

/// Reports read a run's findings page by page (sort keys, then each page's
/// sightings replayed on their own): they must read exactly what the whole
/// replay reads, worst first, for the latest run and for earlier ones,
/// across pages, full and targeted runs, a failed source, changed data,
/// resolutions and a reopening, and the same user name in two accounts.
async fn report_pages_read_what_the_whole_replay_reads(store: SqlStore) {
    let complete = status(SourceState::Complete);
    let failed = status(SourceState::Failed {
        error: "throttled".into(),
    });
    // 2,300 keys on 700 users in two accounts (more than one page).
    let key = |n: usize, rule: &str| {
        let mut f = finding(rule, &format!("AKIA{n:05}"));
        f.finding.identity_id = format!("arn:aws:iam::{}:user/u{}", 1 + n % 2, n / 2 % 350);
        if rule == "credential-long-lived" {
            f.finding.severity = Severity::Medium;
        }
        f
    };
    let first: Vec<SourcedFinding> = (0..2_300)
        .map(|n| key(n, "credential-stale"))
        .chain(
            (0..2_300)
                .step_by(3)
                .map(|n| key(n, "credential-long-lived")),
        )
        .collect();
    let r1 = report_run(&store, &complete, &first, None).await;
    // A targeted run on one user: its finding's data changes.
    let target = first[4].finding.identity_id.clone();
    let mut changed = first[4].clone();
    changed.finding.evidence = serde_json::json!({"credential.days_since_last_use": 400}).into();
    report_run(&store, &complete, &[changed.clone()], Some(&[target])).await;
    let r3 = report_run(&store, &failed, &[], None).await;
    // Every fifth stale key gone (resolved here), every seventh changed.
    let fourth: Vec<SourcedFinding> = first
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 5 != 0)
        .map(|(n, f)| {
            let mut f = if n == 4 { changed.clone() } else { f.clone() };
            if n % 7 == 0 {
                f.finding.evidence = serde_json::json!({"seen": n}).into();
            }
            f
        })
        .collect();
    let r4 = report_run(&store, &complete, &fourth, None).await;
    // Half of those come back (a new lifecycle); others go.
    let fifth: Vec<SourcedFinding> = fourth
        .iter()
        .filter(|f| {
            !f.finding
                .credential_id
                .as_deref()
                .is_some_and(|c| c.ends_with('3'))
        })
        .cloned()
        .chain(first.iter().step_by(10).cloned())
        .collect();
    let r5 = report_run(&store, &complete, &fifth, None).await;

    for id in [r1, r3, r4, r5] {
        let data = nhi_assure::report::load(
            &store,
            nhi_assure::report::RunSel::Id(id),
            Default::default(),
        )
        .await
        .expect("load");
        let read: Vec<_> = data.findings.collect().expect("findings");
        let order: Vec<(std::cmp::Reverse<Severity>, Vec<&str>)> = read
            .iter()
            .map(|f| {
                (
                    std::cmp::Reverse(f.finding.severity),
                    f.fingerprint.split('|').collect(),
                )
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "run {id}: not worst first"
        );
        let paged: BTreeSet<_> = read
            .iter()
            .map(|f| {
                let data = serde_json::to_string(&f.finding).expect("json");
                (
                    f.fingerprint.clone(),
                    f.source.clone(),
                    f.first_seen.clone(),
                    data,
                )
            })
            .collect();
        let resolved: BTreeSet<_> = data
            .resolved
            .iter()
            .map(|r| {
                let r = r.expect("resolved");
                let data = serde_json::to_string(&r.finding.finding).expect("json");
                (
                    r.finding.fingerprint.clone(),
                    r.finding.first_seen.clone(),
                    r.last_seen.clone(),
                    data,
                )
            })
            .collect();
        let (want_open, want_resolved) = whole_replay(&store, id).await;
        assert_eq!(paged.len(), read.len(), "run {id}: a finding twice");
        assert_eq!(paged, want_open, "run {id}: findings");
        assert_eq!(resolved, want_resolved, "run {id}: resolved");
        match id {
            _ if id == r3 => assert!(read.is_empty() && resolved.is_empty(), "failed source"),
            _ if id == r4 => assert_eq!(
                resolved.len(),
                (0..first.len()).step_by(5).count(),
                "every fifth key"
            ),
            _ if id == r5 => assert!(!resolved.is_empty() && paged.len() > 2_000),
            _ => assert_eq!(read.len(), first.len()),
        }
    }

    // Coverage in one pass: every finding counted, the worst 1,000 named,
    // subjects (credentials here) counted once across the control's rules.
    let catalogs =
        nhi_assure::engine::rules::RuleSet::load(&Default::default(), std::path::Path::new("."))
            .expect("built-in rules")
            .catalogs;
    let data = nhi_assure::report::load(&store, nhi_assure::report::RunSel::Id(r1), catalogs)
        .await
        .expect("load");
    let cov =
        nhi_assure::report::coverage::compute(&data, &["OWASP-NHI-2025".into()]).expect("coverage");
    let nhi7 = cov[0]
        .controls
        .iter()
        .find(|c| c.id == "NHI7")
        .expect("NHI7");
    assert_eq!(nhi7.findings_total, first.len());
    assert_eq!(
        nhi7.findings.len(),
        nhi_assure::report::coverage::MAX_LISTED
    );
    assert_eq!(nhi7.findings[..], data.findings.fingerprints()[..1_000]);
    assert_eq!(nhi7.subjects.failing, 2_300);
    assert_eq!(nhi7.worst_severity.as_deref(), Some("high"));
}

/// Readers of one run's findings on several threads (an evidence bundle's
/// reports, written at once) share each page read from the store: every
/// reader reads exactly what one reader alone reads, in order, whether it
/// keeps pace, pauses while holding its place, stops early or starts after
/// the pages it needs were dropped.
async fn readers_on_threads_share_pages(store: SqlStore) {
    let complete = status(SourceState::Complete);
    // 13,000 keys: seven pages, more than a reader may run ahead.
    let keys: Vec<SourcedFinding> = (0..13_000)
        .map(|n| {
            let mut f = finding("credential-stale", &format!("AKIA{n:05}"));
            f.finding.identity_id = format!("arn:aws:iam::{}:user/u{}", 1 + n % 2, n / 2);
            f
        })
        .collect();
    report_run(&store, &complete, &keys, None).await;
    let run = report_run(&store, &complete, &keys[..12_500], None).await;
    let data = nhi_assure::report::load(
        &store,
        nhi_assure::report::RunSel::Id(run),
        Default::default(),
    )
    .await
    .expect("load");
    let seen = |f: nhi_assure::report::Shared<nhi_assure::report::ReportFinding>| {
        let json = serde_json::to_string(&f.finding).expect("json");
        (f.fingerprint.clone(), f.first_seen.clone(), json)
    };
    let alone: Vec<_> = data
        .findings
        .iter()
        .map(|f| seen(f.expect("finding")))
        .collect();
    assert_eq!(alone.len(), 12_500);
    // Written a thousand rows to a statement, the next thousand encoded
    // while the last were written: each read back as it was written.
    let mut written: Vec<(String, String)> = keys[..12_500]
        .iter()
        .map(|k| {
            let json = serde_json::to_string(&k.finding).expect("json");
            (k.finding.fingerprint(), json)
        })
        .collect();
    written.sort();
    let mut read: Vec<(String, String)> = alone
        .iter()
        .map(|(fp, _, json)| (fp.clone(), json.clone()))
        .collect();
    read.sort();
    assert_eq!(read, written);
    let resolved_alone = data.resolved.iter().count();
    assert_eq!(resolved_alone, 500);
    let started = std::sync::Barrier::new(4);
    let (full, resolved, paused, late) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let full: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        started.wait();
                        data.findings
                            .iter()
                            .map(|f| seen(f.expect("finding")))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let resolved = s.spawn(|| data.resolved.iter().filter(|r| r.is_ok()).count());
            // Takes a few findings, then stops.
            s.spawn(|| data.findings.iter().take(5).count());
            // Holds its place on the first page while the others reach the
            // limit of reading ahead, then goes on.
            let paused = s.spawn(|| {
                let mut it = data.findings.iter();
                let head: Vec<_> = it.by_ref().take(10).map(|f| seen(f.expect("f"))).collect();
                started.wait();
                std::thread::sleep(std::time::Duration::from_millis(300));
                head.into_iter()
                    .chain(it.map(|f| seen(f.expect("finding"))))
                    .collect::<Vec<_>>()
            });
            let full: Vec<Vec<_>> = full
                .into_iter()
                .map(|h| h.join().expect("reader"))
                .collect();
            // Starts once the others are done: every page was dropped.
            let late = s
                .spawn(|| {
                    data.findings
                        .iter()
                        .map(|f| seen(f.expect("finding")))
                        .collect::<Vec<_>>()
                })
                .join()
                .expect("late reader");
            (
                full,
                resolved.join().expect("resolved reader"),
                paused.join().expect("paused reader"),
                late,
            )
        })
    });
    for (n, read) in full.iter().enumerate() {
        assert!(read == &alone, "reader {n} read something else");
    }
    assert!(paused == alone, "the paused reader read something else");
    assert!(late == alone, "the late reader read something else");
    assert_eq!(resolved, resolved_alone);
}

/// Each scenario on both backends.
macro_rules! both {
    // Reports read pages on a multi-threaded runtime (as the command runs).
    (multi: $($name:ident),* $(,)?) => {
        mod sqlite_multi {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = super::SqlStore::open(&dir.path().join("s.db").display().to_string())
                        .await
                        .expect("open sqlite");
                    super::$name(store).await;
                }
            )*
        }
        mod postgres_multi {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let store = super::SqlStore::open(&super::pg::database())
                        .await
                        .expect("open postgres");
                    super::$name(store).await;
                }
            )*
        }
    };
    (raw: $($name:ident),* $(,)?) => {
        mod sqlite_raw {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let path = dir.path().join("s.db").display().to_string();
                    let store = super::SqlStore::open(&path).await.expect("open sqlite");
                    super::$name(store, path).await;
                }
            )*
        }
        mod postgres_raw {
            $(
                #[tokio::test]
                async fn $name() {
                    let url = super::pg::database();
                    let store = super::SqlStore::open(&url).await.expect("open postgres");
                    super::$name(store, url).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = super::SqlStore::open(&dir.path().join("s.db").display().to_string())
                        .await
                        .expect("open sqlite");
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = super::SqlStore::open(&super::pg::database())
                        .await
                        .expect("open postgres");
                    super::$name(store).await;
                }
            )*
        }
    };
}

both!(
    lifecycle_open_seen_resolved_reopened,
    failed_or_partial_source_never_resolves_its_findings,
    findings_of_rules_not_evaluated_stay_open,
    two_keys_on_one_user_are_two_findings,
    lease_is_exclusive_renewable_and_taken_over_after_expiry,
    journal_intents_are_fenced_by_the_lease,
    leadership_renews_in_the_background_and_releases,
    each_gap_resolves_only_what_does_not_depend_on_it,
    large_readings_read_back_exactly,
    a_targeted_run_records_only_its_subjects,
    a_stored_reading_is_named_by_hash,
    lifecycle_entries_of_many_findings_chain_and_list_each_once,
);

both!(multi: report_pages_read_what_the_whole_replay_reads, readers_on_threads_share_pages);

both!(
    raw: audit_chain_detects_edits_removals_and_reordering,
    findings_and_runs_stored_before_facets_are_judged_as_before,
    an_unchanged_pass_writes_nothing_and_reads_as_seen,
    depends_written_by_earlier_versions_read_as_the_same_facets,
    a_finding_s_data_is_kept_once_and_read_from_where_it_is,
    sighting_data_is_packed_and_text_rows_from_before_still_read,
    the_open_state_digest_is_forgotten_by_every_other_write,
    writers_of_the_open_findings_wait_for_each_other,
);

/// On PostgreSQL, a run that writes ten thousand findings or more leaves
/// their tables vacuumed and analysed, so the next reader (a report, a
/// targeted pass) does not plan blind over rows without statistics or a
/// visibility map; a run that writes a few leaves them to autovacuum.
#[tokio::test]
async fn a_bulk_run_leaves_the_postgres_findings_tables_vacuumed_and_analysed() {
    let url = pg::database();
    let store = SqlStore::open(&url).await.expect("open postgres");
    let db = raw(&url).await;
    let manual = || async {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, vacuum_count, analyze_count FROM pg_stat_user_tables
             WHERE relname IN ('findings', 'finding_sightings') ORDER BY relname",
        )
        .fetch_all(&db)
        .await
        .expect("table statistics");
        rows.into_iter().map(|(_, v, a)| (v, a)).collect::<Vec<_>>()
    };
    let complete = status(SourceState::Complete);
    let few: Vec<SourcedFinding> = (0..5)
        .map(|i| finding("credential-stale", &format!("AKIAFEW{i}")))
        .collect();
    run(&store, &complete, &few).await;
    assert_eq!(manual().await, [(0, 0), (0, 0)], "a few rows: left alone");
    let mut many: Vec<SourcedFinding> = (0..10_000)
        .map(|i| finding("credential-stale", &format!("AKIA{i:06}")))
        .collect();
    run(&store, &complete, &many).await;
    assert_eq!(
        manual().await,
        [(1, 1), (1, 1)],
        "a bulk write: both refreshed"
    );
    // The same ten thousand and one more: one row written.
    many.push(finding("credential-stale", "AKIAONEMORE"));
    let again = run(&store, &complete, &many).await;
    assert_eq!((again.opened, again.resolved), (1, 0));
    assert_eq!(manual().await, [(1, 1), (1, 1)], "one row: left alone");
}

/// The whole tool on PostgreSQL: scans (runs, findings, per-run detail,
/// audit log), a report of the latest run, a diff, the audit chain.
#[test]
fn demo_scans_reports_and_audit_on_postgres() {
    let (dir, cfg) = demo_copy::demo();
    let cfg = cfg.to_str().expect("utf8");
    let db = pg::database();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nhi-assure"))
            .args(args)
            .env("NHI_ASSURE_STORE", &db)
            .output()
            .expect("run")
    };
    for _ in 0..2 {
        let o = run(&["scan", "--config", cfg, "--format", "json"]);
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
        assert_eq!(doc["findings"].as_array().map(Vec::len), Some(63));
    }
    assert!(
        !dir.path().join("demo-store.db").exists(),
        "nothing went to SQLite"
    );
    let report = run(&["report", "--config", cfg, "--format", "json"]);
    assert_eq!(
        report.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&report.stdout).expect("report json");
    assert!(
        r.to_string().contains("OWASP-NHI-2025"),
        "coverage per framework"
    );
    let diff = run(&["diff", "--config", cfg, "--format", "json"]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let verify = run(&["audit", "verify", "--config", cfg]);
    assert_eq!(verify.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&verify.stdout).starts_with("audit log intact: "));
}
