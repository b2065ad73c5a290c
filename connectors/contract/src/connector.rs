//! What the root crate's registry needs of a connector. A connector crate
//! implements [`SourceConnector`] (and/or [`ApprovalConnector`]) on its
//! config type — the `[[sources]]` / `[[approvals]]` table selected by its
//! `type` — so everything about a provider (its settings, their checks, how
//! it reads and how it acts) lives in its crate, and the registry is one
//! line per connector.

use std::path::Path;

use async_trait::async_trait;

use crate::{ApprovalSource, InventorySource, Remediator};

/// One unusable setting of a connector's config, by key path under the
/// connector's own table (e.g. `["max_concurrency"]`); the root crate
/// locates it at `file:line:column` or the variable that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// Key path under the connector's table.
    pub key: Vec<String>,
    /// What is wrong with it.
    pub message: String,
}

/// Push a problem when `value` is outside `lo..=hi` (the message every
/// range check of the config uses).
pub fn check_range<T: TryInto<i64>>(
    out: &mut Vec<SettingProblem>,
    key: &str,
    value: T,
    lo: i64,
    hi: i64,
) {
    // A value too wide for i64 is out of any range we accept.
    let v = value.try_into().unwrap_or(i64::MAX);
    if !(lo..=hi).contains(&v) {
        out.push(SettingProblem {
            key: vec![key.to_string()],
            message: format!("{v} is out of range {lo}..={hi}"),
        });
    }
}

/// A setting that names the environment variable holding a secret (the
/// config never holds the secret itself): key path under the connector's
/// table, and the variable's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVariable {
    /// Key path under the connector's table.
    pub key: Vec<String>,
    /// The environment variable's name.
    pub variable: String,
}

/// An inventory connector, implemented by its config type.
#[async_trait]
pub trait SourceConnector: Send + Sync {
    /// The configured source name (unique across sources and approvals).
    fn name(&self) -> &str;

    /// The inventory source this config reads; relative paths in the config
    /// resolve against `base` (the config file's directory).
    fn inventory(&self, base: &Path) -> Box<dyn InventorySource>;

    /// The remediator acting on what this source reads, through the same
    /// credentials and account or tenant; `None` for a read-only source.
    async fn remediator(&self) -> Option<Box<dyn Remediator>> {
        None
    }

    /// Settings outside what the connector accepts (checked before any
    /// source is contacted).
    fn problems(&self) -> Vec<SettingProblem> {
        Vec::new()
    }

    /// Settings naming a secret's environment variable.
    fn secret_variables(&self) -> Vec<SecretVariable> {
        Vec::new()
    }
}

/// An approval connector, implemented by its config type.
pub trait ApprovalConnector: Send + Sync {
    /// The configured source name (unique across sources and approvals).
    fn name(&self) -> &str;

    /// The approval source this config reads; relative paths resolve
    /// against `base`.
    fn approvals(&self, base: &Path) -> Box<dyn ApprovalSource>;

    /// Settings outside what the connector accepts.
    fn problems(&self) -> Vec<SettingProblem> {
        Vec::new()
    }

    /// Settings naming a secret's environment variable.
    fn secret_variables(&self) -> Vec<SecretVariable> {
        Vec::new()
    }
}
