//! Shared SDK plumbing: client construction, call counting, error mapping,
//! timestamp conversion and ARN helpers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::Client;
use nhi_contract::{SourceError, Timestamp};

use crate::config::AwsConfig;

/// Counts IAM calls by operation: the figure the frugality target is about.
#[derive(Debug, Clone, Default)]
pub struct CallStats(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl CallStats {
    pub(crate) fn count(&self, op: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_insert(0) += 1;
        }
    }

    /// Calls per operation so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Total calls so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// Load the base SDK config from the standard chain, with our retry policy.
pub(crate) async fn base_config(cfg: &AwsConfig) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(cfg.region.clone()))
        .retry_config(retry(cfg));
    if let Some(p) = &cfg.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &cfg.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// Adaptive retries: IAM throttles hard, and a client-side rate limiter
/// backs off for the whole scan instead of per call.
pub(crate) fn retry(cfg: &AwsConfig) -> RetryConfig {
    RetryConfig::adaptive()
        .with_max_attempts(cfg.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(cfg.initial_backoff_ms))
}

/// An IAM client for one account: the base config, or a role assumed from it.
pub(crate) async fn client_for(base: &SdkConfig, cfg: &AwsConfig, role: Option<&str>) -> Client {
    Client::new(&assumed(base, cfg, role).await)
}

/// The base config, or one whose credentials are `role` assumed from it
/// (with the source's external id). Credentials are fetched on first use:
/// a role that cannot be assumed fails that first call.
pub(crate) async fn assumed(base: &SdkConfig, cfg: &AwsConfig, role: Option<&str>) -> SdkConfig {
    let Some(role) = role else {
        return base.clone();
    };
    let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("nhi-assure")
        .configure(base);
    if let Some(x) = &cfg.external_id {
        provider = provider.external_id(x);
    }
    let provider = provider.build().await;
    base.to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build()
}

/// Map an SDK error: credentials refused → `Auth`, anything else after the
/// retries → `Unavailable`. The message never carries request signatures.
pub(crate) fn source_error<E>(op: &str, e: SdkError<E>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default().to_string();
    // Short and bounded: code, message and HTTP status, never the raw
    // response body (it can be a whole HTML page, or echo request data).
    let msg = match &e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{op}: {c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{op}: {c} (HTTP {status})"),
                _ => format!("{op}: HTTP {status} without an AWS error body"),
            }
        }
        SdkError::ResponseError(re) => {
            format!(
                "{op}: unreadable response (HTTP {})",
                re.raw().status().as_u16()
            )
        }
        SdkError::TimeoutError(_) => format!("{op}: timed out"),
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) => format!("{op}: request not sent: {}", DisplayErrorContext(c)),
            None => format!("{op}: request not sent"),
        },
        other => format!("{op}: {}", DisplayErrorContext(other)),
    };
    match code.as_str() {
        "AccessDenied"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "AccessDeniedException" => SourceError::Auth(msg),
        _ => SourceError::Unavailable(msg),
    }
}

/// Whether the error is IAM's "no such entity" (a 404 in effect).
pub(crate) fn is_not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.code() == Some("NoSuchEntity")
}

/// SDK timestamp → chrono.
pub(crate) fn ts(t: &aws_sdk_iam::primitives::DateTime) -> Option<Timestamp> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The account id of an IAM ARN (`arn:aws:iam::123456789012:user/x`).
pub(crate) fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// `user`, `role`, `group`, `root`, `policy` … and the name (last path segment).
pub(crate) fn arn_resource(arn: &str) -> Option<(&str, &str)> {
    let res = arn.splitn(6, ':').nth(5)?;
    if res == "root" {
        return Some(("root", "root"));
    }
    let (kind, rest) = res.split_once('/')?;
    Some((kind, rest.rsplit('/').next().unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        let a = "arn:aws:iam::123456789012:user/machine/ci-deployer";
        assert_eq!(arn_account(a), Some("123456789012"));
        assert_eq!(arn_resource(a), Some(("user", "ci-deployer")));
        assert_eq!(
            arn_resource("arn:aws:iam::123456789012:root"),
            Some(("root", "root"))
        );
        assert_eq!(
            arn_resource("arn:aws:iam::123456789012:role/service-role/x"),
            Some(("role", "x"))
        );
        assert_eq!(
            arn_account("arn:aws:iam::aws:policy/ReadOnlyAccess"),
            Some("aws")
        );
    }
}
