//! An approval record a source could not map never causes a revocation:
//! the subjects it names are held for the pass (actions skipped naming the
//! ticket and its problem, findings kept open), a record naming no subject
//! holds everything, the run records a finding about it and never exits
//! clean. The source here is a test one whose tickets the test changes; the
//! inventory is a snapshot file and the store a real SQLite database.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nhi_assure::engine::plan::{ResolvedAction, Verdict};
use nhi_assure::pass::Context;
use nhi_assure::store::Store;
use nhi_contract::{Approval, ApprovalRead, ApprovalSource, SourceError, Unmapped, Usage};
use support::*;

const OLD: &str = "arn:aws:iam::111122223333:user/old";
const OLD_KEY: &str = "AKIAOOOOOOOOOOOOOOO1";

/// A ticket system whose tickets the test sets.
#[derive(Clone, Default)]
struct Tickets(Arc<Mutex<ApprovalRead>>);

impl Tickets {
    fn set(&self, approvals: Vec<Approval>, unmapped: Vec<Unmapped>) {
        *self.0.lock().expect("lock") = ApprovalRead {
            approvals,
            unmapped,
        };
    }
}

#[async_trait]
impl ApprovalSource for Tickets {
    fn name(&self) -> &str {
        "tickets"
    }
    async fn approvals(&self) -> Result<Vec<Approval>, SourceError> {
        Ok(self.0.lock().expect("lock").approvals.clone())
    }
    async fn read(&self) -> Result<ApprovalRead, SourceError> {
        Ok(self.0.lock().expect("lock").clone())
    }
}

/// `ci`'s key: its approval (a ticket) expired (disable); `old`'s key:
/// last used 200 days ago (stale, delete), approved by a file.
fn world() -> World {
    let mut w = clean();
    w.appr("APR-1").expires_at = now() - days(1);
    w.inv
        .identities
        .push(identity(OLD, nhi_contract::IdentityKind::User));
    let mut old = key(OLD_KEY, OLD);
    old.usage = Usage::Used {
        at: now() - days(200),
        service: Some("s3".into()),
        region: Some("eu-west-1".into()),
    };
    w.inv.credentials.push(old);
    w.inv.grants.push(grant(OLD, READ_POLICY));
    w
}

fn write_inventory(dir: &Path, w: &World) {
    let mut file = serde_json::to_value(&w.inv).expect("inventory json");
    if let Some(o) = file.as_object_mut() {
        o.insert("format".into(), "nhi-assure.snapshot/v1".into());
        o.insert("provider".into(), "aws".into());
    }
    std::fs::write(
        dir.join("estate.json"),
        serde_json::to_string_pretty(&file).expect("json"),
    )
    .expect("write estate");
}

fn setup(dir: &Path) -> (Context, Tickets) {
    std::fs::create_dir_all(dir.join("approvals")).expect("mkdir");
    let mut old = serde_json::to_value(approval("APR-3", OLD)).expect("json");
    if let Some(o) = old.as_object_mut() {
        o.remove("source");
        o.retain(|_, x| !x.is_null());
    }
    std::fs::write(
        dir.join("approvals/all.yaml"),
        serde_json::to_string(&serde_json::json!({ "approvals": [old] })).expect("json"),
    )
    .expect("approvals");
    std::fs::write(
        dir.join("nhi-assure.toml"),
        "store = \"store.db\"\nas_of = \"2026-11-20T12:00:00Z\"\n[[sources]]\ntype = \"snapshot\"\nname = \"aws\"\nprovider = \"aws\"\npath = \"estate.json\"\n[[approvals]]\ntype = \"files\"\nname = \"a\"\npath = \"approvals\"\nmax_validity_days = 3650\n",
    )
    .expect("config");
    let tickets = Tickets::default();
    let ctx = Context::load(&dir.join("nhi-assure.toml"))
        .expect("config")
        .with_approval_sources(vec![Box::new(tickets.clone())]);
    (ctx, tickets)
}

fn ticket(w: &World) -> Approval {
    let mut a = w.approvals[0].clone();
    a.reference = Some("SEC-1".into());
    a.url = Some("https://example.atlassian.net/browse/SEC-1".into());
    a
}

fn unmapped(subjects: &[&str]) -> Unmapped {
    Unmapped {
        reference: "SEC-12".into(),
        url: Some("https://example.atlassian.net/browse/SEC-12".into()),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        problem: "customfield_10042: not a date".into(),
    }
}

fn action<'a>(plan: &'a [ResolvedAction], credential: &str) -> &'a ResolvedAction {
    plan.iter()
        .find(|a| a.request.credential_id.as_deref() == Some(credential))
        .unwrap_or_else(|| panic!("no action on {credential}: {plan:#?}"))
}

async fn open(ctx: &Context) -> BTreeSet<String> {
    ctx.store()
        .await
        .expect("store")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_ticket_holds_the_subjects_it_names_and_never_revokes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, tickets) = setup(dir.path());
    let w = world();
    write_inventory(dir.path(), &w);
    tickets.set(vec![ticket(&w)], vec![unmapped(&[USER])]);

    let first = ctx.pass("scan").await.expect("pass");
    let held = action(&first.plan, KEY);
    assert_eq!(held.status, Verdict::Skip, "ci's key is held: {held:?}");
    let reason = held.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("SEC-12") && reason.contains("customfield_10042: not a date"),
        "the reason names the ticket and its problem: {reason}"
    );
    assert_eq!(
        action(&first.plan, OLD_KEY).status,
        Verdict::Act,
        "a subject the ticket does not name is judged"
    );
    let f = first
        .findings
        .iter()
        .find(|f| &*f.rule_id == "approval-unmapped")
        .expect("the run records the unmapped ticket");
    assert_eq!(f.evidence.value()["reference"], "SEC-12");
    assert_eq!(
        f.evidence.value()["url"],
        "https://example.atlassian.net/browse/SEC-12"
    );
    assert_eq!(
        f.evidence.value()["problem"],
        "customfield_10042: not a date"
    );
    let why = first.unseen(true, false).expect("never clean");
    assert!(why.contains("SEC-12"), "{why}");
    // The ticket's approval evidence carries its key and URL.
    let expired = first
        .findings
        .iter()
        .find(|f| &*f.rule_id == "approval-expired")
        .expect("expired");
    assert_eq!(expired.evidence.value()["approval"]["reference"], "SEC-1");
    assert_eq!(
        expired.evidence.value()["approval"]["url"],
        "https://example.atlassian.net/browse/SEC-1"
    );

    // Everything fixed at the source, the ticket still unmapped: ci's
    // finding is not resolved on the strength of this pass; old's is.
    let mut fixed = world();
    fixed.cred(KEY).active = false;
    fixed.inv.credentials.retain(|c| c.id != OLD_KEY);
    write_inventory(dir.path(), &fixed);
    let second = ctx.pass("scan").await.expect("pass");
    let still = open(&ctx).await;
    // Replaying the recorded runs (reports, diffs) judges alike.
    let lives =
        nhi_assure::report::diff::replay(ctx.store().await.expect("store"), second.summary.run_id)
            .await
            .expect("replay");
    let replayed: BTreeSet<String> = lives
        .open
        .values()
        .map(|l| {
            let mut parts = l.fingerprint.split('|');
            let rule = parts.next().unwrap_or_default();
            let identity = parts.next().unwrap_or_default();
            let subject = parts.next().filter(|s| !s.is_empty()).unwrap_or(identity);
            format!("{rule}|{subject}")
        })
        .collect();
    assert_eq!(replayed, still, "replayed open after the fix");
    assert!(
        still.contains(&format!("approval-expired|{KEY}")),
        "the held subject's finding stays open: {still:?}"
    );
    assert!(
        !still.iter().any(|f| f.starts_with("credential-stale|")),
        "the rest resolves: {still:?}"
    );

    // Mapped again: its own finding and the held one resolve.
    tickets.set(vec![ticket(&w)], Vec::new());
    let last = ctx.pass("scan").await.expect("pass");
    assert_eq!(open(&ctx).await, BTreeSet::new());
    let lives =
        nhi_assure::report::diff::replay(ctx.store().await.expect("store"), last.summary.run_id)
            .await
            .expect("replay");
    assert!(lives.open.is_empty(), "replayed: {:?}", lives.open.keys());
    assert!(last.unseen(true, false).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_ticket_naming_no_subject_holds_every_action() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ctx, tickets) = setup(dir.path());
    let w = world();
    write_inventory(dir.path(), &w);
    tickets.set(vec![ticket(&w)], vec![unmapped(&[])]);
    let pass = ctx.pass("scan").await.expect("pass");
    assert!(!pass.plan.is_empty());
    for a in &pass.plan {
        assert_eq!(a.status, Verdict::Skip, "{a:?}");
        assert!(a.reason.as_deref().unwrap_or_default().contains("SEC-12"));
    }
    // Everything fixed at the source: nothing resolves on this pass's word.
    let before = open(&ctx).await;
    let mut fixed = world();
    fixed.cred(KEY).active = false;
    fixed.inv.credentials.retain(|c| c.id != OLD_KEY);
    write_inventory(dir.path(), &fixed);
    let second = ctx.pass("scan").await.expect("pass");
    assert_eq!(second.summary.resolved, 0);
    assert_eq!(open(&ctx).await, before);
}

/// `check-approvals` reads every non-file source through `read()` and
/// reports each unmapped record by source, reference and the field its
/// problem names; it exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_approvals_reports_unmapped_tickets_by_reference_and_field() {
    use nhi_assure::report::render::Format;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, tickets) = setup(dir.path());
    let w = world();
    tickets.set(vec![ticket(&w)], vec![unmapped(&[USER])]);
    let cfg = dir.path().join("nhi-assure.toml");
    let out = dir.path().join("check.json");
    let code = nhi_assure::report::commands::check_approvals_with(
        &cfg,
        vec![Box::new(tickets.clone())],
        Format::Json,
        Some(&out),
    )
    .await
    .expect("check");
    assert_eq!(code, std::process::ExitCode::from(1));
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("read")).expect("json");
    assert_eq!(
        list,
        serde_json::json!([{
            "source": "tickets",
            "reference": "SEC-12",
            "url": "https://example.atlassian.net/browse/SEC-12",
            "message": "customfield_10042: not a date",
        }])
    );

    // Mapped: clean.
    tickets.set(vec![ticket(&w)], Vec::new());
    let code = nhi_assure::report::commands::check_approvals_with(
        &cfg,
        vec![Box::new(tickets)],
        Format::Json,
        Some(&out),
    )
    .await
    .expect("check");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}
