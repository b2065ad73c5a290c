//! Issuance: a just-in-time session for an approval in force, through the
//! AWS source whose estate holds the approval's role, recorded (ids and
//! expiry, never the secret) before it is handed to the caller.

#[cfg(feature = "aws")]
use chrono::Utc;
use nhi_contract::Approval;

#[cfg(feature = "aws")]
use crate::pass::Context;
#[cfg(feature = "aws")]
use crate::store::issued::IssuedRecord;

/// Why no session was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssuanceError {
    /// No approval of that id (or several, which a strict read refuses).
    #[error("no approval {0} in any approval source")]
    UnknownApproval(String),
    /// The approval cannot be served now (with why).
    #[error("{0}")]
    Refused(String),
    /// The role's account is not one the configured AWS sources read.
    #[error("approval {approval}: role {role} is not in an account of the estate ({why})")]
    NotInEstate {
        /// Approval id.
        approval: String,
        /// The role.
        role: String,
        /// What was checked.
        why: String,
    },
    /// The provider refused or failed.
    #[error("issuing for approval {approval}: {message}")]
    Provider {
        /// Approval id.
        approval: String,
        /// What it said (never a secret).
        message: String,
    },
    /// Config, approvals or store could not be read or written.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The approval `id` among `approvals`.
pub fn find<'a>(approvals: &'a [Approval], id: &str) -> Result<&'a Approval, IssuanceError> {
    approvals
        .iter()
        .find(|a| a.id == id)
        .ok_or_else(|| IssuanceError::UnknownApproval(id.to_string()))
}

/// Issue a session for approval `id` to `caller` and record it. The secret
/// is in the returned value only.
#[cfg(feature = "aws")]
pub async fn issue(
    ctx: &Context,
    id: &str,
    caller: &str,
) -> Result<nhi_aws::IssuedSession, IssuanceError> {
    let approvals = ctx.approvals_now().await?;
    let approval = find(&approvals, id)?;
    issue_for(ctx, approval, caller).await
}

/// Where one issuance spent its time: finding the issuing source, the
/// provider's call, recording it (the broker's latency, by phase).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IssueTimes {
    /// Finding the AWS source whose estate holds the role.
    pub resolve: std::time::Duration,
    /// The provider's call (STS `AssumeRole`).
    pub provider: std::time::Duration,
    /// Recording the session and its audit entry.
    pub record: std::time::Duration,
}

/// Issue a session for `approval` (already read, revocations applied) to
/// `caller`, and record it.
#[cfg(feature = "aws")]
pub async fn issue_for(
    ctx: &Context,
    approval: &Approval,
    caller: &str,
) -> Result<nhi_aws::IssuedSession, IssuanceError> {
    issue_for_timed(ctx, approval, caller, &mut IssueTimes::default()).await
}

/// [`issue_for`], with the time each phase took in `times`.
#[cfg(feature = "aws")]
pub async fn issue_for_timed(
    ctx: &Context,
    approval: &Approval,
    caller: &str,
    times: &mut IssueTimes,
) -> Result<nhi_aws::IssuedSession, IssuanceError> {
    // Real time, never the config's `as_of`: STS's clock decides the expiry.
    let now = Utc::now();
    // Refuse what the approval itself refuses before any call.
    let refused = |e: nhi_aws::IssueError| match e {
        nhi_aws::IssueError::Refused { .. } => IssuanceError::Refused(e.to_string()),
        nhi_aws::IssueError::Provider(p) => IssuanceError::Provider {
            approval: approval.id.clone(),
            message: p.to_string(),
        },
    };
    nhi_aws::issue::plan(approval, now, nhi_aws::issue::MAX_SESSION_SECONDS, None)
        .map_err(refused)?;
    let t = std::time::Instant::now();
    let issuer = issuer_for(ctx, approval).await?;
    times.resolve = t.elapsed();
    let t = std::time::Instant::now();
    let session = issuer.issue(approval, now).await.map_err(refused);
    times.provider = t.elapsed();
    let session = session?;
    let t = std::time::Instant::now();
    let record = IssuedRecord {
        approval_id: approval.id.clone(),
        provider: "aws".into(),
        source: issuer.source().to_string(),
        role: session.request.role.clone(),
        session_name: session.request.session_name.clone(),
        source_identity: session.request.source_identity.clone(),
        access_key_id: session.access_key_id.clone(),
        caller: caller.to_string(),
        issued_at: now,
        expires_at: session.expiration,
    };
    // A session that cannot be recorded is not handed out: it would be
    // access nobody can see or revoke. It expires on its own.
    let store = ctx.store().await?;
    store
        .record_issued(&record)
        .await
        .map_err(|e| IssuanceError::Other(e.into()))?;
    times.record = t.elapsed();
    tracing::info!(
        approval = %record.approval_id,
        role = %record.role,
        session = %record.session_name,
        access_key_id = %record.access_key_id,
        expires = %record.expires_at,
        caller = %record.caller,
        "session issued"
    );
    Ok(session)
}

/// The issuer of the AWS source whose estate holds the approval's role: a
/// source that names the role's account, or one that reads its own
/// credentials' account when that is the role's.
#[cfg(feature = "aws")]
async fn issuer_for(
    ctx: &Context,
    approval: &Approval,
) -> Result<nhi_aws::AwsIssuer, IssuanceError> {
    let role = approval.role.clone().unwrap_or_default();
    let account = role.split(':').nth(4).unwrap_or_default().to_string();
    let not_in = |why: String| IssuanceError::NotInEstate {
        approval: approval.id.clone(),
        role: role.clone(),
        why,
    };
    let issuers = ctx.aws_issuers().await;
    if issuers.is_empty() {
        return Err(not_in("no AWS source is configured".into()));
    }
    if let Some(i) = issuers
        .iter()
        .find(|i| i.listed_accounts().contains(&account))
    {
        return Ok(i.clone());
    }
    let mut seen = Vec::new();
    for issuer in issuers.iter().filter(|i| i.reads_own_account()) {
        match ctx.caller_account(issuer).await {
            Ok(a) if a == account => return Ok(issuer.clone()),
            Ok(a) => seen.push(format!("source {} reads {a}", issuer.source())),
            Err(e) => seen.push(format!("source {}: {e}", issuer.source())),
        }
    }
    Err(not_in(if seen.is_empty() {
        "no AWS source names that account".into()
    } else {
        seen.join("; ")
    }))
}

/// The AWS `credential_process` answer for a session: the one thing
/// printed with its secret, on standard output, for the caller.
#[cfg(feature = "aws")]
pub fn credential_process_json(s: &nhi_aws::IssuedSession) -> serde_json::Value {
    serde_json::json!({
        "Version": 1,
        "AccessKeyId": s.access_key_id,
        "SecretAccessKey": s.secret_access_key,
        "SessionToken": s.session_token,
        "Expiration": s.expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Rule id the session-deny actions are journaled under.
pub const SESSION_RULE: &str = "approval-ended-sessions";

/// Which session denies the journal says are on their roles: `(role,
/// policy name)` of every deny done and neither lifted nor undone since.
pub fn denies_in_force(
    entries: &[crate::store::journal::Entry],
) -> std::collections::BTreeSet<(String, String)> {
    use crate::store::journal::Status;
    use nhi_contract::Operation;
    let mut sorted: Vec<&crate::store::journal::Entry> = entries
        .iter()
        .filter(|e| {
            e.undo_of.is_none()
                && matches!(
                    e.request.operation,
                    Operation::DenySessions | Operation::LiftSessionDeny
                )
        })
        .collect();
    sorted.sort_by_key(|e| e.id);
    let mut out = std::collections::BTreeSet::new();
    for e in sorted {
        let deny = e.request.operation == Operation::DenySessions;
        let present = match e.status {
            Status::Done | Status::Recovered => deny,
            Status::Undone => !deny,
            _ => continue,
        };
        for name in &e.request.entitlements {
            let key = (e.request.identity_id.clone(), name.clone());
            if present {
                out.insert(key);
            } else {
                out.remove(&key);
            }
        }
    }
    out
}

/// The session-deny steps due at `now`. Sessions issued under an approval
/// that ended early (revoked, an emergency declared over) and that would
/// still be valid get a deny on their role; a deny whose sessions have all
/// expired (or whose approval counts again) is lifted. Approvals no source
/// returns any more are left as they are: nothing says they ended early.
#[cfg(feature = "aws")]
pub fn plan_session_steps(
    approvals: &[Approval],
    issued: &[IssuedRecord],
    denied: &std::collections::BTreeSet<(String, String)>,
    now: chrono::DateTime<Utc>,
) -> Vec<super::IssuanceStep> {
    use std::collections::BTreeMap;
    // (approval, role, source, source identity) → last session expiry.
    let mut groups: BTreeMap<(&str, &str, &str, &str), chrono::DateTime<Utc>> = BTreeMap::new();
    for r in issued.iter().filter(|r| r.provider == "aws") {
        let k = (
            r.approval_id.as_str(),
            r.role.as_str(),
            r.source.as_str(),
            r.source_identity.as_str(),
        );
        let e = groups.entry(k).or_insert(r.expires_at);
        *e = (*e).max(r.expires_at);
    }
    let mut out = Vec::new();
    for ((approval, role, source, sid), last) in groups {
        let Some(a) = approvals.iter().find(|a| a.id == approval) else {
            continue;
        };
        let ended = nhi_aws::issue::ends(a);
        let early = ended < a.expires_at && ended <= now;
        let wanted = early && ended < last && now < last;
        let name = nhi_aws::issue::deny_policy_name(sid);
        let present = denied.contains(&(role.to_string(), name.clone()));
        let operation = match (wanted, present) {
            (true, false) => nhi_contract::Operation::DenySessions,
            (false, true) => nhi_contract::Operation::LiftSessionDeny,
            _ => continue,
        };
        out.push(super::IssuanceStep {
            source: source.to_string(),
            approval: approval.to_string(),
            rule: SESSION_RULE,
            blocked: None,
            request: nhi_contract::ActionRequest {
                operation,
                provider: nhi_contract::Provider::Aws,
                identity_id: role.to_string(),
                credential_id: None,
                credential_kind: None,
                entitlements: vec![name],
                federated: None,
            },
        });
    }
    out
}
