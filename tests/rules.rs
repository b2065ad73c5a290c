//! Every built-in rule, positive and negative, on small built estates.
//! Each test starts from a world that fires nothing and changes one thing.

mod support;

use std::collections::BTreeSet;

use nhi_assure::engine::rules::{Param, RuleOverride, RulesConfig};
use nhi_contract::{CredentialKind, Emergency, IdentityKind, PrivilegeLevel, Usage};
use support::*;

fn only(world: &World, rule: &str, subject: &str) {
    let fired = world.fired();
    let expected: BTreeSet<(String, String)> = [(rule.to_string(), subject.to_string())].into();
    assert_eq!(fired, expected, "expected only {rule} on {subject}");
}

#[test]
fn clean_world_fires_nothing() {
    assert_eq!(clean().fired(), BTreeSet::new());
}

#[test]
fn every_builtin_rule_has_a_test_here() {
    let rules = nhi_assure::engine::rules::RuleSet::load(
        &RulesConfig::default(),
        std::path::Path::new("."),
    )
    .expect("load");
    let me = include_str!("rules.rs");
    for r in &rules.rules {
        let quoted = format!("\"{}\"", r.id);
        assert!(
            me.matches(&quoted).count() >= 2,
            "rule {} needs a positive and a negative test",
            r.id
        );
    }
}

// credential-unapproved

#[test]
fn unapproved_credential_fires() {
    let mut w = clean();
    w.approvals.clear();
    let fired = w.rules_fired();
    assert!(fired.contains("credential-unapproved"), "{fired:?}");
    assert!(w.fires("credential-unapproved", KEY));
}

#[test]
fn approval_not_started_yet_leaves_the_credential_unapproved() {
    let mut w = clean();
    w.appr("APR-1").starts_at = Some(now() + days(2));
    only(&w, "credential-unapproved", KEY);
}

#[test]
fn approval_naming_another_credential_does_not_cover() {
    let mut w = clean();
    w.appr("APR-1").credentials = vec!["AKIAOTHER".into()];
    only(&w, "credential-unapproved", KEY);
}

#[test]
fn inactive_unapproved_credential_does_not_fire() {
    let mut w = clean();
    w.approvals.clear();
    w.cred(KEY).active = false;
    assert!(!w.fires("credential-unapproved", KEY));
}

// approval-expired

#[test]
fn credential_covered_only_by_an_expired_approval_fires_expired_not_unapproved() {
    let mut w = clean();
    w.appr("APR-1").expires_at = now() - days(1);
    only(&w, "approval-expired", KEY);
}

#[test]
fn revoked_approval_fires_expired() {
    let mut w = clean();
    w.appr("APR-1").revoked_at = Some(now() - days(1));
    only(&w, "approval-expired", KEY);
}

#[test]
fn ended_emergency_ends_coverage() {
    let mut w = clean();
    let a = w.appr("APR-1");
    a.approved_at = now() - support::days(1);
    a.expires_at = now() + days(0) + chrono::Duration::hours(10);
    a.emergency = Some(Emergency {
        incident: "INC-1".into(),
        ended_at: Some(now() - chrono::Duration::hours(2)),
    });
    let fired = w.fired();
    assert!(
        fired.contains(&("approval-expired".into(), KEY.into())),
        "{fired:?}"
    );
    assert!(
        fired.contains(&("approval-emergency-still-active".into(), "APR-1".into())),
        "{fired:?}"
    );
}

#[test]
fn a_valid_approval_beside_an_expired_one_covers() {
    let mut w = clean();
    let mut old = approval("APR-0", USER);
    old.expires_at = now() - days(40);
    old.approved_at = now() - days(300);
    w.approvals.push(old);
    assert_eq!(w.fired(), BTreeSet::new());
    assert!(!w.fires("approval-expired", KEY));
}

// approval-expiring

#[test]
fn approval_expiring_within_the_window_fires() {
    let mut w = clean();
    w.appr("APR-1").expires_at = now() + days(10);
    only(&w, "approval-expiring", KEY);
}

#[test]
fn approval_expiring_after_the_window_does_not_fire() {
    let mut w = clean();
    w.appr("APR-1").expires_at = now() + days(15);
    assert!(!w.fires("approval-expiring", KEY));
}

// credential-stale

#[test]
fn key_used_long_ago_is_stale() {
    let mut w = clean();
    w.cred(KEY).created = Some(now() - days(60));
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(91),
        service: Some("s3".into()),
        region: None,
    };
    w.cred(KEY).created = Some(now() - days(80));
    only(&w, "credential-stale", KEY);
}

#[test]
fn key_used_exactly_at_the_threshold_is_not_stale() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(90),
        service: None,
        region: None,
    };
    assert!(!w.fires("credential-stale", KEY));
}

#[test]
fn stale_threshold_is_a_parameter() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(31),
        service: None,
        region: None,
    };
    assert!(!w.fires("credential-stale", KEY));
    let mut cfg = RulesConfig::default();
    cfg.params.insert("stale_days".into(), Param::Int(30));
    assert!(w
        .fired_with(&cfg)
        .contains(&("credential-stale".into(), KEY.into())));
    let mut per_rule = RulesConfig::default();
    per_rule.overrides.insert(
        "credential-stale".into(),
        RuleOverride {
            params: [("stale_days".to_string(), Param::Int(30))].into(),
            ..RuleOverride::default()
        },
    );
    assert!(w
        .fired_with(&per_rule)
        .contains(&("credential-stale".into(), KEY.into())));
}

// credential-never-used

#[test]
fn never_used_old_key_fires() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Never;
    w.cred(KEY).created = Some(now() - days(46));
    only(&w, "credential-never-used", KEY);
}

#[test]
fn never_used_young_key_does_not_fire() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Never;
    w.cred(KEY).created = Some(now() - days(45));
    assert_eq!(w.fired(), BTreeSet::new());
}

#[test]
fn unknown_usage_is_never_treated_as_never_used() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Unknown;
    w.cred(KEY).created = Some(now() - days(80));
    assert!(!w.fires("credential-never-used", KEY));
    assert!(!w.fires("credential-stale", KEY));
}

// credential-rotation-overdue

#[test]
fn old_key_needs_rotation() {
    let mut w = clean();
    w.cred(KEY).created = Some(now() - days(91));
    only(&w, "credential-rotation-overdue", KEY);
}

#[test]
fn federated_credentials_do_not_rotate() {
    let mut w = clean();
    w.cred(KEY).created = Some(now() - days(400));
    w.cred(KEY).kind = CredentialKind::Federated;
    assert!(!w.fires("credential-rotation-overdue", KEY));
}

// secret-long-lived

#[test]
fn client_secret_without_expiry_is_long_lived() {
    let mut w = clean();
    w.cred(KEY).kind = CredentialKind::ClientSecret;
    w.cred(KEY).expires = None;
    only(&w, "secret-long-lived", KEY);
}

#[test]
fn secret_valid_for_more_than_a_year_is_long_lived() {
    let mut w = clean();
    let created = now() - days(10);
    let c = w.cred(KEY);
    c.kind = CredentialKind::Certificate;
    c.created = Some(created);
    c.expires = Some(created + days(366));
    only(&w, "secret-long-lived", KEY);
    w.cred(KEY).expires = Some(created + days(365));
    assert!(!w.fires("secret-long-lived", KEY));
}

#[test]
fn access_keys_are_not_judged_by_expiry() {
    let w = clean();
    assert!(!w.fires("secret-long-lived", KEY));
}

// identity-multiple-active-keys

#[test]
fn two_active_keys_fire() {
    let mut w = clean();
    w.inv.credentials.push(key("AKIAAAAAAAAAAAAAAAA2", USER));
    only(&w, "identity-multiple-active-keys", USER);
}

#[test]
fn second_inactive_key_does_not_fire() {
    let mut w = clean();
    let mut k = key("AKIAAAAAAAAAAAAAAAA2", USER);
    k.active = false;
    w.inv.credentials.push(k);
    assert!(!w.fires("identity-multiple-active-keys", USER));
    assert_eq!(w.fired(), BTreeSet::new());
}

// nhi-human-login

#[test]
fn console_password_on_a_machine_user_fires() {
    let mut w = clean();
    w.ident(USER).human_login = true;
    only(&w, "nhi-human-login", USER);
}

#[test]
fn disabled_identity_with_login_does_not_fire() {
    let mut w = clean();
    w.ident(USER).human_login = true;
    w.ident(USER).enabled = false;
    assert!(!w.fires("nhi-human-login", USER));
}

// identity-overscoped

const S3_FULL: &str = "arn:aws:iam::aws:policy/AmazonS3FullAccess";

#[test]
fn entitlement_beyond_scope_fires() {
    let mut w = clean();
    w.inv
        .entitlements
        .push(policy(S3_FULL, &["s3:*"], PrivilegeLevel::Write));
    w.inv.grants.push(grant(USER, S3_FULL));
    only(&w, "identity-overscoped", USER);
}

#[test]
fn entitlement_approved_by_id_is_in_scope() {
    let mut w = clean();
    w.inv
        .entitlements
        .push(policy(S3_FULL, &["s3:*"], PrivilegeLevel::Write));
    w.inv.grants.push(grant(USER, S3_FULL));
    w.appr("APR-1").scope.entitlements.push(S3_FULL.into());
    assert!(!w.fires("identity-overscoped", USER));
}

#[test]
fn wider_approved_pattern_covers_narrower_action() {
    let mut w = clean();
    w.appr("APR-1").scope.actions = vec!["s3:*".into()];
    assert!(!w.fires("identity-overscoped", USER));
    w.appr("APR-1").scope.actions = vec!["s3:GetObject".into()];
    assert!(w.fires("identity-overscoped", USER));
}

// identity-overscoped-via-assume and identity-admin-equivalent through chains

const ROLE_A: &str = "arn:aws:iam::111122223333:role/reader";
const ROLE_B: &str = "arn:aws:iam::111122223333:role/admin";
const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

fn chain() -> World {
    let mut w = clean();
    w.inv.identities.push(identity(ROLE_A, IdentityKind::Role));
    w.inv.identities.push(identity(ROLE_B, IdentityKind::Role));
    w.inv
        .entitlements
        .push(policy(ADMIN, &["*"], PrivilegeLevel::Admin));
    w.inv.grants.push(grant(ROLE_A, READ_POLICY));
    w.inv.grants.push(grant(ROLE_B, ADMIN));
    w.inv.trusts.push(trust(USER, ROLE_A));
    w.inv.trusts.push(trust(ROLE_A, ROLE_B));
    w
}

#[test]
fn admin_two_hops_away_is_overscope_via_assume_and_admin() {
    let w = chain();
    let fired = w.fired();
    let expected: BTreeSet<(String, String)> = [
        ("identity-overscoped-via-assume", USER),
        ("identity-admin-equivalent", USER),
        ("identity-admin-equivalent", ROLE_A),
        ("identity-admin-equivalent", ROLE_B),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(fired, expected);
    assert!(
        !w.fires("identity-overscoped", USER),
        "direct entitlements are within scope"
    );
}

#[test]
fn approved_assume_target_stops_the_overscope_walk() {
    let mut w = chain();
    w.appr("APR-1").scope.assume = vec!["arn:aws:iam::111122223333:role/reader".into()];
    assert!(!w.fires("identity-overscoped-via-assume", USER));
    // Admin is about effective power, not approval: still reachable.
    assert!(w.fires("identity-admin-equivalent", USER));
}

#[test]
fn unapproved_identity_is_not_judged_for_overscope() {
    let mut w = chain();
    w.approvals.clear();
    assert!(!w.fires("identity-overscoped-via-assume", USER));
}

#[test]
fn admin_through_a_group_grant_fires() {
    let mut w = clean();
    w.inv
        .entitlements
        .push(policy(ADMIN, &["*"], PrivilegeLevel::Admin));
    let mut g = grant(USER, ADMIN);
    g.via = Some("arn:aws:iam::111122223333:group/admins".into());
    w.inv.grants.push(g);
    let fired = w.fired();
    assert!(
        fired.contains(&("identity-admin-equivalent".into(), USER.into())),
        "{fired:?}"
    );
}

#[test]
fn trust_cycles_terminate_and_propagate() {
    let mut w = chain();
    w.inv.trusts.push(trust(ROLE_B, USER));
    let fired = w.fired();
    assert!(fired.contains(&("identity-admin-equivalent".into(), USER.into())));
}

// identity-no-owner

#[test]
fn identity_without_owner_fires() {
    let mut w = clean();
    w.ident(USER).owner = None;
    only(&w, "identity-no-owner", USER);
    w.ident(USER).owner = Some("   ".into());
    only(&w, "identity-no-owner", USER);
}

#[test]
fn disabled_identity_without_owner_does_not_fire() {
    let mut w = clean();
    w.ident(USER).owner = None;
    w.ident(USER).enabled = false;
    assert!(!w.fires("identity-no-owner", USER));
}

// approval-self-approved

#[test]
fn self_approved_record_fires() {
    let mut w = clean();
    w.appr("APR-1").approver = " Alice@Example.com ".into();
    only(&w, "approval-self-approved", "APR-1");
}

#[test]
fn independent_approver_does_not_fire() {
    assert!(!clean().fires("approval-self-approved", "APR-1"));
}

// credential-used-outside-scope

#[test]
fn use_in_an_unapproved_service_fires() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(1),
        service: Some("iam".into()),
        region: Some("eu-west-1".into()),
    };
    only(&w, "credential-used-outside-scope", KEY);
}

#[test]
fn use_in_an_unapproved_region_fires() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(1),
        service: Some("s3".into()),
        region: Some("us-east-1".into()),
    };
    only(&w, "credential-used-outside-scope", KEY);
}

#[test]
fn use_with_unrecorded_service_or_unrestricted_scope_does_not_fire() {
    let mut w = clean();
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(1),
        service: None,
        region: None,
    };
    assert!(!w.fires("credential-used-outside-scope", KEY));
    let mut w = clean();
    w.appr("APR-1").scope.services.clear();
    w.appr("APR-1").scope.regions.clear();
    w.cred(KEY).usage = Usage::Used {
        at: now() - days(1),
        service: Some("iam".into()),
        region: Some("us-east-1".into()),
    };
    assert!(!w.fires("credential-used-outside-scope", KEY));
}

// approval-emergency-too-long / approval-emergency-still-active

fn emergency(w: &mut World, hours: i64, ended_hours_ago: Option<i64>) {
    let a = w.appr("APR-1");
    a.approved_at = now() - chrono::Duration::hours(1);
    a.expires_at = a.approved_at + chrono::Duration::hours(hours);
    a.emergency = Some(Emergency {
        incident: "INC-9".into(),
        ended_at: ended_hours_ago.map(|h| now() - chrono::Duration::hours(h)),
    });
}

#[test]
fn emergency_longer_than_the_window_fires() {
    let mut w = clean();
    emergency(&mut w, 48, None);
    // A short approval is also "expiring soon": only the emergency rule matters here.
    assert!(w.fires("approval-emergency-too-long", "APR-1"));
}

#[test]
fn emergency_within_the_window_does_not_fire() {
    let mut w = clean();
    emergency(&mut w, 24, None);
    assert!(!w.fires("approval-emergency-too-long", "APR-1"));
    assert!(!w.fires("approval-emergency-still-active", "APR-1"));
}

#[test]
fn emergency_still_active_after_it_ended_fires() {
    let mut w = clean();
    emergency(&mut w, 20, Some(0));
    assert!(w.fires("approval-emergency-still-active", "APR-1"));
}

#[test]
fn revoked_emergency_after_it_ended_does_not_fire() {
    let mut w = clean();
    emergency(&mut w, 20, Some(0));
    w.appr("APR-1").revoked_at = Some(now());
    assert!(!w.fires("approval-emergency-still-active", "APR-1"));
}

// credential-root-access-key

const ROOT: &str = "arn:aws:iam::111122223333:root";

#[test]
fn active_root_key_fires() {
    let mut w = clean();
    w.inv.identities.push(identity(ROOT, IdentityKind::Root));
    w.inv.credentials.push(key("AKIAROOT000000000001", ROOT));
    w.approvals.push(approval("APR-ROOT", ROOT));
    only(&w, "credential-root-access-key", "AKIAROOT000000000001");
}

#[test]
fn inactive_root_key_does_not_fire() {
    let mut w = clean();
    w.inv.identities.push(identity(ROOT, IdentityKind::Root));
    let mut k = key("AKIAROOT000000000001", ROOT);
    k.active = false;
    w.inv.credentials.push(k);
    assert!(!w.fires("credential-root-access-key", "AKIAROOT000000000001"));
}

#[test]
fn entitlement_with_unlisted_actions_is_beyond_scope_unless_approved_by_id() {
    let mut w = clean();
    w.inv.entitlements.push(policy(
        "arn:aws:iam::111122223333:policy/opaque",
        &[],
        PrivilegeLevel::Write,
    ));
    w.inv
        .grants
        .push(grant(USER, "arn:aws:iam::111122223333:policy/opaque"));
    assert!(w.fires("identity-overscoped", USER));
    w.appr("APR-1")
        .scope
        .entitlements
        .push("arn:aws:iam::111122223333:policy/opaque".into());
    assert!(!w.fires("identity-overscoped", USER));
}

#[test]
fn expiry_an_hour_ago_counts_as_past() {
    let mut w = clean();
    w.appr("APR-1").expires_at = now() - chrono::Duration::hours(1);
    let mut cfg = RulesConfig::default();
    cfg.paths.push("tests/data/rules".into());
    assert!(w
        .fired_with(&cfg)
        .contains(&("test-approval-ended".into(), KEY.into())));
}
