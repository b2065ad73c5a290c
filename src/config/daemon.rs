//! `[daemon]`: schedule, listener, webhook, lease and HTTP limits.

use serde::{Deserialize, Serialize};

/// `[daemon]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// When to run full passes: the `cron` crate's format, with seconds
    /// (`sec min hour day-of-month month day-of-week [year]`), e.g.
    /// `0 */15 * * * *` every 15 minutes, `0 0 6 * * Mon-Fri` at 06:00 on weekdays.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Address of the health and metrics server.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Name of the environment variable holding the webhook's HMAC secret.
    /// Unset: no webhook. (The secret itself never goes in the config.)
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// Name of the environment variable holding the secret of the Jira
    /// webhook (`POST /v1/events/jira`; Jira signs the body with it in
    /// `X-Hub-Signature`). Unset: the route is off.
    #[serde(default)]
    pub jira_webhook_secret_env: Option<String>,
    /// Name of the environment variable holding the HMAC-SHA256 key of
    /// ServiceNow outbound REST messages (`POST /v1/events/servicenow`).
    #[serde(default)]
    pub servicenow_hmac_secret_env: Option<String>,
    /// Header carrying the ServiceNow message's hex HMAC of the body
    /// (`sha256=` prefix optional).
    #[serde(default = "default_servicenow_signature_header")]
    pub servicenow_signature_header: String,
    /// Name of the environment variable holding `user:password` that
    /// ServiceNow outbound REST messages send as basic auth (instead of or
    /// besides the HMAC: either proof is accepted).
    #[serde(default)]
    pub servicenow_basic_auth_env: Option<String>,
    /// Accepted clock difference for signed webhook events, in seconds.
    #[serde(default = "default_window")]
    pub webhook_window_secs: i64,
    /// Leader lease length in seconds (renewed every third of it). Among
    /// processes sharing the store, a dead leader is replaced within this.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Seconds a client has to send a request's head (line and headers);
    /// also how long a kept-alive connection may wait for its next request.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// A connection on which no byte moves (nothing received while the
    /// server waits for one, nothing sent while the client reads nothing)
    /// for this many seconds is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: u64,
    /// Largest request body accepted (bytes).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Failed webhook authentications one peer address may make in a burst
    /// before it is answered 429 without checking …
    #[serde(default = "default_auth_failure_burst")]
    pub auth_failure_burst: u64,
    /// … and how many more it earns per minute (token bucket).
    #[serde(default = "default_auth_failures_per_minute")]
    pub auth_failures_per_minute: u64,
    /// The credentials broker; absent: no `/v1/credentials`.
    #[serde(default)]
    pub broker: Option<BrokerConfig>,
}

fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_max_connections() -> u64 {
    256
}
fn default_max_body_bytes() -> u64 {
    64 * 1024
}
fn default_auth_failure_burst() -> u64 {
    10
}
fn default_auth_failures_per_minute() -> u64 {
    6
}

fn default_servicenow_signature_header() -> String {
    "x-servicenow-signature".into()
}

fn default_lease() -> u64 {
    30
}

fn default_window() -> i64 {
    300
}

fn default_schedule() -> String {
    "0 */15 * * * *".into()
}
fn default_listen() -> String {
    "127.0.0.1:9464".into()
}

/// `[daemon.broker]`: the credentials broker (`POST /v1/credentials`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// OIDC issuers whose tokens are accepted.
    pub issuers: Vec<OidcIssuerConfig>,
    /// How long an issuer's JWKS is kept before it is fetched again.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_secs: u64,
    /// Clock skew allowed on `exp` / `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

/// One accepted OIDC issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The `iss` its tokens carry (`https://token.actions.githubusercontent.com`).
    pub issuer: String,
    /// The `aud` its tokens must carry for this broker.
    pub audience: String,
    /// Where its JWKS is served
    /// (`https://token.actions.githubusercontent.com/.well-known/jwks`).
    pub jwks_url: String,
}

fn default_jwks_ttl() -> u64 {
    300
}

fn default_leeway() -> u64 {
    60
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            schedule: default_schedule(),
            listen: default_listen(),
            webhook_secret_env: None,
            jira_webhook_secret_env: None,
            broker: None,
            servicenow_hmac_secret_env: None,
            servicenow_signature_header: default_servicenow_signature_header(),
            servicenow_basic_auth_env: None,
            webhook_window_secs: default_window(),
            lease_secs: default_lease(),
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
            auth_failure_burst: default_auth_failure_burst(),
            auth_failures_per_minute: default_auth_failures_per_minute(),
        }
    }
}
