//! Configuration of one AWS source. Credentials never come from here: they
//! come from the standard AWS chain (environment, profile, SSO, web
//! identity / IRSA, instance role), optionally narrowed by `profile`.

use serde::{Deserialize, Serialize};

/// One AWS inventory source (one or several accounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// Named profile of the shared config files, if not the default chain.
    #[serde(default)]
    pub profile: Option<String>,
    /// Region for the STS/IAM clients (IAM itself is global).
    #[serde(default = "default_region")]
    pub region: String,
    /// Endpoint override (VPC endpoints, moto in tests). `AWS_ENDPOINT_URL`
    /// is honoured as aws-config does when this is unset.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Roles to assume, one per member account. Empty: scan the account the
    /// credential chain belongs to.
    #[serde(default)]
    pub assume_roles: Vec<String>,
    /// External id for the assumed roles, if their trust requires one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Per-user calls in flight at once (IAM's rate limits are low).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Attempts per call, throttling and 5xx included (adaptive retry).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First retry backoff, in milliseconds.
    #[serde(default = "default_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Principal tag keys read as the owner, first match wins.
    #[serde(default = "default_owner_tags")]
    pub owner_tags: Vec<String>,
    /// Account ids that are ours although this source does not read them
    /// (another source's accounts, a partner run by the same team): a role
    /// trusting one of them does not trust a third party.
    #[serde(default)]
    pub trusted_accounts: Vec<String>,
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_concurrency() -> usize {
    8
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_owner_tags() -> Vec<String> {
    vec!["nhi-assure:owner".into(), "owner".into(), "Owner".into()]
}

impl AwsConfig {
    /// A config with defaults for everything but the name.
    pub fn named(name: &str) -> AwsConfig {
        AwsConfig {
            name: name.to_string(),
            profile: None,
            region: default_region(),
            endpoint_url: None,
            assume_roles: Vec::new(),
            external_id: None,
            max_concurrency: default_concurrency(),
            max_attempts: default_attempts(),
            initial_backoff_ms: default_backoff_ms(),
            owner_tags: default_owner_tags(),
            trusted_accounts: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl nhi_contract::SourceConnector for AwsConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn inventory(&self, _base: &std::path::Path) -> Box<dyn nhi_contract::InventorySource> {
        Box::new(crate::AwsSource::new(self.clone()))
    }

    async fn remediator(&self) -> Option<Box<dyn nhi_contract::Remediator>> {
        Some(Box::new(crate::AwsRemediator::new(self).await))
    }

    fn problems(&self) -> Vec<nhi_contract::SettingProblem> {
        let mut out = Vec::new();
        let o = &mut out;
        nhi_contract::check_range(o, "max_concurrency", self.max_concurrency, 1, 256);
        nhi_contract::check_range(o, "max_attempts", self.max_attempts, 1, 20);
        nhi_contract::check_range(o, "initial_backoff_ms", self.initial_backoff_ms, 1, 60_000);
        for (i, a) in self.trusted_accounts.iter().enumerate() {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                o.push(nhi_contract::SettingProblem {
                    key: vec!["trusted_accounts".into(), i.to_string()],
                    message: format!("{a:?} is not a 12-digit AWS account id"),
                });
            }
        }
        out
    }
}
