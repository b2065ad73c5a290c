//! The credentials broker, `POST /v1/credentials`: a workload presents its
//! own OIDC token (GitHub Actions, a Kubernetes projected service-account
//! token, any issuer in `[daemon.broker]`) and gets a session only if an
//! approval in force binds *that* issuer and subject (`issue_to`) to a role.
//!
//! The token's signature is checked against the issuer's JWKS (fetched,
//! cached for `jwks_ttl_secs`, refetched at most once a TTL for an unknown
//! key id), with `iss`, `aud`, `exp` and `sub` required and checked. Only
//! asymmetric algorithms are accepted: `none` and HMAC (whose "key" would
//! be the public JWKS) never verify.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{BrokerConfig, OidcIssuerConfig};
use crate::pass::Context;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Largest token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Algorithms a token may be signed with.
const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
];

/// Why a token is not accepted (said to the caller in general terms; the
/// detail goes to the log).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token, or not a JWT.
    #[error("a bearer token (an OIDC JWT) is required")]
    Missing,
    /// Issuer not configured.
    #[error("token issuer not accepted")]
    UnknownIssuer,
    /// Signature, algorithm, audience, expiry or a required claim is wrong.
    #[error("token not valid: {0}")]
    Invalid(String),
    /// The issuer's keys could not be fetched.
    #[error("issuer keys unavailable: {0}")]
    Keys(String),
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
}

/// The broker: issuers, an HTTP client and the JWKS cache.
pub struct Broker {
    cfg: BrokerConfig,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<HashMap<String, (Instant, JwkSet)>>,
}

impl Broker {
    /// A broker over `[daemon.broker]`.
    pub fn new(cfg: BrokerConfig) -> Result<Broker, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::Keys(e.to_string()))?;
        Ok(Broker {
            cfg,
            http,
            cache: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.cfg.jwks_ttl_secs)
    }

    /// The issuer's keys: cached within the TTL unless `refresh` asks
    /// (an unknown key id) and the copy is older than a tenth of it.
    async fn keys(&self, iss: &OidcIssuerConfig, refresh: bool) -> Result<JwkSet, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, set)) = cache.get(&iss.issuer) {
            let age = at.elapsed();
            if age < self.ttl() && !(refresh && age >= self.ttl() / 10) {
                return Ok(set.clone());
            }
        }
        let resp = self
            .http
            .get(&iss.jwks_url)
            .send()
            .await
            .map_err(|e| AuthError::Keys(format!("{}: {e}", iss.jwks_url)))?;
        if !resp.status().is_success() {
            return Err(AuthError::Keys(format!(
                "{}: HTTP {}",
                iss.jwks_url,
                resp.status()
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| AuthError::Keys(e.to_string()))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(AuthError::Keys("JWKS too large".into()));
        }
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Keys(format!("JWKS unreadable: {e}")))?;
        cache.insert(iss.issuer.clone(), (Instant::now(), set.clone()));
        Ok(set)
    }

    /// Verify a token: the workload it names.
    pub async fn verify(&self, token: &str) -> Result<Workload, AuthError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(AuthError::Missing);
        }
        // The issuer picks the keys and audience; the signature check
        // below then holds the token to that issuer.
        let claimed = unverified_issuer(token).ok_or(AuthError::Missing)?;
        let iss = self
            .cfg
            .issuers
            .iter()
            .find(|i| i.issuer == claimed)
            .ok_or(AuthError::UnknownIssuer)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let mut set = self.keys(iss, false).await?;
        let find = |set: &JwkSet| {
            if kid.is_empty() && set.keys.len() == 1 {
                set.keys.first().cloned()
            } else {
                set.find(&kid).cloned()
            }
        };
        let jwk = match find(&set) {
            Some(k) => k,
            None => {
                set = self.keys(iss, true).await?;
                find(&set).ok_or_else(|| AuthError::Invalid("no issuer key for its kid".into()))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let mut v = Validation::new(header.alg);
        v.set_audience(&[iss.audience.as_str()]);
        v.set_issuer(&[iss.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = self.cfg.leeway_secs;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        if data.claims.sub.trim().is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        Ok(Workload {
            issuer: data.claims.iss,
            subject: data.claims.sub,
        })
    }
}

/// `iss` of a token, read without verification (to choose its keys only).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

/// What a workload may send: the approval it asks under, when several
/// bind it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    #[serde(default)]
    approval: Option<String>,
}

/// An error answer.
#[derive(Debug, Serialize)]
struct Refusal {
    error: String,
}

fn refuse(status: StatusCode, error: impl Into<String>) -> (StatusCode, serde_json::Value) {
    let body = Refusal {
        error: error.into(),
    };
    (
        status,
        serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Answer one request: `authorization` is the header's value, `body` the
/// request body (empty, or `{"approval": "APR-1"}`). 200 with the
/// credential JSON, 401 for a token not accepted, 403 when no approval in
/// force binds the workload to a role (or it is refused), 409 when several
/// do and none was named, 502 when the provider fails.
pub async fn handle(
    broker: &Broker,
    ctx: &Context,
    authorization: Option<&str>,
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let mut phases = Phases::default();
    let out = handle_timed(broker, ctx, authorization, body, &mut phases).await;
    tracing::debug!(
        status = out.0.as_u16(),
        verify_us = phases.verify.as_micros() as u64,
        approvals_us = phases.approvals.as_micros() as u64,
        resolve_us = phases.issue.resolve.as_micros() as u64,
        provider_us = phases.issue.provider.as_micros() as u64,
        record_us = phases.issue.record.as_micros() as u64,
        "broker request"
    );
    out
}

/// Where one broker request spent its time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Verifying the token (JWKS from the cache, or fetched).
    pub verify: Duration,
    /// Reading the approvals and the store's revocations, and choosing one.
    pub approvals: Duration,
    /// Issuing: finding the source, the provider's call, recording it.
    pub issue: crate::act::issue::IssueTimes,
}

impl Phases {
    /// Everything but the provider's call: the broker's own latency.
    pub fn own(&self) -> Duration {
        self.verify + self.approvals + self.issue.resolve + self.issue.record
    }
}

/// [`handle`], with the time each phase took in `phases`.
pub async fn handle_timed(
    broker: &Broker,
    ctx: &Context,
    authorization: Option<&str>,
    body: &[u8],
    phases: &mut Phases,
) -> (StatusCode, serde_json::Value) {
    let started = Instant::now();
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, AuthError::Missing.to_string());
    };
    let verified = broker.verify(token).await;
    phases.verify = started.elapsed();
    let started = Instant::now();
    let workload = match verified {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "broker: token refused");
            let status = if matches!(e, AuthError::Keys(_)) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            return refuse(status, e.to_string());
        }
    };
    let ask: Ask = if body.iter().all(u8::is_ascii_whitespace) {
        Ask::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(a) => a,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("body: {e}")),
        }
    };
    let approvals = match ctx.approvals_now().await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "broker: approvals unreadable");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "approvals unreadable");
        }
    };
    let now = chrono::Utc::now();
    let bound: Vec<&nhi_contract::Approval> = approvals
        .iter()
        .filter(|a| {
            a.role.is_some()
                && a.issue_to
                    .as_ref()
                    .is_some_and(|w| w.issuer == workload.issuer && w.subject == workload.subject)
                && ask.approval.as_deref().is_none_or(|id| a.id == id)
        })
        .collect();
    let in_force: Vec<&&nhi_contract::Approval> = bound
        .iter()
        .filter(|a| nhi_aws::issue::in_force(a, now).is_ok())
        .collect();
    let approval = match (in_force.as_slice(), bound.first()) {
        ([one], _) => **one,
        ([], None) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "no approval binds {} {} to a role",
                    workload.issuer, workload.subject
                ),
            )
        }
        ([], Some(a)) => {
            let why = nhi_aws::issue::in_force(a, now).err().unwrap_or_default();
            return refuse(StatusCode::FORBIDDEN, format!("approval {}: {why}", a.id));
        }
        (many, _) => {
            let ids: Vec<&str> = many.iter().map(|a| a.id.as_str()).collect();
            return refuse(
                StatusCode::CONFLICT,
                format!(
                    "several approvals bind this workload ({}): name one as {{\"approval\": …}}",
                    ids.join(", ")
                ),
            );
        }
    };
    let caller = format!("oidc {} {}", workload.issuer, workload.subject);
    phases.approvals = started.elapsed();
    match crate::act::issue::issue_for_timed(ctx, approval, &caller, &mut phases.issue).await {
        Ok(s) => (
            StatusCode::OK,
            crate::act::issue::credential_process_json(&s),
        ),
        Err(e @ crate::act::issue::IssuanceError::Provider { .. }) => {
            refuse(StatusCode::BAD_GATEWAY, e.to_string())
        }
        Err(e @ crate::act::issue::IssuanceError::Other(_)) => {
            tracing::error!(error = %e, "broker: issuance failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "issuance failed")
        }
        Err(e) => refuse(StatusCode::FORBIDDEN, e.to_string()),
    }
}
