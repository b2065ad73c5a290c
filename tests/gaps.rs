//! A gap holds only what it blinds, end to end: a snapshot source whose
//! inventory carries one typed gap, read by the library pass into a real
//! SQLite store. Per gap: which planned actions act and which are held (with
//! the reason naming what could not be read), then, after every finding is
//! fixed at the source, which findings resolve and which stay open.
//!
//! The engine judges gaps by what they blind, never by provider: the world
//! is the support module's AWS estate, the gaps are whichever kind each
//! case needs.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use nhi_assure::engine::plan::{ResolvedAction, Verdict};
use nhi_assure::pass::Context;
use nhi_assure::store::Store;
use nhi_contract::{
    Approval, CredentialKind, Gap, IdentityKind, Inventory, PrivilegeLevel, Unseen, Usage,
};
use support::*;

const SVC: &str = "arn:aws:iam::111122223333:user/svc";
const SVC_KEY: &str = "AKIASSSSSSSSSSSSSSS1";
const OLD: &str = "arn:aws:iam::111122223333:user/old";
const OLD_KEY: &str = "AKIAOOOOOOOOOOOOOOO1";
const NEW: &str = "arn:aws:iam::111122223333:user/new";
const NEW_KEY: &str = "AKIANNNNNNNNNNNNNNN1";
const NEW_FED: &str = "new-github-deploy";
const ADMIN_POLICY: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

/// One finding per kind of dependency:
/// - `ci`'s key: its approval expired (`approval-expired`, disable) — reads
///   approvals only;
/// - `svc`: approved, but also holds administrator access
///   (`identity-admin-equivalent`, `identity-overscoped`, and this test's
///   `detach-overscoped`, which detaches entitlements) — reads privilege;
/// - `old`'s key: last used 200 days ago (`credential-stale`) — reads usage;
/// - `old`'s read policy: unused for 200 days (`entitlement-unused`, which
///   detaches it) — reads entitlement usage and privilege;
/// - `new`: an access key and a federated credential, neither approved
///   (`credential-unapproved`).
fn world() -> World {
    let mut w = clean();
    w.appr("APR-1").expires_at = now() - days(1);
    w.inv.identities.push(identity(SVC, IdentityKind::User));
    w.inv.credentials.push(key(SVC_KEY, SVC));
    w.inv
        .entitlements
        .push(policy(ADMIN_POLICY, &["*"], PrivilegeLevel::Admin));
    w.inv.grants.push(grant(SVC, READ_POLICY));
    w.inv.grants.push(grant(SVC, ADMIN_POLICY));
    w.approvals.push(approval("APR-2", SVC));

    w.inv.identities.push(identity(OLD, IdentityKind::User));
    let mut old = key(OLD_KEY, OLD);
    old.usage = Usage::Used {
        at: now() - days(200),
        service: Some("s3".into()),
        region: Some("eu-west-1".into()),
    };
    w.inv.credentials.push(old);
    let mut unused = grant(OLD, READ_POLICY);
    unused.last_used = Some(Usage::Used {
        at: now() - days(200),
        service: Some("s3".into()),
        region: None,
    });
    w.inv.grants.push(unused);
    w.approvals.push(approval("APR-3", OLD));

    w.inv.identities.push(identity(NEW, IdentityKind::User));
    w.inv.credentials.push(key(NEW_KEY, NEW));
    let mut fed = key(NEW_FED, NEW);
    fed.kind = CredentialKind::Federated;
    w.inv.credentials.push(fed);
    w
}

/// The same world with every finding fixed at the source: `ci`'s key
/// disabled, `svc`'s administrator access and `old`'s unused policy
/// detached, `old`'s and `new`'s credentials deleted.
fn fixed(mut w: World) -> World {
    w.cred(KEY).active = false;
    w.inv
        .grants
        .retain(|g| g.entitlement != ADMIN_POLICY && g.identity != OLD);
    w.inv
        .credentials
        .retain(|c| ![OLD_KEY, NEW_KEY, NEW_FED].contains(&c.id.as_str()));
    w
}

fn write_world(dir: &Path, w: &World, gap: &Unseen) {
    let mut inv: Inventory = w.inv.clone();
    inv.coverage.gaps = vec![Gap {
        unseen: gap.clone(),
        reason: "403 Forbidden".into(),
    }];
    let mut file = serde_json::to_value(&inv).expect("inventory json");
    if let Some(o) = file.as_object_mut() {
        o.insert("format".into(), "nhi-assure.snapshot/v1".into());
        o.insert("provider".into(), "aws".into());
    }
    std::fs::write(
        dir.join("estate.json"),
        serde_json::to_string_pretty(&file).expect("json"),
    )
    .expect("write estate");
    let list: Vec<serde_json::Value> = w.approvals.iter().map(approval_file_entry).collect();
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    std::fs::write(
        dir.join("approvals/all.yaml"),
        serde_json::to_string_pretty(&serde_json::json!({ "approvals": list })).expect("json"),
    )
    .expect("write approvals");
}

/// An approval as an approvals-as-code file holds it.
fn approval_file_entry(a: &Approval) -> serde_json::Value {
    let mut v = serde_json::to_value(a).expect("approval json");
    if let Some(o) = v.as_object_mut() {
        o.remove("source");
        o.retain(|_, x| !x.is_null());
    }
    v
}

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("rules")).expect("mkdir");
    std::fs::write(
        dir.join("rules/detach-overscoped.yaml"),
        "id: detach-overscoped\ntitle: detach what no approval covers\ndescription: d\nseverity: high\nsubject: identity\ncondition: identity.overscope_direct > 0\naction: disable\ntarget: entitlements\nremediation: r\ncontrols: [\"OWASP-NHI-2025:NHI5\"]\n",
    )
    .expect("rule");
    std::fs::write(
        dir.join("nhi-assure.toml"),
        "store = \"store.db\"\nas_of = \"2026-11-20T12:00:00Z\"\n[rules]\npaths = [\"rules\"]\n[[sources]]\ntype = \"snapshot\"\nname = \"aws\"\nprovider = \"aws\"\npath = \"estate.json\"\n[[approvals]]\ntype = \"files\"\nname = \"a\"\npath = \"approvals\"\nmax_validity_days = 3650\n",
    )
    .expect("config");
}

/// The action on `subject` (a credential id, else an identity id).
fn action<'a>(plan: &'a [ResolvedAction], subject: &str) -> &'a ResolvedAction {
    plan.iter()
        .find(|a| {
            a.request.credential_id.as_deref() == Some(subject)
                || (a.request.credential_id.is_none() && a.request.identity_id == subject)
        })
        .unwrap_or_else(|| panic!("no action on {subject}: {plan:#?}"))
}

/// `rule|subject` of each open finding.
async fn open(ctx: &Context) -> BTreeSet<String> {
    let store = ctx.store().await.expect("store");
    store
        .open_findings()
        .await
        .expect("open findings")
        .into_iter()
        .map(|f| {
            let subject = f.finding.credential_id.unwrap_or(f.finding.identity_id);
            format!("{}|{subject}", f.finding.rule_id)
        })
        .collect()
}

struct Case {
    gap: Unseen,
    /// Subjects whose actions are held; every other action acts.
    held: &'static [&'static str],
    /// What the skip reason says for them.
    reason: &'static str,
    /// Findings that stay open once everything is fixed; the rest resolve.
    open_after_fix: &'static [&'static str],
}

const ALL: &[&str] = &[
    "approval-expired|AKIAAAAAAAAAAAAAAAA1",
    "credential-stale|AKIAOOOOOOOOOOOOOOO1",
    "credential-unapproved|AKIANNNNNNNNNNNNNNN1",
    "credential-unapproved|new-github-deploy",
    "detach-overscoped|arn:aws:iam::111122223333:user/svc",
    "entitlement-unused|arn:aws:iam::111122223333:user/old",
    "identity-admin-equivalent|arn:aws:iam::111122223333:user/svc",
    "identity-overscoped|arn:aws:iam::111122223333:user/svc",
];

async fn check(case: &Case) {
    let dir = tempfile::tempdir().expect("tempdir");
    setup(dir.path());
    write_world(dir.path(), &world(), &case.gap);
    let ctx = Context::load(&dir.path().join("nhi-assure.toml")).expect("config");
    let first = ctx.pass("scan").await.expect("first pass");
    let what = &case.gap;
    assert_eq!(
        open(&ctx).await,
        ALL.iter().map(|s| s.to_string()).collect(),
        "{what}: every finding is recorded"
    );
    for subject in [KEY, SVC, OLD_KEY, OLD, NEW_KEY, NEW_FED] {
        let a = action(&first.plan, subject);
        if case.held.contains(&subject) {
            assert_eq!(a.status, Verdict::Skip, "{what}: {subject} is held: {a:?}");
            let reason = a.reason.as_deref().unwrap_or_default();
            assert!(
                reason.contains(case.reason),
                "{what}: {subject}: reason {reason:?} should say {:?}",
                case.reason
            );
        } else {
            assert_eq!(a.status, Verdict::Act, "{what}: {subject} acts: {a:?}");
        }
    }

    write_world(dir.path(), &fixed(world()), &case.gap);
    let second = ctx.pass("scan").await.expect("second pass");
    let expected: BTreeSet<String> = case.open_after_fix.iter().map(|s| s.to_string()).collect();
    assert_eq!(open(&ctx).await, expected, "{what}: open after the fix");
    assert_eq!(
        second.summary.resolved,
        (ALL.len() - expected.len()) as i64,
        "{what}: resolved"
    );
    // Replaying the recorded runs (reports, diffs) judges alike.
    let store = ctx.store().await.expect("store");
    let lives = nhi_assure::report::diff::replay(store, second.summary.run_id)
        .await
        .expect("replay");
    let replayed: BTreeSet<String> = lives
        .open
        .values()
        .map(|l| {
            let (rule, rest) = l
                .fingerprint
                .split_once('|')
                .expect("rule|identity|subject");
            let (identity, subject) = rest.split_once('|').expect("identity|subject");
            let subject = if subject.is_empty() {
                identity
            } else {
                subject
            };
            format!("{rule}|{subject}")
        })
        .collect();
    assert_eq!(replayed, expected, "{what}: replayed open after the fix");
}

/// With each gap, exactly what depends on what it blinds is held: the
/// actions are skipped naming what could not be read, the findings stay
/// open when fixed; everything else acts and resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gap_holds_only_what_it_blinds() {
    let cases = [
        // Directory roles unread: privilege is unknown. The expired
        // approval's key is still disabled and its finding resolves; the
        // privilege findings stay open and nothing is detached.
        Case {
            gap: Unseen::DirectoryRoles,
            held: &[SVC, OLD],
            reason: "source aws could not read: privilege (directory roles)",
            open_after_fix: &[
                "detach-overscoped|arn:aws:iam::111122223333:user/svc",
                "entitlement-unused|arn:aws:iam::111122223333:user/old",
                "identity-admin-equivalent|arn:aws:iam::111122223333:user/svc",
                "identity-overscoped|arn:aws:iam::111122223333:user/svc",
            ],
        },
        // Entitlement usage unread (service last-accessed data of some
        // principals): only the unused-entitlement finding and its detach
        // are held; privilege and usage findings are judged.
        Case {
            gap: Unseen::EntitlementUsage,
            held: &[OLD],
            reason: "source aws could not read: entitlement usage (entitlement usage)",
            open_after_fix: &["entitlement-unused|arn:aws:iam::111122223333:user/old"],
        },
        // Last use unread: staleness is unknown; an unapproved key is not.
        Case {
            gap: Unseen::Usage,
            held: &[OLD_KEY],
            reason: "source aws could not read: usage (usage)",
            open_after_fix: &["credential-stale|AKIAOOOOOOOOOOOOOOO1"],
        },
        // Federated credentials unlisted: only they are held.
        Case {
            gap: Unseen::Credentials {
                kind: CredentialKind::Federated,
            },
            held: &[NEW_FED],
            reason: "source aws could not read: federated credentials (federated)",
            open_after_fix: &["credential-unapproved|new-github-deploy"],
        },
        // A whole account unread: everything is held.
        Case {
            gap: Unseen::Account {
                via_role: None,
                subjects: None,
            },
            held: &[KEY, SVC, OLD_KEY, OLD, NEW_KEY, NEW_FED],
            reason: "source aws could not read: the whole source (account)",
            open_after_fix: ALL,
        },
    ];
    for case in &cases {
        check(case).await;
    }
}
