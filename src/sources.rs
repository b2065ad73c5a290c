//! The registry of connectors: the one place a config `type` is mapped to
//! the crate that reads (and acts on) it. Everything else about a provider
//! — its settings, their checks, its inventory source, remediator and
//! approval source — lives in its crate, behind the contract's
//! [`SourceConnector`] / [`ApprovalConnector`] traits.
//!
//! Adding a connector is one line in [`registry!`]'s invocation below (see
//! ARCHITECTURE.md, "Adding a connector"); each optional connector sits
//! behind a cargo feature of the same name, so a build can leave its SDK out.

use std::collections::HashMap;
use std::path::Path;

use nhi_contract::{
    ApprovalConnector, ApprovalSource, InventorySource, Remediator, SourceConnector,
};
use serde::{Deserialize, Serialize};

/// Declares the config enum of one kind of connector (`type` selects the
/// variant) and its dispatch to the connector trait. Each line is
/// `[#[cfg(..)]] "type" => Variant(ConfigType)`.
macro_rules! registry {
    ($(#[$doc:meta])* $enum:ident: dyn $trait:ident {
        $( $(#[doc = $d:literal])* $(#[cfg($c:meta)])* $tag:literal => $variant:ident($config:ty), )+
    }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum $enum {
            $( $(#[doc = $d])* $(#[cfg($c)])* #[serde(rename = $tag)] $variant($config), )+
        }

        impl $enum {
            /// The connector this config selects.
            pub fn connector(&self) -> &dyn $trait {
                match self {
                    $( $(#[cfg($c)])* $enum::$variant(c) => c, )+
                }
            }

            /// The configured name.
            pub fn name(&self) -> &str {
                self.connector().name()
            }

            /// Deserialize `de` as the config of the connector `kind` names
            /// (`None`: no such connector in this build). Serde reports an
            /// error inside a tagged enum at the whole entry; the inner
            /// type reports it at the key.
            pub fn deserialize_as<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                de: D,
            ) -> Option<Result<(), D::Error>> {
                match kind {
                    $( $(#[cfg($c)])* $tag => Some(<$config>::deserialize(de).map(drop)), )+
                    _ => None,
                }
            }
        }
    };
}

registry! {
    /// One inventory source; `type` selects the connector.
    SourceConfig: dyn SourceConnector {
        /// A snapshot JSON file (offline; always built in).
        "snapshot" => Snapshot(nhi_snapshot::SnapshotConfig),
        /// AWS IAM through the standard credential chain.
        #[cfg(feature = "aws")]
        "aws" => Aws(nhi_aws::AwsConfig),
        /// Microsoft Entra ID (Graph) and Azure RBAC (ARM) of one tenant.
        #[cfg(feature = "azure")]
        "azure" => Azure(nhi_azure::AzureConfig),
    }
}

registry! {
    /// One approval source; `type` selects it.
    ApprovalConfig: dyn ApprovalConnector {
        /// A directory of approvals-as-code YAML files.
        "files" => Files(nhi_approvals_as_code::FilesConfig),
        /// Jira Cloud / Jira Service Management tickets found by JQL.
        #[cfg(feature = "jira")]
        "jira" => Jira(nhi_jira::JiraConfig),
        /// ServiceNow requested items or change requests (Table API).
        #[cfg(feature = "servicenow")]
        "servicenow" => ServiceNow(Box<nhi_servicenow::ServiceNowConfig>),
    }
}

/// Build the inventory sources of `sources`; relative paths resolve against
/// `base` (the config file's directory).
pub fn inventory_sources(sources: &[SourceConfig], base: &Path) -> Vec<Box<dyn InventorySource>> {
    sources
        .iter()
        .map(|s| s.connector().inventory(base))
        .collect()
}

/// Build the approval sources of `approvals`.
pub fn approval_sources(approvals: &[ApprovalConfig], base: &Path) -> Vec<Box<dyn ApprovalSource>> {
    approvals
        .iter()
        .map(|s| s.connector().approvals(base))
        .collect()
}

/// Remediators by source name (a read-only source has none).
pub type Remediators = HashMap<String, Box<dyn Remediator>>;

/// Build the remediators of `sources`.
pub async fn remediators(sources: &[SourceConfig]) -> Remediators {
    let mut out = Remediators::new();
    for s in sources {
        if let Some(r) = s.connector().remediator().await {
            out.insert(s.name().to_string(), r);
        }
    }
    out
}
