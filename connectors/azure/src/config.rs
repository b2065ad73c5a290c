//! Configuration of one Azure source: one Entra ID tenant and the
//! subscriptions whose RBAC role assignments are read. Secrets never come
//! from here: a client secret is read from the environment variable the
//! config names, every other method uses no secret at all.

use serde::{Deserialize, Serialize};

/// One Azure inventory source (one tenant, some subscriptions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// Entra ID tenant (directory) id.
    pub tenant_id: String,
    /// How to obtain tokens.
    pub auth: AzureAuth,
    /// Subscriptions whose role assignments are read (ids). Empty: no RBAC.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Token authority (national clouds: `https://login.microsoftonline.us`, …).
    #[serde(default = "default_authority")]
    pub authority_host: String,
    /// Microsoft Graph base URL (`https://graph.microsoft.us`, …).
    #[serde(default = "default_graph")]
    pub graph_url: String,
    /// Azure Resource Manager base URL (`https://management.usgovcloudapi.net`, …).
    #[serde(default = "default_arm")]
    pub arm_url: String,
    /// Read the (beta) sign-in activity reports for last use. When off, or
    /// when the tenant refuses them, usage is unknown and a gap is recorded.
    #[serde(default = "yes")]
    pub sign_in_reports: bool,
    /// Per-object calls in flight at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Retries per call after the first try (429, 5xx, connection errors).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry backoff, in milliseconds (doubles each retry; a longer
    /// `Retry-After` from the service wins).
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Give up retrying one call after this many seconds; also the longest
    /// single wait, whatever `Retry-After` asks.
    #[serde(default = "default_total_secs")]
    pub max_retry_secs: u64,
    /// Tests only: send every request (token requests included) over plain
    /// HTTP to this loopback address (`127.0.0.1:PORT`) instead of the
    /// configured hosts. Refused for anything but a loopback address, so a
    /// bearer token never travels unencrypted off the machine.
    #[serde(default)]
    pub test_loopback: Option<String>,
}

/// How the connector authenticates, through `azure_identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AzureAuth {
    /// Federated token file (Kubernetes workload identity): the recommended
    /// method for the daemon. Unset fields come from `AZURE_CLIENT_ID` and
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity {
        /// Application (client) id.
        #[serde(default)]
        client_id: Option<String>,
        /// Path of the projected service account token.
        #[serde(default)]
        token_file: Option<String>,
    },
    /// The managed identity of the host (system-assigned, or the
    /// user-assigned one with this client id).
    ManagedIdentity {
        /// Client id of a user-assigned identity.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// An application's client secret, read from an environment variable.
    ClientSecret {
        /// Application (client) id.
        client_id: String,
        /// Name of the environment variable holding the secret.
        secret_env: String,
    },
    /// An application's certificate (PKCS#12 file). Needs the
    /// `client-certificate` feature (OpenSSL).
    ClientCertificate {
        /// Application (client) id.
        client_id: String,
        /// Path of the PKCS#12 file.
        certificate_path: String,
        /// Environment variable holding the file's password, if any.
        #[serde(default)]
        password_env: Option<String>,
    },
    /// The signed-in Azure CLI (`az login`), for local runs.
    AzureCli,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}
fn default_arm() -> String {
    "https://management.azure.com".into()
}
fn yes() -> bool {
    true
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
fn default_total_secs() -> u64 {
    120
}

impl AzureConfig {
    /// A config with defaults for everything but name, tenant and auth.
    pub fn new(name: &str, tenant_id: &str, auth: AzureAuth) -> AzureConfig {
        AzureConfig {
            name: name.to_string(),
            tenant_id: tenant_id.to_string(),
            auth,
            subscriptions: Vec::new(),
            authority_host: default_authority(),
            graph_url: default_graph(),
            arm_url: default_arm(),
            sign_in_reports: true,
            max_concurrency: default_concurrency(),
            max_retries: default_retries(),
            initial_backoff_ms: default_backoff_ms(),
            max_retry_secs: default_total_secs(),
            test_loopback: None,
        }
    }
}

#[async_trait::async_trait]
impl nhi_contract::SourceConnector for AzureConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn inventory(&self, _base: &std::path::Path) -> Box<dyn nhi_contract::InventorySource> {
        Box::new(crate::AzureSource::new(self.clone()))
    }

    async fn remediator(&self) -> Option<Box<dyn nhi_contract::Remediator>> {
        Some(Box::new(crate::AzureRemediator::new(self)))
    }

    fn problems(&self) -> Vec<nhi_contract::SettingProblem> {
        let mut out = Vec::new();
        let o = &mut out;
        nhi_contract::check_range(o, "max_concurrency", self.max_concurrency, 1, 256);
        nhi_contract::check_range(o, "max_retries", self.max_retries, 0, 20);
        nhi_contract::check_range(o, "initial_backoff_ms", self.initial_backoff_ms, 1, 60_000);
        nhi_contract::check_range(o, "max_retry_secs", self.max_retry_secs, 1, 3600);
        out
    }

    fn secret_variables(&self) -> Vec<nhi_contract::SecretVariable> {
        let var = |k: &str, v: &String| nhi_contract::SecretVariable {
            key: vec!["auth".into(), k.into()],
            variable: v.clone(),
        };
        match &self.auth {
            AzureAuth::ClientSecret { secret_env, .. } => vec![var("secret_env", secret_env)],
            AzureAuth::ClientCertificate {
                password_env: Some(v),
                ..
            } => vec![var("password_env", v)],
            _ => Vec::new(),
        }
    }
}
