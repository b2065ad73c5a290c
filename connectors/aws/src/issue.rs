//! Just-in-time sessions bound to an approval: `sts:AssumeRole` on the
//! approval's role with a session policy built from its scope, so the
//! session can never do more than was approved whatever the role allows,
//! and can never outlive the approval.
//!
//! The request is planned without any call ([`plan`]), so what would be
//! asked is testable and refusals happen before anything is sent. Every
//! CloudTrail event of the session names its approval: `SourceIdentity` is
//! the approval id (it survives role chaining and cannot be changed by the
//! session), and the session tags carry the approval and the requester.

use std::fmt;

use aws_config::SdkConfig;
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use nhi_contract::{Approval, SourceError, Timestamp};
use serde_json::json;

use crate::config::AwsConfig;

/// The shortest session STS issues, in seconds.
pub const MIN_SESSION_SECONDS: i64 = 900;
/// The longest session STS issues (a role's highest possible maximum).
pub const MAX_SESSION_SECONDS: i64 = 43_200;
/// The longest inline session policy STS takes, in characters.
const MAX_POLICY_CHARS: usize = 2048;
/// Managed session policies STS takes per request.
const MAX_POLICY_ARNS: usize = 10;
/// Session tag carrying the approval id.
pub const TAG_APPROVAL: &str = "nhi-assure:approval";
/// Session tag carrying the approval's requester.
pub const TAG_REQUESTER: &str = "nhi-assure:requester";

/// Why a session is not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The approval cannot be served (expired, revoked, no role, a scope
    /// that cannot be expressed as a session policy, too little time left).
    #[error("approval {approval}: {reason}")]
    Refused {
        /// Approval id.
        approval: String,
        /// Why, for the caller.
        reason: String,
    },
    /// STS refused or could not be reached.
    #[error("{0}")]
    Provider(SourceError),
}

/// What is asked of STS for one approval at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// The approval it is issued under.
    pub approval: String,
    /// Role ARN to assume.
    pub role: String,
    /// `RoleSessionName`: the approval id and the issue time.
    pub session_name: String,
    /// `SourceIdentity`: the approval id in STS's character set.
    pub source_identity: String,
    /// Inline session policy (JSON), from the approval's actions, services
    /// and regions; `None` when only managed policies scope it.
    pub policy: Option<String>,
    /// Managed policies (approved entitlements that are policy ARNs)
    /// passed as session policies.
    pub policy_arns: Vec<String>,
    /// `DurationSeconds`.
    pub duration_seconds: i64,
    /// Session tags, key → value.
    pub tags: Vec<(String, String)>,
}

/// An issued session. The secret and token are only for the caller:
/// `Debug` does not show them, and nothing here logs them.
#[derive(Clone)]
pub struct IssuedSession {
    /// What was asked.
    pub request: SessionRequest,
    /// Access key id of the session (`ASIA…`), safe to record.
    pub access_key_id: String,
    /// The session's secret key.
    pub secret_access_key: String,
    /// The session token.
    pub session_token: String,
    /// When STS says the session ends.
    pub expiration: Timestamp,
    /// `AssumedRoleUser.Arn` as STS returned it.
    pub assumed_role_arn: String,
}

impl fmt::Debug for IssuedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedSession")
            .field("request", &self.request)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .field("assumed_role_arn", &self.assumed_role_arn)
            .finish()
    }
}

/// Whether `approval` is in force at `now`: started, not expired, not
/// revoked, not an emergency declared over. The reason when not.
pub fn in_force(approval: &Approval, now: Timestamp) -> Result<(), String> {
    if let Some(r) = approval.revoked_at {
        if r <= now {
            return Err(format!("revoked at {r}"));
        }
    }
    if let Some(end) = approval.emergency.as_ref().and_then(|e| e.ended_at) {
        if end <= now {
            return Err(format!("emergency ended at {end}"));
        }
    }
    if approval.starts() > now {
        return Err(format!("not started (starts at {})", approval.starts()));
    }
    if approval.expires_at <= now {
        return Err(format!("expired at {}", approval.expires_at));
    }
    Ok(())
}

/// When the approval stops covering access: the earliest of its expiry,
/// a (future) revocation and an emergency's declared end.
pub fn ends(approval: &Approval) -> Timestamp {
    approval.ends()
}

/// Plan the session for `approval` at `now`, capped at `cap_seconds` (the
/// source's `max_session_seconds`) and `role_max_seconds` (the role's
/// `MaxSessionDuration`, when it could be read). Refuses anything that
/// would give more, or longer, than approved.
pub fn plan(
    approval: &Approval,
    now: Timestamp,
    cap_seconds: i64,
    role_max_seconds: Option<i64>,
) -> Result<SessionRequest, IssueError> {
    let refuse = |reason: String| IssueError::Refused {
        approval: approval.id.clone(),
        reason,
    };
    in_force(approval, now).map_err(refuse)?;
    let role = approval
        .role
        .as_deref()
        .map(str::trim)
        .filter(|r| r.starts_with("arn:"))
        .ok_or_else(|| refuse("names no IAM role to issue a session for".into()))?
        .to_string();
    let remaining = (ends(approval) - now).num_seconds();
    let duration = [
        remaining,
        cap_seconds,
        role_max_seconds.unwrap_or(MAX_SESSION_SECONDS),
        MAX_SESSION_SECONDS,
    ]
    .into_iter()
    .min()
    .unwrap_or(0);
    if duration < MIN_SESSION_SECONDS {
        return Err(refuse(format!(
            "{duration} s left of its validity and caps, under STS's minimum session of {MIN_SESSION_SECONDS} s"
        )));
    }
    let (policy, policy_arns) = session_policy(approval).map_err(refuse)?;
    let source_identity = sts_name(&approval.id, 64);
    let session_name = format!("{}.{}", sts_name(&approval.id, 53), now.timestamp());
    let tags = vec![
        (TAG_APPROVAL.to_string(), tag_value(&approval.id)),
        (TAG_REQUESTER.to_string(), tag_value(&approval.requester)),
    ];
    Ok(SessionRequest {
        approval: approval.id.clone(),
        role,
        session_name,
        source_identity,
        policy,
        policy_arns,
        duration_seconds: duration,
        tags,
    })
}

/// The session policy of an approval's scope: its actions (narrowed to its
/// services, if it names some; a service alone stands for all its
/// actions) on any resource, only in its regions if it names some; and its
/// entitlements that are managed policy ARNs. A scope with none of these
/// cannot be expressed, and is refused: a session without a session policy
/// would have everything the role has.
pub fn session_policy(approval: &Approval) -> Result<(Option<String>, Vec<String>), String> {
    let scope = &approval.scope;
    let service_ok = |action: &str| {
        scope.services.is_empty()
            || action == "*"
            || action
                .split_once(':')
                .is_some_and(|(svc, _)| scope.services.iter().any(|s| s.eq_ignore_ascii_case(svc)))
    };
    let mut actions: Vec<String> = scope
        .actions
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty() && service_ok(a))
        .collect();
    // "*" under a service restriction is the services' own wildcards.
    if actions.iter().any(|a| a == "*") && !scope.services.is_empty() {
        actions.retain(|a| a != "*");
        actions.extend(scope.services.iter().map(|s| format!("{s}:*")));
    }
    if scope.actions.is_empty() {
        actions.extend(scope.services.iter().map(|s| format!("{s}:*")));
    }
    actions.sort();
    actions.dedup();
    let arns: Vec<String> = scope
        .entitlements
        .iter()
        .filter(|e| e.starts_with("arn:") && e.contains(":policy/"))
        .cloned()
        .collect();
    if arns.len() > MAX_POLICY_ARNS {
        return Err(format!(
            "{} managed policies approved; a session takes at most {MAX_POLICY_ARNS}",
            arns.len()
        ));
    }
    if actions.is_empty() && arns.is_empty() {
        return Err(
            "scope has no actions, services or managed policies to limit a session to".into(),
        );
    }
    if actions.is_empty() {
        return Ok((None, arns));
    }
    let mut statement = json!({
        "Sid": "Approved",
        "Effect": "Allow",
        "Action": actions,
        "Resource": "*",
    });
    if !scope.regions.is_empty() {
        statement["Condition"] = json!({"StringEquals": {"aws:RequestedRegion": scope.regions}});
    }
    let doc = json!({"Version": "2012-10-17", "Statement": [statement]}).to_string();
    if doc.len() > MAX_POLICY_CHARS {
        return Err(format!(
            "session policy of {} characters is over STS's {MAX_POLICY_CHARS}",
            doc.len()
        ));
    }
    Ok((Some(doc), arns))
}

/// `s` in STS's name character set (`[\w+=,.@-]`), other characters as
/// `-`, at most `max` characters, at least two.
pub fn sts_name(s: &str, max: usize) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    while out.len() < 2 {
        out.push('-');
    }
    out
}

/// A session tag value: STS's set (letters, digits, spaces, `_.:/=+-@`),
/// at most 256 characters.
fn tag_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(256)
        .collect()
}

/// Prefix of the inline role policy that denies a revoked approval's sessions.
pub const DENY_POLICY_PREFIX: &str = "nhi-assure-revoked-";

/// Name of the deny policy for sessions of `source_identity` (IAM policy
/// names share STS's character set and take 128 characters).
pub fn deny_policy_name(source_identity: &str) -> String {
    format!("{DENY_POLICY_PREFIX}{}", sts_name(source_identity, 64))
}

/// The source identity a deny policy name stands for.
pub fn denied_source_identity(policy_name: &str) -> Option<&str> {
    policy_name
        .strip_prefix(DENY_POLICY_PREFIX)
        .filter(|s| s.len() >= 2)
}

/// The inline policy that stops every session carrying `source_identity`:
/// an explicit deny wins over anything the role or the session allows, and
/// `aws:SourceIdentity` is set by the issuance and cannot be changed by the
/// session, even through role chaining.
pub fn session_deny_policy(source_identity: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ApprovalEnded",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceIdentity": source_identity}}
        }]
    })
    .to_string()
}

/// Issues sessions through one AWS source's credentials (the broker's own
/// identity, which the roles' trust must admit with `sts:AssumeRole`,
/// `sts:SetSourceIdentity` and `sts:TagSession`).
#[derive(Clone)]
pub struct AwsIssuer {
    cfg: AwsConfig,
    base: SdkConfig,
}

impl AwsIssuer {
    /// Through the standard credential chain of `cfg`.
    pub async fn new(cfg: &AwsConfig) -> AwsIssuer {
        let base = crate::sdk::base_config(cfg).await;
        AwsIssuer::with_sdk_config(cfg, &base)
    }

    /// Through an explicit SDK config (tests, embedding).
    pub fn with_sdk_config(cfg: &AwsConfig, base: &SdkConfig) -> AwsIssuer {
        let base = base
            .to_builder()
            .retry_config(crate::sdk::retry(cfg))
            .build();
        AwsIssuer {
            cfg: cfg.clone(),
            base,
        }
    }

    /// The account the issuer's own credentials belong to
    /// (`sts:GetCallerIdentity`, which needs no permission).
    pub async fn caller_account(&self) -> Result<String, SourceError> {
        let sts = aws_sdk_sts::Client::new(&self.base);
        let out = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| crate::sdk::source_error("GetCallerIdentity", e))?;
        out.account()
            .map(str::to_string)
            .ok_or_else(|| SourceError::Unavailable("GetCallerIdentity: no account".into()))
    }

    /// Accounts the source names in its config (its `assume_roles`, its
    /// `trusted_accounts`, its organisation's `include_accounts`); empty
    /// when it reads only the account its credentials belong to.
    pub fn listed_accounts(&self) -> Vec<String> {
        let c = &self.cfg;
        let mut out: Vec<String> = c
            .assume_roles
            .iter()
            .filter_map(|r| crate::sdk::arn_account(r).map(str::to_string))
            .chain(c.trusted_accounts.iter().cloned())
            .chain(
                c.organization
                    .iter()
                    .flat_map(|o| o.include_accounts.iter().cloned()),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether the source reads only its credentials' own account.
    pub fn reads_own_account(&self) -> bool {
        self.cfg.assume_roles.is_empty() && self.cfg.organization.is_none()
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.cfg.name
    }

    /// The source's cap on session length, in seconds.
    pub fn cap_seconds(&self) -> i64 {
        self.cfg.max_session_seconds
    }

    /// The role's `MaxSessionDuration`, if the issuer may read it
    /// (`iam:GetRole`); `None` otherwise: STS then refuses a duration over
    /// it, which fails the issuance rather than lengthening anything.
    pub async fn role_max_seconds(&self, role: &str) -> Option<i64> {
        let (kind, name) = crate::sdk::arn_resource(role)?;
        if kind != "role" {
            return None;
        }
        let iam = aws_sdk_iam::Client::new(&self.base);
        match iam.get_role().role_name(name).send().await {
            Ok(out) => out
                .role()
                .and_then(|r| r.max_session_duration())
                .map(i64::from),
            Err(e) => {
                tracing::debug!(role, error = %crate::sdk::source_error("GetRole", e), "role maximum session unread");
                None
            }
        }
    }

    /// Plan and issue a session for `approval` at `now`.
    pub async fn issue(
        &self,
        approval: &Approval,
        now: Timestamp,
    ) -> Result<IssuedSession, IssueError> {
        // Refuse what can be refused before any call.
        let first = plan(approval, now, self.cap_seconds(), None)?;
        let role_max = self.role_max_seconds(&first.role).await;
        let request = plan(approval, now, self.cap_seconds(), role_max)?;
        self.assume(request).await
    }

    /// Send a planned request.
    pub async fn assume(&self, request: SessionRequest) -> Result<IssuedSession, IssueError> {
        let sts = aws_sdk_sts::Client::new(&self.base);
        let duration =
            i32::try_from(request.duration_seconds).map_err(|_| IssueError::Refused {
                approval: request.approval.clone(),
                reason: "duration out of range".into(),
            })?;
        let mut call = sts
            .assume_role()
            .role_arn(&request.role)
            .role_session_name(&request.session_name)
            .source_identity(&request.source_identity)
            .duration_seconds(duration)
            .set_policy(request.policy.clone());
        if let Some(x) = &self.cfg.external_id {
            call = call.external_id(x);
        }
        for arn in &request.policy_arns {
            call = call.policy_arns(PolicyDescriptorType::builder().arn(arn).build());
        }
        for (k, v) in &request.tags {
            let tag = Tag::builder().key(k).value(v).build().map_err(|e| {
                IssueError::Provider(SourceError::Unavailable(format!("session tag {k}: {e}")))
            })?;
            call = call.tags(tag);
        }
        let out = call
            .send()
            .await
            .map_err(|e| IssueError::Provider(crate::sdk::source_error("AssumeRole", e)))?;
        let incomplete = |what: &str| {
            IssueError::Provider(SourceError::Unavailable(format!(
                "AssumeRole: answer without {what}"
            )))
        };
        let creds = out.credentials().ok_or_else(|| incomplete("credentials"))?;
        let exp = creds.expiration();
        let expiration = chrono::DateTime::from_timestamp(exp.secs(), exp.subsec_nanos())
            .ok_or_else(|| incomplete("a valid expiration"))?;
        let assumed_role_arn = out
            .assumed_role_user()
            .map(|u| u.arn().to_string())
            .unwrap_or_default();
        Ok(IssuedSession {
            access_key_id: creds.access_key_id().to_string(),
            secret_access_key: creds.secret_access_key().to_string(),
            session_token: creds.session_token().to_string(),
            expiration,
            assumed_role_arn,
            request,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhi_contract::Scope;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn approval() -> Approval {
        Approval {
            id: "APR-7/deploy".into(),
            subject: "arn:aws:iam::111122223333:role/deploy".into(),
            credentials: vec![],
            scope: Scope {
                actions: vec!["s3:GetObject".into(), "s3:List*".into()],
                regions: vec!["eu-west-1".into()],
                ..Scope::default()
            },
            requester: "alice@example.com".into(),
            approver: "bob@example.com".into(),
            assignee: None,
            approved_at: at("2026-01-01T00:00:00Z"),
            starts_at: None,
            expires_at: at("2026-01-01T12:00:00Z"),
            revoked_at: None,
            reference: None,
            emergency: None,
            source: "t".into(),
            url: None,
            role: Some("arn:aws:iam::111122223333:role/deploy".into()),
            issue_to: None,
        }
    }

    #[test]
    fn duration_is_the_least_of_validity_cap_and_role() {
        let a = approval();
        let p = plan(&a, at("2026-01-01T11:00:00Z"), 7200, None).expect("plan");
        assert_eq!(p.duration_seconds, 3600, "remaining validity");
        let p = plan(&a, at("2026-01-01T01:00:00Z"), 7200, None).expect("plan");
        assert_eq!(p.duration_seconds, 7200, "configured cap");
        let p = plan(&a, at("2026-01-01T01:00:00Z"), 7200, Some(1800)).expect("plan");
        assert_eq!(p.duration_seconds, 1800, "role maximum");
        let e = plan(&a, at("2026-01-01T11:50:00Z"), 7200, None).expect_err("too short");
        assert!(e.to_string().contains("600 s left"), "{e}");
    }

    #[test]
    fn refuses_what_is_not_in_force_or_has_no_role() {
        let a = approval();
        for (now, want) in [
            ("2025-12-31T00:00:00Z", "not started"),
            ("2026-01-01T12:00:00Z", "expired"),
        ] {
            let e = plan(&a, at(now), 3600, None).expect_err(now);
            assert!(e.to_string().contains(want), "{e}");
        }
        let mut r = approval();
        r.revoked_at = Some(at("2026-01-01T02:00:00Z"));
        let e = plan(&r, at("2026-01-01T03:00:00Z"), 3600, None).expect_err("revoked");
        assert!(e.to_string().contains("revoked"), "{e}");
        // A revocation set for later shortens the session instead.
        let p = plan(&r, at("2026-01-01T01:00:00Z"), 7200, None).expect("plan");
        assert_eq!(p.duration_seconds, 3600);
        let mut n = approval();
        n.role = None;
        assert!(plan(&n, at("2026-01-01T01:00:00Z"), 3600, None).is_err());
        let mut az = approval();
        az.role = Some("5a1d3b6e-2c4f-4e8a-9b7d-0f1e2d3c4b5a".into());
        assert!(plan(&az, at("2026-01-01T01:00:00Z"), 3600, None).is_err());
    }

    #[test]
    fn names_and_policy() {
        let a = approval();
        let p = plan(&a, at("2026-01-01T01:00:00Z"), 3600, None).expect("plan");
        assert_eq!(p.source_identity, "APR-7-deploy");
        assert_eq!(p.session_name, "APR-7-deploy.1767229200");
        let doc: serde_json::Value =
            serde_json::from_str(p.policy.as_deref().expect("policy")).expect("json");
        assert_eq!(
            doc["Statement"][0]["Action"],
            json!(["s3:GetObject", "s3:List*"])
        );
        assert_eq!(
            doc["Statement"][0]["Condition"]["StringEquals"]["aws:RequestedRegion"],
            json!(["eu-west-1"])
        );
        assert_eq!(
            p.tags,
            vec![
                (TAG_APPROVAL.into(), "APR-7/deploy".into()),
                (TAG_REQUESTER.into(), "alice@example.com".into())
            ]
        );
        assert_eq!(sts_name(&"x".repeat(100), 64).len(), 64);
        assert_eq!(sts_name("", 64), "--");
    }

    #[test]
    fn services_narrow_actions_and_empty_scope_is_refused() {
        let mut a = approval();
        a.scope = Scope {
            actions: vec!["s3:GetObject".into(), "ec2:*".into(), "*".into()],
            services: vec!["s3".into()],
            ..Scope::default()
        };
        let (doc, _) = session_policy(&a).expect("policy");
        let doc: serde_json::Value = serde_json::from_str(&doc.expect("doc")).expect("json");
        assert_eq!(
            doc["Statement"][0]["Action"],
            json!(["s3:*", "s3:GetObject"])
        );
        a.scope = Scope {
            entitlements: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
            ..Scope::default()
        };
        assert_eq!(
            session_policy(&a).expect("arns"),
            (
                None,
                vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()]
            )
        );
        a.scope = Scope {
            assume: vec!["arn:aws:iam::111122223333:role/x".into()],
            ..Scope::default()
        };
        assert!(
            session_policy(&a).is_err(),
            "nothing to limit the session to"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = IssuedSession {
            request: plan(&approval(), at("2026-01-01T01:00:00Z"), 3600, None).expect("plan"),
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "s3cr3t-value".into(),
            session_token: "t0ken-value".into(),
            expiration: at("2026-01-01T02:00:00Z"),
            assumed_role_arn: String::new(),
        };
        let d = format!("{s:?}");
        assert!(
            !d.contains("s3cr3t-value") && !d.contains("t0ken-value"),
            "{d}"
        );
    }
}
