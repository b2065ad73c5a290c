//! The dry-run plan acts on exactly the intended target, honours protected
//! subjects, and never acts on what a source could not fully see.

mod support;

use nhi_assure::engine;
use nhi_assure::engine::plan::{Protected, ResolvedAction, Verdict};
use nhi_assure::engine::rules::{Action, RuleOverride, RuleSet, RulesConfig};
use nhi_contract::{CredentialKind, Gap, Operation, Unseen, Usage};
use support::*;

const KEY2: &str = "AKIAAAAAAAAAAAAAAAA2";

struct Planned {
    actions: Vec<ResolvedAction>,
}

fn plan_of(w: &World, protected: &[&str], cfg: &RulesConfig) -> Planned {
    let rules = RuleSet::load(cfg, std::path::Path::new(".")).expect("rules");
    let estate = w.estate();
    let p = Protected::new(&protected.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let eval = engine::evaluate(&estate, &rules, &p, now());
    Planned {
        actions: eval.plan.resolve(&estate, &eval.facts, &rules),
    }
}

fn skipped(a: &ResolvedAction) -> Option<&str> {
    (a.status == Verdict::Skip).then_some(a.reason.as_deref().unwrap_or(""))
}

/// Two keys on one user; only the second is stale.
fn two_keys() -> World {
    let mut w = clean();
    let mut k2 = key(KEY2, USER);
    k2.usage = Usage::Used {
        at: now() - days(200),
        service: Some("s3".into()),
        region: Some("eu-west-1".into()),
    };
    w.inv.credentials.push(k2);
    w
}

#[test]
fn two_keys_on_one_user_only_the_stale_one_is_planned() {
    let plan = plan_of(&two_keys(), &[], &RulesConfig::default());
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    let a = &plan.actions[0];
    assert_eq!(a.request.operation, Operation::DisableCredential);
    assert_eq!(a.request.identity_id, USER);
    assert_eq!(a.request.credential_id.as_deref(), Some(KEY2));
    assert_eq!(a.rules, vec!["credential-stale".to_string()]);
    assert_eq!(a.status, Verdict::Act);
}

#[test]
fn several_rules_on_one_credential_make_one_action() {
    let mut w = two_keys();
    w.approvals.clear();
    let plan = plan_of(&w, &[], &RulesConfig::default());
    let on_key2: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.request.credential_id.as_deref() == Some(KEY2))
        .collect();
    assert_eq!(on_key2.len(), 1);
    assert_eq!(
        on_key2[0].rules,
        vec!["credential-stale", "credential-unapproved"]
    );
    // KEY is only unapproved.
    let on_key1: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.request.credential_id.as_deref() == Some(KEY))
        .collect();
    assert_eq!(on_key1.len(), 1);
    assert_eq!(on_key1[0].rules, vec!["credential-unapproved"]);
}

#[test]
fn protected_subjects_are_planned_as_skipped() {
    let plan = plan_of(
        &two_keys(),
        &["arn:aws:iam::*:user/c*"],
        &RulesConfig::default(),
    );
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(skipped(&plan.actions[0]), Some("protected subject"));
    let by_key = plan_of(&two_keys(), &[KEY2], &RulesConfig::default());
    assert_eq!(skipped(&by_key.actions[0]), Some("protected subject"));
    let other = plan_of(&two_keys(), &["AKIA*1"], &RulesConfig::default());
    assert_eq!(
        other.actions[0].status,
        Verdict::Act,
        "protecting KEY must not protect KEY2"
    );
}

#[test]
fn partial_source_gets_no_actions_for_what_it_could_not_see() {
    let with_gap = |unseen: Unseen| {
        let mut w = two_keys();
        w.inv.coverage.gaps.push(Gap {
            unseen,
            reason: "refused with 500".into(),
        });
        plan_of(&w, &[], &RulesConfig::default())
    };
    // Blind to SSH keys only: the access key it did see is acted on.
    let plan = with_gap(Unseen::Credentials {
        kind: CredentialKind::SshKey,
    });
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].status, Verdict::Act);
    // Blind to access keys, or to the whole account: nothing acts.
    let access_keys = Unseen::Credentials {
        kind: CredentialKind::AccessKey,
    };
    let account = Unseen::Account {
        via_role: Some("arn:aws:iam::444455556666:role/audit".into()),
        subjects: None,
    };
    for what in [access_keys, account] {
        let plan = with_gap(what.clone());
        assert_eq!(plan.actions.len(), 1);
        assert!(
            skipped(&plan.actions[0]).is_some_and(|r| r.contains("source aws could not read")),
            "{what}: {:?}",
            plan.actions[0]
        );
    }
}

/// One target asked for by a rule the source saw and by one it could not
/// judge: the seen ask alone carries the action — it acts, with its own
/// operation and naming only itself; the held rule neither blocks nor
/// upgrades it (here: a usage gap holds the stale rule's delete, the
/// unapproved rule's disable acts). Only when every ask is held is it
/// skipped.
#[test]
fn an_action_acts_on_the_asks_its_source_saw() {
    let mut cfg = RulesConfig::default();
    cfg.overrides.insert(
        "credential-stale".into(),
        RuleOverride {
            action: Some(Action::Delete),
            ..RuleOverride::default()
        },
    );
    let mut w = two_keys();
    w.approvals.clear();
    let on_key2 = |w: &World| {
        let plan = plan_of(w, &[], &cfg);
        plan.actions
            .into_iter()
            .find(|a| a.request.credential_id.as_deref() == Some(KEY2))
            .expect("an action on KEY2")
    };
    // Everything seen: the strongest ask wins, both rules named.
    let a = on_key2(&w);
    assert_eq!(
        (a.request.operation, a.status),
        (Operation::DeleteCredential, Verdict::Act)
    );
    assert_eq!(a.rules, vec!["credential-stale", "credential-unapproved"]);
    // Last use unread: the unapproved rule's disable acts alone.
    w.inv.coverage.gaps.push(Gap {
        unseen: Unseen::Usage,
        reason: "403".into(),
    });
    let a = on_key2(&w);
    assert_eq!(
        (a.request.operation, a.status),
        (Operation::DisableCredential, Verdict::Act),
        "{a:?}"
    );
    assert_eq!(a.rules, vec!["credential-unapproved"]);
    // Approved again: only the held stale ask is left, and it is skipped.
    w.approvals = two_keys().approvals;
    let a = on_key2(&w);
    assert_eq!(a.status, Verdict::Skip, "{a:?}");
    assert_eq!(a.request.operation, Operation::DeleteCredential);
    assert_eq!(
        a.reason.as_deref(),
        Some("source aws could not read: usage (usage)")
    );
}

#[test]
fn failed_source_yields_no_findings_and_no_actions() {
    let mut w = two_keys();
    w.failed = true;
    assert!(w.fired().is_empty());
    assert!(plan_of(&w, &[], &RulesConfig::default()).actions.is_empty());
}

#[test]
fn flag_override_removes_the_action() {
    let mut cfg = RulesConfig::default();
    cfg.overrides.insert(
        "credential-stale".into(),
        RuleOverride {
            action: Some(Action::Flag),
            ..RuleOverride::default()
        },
    );
    assert!(plan_of(&two_keys(), &[], &cfg).actions.is_empty());
}

#[test]
fn human_login_plans_removing_the_login_not_the_identity() {
    let mut w = clean();
    w.ident(USER).human_login = true;
    let plan = plan_of(&w, &[], &RulesConfig::default());
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].request.operation, Operation::RemoveLogin);
    assert_eq!(plan.actions[0].request.credential_id, None);
}

const DIRECT: &str = "arn:aws:iam::111122223333:policy/glue-all";
const VIA_GROUP: &str = "arn:aws:iam::111122223333:policy/iam-all";
const GROUP: &str = "arn:aws:iam::111122223333:group/infra-admins";
const ELIGIBLE: &str = "/providers/Microsoft.Authorization/roleDefinitions/owner";
const ENTRA_GROUP_ROLE: &str = "directoryRole:62e90394-69f5-4237-9190-012177145e10";

/// A rule pack that detaches whatever lies beyond the approval's scope.
fn detach_rules(dir: &std::path::Path) -> RulesConfig {
    std::fs::write(
        dir.join("detach.yaml"),
        "id: detach-overscope\ntitle: T\ndescription: d\nseverity: high\nsubject: identity\n\
         condition: identity.approved && identity.overscope_direct > 0\naction: disable\n\
         target: entitlements\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI5\"]\n",
    )
    .expect("rule");
    RulesConfig {
        builtin: false,
        paths: vec![dir.to_path_buf()],
        ..RulesConfig::default()
    }
}

/// The approved user holds, beyond its scope, one policy directly, one
/// through an AWS group, an eligible (PIM) Owner and an Entra ID directory
/// role through a group.
fn held_four_ways() -> World {
    let mut w = clean();
    for (id, level) in [
        (DIRECT, nhi_contract::PrivilegeLevel::Write),
        (VIA_GROUP, nhi_contract::PrivilegeLevel::Admin),
        (ELIGIBLE, nhi_contract::PrivilegeLevel::Admin),
        (ENTRA_GROUP_ROLE, nhi_contract::PrivilegeLevel::Admin),
    ] {
        w.inv.entitlements.push(policy(id, &["x:*"], level));
    }
    w.inv.grants.push(grant(USER, DIRECT));
    let mut g = grant(USER, VIA_GROUP);
    g.via = Some(GROUP.into());
    w.inv.grants.push(g);
    let mut g = grant(USER, ELIGIBLE);
    g.eligible = true;
    w.inv.grants.push(g);
    let mut g = grant(USER, ENTRA_GROUP_ROLE);
    g.via = Some("group:0f1e2d3c-0000-4000-8000-000000000001".into());
    w.inv.grants.push(g);
    // Held both directly and through the group: detachable (the direct one).
    let mut g = grant(USER, DIRECT);
    g.via = Some(GROUP.into());
    w.inv.grants.push(g);
    w
}

#[test]
fn detaching_lists_only_entitlements_held_directly_and_actively() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = detach_rules(dir.path());
    let w = held_four_ways();
    let rules = RuleSet::load(&cfg, std::path::Path::new(".")).expect("rules");
    let estate = w.estate();
    let eval = engine::evaluate(&estate, &rules, &Protected::default(), now());
    // All four count as beyond scope, each once.
    let f = &eval.facts.identities[0];
    assert_eq!(f.overscope_direct.len(), 4, "{:?}", f.overscope_direct);
    let plan = eval.plan.resolve(&estate, &eval.facts, &rules);
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(plan[0].request.operation, Operation::DetachEntitlements);
    assert_eq!(plan[0].request.entitlements, vec![DIRECT.to_string()]);
    assert_eq!(plan[0].status, Verdict::Act);
}

#[test]
fn nothing_held_directly_beyond_scope_skips_the_detach_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = detach_rules(dir.path());
    let mut w = held_four_ways();
    w.inv
        .grants
        .retain(|g| !(g.entitlement == DIRECT && g.via.is_none()));
    let plan = plan_of(&w, &[], &cfg);
    assert_eq!(plan.actions.len(), 1, "{:?}", plan.actions);
    let a = &plan.actions[0];
    assert_eq!(a.request.operation, Operation::DetachEntitlements);
    assert!(a.request.entitlements.is_empty(), "{a:?}");
    assert!(
        skipped(a).is_some_and(|r| r.contains("through a group or as eligible")),
        "{a:?}"
    );
}

#[test]
fn eligible_and_group_held_roles_count_for_admin_and_show_in_the_evidence() {
    let mut w = clean();
    w.inv.entitlements.push(policy(
        ELIGIBLE,
        &["*"],
        nhi_contract::PrivilegeLevel::Admin,
    ));
    let mut g = grant(USER, ELIGIBLE);
    g.eligible = true;
    w.inv.grants.push(g);
    assert!(w.fires("identity-admin-equivalent", USER));
    let rules = RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
    let estate = w.estate();
    let eval = engine::evaluate(&estate, &rules, &Protected::default(), now());
    let findings =
        engine::findings::materialize(&estate, &eval.facts, &eval.graph, &rules, &eval.hits);
    let admin = findings
        .iter()
        .find(|f| &*f.rule_id == "identity-admin-equivalent")
        .expect("admin finding");
    assert_eq!(
        admin.evidence.value()["held_indirectly"],
        serde_json::json!([{"entitlement": ELIGIBLE, "via": null, "eligible": true}]),
        "{:#}",
        admin.evidence
    );
}

fn exception(
    rule: &str,
    subject: &str,
    credential: Option<&str>,
    ends_in_days: i64,
) -> nhi_contract::Exception {
    nhi_contract::Exception {
        id: format!("EXC-{rule}"),
        rule: rule.into(),
        subject: subject.into(),
        credential: credential.map(str::to_string),
        reason: "accepted for the test".into(),
        requester: "dev@example.com".into(),
        approver: "lead@example.com".into(),
        approved_at: now() - days(10),
        expires_at: now() + days(ends_in_days),
        reference: None,
        source: "exceptions/test.yaml:2:5".into(),
    }
}

fn plan_with(w: &World, exceptions: Vec<nhi_contract::Exception>) -> Vec<ResolvedAction> {
    let rules = RuleSet::load(&RulesConfig::default(), std::path::Path::new(".")).expect("rules");
    let mut estate = w.estate();
    estate.exceptions = exceptions;
    let eval = engine::evaluate(&estate, &rules, &Protected::default(), now());
    eval.plan.resolve(&estate, &eval.facts, &rules)
}

#[test]
fn an_exception_skips_exactly_its_credential_and_rule() {
    // The stale KEY2 excepted, by a pattern over the user and the key id.
    let plan = plan_with(
        &two_keys(),
        vec![exception(
            "credential-stale",
            "arn:aws:iam::*:user/*",
            Some("*AAA2"),
            30,
        )],
    );
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(plan[0].request.credential_id.as_deref(), Some(KEY2));
    assert_eq!(
        skipped(&plan[0]),
        Some(
            format!(
                "excepted: EXC-credential-stale until {}",
                (now() + days(30)).format("%Y-%m-%dT%H:%M:%SZ")
            )
            .as_str()
        )
    );
    // A pattern naming another credential, another rule or another subject
    // covers nothing here: the action acts.
    for other in [
        exception("credential-stale", USER, Some(KEY), 30),
        exception("credential-never-used", USER, None, 30),
        exception(
            "credential-stale",
            "arn:aws:iam::*:user/someone-else",
            None,
            30,
        ),
    ] {
        let plan = plan_with(&two_keys(), vec![other.clone()]);
        assert_eq!(plan.len(), 1, "{other:?}");
        assert_eq!(plan[0].status, Verdict::Act, "{other:?}");
    }
}

#[test]
fn an_ended_exception_covers_nothing() {
    let plan = plan_with(
        &two_keys(),
        vec![exception("credential-stale", USER, None, 0)],
    );
    assert_eq!(plan.len(), 1);
    assert_eq!(
        plan[0].status,
        Verdict::Act,
        "at its end instant it no longer applies"
    );
}

#[test]
fn another_rule_asking_for_the_same_action_still_acts() {
    // KEY2 stale and unapproved; only the staleness is excepted.
    let mut w = two_keys();
    w.approvals.clear();
    let plan = plan_with(
        &w,
        vec![exception("credential-stale", USER, Some(KEY2), 30)],
    );
    let a = plan
        .iter()
        .find(|a| a.request.credential_id.as_deref() == Some(KEY2))
        .expect("planned");
    assert_eq!(a.status, Verdict::Act);
    assert_eq!(
        a.rules,
        vec!["credential-unapproved"],
        "carried by the ask no exception covers"
    );
}

/// A provider-managed identity (an AWS service-linked role) is never
/// remediated: a rule asking to act on its credential is planned as
/// skipped, with the reason; the same ask on the user it is copied from
/// acts.
#[test]
fn provider_managed_identities_are_never_acted_on() {
    const SLR: &str = "arn:aws:iam::111122223333:role/aws-service-role/elasticbeanstalk.amazonaws.com/AWSServiceRoleForElasticBeanstalk";
    let mut w = two_keys();
    let mut slr = identity(SLR, nhi_contract::IdentityKind::Role);
    slr.provider_managed = true;
    w.inv.identities.push(slr);
    let mut k = w.inv.credentials[1].clone();
    k.id = "AKIAAAAAAAAAAAAAAAA3".into();
    k.identity = SLR.into();
    w.inv.credentials.push(k);
    let plan = plan_of(&w, &[], &RulesConfig::default());
    let on = |ident: &str| -> Vec<&ResolvedAction> {
        plan.actions
            .iter()
            .filter(|a| a.request.identity_id == ident)
            .collect()
    };
    let slr_actions = on(SLR);
    assert!(!slr_actions.is_empty(), "{:?}", plan.actions);
    for a in slr_actions {
        assert!(
            skipped(a).is_some_and(|r| r.contains("service-linked")),
            "{a:?}"
        );
    }
    assert!(on(USER).iter().all(|a| a.status == Verdict::Act));
}

/// `held_four_ways` with last uses read: the in-scope read policy unused
/// for 200 days, the directly held policy beyond scope used 5 days ago,
/// the group-held and eligible ones never used.
fn with_last_uses() -> World {
    let mut w = held_four_ways();
    for g in &mut w.inv.grants {
        g.last_used = Some(match g.entitlement.as_str() {
            READ_POLICY => Usage::Used {
                at: now() - days(200),
                service: Some("s3".into()),
                region: None,
            },
            DIRECT => Usage::Used {
                at: now() - days(5),
                service: Some("glue".into()),
                region: None,
            },
            _ => Usage::Never,
        });
    }
    w
}

#[test]
fn unused_entitlements_detach_exactly_the_direct_grants_unused_beyond_the_threshold() {
    let w = with_last_uses();
    // Built-in rules alone: entitlement-unused asks; the used policy, the
    // group-held and the eligible ones stay.
    let plan = plan_of(&w, &[], &RulesConfig::default());
    let detach: Vec<&ResolvedAction> = plan
        .actions
        .iter()
        .filter(|a| a.request.operation == Operation::DetachEntitlements)
        .collect();
    assert_eq!(detach.len(), 1, "{:?}", plan.actions);
    assert_eq!(
        detach[0].request.entitlements,
        vec![READ_POLICY.to_string()]
    );
    assert_eq!(detach[0].rules, vec!["entitlement-unused".to_string()]);
    assert_eq!(detach[0].status, Verdict::Act);

    // Beside a rule detaching what lies beyond scope: one action, the union
    // of both sets, both rules named.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = detach_rules(dir.path());
    cfg.builtin = true;
    let plan = plan_of(&w, &[], &cfg);
    let detach: Vec<&ResolvedAction> = plan
        .actions
        .iter()
        .filter(|a| a.request.operation == Operation::DetachEntitlements)
        .collect();
    assert_eq!(detach.len(), 1, "{:?}", plan.actions);
    let mut ents = detach[0].request.entitlements.clone();
    ents.sort();
    assert_eq!(ents, vec![DIRECT.to_string(), READ_POLICY.to_string()]);
    assert_eq!(
        detach[0].rules,
        vec![
            "detach-overscope".to_string(),
            "entitlement-unused".to_string()
        ]
    );

    // A higher threshold: nothing is unused long enough, nothing detached.
    let cfg = RulesConfig {
        params: [(
            "unused_days".to_string(),
            nhi_assure::engine::rules::Param::Int(365),
        )]
        .into(),
        ..RulesConfig::default()
    };
    let plan = plan_of(&w, &[], &cfg);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| a.request.operation == Operation::DetachEntitlements),
        "{:?}",
        plan.actions
    );
}

#[test]
fn an_entitlement_usage_gap_holds_the_detach() {
    let mut w = with_last_uses();
    w.inv.coverage.gaps.push(Gap {
        unseen: Unseen::EntitlementUsage,
        reason: "1 of 2 principals not read".into(),
    });
    let plan = plan_of(&w, &[], &RulesConfig::default());
    let a = plan
        .actions
        .iter()
        .find(|a| a.request.operation == Operation::DetachEntitlements)
        .expect("planned, held");
    assert!(
        skipped(a).is_some_and(|r| r.contains("entitlement usage")),
        "{a:?}"
    );
    // What does not depend on it still acts.
    let mut w = two_keys();
    w.inv.coverage.gaps.push(Gap {
        unseen: Unseen::EntitlementUsage,
        reason: "x".into(),
    });
    let plan = plan_of(&w, &[], &RulesConfig::default());
    assert!(plan.actions.iter().all(|a| a.status == Verdict::Act));
}
