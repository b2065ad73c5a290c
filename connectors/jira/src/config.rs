//! Configuration of one Jira approval source. Secrets never come from here:
//! the API token or OAuth access token is read from the environment
//! variable the config names, at the moment a request is sent.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One Jira Cloud / Jira Service Management approval source: the tickets a
/// JQL finds, or an offline export of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JiraConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// Site URL (`https://example.atlassian.net`); ticket URLs are
    /// `{base_url}/browse/{key}`. Must be `https`.
    pub base_url: String,
    /// The JQL selecting approval tickets (`project = ACCESS AND type = "Machine access"`).
    #[serde(default)]
    pub jql: String,
    /// How to authenticate; not needed with `export_dir`.
    #[serde(default)]
    pub auth: Option<Box<JiraAuth>>,
    /// Read saved API responses from this directory instead of the server
    /// (offline audits, the demo): `*.json` search pages at its top level,
    /// `approvals/{KEY}.json` JSM approval lists. Relative to the config file.
    #[serde(default)]
    pub export_dir: Option<PathBuf>,
    /// Which Jira field holds what. (Boxed, like `statuses` and `auth`, to
    /// keep the registry's config enum small.)
    pub fields: Box<FieldMap>,
    /// Which status names mean what (case-insensitive).
    #[serde(default)]
    pub statuses: Box<Statuses>,
    /// Take the approver and decision from Jira Service Management's
    /// approval record (`/rest/servicedeskapi/request/{key}/approval`)
    /// rather than from the changelog transition into an approved status.
    #[serde(default)]
    pub use_jsm_approvals: bool,
    /// Longest validity a ticket may grant, in days from its approval: the
    /// expiry is a field the requester fills in, so a later one makes the
    /// ticket unmapped rather than a years-long approval.
    #[serde(default = "default_max_validity_days")]
    pub max_validity_days: i64,
    /// More matching tickets than this fail the read (the JQL is too wide):
    /// a truncated set would make approved credentials look unapproved.
    #[serde(default = "default_max_tickets")]
    pub max_tickets: usize,
    /// Issues per search page (`maxResults`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Per-ticket calls (JSM approvals, long changelogs) in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Retries per call after the first try (429, 5xx, connection errors).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry backoff, in milliseconds (doubles each retry; a longer
    /// `Retry-After` wins).
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest single wait, whatever `Retry-After` asks, in seconds.
    #[serde(default = "default_max_wait_secs")]
    pub max_retry_secs: u64,
    /// Largest response body (or export file) read, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Tests only: send every request over plain HTTP to this loopback
    /// address (`127.0.0.1:PORT`) instead of `base_url`'s host. Refused for
    /// anything but a loopback address, so a token never travels
    /// unencrypted off the machine.
    #[serde(default)]
    pub test_loopback: Option<String>,
}

/// How the connector authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum JiraAuth {
    /// An Atlassian API token of the integration user (HTTP basic).
    ApiToken {
        /// The integration user's email.
        email: String,
        /// Name of the environment variable holding the API token.
        token_env: String,
    },
    /// An OAuth 2.0 (3LO) access token, sent as a bearer token.
    Oauth {
        /// Name of the environment variable holding the access token.
        token_env: String,
    },
}

/// Which Jira field (`customfield_10042`, `labels`, `description`) holds
/// each part of the approval. List fields may be Jira multi-value fields
/// (strings, options, labels) or text separated by commas or newlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    /// The identity ids approved (one approval per id). Required.
    pub subjects: String,
    /// Credential ids covered; absent field or empty = every credential.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Approved actions.
    #[serde(default)]
    pub actions: Option<String>,
    /// Approved entitlement ids.
    #[serde(default)]
    pub entitlements: Option<String>,
    /// Identities it may assume.
    #[serde(default)]
    pub assume: Option<String>,
    /// Services it may be used against (empty = any).
    #[serde(default)]
    pub services: Option<String>,
    /// Regions it may be used in (empty = any).
    #[serde(default)]
    pub regions: Option<String>,
    /// Start of validity (date or date-time); absent = the approval time.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// End of validity (date or date-time). Required: every approval ends.
    pub expires_at: String,
}

/// Status names by meaning; a ticket in any other status (waiting for
/// approval, reopened to a pending status) approves nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statuses {
    /// Approved and open: valid from start to expiry.
    #[serde(default = "default_approved")]
    pub approved: Vec<String>,
    /// The task is finished: valid until the resolution time.
    #[serde(default = "default_done")]
    pub done: Vec<String>,
    /// Cancelled: revoked at the transition.
    #[serde(default = "default_cancelled")]
    pub cancelled: Vec<String>,
    /// Rejected / declined: revoked at the transition.
    #[serde(default = "default_rejected")]
    pub rejected: Vec<String>,
}

impl Default for Statuses {
    fn default() -> Self {
        Statuses {
            approved: default_approved(),
            done: default_done(),
            cancelled: default_cancelled(),
            rejected: default_rejected(),
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
// Jira Service Management's default service-request workflows.
fn default_approved() -> Vec<String> {
    strings(&["Approved", "In Progress", "Work in progress"])
}
fn default_done() -> Vec<String> {
    strings(&["Done", "Resolved", "Closed", "Completed"])
}
fn default_cancelled() -> Vec<String> {
    strings(&["Canceled", "Cancelled", "Won't Do"])
}
fn default_rejected() -> Vec<String> {
    strings(&["Declined", "Rejected"])
}
fn default_max_validity_days() -> i64 {
    365
}
fn default_max_tickets() -> usize {
    10_000
}
fn default_page_size() -> u32 {
    100
}
fn default_concurrency() -> usize {
    8
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_wait_secs() -> u64 {
    60
}
fn default_max_response_bytes() -> usize {
    32 * 1024 * 1024
}

impl JiraConfig {
    /// A config with defaults for everything but these.
    pub fn new(name: &str, base_url: &str, jql: &str, auth: JiraAuth, fields: FieldMap) -> Self {
        JiraConfig {
            name: name.to_string(),
            base_url: base_url.to_string(),
            jql: jql.to_string(),
            auth: Some(Box::new(auth)),
            export_dir: None,
            fields: Box::new(fields),
            statuses: Box::default(),
            use_jsm_approvals: false,
            max_validity_days: default_max_validity_days(),
            max_tickets: default_max_tickets(),
            page_size: default_page_size(),
            max_concurrency: default_concurrency(),
            max_retries: default_retries(),
            initial_backoff_ms: default_backoff_ms(),
            max_retry_secs: default_max_wait_secs(),
            max_response_bytes: default_max_response_bytes(),
            test_loopback: None,
        }
    }
}

impl nhi_contract::ApprovalConnector for JiraConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn approvals(&self, base: &std::path::Path) -> Box<dyn nhi_contract::ApprovalSource> {
        let mut config = self.clone();
        // `join` keeps an absolute path as it is.
        config.export_dir = self.export_dir.as_ref().map(|d| base.join(d));
        Box::new(crate::JiraSource::new(config))
    }

    fn problems(&self) -> Vec<nhi_contract::SettingProblem> {
        let mut out = Vec::new();
        let o = &mut out;
        let mut problem = |key: &str, message: &str| {
            o.push(nhi_contract::SettingProblem {
                key: vec![key.to_string()],
                message: message.to_string(),
            })
        };
        if !self.base_url.starts_with("https://") {
            problem("base_url", "must be an https:// URL");
        }
        if self.export_dir.is_none() {
            if self.jql.trim().is_empty() {
                problem("jql", "is required unless export_dir is set");
            }
            if self.auth.is_none() {
                problem("auth", "is required unless export_dir is set");
            }
        }
        if let Some(l) = &self.test_loopback {
            let loopback = l
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !loopback {
                problem(
                    "test_loopback",
                    "must be a loopback address (127.0.0.1:PORT)",
                );
            }
        }
        for (k, v) in self.fields.named() {
            if !valid_field_id(v) {
                o.push(nhi_contract::SettingProblem {
                    key: vec!["fields".into(), k.into()],
                    message: format!("{v:?} is not a Jira field id (customfield_10042, labels)"),
                });
            }
        }
        nhi_contract::check_range(o, "max_validity_days", self.max_validity_days, 1, 3650);
        nhi_contract::check_range(o, "max_tickets", self.max_tickets, 1, 1_000_000);
        nhi_contract::check_range(o, "page_size", self.page_size, 1, 5000);
        nhi_contract::check_range(o, "max_concurrency", self.max_concurrency, 1, 64);
        nhi_contract::check_range(o, "max_retries", self.max_retries, 0, 20);
        nhi_contract::check_range(o, "initial_backoff_ms", self.initial_backoff_ms, 1, 60_000);
        nhi_contract::check_range(o, "max_retry_secs", self.max_retry_secs, 1, 3600);
        nhi_contract::check_range(
            o,
            "max_response_bytes",
            self.max_response_bytes,
            1024,
            1024 * 1024 * 1024,
        );
        out
    }

    fn secret_variables(&self) -> Vec<nhi_contract::SecretVariable> {
        match self.auth.as_deref() {
            Some(JiraAuth::ApiToken { token_env, .. }) | Some(JiraAuth::Oauth { token_env }) => {
                vec![nhi_contract::SecretVariable {
                    key: vec!["auth".into(), "token_env".into()],
                    variable: token_env.clone(),
                }]
            }
            None => Vec::new(),
        }
    }
}

impl FieldMap {
    /// Every mapped field as (setting key, Jira field id).
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![
            ("subjects", self.subjects.as_str()),
            ("expires_at", self.expires_at.as_str()),
        ];
        let optional = [
            ("credentials", &self.credentials),
            ("actions", &self.actions),
            ("entitlements", &self.entitlements),
            ("assume", &self.assume),
            ("services", &self.services),
            ("regions", &self.regions),
            ("starts_at", &self.starts_at),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                out.push((k, v.as_str()));
            }
        }
        out
    }
}

/// Jira field ids are ASCII words (`customfield_10042`, `labels`,
/// `duedate`); anything else would end up inside the `fields` parameter.
fn valid_field_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
