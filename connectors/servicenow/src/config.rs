//! Configuration of one ServiceNow approval source. Secrets never come from
//! here: the password or client secret is read from the environment
//! variable the config names.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One ServiceNow approval source: a table, an encoded query, and how the
/// records' fields map to approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNowConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// The instance, `https://example.service-now.com`. Required to read
    /// live; offline it only builds the records' URLs.
    #[serde(default)]
    pub instance_url: Option<String>,
    /// Table read: `sc_req_item` (requested items) or `change_request`.
    #[serde(default = "default_table")]
    pub table: String,
    /// Encoded query selecting the records (`cat_item=<sys_id>^active=true`).
    /// Empty: every record of the table.
    #[serde(default)]
    pub query: String,
    /// How to authenticate (live reading). Exactly one of `auth` and
    /// `export_dir` is given.
    #[serde(default)]
    pub auth: Option<ServiceNowAuth>,
    /// Offline: a directory of saved Table API pages (`{"result": [...]}`),
    /// `<export_dir>/<table>/*.json` and
    /// `<export_dir>/sysapproval_approver/*.json`, read in name order.
    #[serde(default)]
    pub export_dir: Option<PathBuf>,
    /// Which record fields (or catalog variables, `variables.<name>`) hold
    /// what.
    pub mapping: Mapping,
    /// What the record's `state` and `approval` values mean.
    #[serde(default)]
    pub states: States,
    /// Records per page (`sysparm_limit`).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// More matching records than this fails the read (a truncated set
    /// would make approved credentials look unapproved).
    #[serde(default = "default_max_records")]
    pub max_records: u32,
    /// Largest response body accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// Retries per call after the first try (429, 5xx, connection errors).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry backoff in milliseconds (doubles each retry; a longer
    /// `Retry-After` wins).
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest single wait in seconds, whatever `Retry-After` asks.
    #[serde(default = "default_retry_secs")]
    pub max_retry_secs: u64,
    /// Tests only: send every request over plain HTTP to this loopback
    /// address (`127.0.0.1:PORT`) instead of `instance_url`. Refused for
    /// anything but a loopback address.
    #[serde(default)]
    pub test_loopback: Option<String>,
}

/// How the source authenticates to the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceNowAuth {
    /// Basic authentication of an integration user.
    Basic {
        /// User name.
        user: String,
        /// Environment variable holding the password.
        password_env: String,
    },
    /// OAuth 2.0 client credentials, the token from `/oauth_token.do`.
    OauthClientCredentials {
        /// OAuth application's client id.
        client_id: String,
        /// Environment variable holding the client secret.
        client_secret_env: String,
    },
}

/// Where each part of an approval is read from: a field of the record
/// (`requested_for`, `u_expiry`) or a catalog variable (`variables.<name>`).
/// List fields are split on commas and line breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Identity ids approved (one approval per id). Required.
    pub subject: String,
    /// Credential ids covered; absent or empty = every credential.
    #[serde(default)]
    pub credentials: Option<String>,
    /// Approved actions.
    #[serde(default)]
    pub actions: Option<String>,
    /// Approved entitlements by id.
    #[serde(default)]
    pub entitlements: Option<String>,
    /// Identities it may assume.
    #[serde(default)]
    pub assume: Option<String>,
    /// Services it may be used against.
    #[serde(default)]
    pub services: Option<String>,
    /// Regions it may be used in.
    #[serde(default)]
    pub regions: Option<String>,
    /// Start of validity; absent = the approval time.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// End of validity. Required: every approval ends.
    pub expires_at: String,
    /// Who asked (`requested_for`, or `opened_by`).
    #[serde(default = "default_requester")]
    pub requester: String,
    /// Who carries out the task.
    #[serde(default = "default_assignee")]
    pub assignee: String,
    /// When the record was closed.
    #[serde(default = "default_closed_at")]
    pub closed_at: String,
}

/// Values of the record's `state` and `approval` fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct States {
    /// `approval` values meaning approved.
    #[serde(default = "default_approved")]
    pub approved: Vec<String>,
    /// `approval` values meaning rejected.
    #[serde(default = "default_rejected")]
    pub rejected: Vec<String>,
    /// `state` values meaning the task finished (closed complete): access
    /// ends at the closing time.
    #[serde(default = "default_complete")]
    pub closed_complete: Vec<String>,
    /// `state` values meaning abandoned (closed incomplete, closed
    /// cancelled): the approval is revoked at the closing time.
    #[serde(default = "default_cancelled")]
    pub cancelled: Vec<String>,
}

impl Default for States {
    fn default() -> Self {
        States {
            approved: default_approved(),
            rejected: default_rejected(),
            closed_complete: default_complete(),
            cancelled: default_cancelled(),
        }
    }
}

fn default_table() -> String {
    "sc_req_item".into()
}
fn default_requester() -> String {
    "requested_for".into()
}
fn default_assignee() -> String {
    "assigned_to".into()
}
fn default_closed_at() -> String {
    "closed_at".into()
}
fn default_approved() -> Vec<String> {
    vec!["approved".into()]
}
fn default_rejected() -> Vec<String> {
    vec!["rejected".into()]
}
// sc_req_item: 3 Closed Complete; change_request: 3 Closed.
fn default_complete() -> Vec<String> {
    vec!["3".into()]
}
// sc_req_item: 4 Closed Incomplete, 7 Closed Skipped (cancelled);
// change_request: 4 Canceled.
fn default_cancelled() -> Vec<String> {
    vec!["4".into(), "7".into()]
}
fn default_page_size() -> u32 {
    100
}
fn default_max_records() -> u32 {
    50_000
}
fn default_max_response_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_retries() -> u32 {
    4
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_retry_secs() -> u64 {
    60
}

impl nhi_contract::ApprovalConnector for ServiceNowConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn approvals(&self, base: &std::path::Path) -> Box<dyn nhi_contract::ApprovalSource> {
        Box::new(crate::ServiceNowSource::new(ServiceNowConfig {
            export_dir: self.export_dir.as_ref().map(|d| base.join(d)),
            ..self.clone()
        }))
    }

    fn problems(&self) -> Vec<nhi_contract::SettingProblem> {
        use nhi_contract::{check_range, SettingProblem};
        let mut out = Vec::new();
        check_range(&mut out, "page_size", self.page_size, 1, 10_000);
        check_range(&mut out, "max_records", self.max_records, 1, 1_000_000);
        check_range(
            &mut out,
            "max_response_bytes",
            self.max_response_bytes,
            1024,
            256 * 1024 * 1024,
        );
        check_range(&mut out, "max_retries", self.max_retries, 0, 10);
        check_range(
            &mut out,
            "initial_backoff_ms",
            self.initial_backoff_ms,
            1,
            60_000,
        );
        check_range(&mut out, "max_retry_secs", self.max_retry_secs, 1, 600);
        let mut problem = |key: &str, message: &str| {
            out.push(SettingProblem {
                key: vec![key.to_string()],
                message: message.to_string(),
            })
        };
        match (&self.auth, &self.export_dir) {
            (Some(_), Some(_)) => problem("export_dir", "give either auth or export_dir, not both"),
            (None, None) => problem(
                "auth",
                "give auth (read the instance) or export_dir (read saved pages)",
            ),
            (Some(_), None) if self.instance_url.is_none() => {
                problem("instance_url", "required to read the instance")
            }
            _ => {}
        }
        if let Some(u) = &self.instance_url {
            let ok = url::Url::parse(u).is_ok_and(|u| u.scheme() == "https" && u.has_host());
            if !ok {
                problem("instance_url", "must be an https URL");
            }
        }
        if !valid_name(&self.table) {
            problem("table", "must be a table name (letters, digits, _)");
        }
        out
    }

    fn secret_variables(&self) -> Vec<nhi_contract::SecretVariable> {
        let var = |k: &str, v: &String| nhi_contract::SecretVariable {
            key: vec!["auth".into(), k.into()],
            variable: v.clone(),
        };
        match &self.auth {
            Some(ServiceNowAuth::Basic { password_env, .. }) => {
                vec![var("password_env", password_env)]
            }
            Some(ServiceNowAuth::OauthClientCredentials {
                client_secret_env, ..
            }) => vec![var("client_secret_env", client_secret_env)],
            None => Vec::new(),
        }
    }
}

/// The registry holds the config boxed (it is much larger than the other
/// approval configs); `Box` is fundamental, so the box is this crate's to
/// implement for.
impl nhi_contract::ApprovalConnector for Box<ServiceNowConfig> {
    fn name(&self) -> &str {
        self.as_ref().name()
    }

    fn approvals(&self, base: &std::path::Path) -> Box<dyn nhi_contract::ApprovalSource> {
        self.as_ref().approvals(base)
    }

    fn problems(&self) -> Vec<nhi_contract::SettingProblem> {
        self.as_ref().problems()
    }

    fn secret_variables(&self) -> Vec<nhi_contract::SecretVariable> {
        self.as_ref().secret_variables()
    }
}

/// A table or field name: ASCII letters, digits, `_` and `.` (dot-walked
/// fields, `variables.<name>`).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}
