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
    /// Service last-accessed data (which granted services go unused).
    #[serde(default)]
    pub last_accessed: LastAccessedConfig,
    /// Discover the accounts from AWS Organizations instead of listing
    /// `assume_roles` (the two are exclusive). Boxed: most sources have
    /// none, and the registry's enum holds every source config inline.
    #[serde(default)]
    pub organization: Option<Box<OrganizationConfig>>,
    /// Longest just-in-time session issued through this source, in seconds
    /// (900 to 43,200): a session lasts the least of this, the approval's
    /// remaining validity and the role's own maximum.
    #[serde(default = "default_max_session_seconds")]
    pub max_session_seconds: i64,
}

fn default_max_session_seconds() -> i64 {
    3600
}

/// `[sources.organization]`: the accounts of an AWS organisation, listed by
/// `organizations:ListAccounts` from the management account or a delegated
/// administrator, each read through a member role assumed by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// Name (with path, if any) of the member role in every account:
    /// `arn:aws:iam::<account>:role/<role_name>` is assumed to read it.
    pub role_name: String,
    /// Role assumed to call Organizations (in the management account or a
    /// delegated administrator), if not the source's own credentials.
    #[serde(default)]
    pub discovery_role: Option<String>,
    /// Only these account ids (empty: every account).
    #[serde(default)]
    pub include_accounts: Vec<String>,
    /// Never these account ids (wins over every include).
    #[serde(default)]
    pub exclude_accounts: Vec<String>,
    /// Only accounts under these OUs or roots (`ou-…`, `r-…`), at any depth
    /// (empty: anywhere).
    #[serde(default)]
    pub include_ous: Vec<String>,
    /// Never accounts under these OUs, at any depth.
    #[serde(default)]
    pub exclude_ous: Vec<String>,
    /// Only accounts carrying every one of these tags (key = value).
    #[serde(default)]
    pub include_tags: std::collections::BTreeMap<String, String>,
    /// Never accounts carrying any of these tags (key = value).
    #[serde(default)]
    pub exclude_tags: std::collections::BTreeMap<String, String>,
    /// Accounts read at once (each with `max_concurrency` calls in flight).
    #[serde(default = "default_accounts_concurrency")]
    pub max_accounts_concurrency: usize,
    /// Accounts the organisation may list before discovery refuses (a
    /// bound on what one answer can make the scanner do).
    #[serde(default = "default_max_accounts")]
    pub max_accounts: usize,
}

fn default_accounts_concurrency() -> usize {
    4
}
fn default_max_accounts() -> usize {
    5_000
}

impl OrganizationConfig {
    /// Defaults for everything but the member role's name.
    pub fn with_role(role_name: &str) -> OrganizationConfig {
        OrganizationConfig {
            role_name: role_name.to_string(),
            discovery_role: None,
            include_accounts: Vec::new(),
            exclude_accounts: Vec::new(),
            include_ous: Vec::new(),
            exclude_ous: Vec::new(),
            include_tags: Default::default(),
            exclude_tags: Default::default(),
            max_accounts_concurrency: default_accounts_concurrency(),
            max_accounts: default_max_accounts(),
        }
    }
}

/// `[sources.last_accessed]`: reading IAM's service last-accessed data
/// (`GenerateServiceLastAccessedDetails` / `GetServiceLastAccessedDetails`)
/// for the principals that hold policies directly, within a call budget.
/// Off by default: each principal costs at least two calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastAccessedConfig {
    /// Read it at all.
    #[serde(default)]
    pub enabled: bool,
    /// IAM calls the reading may make per scan, over every account of the
    /// source (each principal: one generate, one or more gets). Principals
    /// it cannot afford are not read: their last use is unknown, and the
    /// source reports an `entitlement usage` gap.
    #[serde(default = "default_max_calls")]
    pub max_calls: u64,
    /// Principal ARNs in scope, with `*` wildcards (default: every user and
    /// role).
    #[serde(default = "default_principals")]
    pub principals: Vec<String>,
    /// Wait between polls of a job still in progress, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Polls of one job before its principal is given up as not read.
    #[serde(default = "default_max_polls")]
    pub max_polls: u32,
    /// `MaxItems` per `GetServiceLastAccessedDetails` page.
    #[serde(default = "default_page_size")]
    pub page_size: i32,
}

impl Default for LastAccessedConfig {
    fn default() -> Self {
        LastAccessedConfig {
            enabled: false,
            max_calls: default_max_calls(),
            principals: default_principals(),
            poll_interval_ms: default_poll_ms(),
            max_polls: default_max_polls(),
            page_size: default_page_size(),
        }
    }
}

fn default_max_calls() -> u64 {
    2_000
}
fn default_principals() -> Vec<String> {
    vec!["*".into()]
}
fn default_poll_ms() -> u64 {
    1_000
}
fn default_max_polls() -> u32 {
    30
}
fn default_page_size() -> i32 {
    100
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
            last_accessed: LastAccessedConfig::default(),
            organization: None,
            max_session_seconds: default_max_session_seconds(),
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
        account_ids(o, "trusted_accounts", &self.trusted_accounts);
        nhi_contract::check_range(
            o,
            "max_session_seconds",
            self.max_session_seconds,
            900,
            43_200,
        );
        if let Some(org) = &self.organization {
            if !self.assume_roles.is_empty() {
                o.push(nhi_contract::SettingProblem {
                    key: vec!["organization".into()],
                    message: "organization and assume_roles both name the accounts: use one".into(),
                });
            }
            org_problems(o, org);
        }
        let la = &self.last_accessed;
        nhi_contract::check_range(o, "last_accessed.max_calls", la.max_calls, 2, 1_000_000);
        nhi_contract::check_range(
            o,
            "last_accessed.poll_interval_ms",
            la.poll_interval_ms,
            1,
            60_000,
        );
        nhi_contract::check_range(o, "last_accessed.max_polls", la.max_polls, 1, 1_000);
        nhi_contract::check_range(o, "last_accessed.page_size", la.page_size, 1, 1_000);
        // Nested settings are located by their key path.
        for p in &mut out {
            p.key = p
                .key
                .iter()
                .flat_map(|k| k.split('.'))
                .map(str::to_string)
                .collect();
        }
        out
    }
}

/// Each entry of `list` must be a 12-digit account id.
fn account_ids(o: &mut Vec<nhi_contract::SettingProblem>, key: &str, list: &[String]) {
    for (i, a) in list.iter().enumerate() {
        if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
            o.push(nhi_contract::SettingProblem {
                key: vec![key.into(), i.to_string()],
                message: format!("{a:?} is not a 12-digit AWS account id"),
            });
        }
    }
}

fn org_problems(o: &mut Vec<nhi_contract::SettingProblem>, org: &OrganizationConfig) {
    let start = o.len();
    // A role name (with an optional path) as IAM allows it: it becomes part
    // of an ARN the scanner assumes, so nothing else may slip in.
    let name_ok = !org.role_name.is_empty()
        && org.role_name.len() <= 512
        && !org.role_name.starts_with('/')
        && org
            .role_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    if !name_ok {
        o.push(nhi_contract::SettingProblem {
            key: vec!["role_name".into()],
            message: format!(
                "{:?} is not an IAM role name (letters, digits, +=,.@_- and a path)",
                org.role_name
            ),
        });
    }
    account_ids(o, "include_accounts", &org.include_accounts);
    account_ids(o, "exclude_accounts", &org.exclude_accounts);
    for (key, list) in [
        ("include_ous", &org.include_ous),
        ("exclude_ous", &org.exclude_ous),
    ] {
        for (i, id) in list.iter().enumerate() {
            if !(id.starts_with("ou-") || id.starts_with("r-")) {
                o.push(nhi_contract::SettingProblem {
                    key: vec![key.into(), i.to_string()],
                    message: format!("{id:?} is not an OU (ou-…) or root (r-…) id"),
                });
            }
        }
    }
    nhi_contract::check_range(
        o,
        "max_accounts_concurrency",
        org.max_accounts_concurrency,
        1,
        64,
    );
    nhi_contract::check_range(o, "max_accounts", org.max_accounts, 1, 100_000);
    for p in &mut o[start..] {
        p.key.insert(0, "organization".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhi_contract::SourceConnector;

    #[test]
    fn organization_settings_are_checked_at_their_key() {
        let mut c = AwsConfig::named("aws");
        let mut org = OrganizationConfig::with_role("nhi-assure-scan");
        assert!({
            c.organization = Some(Box::new(org.clone()));
            c.problems().is_empty()
        });
        org.role_name = "scan:role/x".into();
        org.include_accounts = vec!["12345".into()];
        org.exclude_ous = vec!["prod".into()];
        org.max_accounts_concurrency = 0;
        c.organization = Some(Box::new(org));
        c.assume_roles = vec!["arn:aws:iam::210987654321:role/scan".into()];
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key.join(".")).collect();
        assert_eq!(
            keys,
            vec![
                "organization",
                "organization.role_name",
                "organization.include_accounts.0",
                "organization.exclude_ous.0",
                "organization.max_accounts_concurrency",
            ]
        );
    }

    #[test]
    fn last_accessed_settings_are_range_checked_at_their_key() {
        let mut c = AwsConfig::named("aws");
        assert!(c.problems().is_empty());
        c.last_accessed.max_calls = 1;
        c.last_accessed.page_size = 0;
        let keys: Vec<Vec<String>> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                vec!["last_accessed".to_string(), "max_calls".to_string()],
                vec!["last_accessed".to_string(), "page_size".to_string()],
            ]
        );
    }
}
