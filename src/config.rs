//! Configuration: one TOML file, every value overridable from the
//! environment with the `NHI_ASSURE_` prefix.
//!
//! Environment keys map to config paths by lowercasing and splitting on
//! `__`: `NHI_ASSURE_STORE` sets `store`, `NHI_ASSURE_RULES__PARAMS__STALE_DAYS`
//! sets `rules.params.stale_days`, `NHI_ASSURE_SOURCES__0__PATH` sets the
//! first source's `path`. Values are read as TOML (`30`, `true`,
//! `["a","b"]`) and fall back to a plain string.
//!
//! Errors in the file name the file, line and column; errors from an
//! override name the variable. Both are reported before anything runs.

use std::path::{Path, PathBuf};

use nhi_approvals_as_code::FilesConfig;
use nhi_aws::AwsConfig;
use nhi_azure::AzureConfig;
use nhi_contract::Timestamp;
use nhi_snapshot::SnapshotConfig;
use serde::{Deserialize, Serialize};

use crate::rules::RulesConfig;

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "NHI_ASSURE_";

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Store location: a SQLite file path (relative to the config file), or a
    /// `postgres://` URL (set it through `NHI_ASSURE_STORE` from a secret,
    /// not in the file, when it carries a password).
    #[serde(default = "default_store")]
    pub store: String,
    /// Evaluate as of this instant instead of now (audits of old exports,
    /// reproducible demos).
    #[serde(default)]
    pub as_of: Option<Timestamp>,
    /// Inventory sources.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Approval sources.
    #[serde(default)]
    pub approvals: Vec<ApprovalConfig>,
    /// Rule settings.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Plan settings.
    #[serde(default)]
    pub plan: PlanConfig,
    /// `dry-run` (default) or `enforce`. `reconcile --enforce` also enforces.
    #[serde(default)]
    pub mode: Mode,
    /// Safety rails of enforce mode.
    #[serde(default)]
    pub enforce: EnforceConfig,
    /// Daemon settings.
    #[serde(default)]
    pub daemon: crate::daemon::DaemonConfig,
    /// Directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base: PathBuf,
}

fn default_store() -> String {
    "nhi-assure.db".to_string()
}

/// One inventory source; `type` selects the connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// A snapshot JSON file.
    Snapshot(SnapshotConfig),
    /// AWS IAM through the standard credential chain.
    Aws(AwsConfig),
    /// Microsoft Entra ID (Graph) and Azure RBAC (ARM) of one tenant.
    Azure(AzureConfig),
}

impl SourceConfig {
    /// The configured name.
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Snapshot(c) => &c.name,
            SourceConfig::Aws(c) => &c.name,
            SourceConfig::Azure(c) => &c.name,
        }
    }
}

/// One approval source; `type` selects it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalConfig {
    /// A directory of approvals-as-code YAML files.
    Files(FilesConfig),
}

impl ApprovalConfig {
    /// The configured name.
    pub fn name(&self) -> &str {
        match self {
            ApprovalConfig::Files(c) => &c.name,
        }
    }
}

/// Settings for the plan (and, later, enforce mode).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Identities or credentials never acted on (break-glass accounts, the
    /// scanner's own identity), as ids with `*` wildcards.
    #[serde(default)]
    pub protected: Vec<String>,
}

/// Whether `reconcile` acts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Print the plan; change nothing.
    #[default]
    DryRun,
    /// Carry the plan out, behind the safety rails.
    Enforce,
}

/// Safety rails of enforce mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnforceConfig {
    /// Act on none if more than this many identities would be acted on.
    #[serde(default = "default_max_subjects")]
    pub max_subjects: usize,
    /// Act on none if more than this share (percent) of one source's
    /// credentials would be acted on …
    #[serde(default = "default_max_percent")]
    pub max_percent: f64,
    /// … once at least this many of its credentials would be (so a small
    /// account can lose its one bad key).
    #[serde(default = "default_percent_floor")]
    pub percent_floor: usize,
    /// Hours a finding must have been open before it is acted on.
    #[serde(default = "default_grace")]
    pub default_grace_hours: i64,
    /// Per-rule grace, by rule id (zero allowed).
    #[serde(default = "default_rule_grace")]
    pub grace_hours: std::collections::BTreeMap<String, i64>,
    /// Days a disabled credential stays disabled, unused and unapproved,
    /// before a delete action may run.
    #[serde(default = "default_quarantine")]
    pub quarantine_days: i64,
    /// What may be removed irreversibly as the *first* action on a subject:
    /// credential kinds with no reversible form on their provider
    /// (`client_secret` on Entra ID) and `console_password`. Empty by
    /// default: such actions are held with their reason. (Deleting a
    /// credential after its quarantine is a second action and needs no
    /// entry.) `remove_when_cannot_disable` is the older name.
    #[serde(default, alias = "remove_when_cannot_disable")]
    pub allow_irreversible: Vec<Removable>,
    /// Days a webhook revocation naming no approval any source returns is
    /// kept (listed, warned about on every pass) before it is withdrawn.
    #[serde(default = "default_unmatched_revocation_days")]
    pub unmatched_revocation_days: i64,
    /// The action budget: rolling windows shared by every pass (cron,
    /// targeted, one-shot) and every replica, counted from the journal.
    #[serde(default)]
    pub budget: Budget,
}

/// Something that can only be removed, never disabled, as a first action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Removable {
    /// A credential of this kind, where its provider cannot disable it.
    Credential(nhi_contract::CredentialKind),
    /// An interactive login (an IAM user's console password).
    Login(LoginKind),
}

/// Interactive logins a remediator can remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginKind {
    /// An IAM user's console password (login profile).
    ConsolePassword,
}

impl Removable {
    /// The name used in config and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Removable::Credential(k) => k.as_str(),
            Removable::Login(LoginKind::ConsolePassword) => "console_password",
        }
    }
}

impl<'de> Deserialize<'de> for Removable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if name == "console_password" {
            return Ok(Removable::Login(LoginKind::ConsolePassword));
        }
        serde_json::from_value(serde_json::Value::String(name.clone()))
            .map(Removable::Credential)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "unknown kind {name:?}: one of access_key, client_secret, certificate, \
                     token, ssh_key, federated, console_password"
                ))
            })
    }
}

/// Rolling limits on the number of actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Limits on all sources together.
    #[serde(default = "default_budget_overall")]
    pub overall: Vec<Limit>,
    /// Limits on each source on its own.
    #[serde(default = "default_budget_per_source")]
    pub per_source: Vec<Limit>,
}

/// At most `actions` actions in any rolling window of `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Window length in seconds (1 s to 31 days).
    pub window_secs: u64,
    /// Actions allowed in the window.
    pub actions: u64,
}

fn default_budget_overall() -> Vec<Limit> {
    vec![
        Limit {
            window_secs: 3600,
            actions: 50,
        },
        Limit {
            window_secs: 86_400,
            actions: 200,
        },
    ]
}
fn default_budget_per_source() -> Vec<Limit> {
    vec![
        Limit {
            window_secs: 3600,
            actions: 25,
        },
        Limit {
            window_secs: 86_400,
            actions: 100,
        },
    ]
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            overall: default_budget_overall(),
            per_source: default_budget_per_source(),
        }
    }
}

fn default_max_subjects() -> usize {
    25
}
fn default_max_percent() -> f64 {
    10.0
}
fn default_percent_floor() -> usize {
    5
}
fn default_grace() -> i64 {
    24
}
fn default_rule_grace() -> std::collections::BTreeMap<String, i64> {
    // An expired approval or a use outside scope is not a judgment call.
    [
        ("approval-expired".to_string(), 0),
        ("credential-used-outside-scope".to_string(), 0),
    ]
    .into()
}
fn default_unmatched_revocation_days() -> i64 {
    7
}
fn default_quarantine() -> i64 {
    30
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            max_subjects: default_max_subjects(),
            max_percent: default_max_percent(),
            percent_floor: default_percent_floor(),
            default_grace_hours: default_grace(),
            grace_hours: default_rule_grace(),
            quarantine_days: default_quarantine(),
            allow_irreversible: Vec::new(),
            unmatched_revocation_days: default_unmatched_revocation_days(),
            budget: Budget::default(),
        }
    }
}

/// A configuration error, located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is malformed or has invalid values.
    #[error("{path}: {message}")]
    Invalid {
        /// `file:line:column` or the variable name.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Read `path`, apply environment overrides from `env`, validate.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let shown = path.display().to_string();
        let located = |e: toml::de::Error| {
            let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
            ConfigError::Invalid {
                path: format!("{shown}:{line}:{col}"),
                message: e.message().to_string(),
            }
        };
        // Validate the file on its own first, so its errors carry its lines.
        let mut cfg: Config = toml::from_str(&text).map_err(located)?;
        let overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(&text).map_err(located)?;
            for (key, value) in &overrides {
                apply_override(&mut table, key, value)?;
            }
            let names: Vec<&str> = overrides.iter().map(|(k, _)| k.as_str()).collect();
            cfg = table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: format!("environment ({})", names.join(", ")),
                    message: e.message().to_string(),
                })?;
        }
        cfg.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        cfg.validate(&shown)?;
        Ok(cfg)
    }

    fn validate(&self, shown: &str) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Invalid {
            path: shown.to_string(),
            message: m,
        };
        let mut names = std::collections::HashSet::new();
        for n in self
            .sources
            .iter()
            .map(SourceConfig::name)
            .chain(self.approvals.iter().map(ApprovalConfig::name))
        {
            if !names.insert(n) {
                return Err(bad(format!("source name {n:?} is used twice")));
            }
        }
        if self.sources.is_empty() {
            return Err(bad("no [[sources]]: nothing to scan".into()));
        }
        if !(1..=3650).contains(&self.enforce.unmatched_revocation_days) {
            return Err(bad(format!(
                "[enforce] unmatched_revocation_days = {}: between 1 and 3650",
                self.enforce.unmatched_revocation_days
            )));
        }
        const MAX_WINDOW: u64 = 31 * 86_400;
        for l in self
            .enforce
            .budget
            .overall
            .iter()
            .chain(&self.enforce.budget.per_source)
        {
            if !(1..=MAX_WINDOW).contains(&l.window_secs) {
                return Err(bad(format!(
                    "[enforce.budget] window_secs = {}: between 1 and {MAX_WINDOW}",
                    l.window_secs
                )));
            }
        }
        if !(3..=3600).contains(&self.daemon.lease_secs) {
            return Err(bad(format!(
                "[daemon] lease_secs = {}: between 3 and 3600",
                self.daemon.lease_secs
            )));
        }
        Ok(())
    }

    /// Resolve a config-relative path.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Where the store is: a PostgreSQL URL as given, or a SQLite file path
    /// resolved against the config's directory.
    pub fn store_location(&self) -> String {
        if crate::store::is_postgres(&self.store) {
            return self.store.clone();
        }
        let file = self.store.strip_prefix("sqlite://").unwrap_or(&self.store);
        self.resolve(Path::new(file)).display().to_string()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, col)
}

fn apply_override(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let bad = |m: String| ConfigError::Invalid {
        path: key.to_string(),
        message: m,
    };
    let path: Vec<String> = key[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("empty path segment".into()));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    // Work on an owned root; on error the caller discards the table anyway.
    let mut root = toml::Value::Table(std::mem::take(table));
    let mut cur = &mut root;
    let (last, parents) = path.split_last().ok_or_else(|| bad("empty key".into()))?;
    for seg in parents {
        cur = match cur {
            toml::Value::Table(t) => t
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
            toml::Value::Array(a) => {
                let i: usize = seg
                    .parse()
                    .map_err(|_| bad(format!("{seg:?} must be an index into a list")))?;
                let len = a.len();
                a.get_mut(i)
                    .ok_or_else(|| bad(format!("index {i} is out of range (list has {len})")))?
            }
            _ => return Err(bad(format!("{seg:?} is not a table"))),
        };
    }
    match cur {
        toml::Value::Table(t) => {
            t.insert(last.clone(), value);
        }
        toml::Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| bad(format!("{last:?} must be an index")))?;
            let len = a.len();
            *a.get_mut(i)
                .ok_or_else(|| bad(format!("index {i} is out of range (list has {len})")))? = value;
        }
        _ => return Err(bad(format!("cannot set {last:?} inside a scalar"))),
    }
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nhi.toml");
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    const OK: &str = r#"
store = "s.db"
[[sources]]
type = "snapshot"
name = "aws"
provider = "aws"
path = "aws.json"
"#;

    #[test]
    fn loads_and_resolves_relative_paths() {
        let (_d, p) = write(OK);
        let cfg = Config::load(&p, []).expect("valid");
        assert_eq!(
            cfg.store_location(),
            p.parent().expect("dir").join("s.db").display().to_string()
        );
    }

    #[test]
    fn unknown_key_fails_with_line() {
        let (_d, p) = write(&OK.replace("store = \"s.db\"", "store = \"s.db\"\nstor = 1"));
        let err = Config::load(&p, []).unwrap_err().to_string();
        assert!(err.contains("nhi.toml:3:"), "{err}");
        assert!(err.contains("unknown field `stor`"), "{err}");
    }

    #[test]
    fn env_overrides_store_and_nested_values() {
        let (_d, p) = write(OK);
        let env = vec![
            ("NHI_ASSURE_STORE".to_string(), "/tmp/x.db".to_string()),
            (
                "NHI_ASSURE_RULES__PARAMS__STALE_DAYS".to_string(),
                "30".to_string(),
            ),
            (
                "NHI_ASSURE_SOURCES__0__PATH".to_string(),
                "other.json".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let cfg = Config::load(&p, env).expect("valid");
        assert_eq!(cfg.store, "/tmp/x.db");
        assert_eq!(
            cfg.rules.params.get("stale_days"),
            Some(&crate::rules::Param::Int(30))
        );
        let SourceConfig::Snapshot(s) = &cfg.sources[0] else {
            panic!("snapshot source expected");
        };
        assert_eq!(s.path, PathBuf::from("other.json"));
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let (_d, p) = write(OK);
        let env = vec![("NHI_ASSURE_SOURCES__3__PATH".to_string(), "x".to_string())];
        let err = Config::load(&p, env).unwrap_err().to_string();
        assert!(err.starts_with("NHI_ASSURE_SOURCES__3__PATH"), "{err}");
    }

    #[test]
    fn duplicate_source_names_fail() {
        let twice = format!("{OK}\n{}", &OK[OK.find("[[sources]]").expect("has")..]);
        let (_d, p) = write(&twice);
        assert!(Config::load(&p, [])
            .unwrap_err()
            .to_string()
            .contains("used twice"));
    }
}
