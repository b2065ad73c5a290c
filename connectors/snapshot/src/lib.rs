//! Snapshot connector: reads an inventory exported as JSON.
//!
//! It lets nhi-assure run offline on exports (air-gapped audits) and on the
//! bundled demo estate. The format is the contract model verbatim, wrapped
//! in a small header; see `README.md` beside this crate.
//!
//! The reader is strict: unknown fields, a credential naming an identity the
//! file does not hold, duplicate ids or an identity of another provider fail
//! the scan with `file:line:column`, so the engine treats the source as
//! unknown instead of silently reading less.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nhi_contract::{
    Approval, Coverage, Credential, Entitlement, Grant, Identity, Inventory, InventorySource,
    Provider, SourceError, Timestamp, Trust,
};
use serde::{Deserialize, Serialize};

/// The format tag every snapshot file starts with.
pub const FORMAT: &str = "nhi-assure.snapshot/v1";

/// A snapshot file: a header plus the inventory model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Must be [`FORMAT`].
    pub format: String,
    /// Provider every identity in the file belongs to.
    pub provider: Provider,
    /// When the export was taken.
    #[serde(default, deserialize_with = "nhi_contract::time::deserialize_opt")]
    pub exported_at: Option<Timestamp>,
    /// Identities.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// Credentials.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Entitlement definitions.
    #[serde(default)]
    pub entitlements: Vec<Entitlement>,
    /// Who holds which entitlement.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Who may assume whom.
    #[serde(default)]
    pub trusts: Vec<Trust>,
    /// Approvals carried by the provider itself.
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// What the export could not see.
    #[serde(default)]
    pub coverage: Coverage,
}

impl SnapshotFile {
    /// Wrap an inventory for export.
    pub fn new(provider: Provider, exported_at: Option<Timestamp>, inv: Inventory) -> Self {
        SnapshotFile {
            format: FORMAT.to_string(),
            provider,
            exported_at,
            identities: inv.identities,
            credentials: inv.credentials,
            entitlements: inv.entitlements,
            grants: inv.grants,
            trusts: inv.trusts,
            approvals: inv.approvals,
            coverage: inv.coverage,
        }
    }

    fn into_inventory(self) -> Inventory {
        Inventory {
            identities: self.identities,
            credentials: self.credentials,
            entitlements: self.entitlements,
            grants: self.grants,
            trusts: self.trusts,
            approvals: self.approvals,
            coverage: self.coverage,
        }
    }
}

/// Configuration of one snapshot source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// Provider the file holds.
    pub provider: Provider,
    /// Path of the JSON file (relative paths are resolved by the caller).
    pub path: PathBuf,
}

impl nhi_contract::SourceConnector for SnapshotConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn inventory(&self, base: &std::path::Path) -> Box<dyn InventorySource> {
        // `join` keeps an absolute path as it is.
        Box::new(SnapshotSource::new(SnapshotConfig {
            path: base.join(&self.path),
            ..self.clone()
        }))
    }
}

/// An [`InventorySource`] over one snapshot file.
#[derive(Debug, Clone)]
pub struct SnapshotSource {
    config: SnapshotConfig,
}

impl SnapshotSource {
    /// Create a source; nothing is read until [`InventorySource::scan`].
    pub fn new(config: SnapshotConfig) -> Self {
        SnapshotSource { config }
    }
}

#[async_trait]
impl InventorySource for SnapshotSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn provider(&self) -> Provider {
        self.config.provider
    }

    async fn scan(&self) -> Result<Inventory, SourceError> {
        let path = self.config.path.clone();
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|source| SourceError::Io {
                path: path.display().to_string(),
                source,
            })?;
        let inv = parse(&path, &text, Some(self.config.provider))?;
        tracing::debug!(
            source = %self.config.name,
            identities = inv.identities.len(),
            credentials = inv.credentials.len(),
            "snapshot read"
        );
        Ok(inv)
    }
}

/// Parse and validate snapshot text. `expect` is the provider the caller
/// configured, checked against the file's header.
pub fn parse(path: &Path, text: &str, expect: Option<Provider>) -> Result<Inventory, SourceError> {
    let invalid = |location: String, message: String| SourceError::Invalid { location, message };
    let file: SnapshotFile = serde_json::from_str(text).map_err(|e| {
        invalid(
            format!("{}:{}:{}", path.display(), e.line(), e.column()),
            e.to_string(),
        )
    })?;
    let here = || path.display().to_string();
    if file.format != FORMAT {
        return Err(invalid(
            here(),
            format!("format is {:?}, expected {FORMAT:?}", file.format),
        ));
    }
    if let Some(p) = expect {
        if p != file.provider {
            return Err(invalid(
                here(),
                format!(
                    "file holds provider {}, but the source is configured for {p}",
                    file.provider
                ),
            ));
        }
    }
    let mut ids = HashSet::with_capacity(file.identities.len());
    for i in &file.identities {
        if i.provider != file.provider {
            return Err(invalid(
                here(),
                format!(
                    "identity {} has provider {}, file is {}",
                    i.id, i.provider, file.provider
                ),
            ));
        }
        if !ids.insert(i.id.as_str()) {
            return Err(invalid(here(), format!("duplicate identity id {}", i.id)));
        }
    }
    let mut creds = HashSet::with_capacity(file.credentials.len());
    for c in &file.credentials {
        if !ids.contains(c.identity.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "credential {} names identity {} which is not in the file",
                    c.id, c.identity
                ),
            ));
        }
        if !creds.insert((c.identity.as_str(), c.id.as_str())) {
            return Err(invalid(here(), format!("duplicate credential id {}", c.id)));
        }
    }
    let ents: HashSet<&str> = file.entitlements.iter().map(|e| e.id.as_str()).collect();
    for g in &file.grants {
        if !ids.contains(g.identity.as_str()) || !ents.contains(g.entitlement.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "grant of {} to {} names an unknown identity or entitlement",
                    g.entitlement, g.identity
                ),
            ));
        }
    }
    // A trust may name a principal outside the file (another account, a
    // federated issuer): only the assumed side must be known.
    for t in &file.trusts {
        if !ids.contains(t.to.as_str()) {
            return Err(invalid(
                here(),
                format!(
                    "trust {} -> {} names an unknown target identity",
                    t.from, t.to
                ),
            ));
        }
    }
    drop((ids, creds, ents));
    Ok(file.into_inventory())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("estate.json")
    }

    const OK: &str = r#"{
  "format": "nhi-assure.snapshot/v1",
  "provider": "aws",
  "identities": [
    {"provider": "aws", "id": "arn:aws:iam::1:user/ci", "kind": "user", "name": "ci", "account": "1"}
  ],
  "credentials": [
    {"id": "AKIA1", "identity": "arn:aws:iam::1:user/ci", "kind": "access_key",
     "created": "2026-01-01T00:00:00Z", "usage": {"state": "never"}}
  ]
}"#;

    #[test]
    fn reads_a_valid_snapshot() {
        let inv = parse(&p(), OK, Some(Provider::Aws)).expect("valid");
        assert_eq!(inv.identities.len(), 1);
        assert_eq!(inv.credentials[0].id, "AKIA1");
        assert!(inv.credentials[0].active, "active defaults to true");
    }

    #[test]
    fn unknown_field_fails_with_file_and_line() {
        let bad = OK.replace(
            "\"kind\": \"access_key\"",
            "\"kind\": \"access_key\", \"secret\": \"s\"",
        );
        let err = parse(&p(), &bad, None).unwrap_err().to_string();
        assert!(err.starts_with("estate.json:8:"), "{err}");
        assert!(err.contains("unknown field `secret`"), "{err}");
    }

    #[test]
    fn dangling_credential_fails() {
        let bad = OK.replace(
            "\"identity\": \"arn:aws:iam::1:user/ci\"",
            "\"identity\": \"nobody\"",
        );
        let err = parse(&p(), &bad, None).unwrap_err().to_string();
        assert!(err.contains("names identity nobody"), "{err}");
    }

    #[test]
    fn provider_mismatch_fails() {
        let err = parse(&p(), OK, Some(Provider::Azure))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configured for azure"), "{err}");
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme
            .find("```json\n")
            .expect("README has a ```json block")
            + 8;
        let len = readme[start..]
            .find("```")
            .expect("the ```json block is closed");
        let inv = parse(
            Path::new("README.md"),
            &readme[start..start + len],
            Some(Provider::Aws),
        )
        .expect("the README example is a valid snapshot");
        assert_eq!(inv.identities.len(), 2);
        assert_eq!(inv.credentials.len(), 2);
        assert_eq!(inv.grants.len(), 2);
        assert_eq!(inv.trusts.len(), 1);
        assert_eq!(inv.approvals.len(), 1);
        assert_eq!(inv.coverage.gaps.len(), 1);
    }

    #[tokio::test]
    async fn missing_file_is_an_error_not_an_empty_inventory() {
        let src = SnapshotSource::new(SnapshotConfig {
            name: "x".into(),
            provider: Provider::Aws,
            path: PathBuf::from("/nonexistent/estate.json"),
        });
        assert!(src.scan().await.is_err());
    }
}
