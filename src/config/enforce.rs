//! `[plan]`, `mode` and `[enforce]`: what may be acted on, and the safety
//! rails of enforce mode.

use serde::{Deserialize, Serialize};

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
    /// Per-rule grace, by rule id (zero allowed). Merged over the built-in
    /// defaults (zero for `approval-expired` and
    /// `credential-used-outside-scope`), so naming one rule keeps the others.
    #[serde(default = "default_rule_grace", deserialize_with = "merge_rule_grace")]
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
pub(crate) fn default_rule_grace() -> std::collections::BTreeMap<String, i64> {
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
fn merge_rule_grace<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, i64>, D::Error> {
    let given = std::collections::BTreeMap::<String, i64>::deserialize(d)?;
    let mut all = default_rule_grace();
    all.extend(given);
    Ok(all)
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
