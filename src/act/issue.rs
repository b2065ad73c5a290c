//! Issuance: a just-in-time session for an approval in force, through the
//! AWS source whose estate holds the approval's role, recorded (ids and
//! expiry, never the secret) before it is handed to the caller.

use chrono::Utc;
use nhi_contract::Approval;

use crate::pass::Context;
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

/// Issue a session for `approval` (already read, revocations applied) to
/// `caller`, and record it.
#[cfg(feature = "aws")]
pub async fn issue_for(
    ctx: &Context,
    approval: &Approval,
    caller: &str,
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
    let issuer = issuer_for(ctx, approval).await?;
    let session = issuer.issue(approval, now).await.map_err(refused)?;
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
    let mut own = Vec::new();
    for s in &ctx.cfg.sources {
        if let crate::sources::SourceConfig::Aws(c) = s {
            let issuer = nhi_aws::AwsIssuer::new(c).await;
            if issuer.listed_accounts().contains(&account) {
                return Ok(issuer);
            }
            if issuer.reads_own_account() {
                own.push(issuer);
            }
        }
    }
    if own.is_empty()
        && !ctx
            .cfg
            .sources
            .iter()
            .any(|s| matches!(s, crate::sources::SourceConfig::Aws(_)))
    {
        return Err(not_in("no AWS source is configured".into()));
    }
    let mut seen = Vec::new();
    for issuer in own {
        match issuer.caller_account().await {
            Ok(a) if a == account => return Ok(issuer),
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
