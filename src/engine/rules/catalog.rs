//! Control catalogs: the frameworks findings map to (OWASP NHI Top 10,
//! NIST CSF 2.0, NIST SP 800-53 r5, CSA CCM v4, CIS AWS Foundations).
//! A rule naming a control that no catalog holds fails to load.

use serde::{Deserialize, Serialize};

use super::{parse_yaml, RuleError};

/// One control of a framework.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Id within the framework (`NHI7`, `AC-2(3)`, `1.14`).
    pub id: String,
    /// Official title.
    pub title: String,
    /// What it asks of machine identities.
    pub description: String,
}

/// One framework's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Framework id used as the prefix in `FRAMEWORK:ID`.
    pub framework: String,
    /// Full name.
    pub name: String,
    /// Version of the framework.
    pub version: String,
    /// Where it is published.
    pub url: String,
    /// Providers it applies to (`[aws]` for a CIS AWS benchmark); empty:
    /// every provider. Coverage reports count only these providers'
    /// subjects and findings against its controls.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Its controls.
    pub controls: Vec<Control>,
}

/// Every loaded catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalogs(pub Vec<Catalog>);

impl Catalogs {
    /// Parse catalog files given as (file name, text).
    pub fn parse(files: &[(String, String)]) -> Result<Catalogs, RuleError> {
        let mut out: Vec<Catalog> = Vec::new();
        for (file, text) in files {
            let cat: Catalog = parse_yaml(file, text)?;
            let dup = |m: String| RuleError {
                file: file.clone(),
                line: 0,
                message: m,
                key: Vec::new(),
            };
            if out.iter().any(|c| c.framework == cat.framework) {
                return Err(dup(format!("framework {} defined twice", cat.framework)));
            }
            let mut ids = std::collections::HashSet::new();
            for c in &cat.controls {
                if !ids.insert(c.id.as_str()) {
                    return Err(dup(format!("control {} listed twice", c.id)));
                }
            }
            out.push(cat);
        }
        Ok(Catalogs(out))
    }

    /// Look up `FRAMEWORK:ID`.
    pub fn find(&self, reference: &str) -> Option<(&Catalog, &Control)> {
        let (fw, id) = reference.split_once(':')?;
        let cat = self.0.iter().find(|c| c.framework == fw)?;
        cat.controls.iter().find(|c| c.id == id).map(|c| (cat, c))
    }

    /// Check that `FRAMEWORK:ID` names a catalogued control.
    pub fn check(&self, reference: &str) -> Result<(), String> {
        let Some((fw, _)) = reference.split_once(':') else {
            return Err(format!(
                "control {reference:?} is not of the form FRAMEWORK:ID"
            ));
        };
        if !self.0.iter().any(|c| c.framework == fw) {
            let known: Vec<&str> = self.0.iter().map(|c| c.framework.as_str()).collect();
            return Err(format!(
                "control {reference:?}: unknown framework {fw:?} (known: {known:?})"
            ));
        }
        self.find(reference)
            .map(|_| ())
            .ok_or_else(|| format!("control {reference:?} is not in the {fw} catalog"))
    }
}
