//! Rules as data: loading rule files and control catalogs, compiling
//! conditions, evaluating them over the facts.
//!
//! A rule is one YAML file (see `rules/README.md`): id, title, description,
//! severity, subject kind, CEL condition, parameters with defaults, action,
//! remediation text and control mappings. A built-in rule is a folder,
//! `rules/builtin/<id>/`, holding its `rule.yaml` and the `cases.yaml` that
//! shows when it fires and when it does not ([`cases`]). The built-in pack
//! and catalogs are embedded in the binary at build time, so an installed
//! binary needs no data directory; users add packs with `rules.paths` in
//! the config.

pub mod cases;
pub mod catalog;
pub mod compile;
pub mod fields;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use nhi_contract::Operation;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::engine::facets::Facets;

pub use catalog::{Catalog, Catalogs};
pub use fields::{Env, Kind};

/// How bad a finding is. Ordered: `info < low < medium < high < critical`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Hygiene.
    Low,
    /// Should be fixed.
    Medium,
    /// Fix soon.
    High,
    /// Fix now.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What enforce mode should do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Report only.
    Flag,
    /// Reversibly disable the target.
    Disable,
    /// Delete the target (only after a quarantine, in enforce mode).
    Delete,
}

impl Action {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Flag => "flag",
            Action::Disable => "disable",
            Action::Delete => "delete",
        }
    }
}

/// What an action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The credential itself (credential rules).
    Credential,
    /// The identity (identity rules).
    Identity,
    /// The identity's interactive login (console password).
    Login,
    /// The identity's entitlements beyond the approved scope.
    Entitlements,
    /// The entitlements the identity holds directly and actively whose
    /// last use is older than the rule's `unused_days` parameter (an int
    /// the rule must declare).
    #[serde(rename = "unused_entitlements")]
    UnusedEntitlements,
}

/// The parameter a rule targeting `unused_entitlements` declares: days
/// without use beyond which an entitlement is detached.
pub const UNUSED_DAYS: &str = "unused_days";

/// A parameter value: rules declare defaults, configs override them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Param {
    /// A boolean.
    Bool(bool),
    /// An integer (days, hours, counts).
    Int(i64),
    /// A string.
    Str(String),
    /// A list of strings.
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    id: String,
    title: String,
    description: String,
    severity: Severity,
    subject: Kind,
    condition: Spanned<String>,
    #[serde(default)]
    params: BTreeMap<String, Param>,
    action: Action,
    #[serde(default)]
    target: Option<Target>,
    remediation: String,
    controls: Spanned<Vec<String>>,
}

/// A loaded, compiled rule.
pub struct Rule {
    /// Unique id (`credential-stale`).
    pub id: String,
    /// One-line title.
    pub title: String,
    /// What it detects and why it matters.
    pub description: String,
    /// Severity of its findings.
    pub severity: Severity,
    /// What it is evaluated on.
    pub subject: Kind,
    /// The CEL source.
    pub condition_source: String,
    /// Parameter values in force (defaults merged with config).
    pub params: BTreeMap<String, Param>,
    /// Recommended action.
    pub action: Action,
    /// What the action acts on.
    pub target: Target,
    /// How to fix it by hand.
    pub remediation: String,
    /// Controls, as `FRAMEWORK:ID`.
    pub controls: std::sync::Arc<[String]>,
    /// Where it was loaded from (`rules/builtin/x/rule.yaml`).
    pub origin: String,
    /// Compiled condition.
    condition: compile::BoolFn,
    /// Fact paths the condition reads, for evidence.
    pub fields: Vec<String>,
    /// What those facts read beyond the subject (derived from the fields,
    /// never written by hand): a source blind to any of it cannot resolve
    /// or act on the rule's findings.
    pub depends: Facets,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Rule {
    /// The provider operation enforce mode would use, or `None` for flag-only.
    pub fn operation(&self) -> Option<Operation> {
        match (self.action, self.target) {
            (Action::Flag, _) => None,
            (Action::Disable, Target::Credential) => Some(Operation::DisableCredential),
            (Action::Delete, Target::Credential) => Some(Operation::DeleteCredential),
            (_, Target::Identity) => Some(Operation::DisableIdentity),
            (_, Target::Login) => Some(Operation::RemoveLogin),
            (_, Target::Entitlements | Target::UnusedEntitlements) => {
                Some(Operation::DetachEntitlements)
            }
        }
    }

    /// For a rule targeting unused entitlements: the days without use
    /// beyond which it detaches one.
    pub fn unused_days(&self) -> Option<i64> {
        match (self.target, self.params.get(UNUSED_DAYS)) {
            (Target::UnusedEntitlements, Some(Param::Int(d))) => Some(*d),
            _ => None,
        }
    }

    /// Evaluate the condition on subject `s`.
    #[inline]
    pub fn matches(&self, env: &Env<'_>, s: u32) -> bool {
        (self.condition)(env, s)
    }
}

/// A rule-file error with its location.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleError {
    /// The file.
    pub file: String,
    /// 1-based line (0 if unknown).
    pub line: u32,
    /// What is wrong.
    pub message: String,
    /// For an error in the config's `[rules]` settings: the key path of
    /// the setting (`["rules", "params", "stale_days"]`), so the config can
    /// locate it; empty otherwise.
    pub key: Vec<String>,
}

/// Parse one YAML data file, locating any error (the library's message
/// repeats a snippet after its first line; the first line is enough).
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, RuleError> {
    serde_saphyr::from_str(text).map_err(|e| RuleError {
        file: file.to_string(),
        line: e.location().map(|l| l.line() as u32).unwrap_or(0),
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_string(),
        key: Vec::new(),
    })
}

/// Per-rule settings from the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleOverride {
    /// Turn the rule off.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Change its severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Change its action (e.g. `flag` while piloting).
    #[serde(default)]
    pub action: Option<Action>,
    /// Parameter values for this rule only.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
}

/// Rule settings from the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Load the built-in pack (default true).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// Extra rule directories.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Extra control catalog directories.
    #[serde(default)]
    pub catalogs: Vec<PathBuf>,
    /// Parameter values for every rule that declares them.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Per-rule settings, by rule id.
    #[serde(default)]
    pub overrides: BTreeMap<String, RuleOverride>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            builtin: true,
            paths: Vec::new(),
            catalogs: Vec::new(),
            params: BTreeMap::new(),
            overrides: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The embedded built-in rule pack and catalogs (generated by `build.rs`).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));
}

/// The loaded rule set and the catalogs it maps to.
#[derive(Debug)]
pub struct RuleSet {
    /// Enabled rules, in id order.
    pub rules: Vec<Rule>,
    /// Control catalogs.
    pub catalogs: Catalogs,
}

/// The file name of a rule in a per-rule folder (`<id>/rule.yaml`).
pub const RULE_FILE: &str = "rule.yaml";

fn dir_error(dir: &Path, message: String) -> RuleError {
    RuleError {
        file: dir.display().to_string(),
        line: 0,
        message,
        key: Vec::new(),
    }
}

/// The entries of `dir`, sorted.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, RuleError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| dir_error(dir, format!("cannot read directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    Ok(paths)
}

fn read_text(dir: &Path, p: &Path) -> Result<(String, String), RuleError> {
    std::fs::read_to_string(p)
        .map(|t| (p.display().to_string(), t))
        .map_err(|e| dir_error(dir, format!("{}: {e}", p.display())))
}

fn text_sources(dir: &Path, ext: &[&str]) -> Result<Vec<(String, String)>, RuleError> {
    entries(dir)?
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ext.contains(&e))
        })
        .map(|p| read_text(dir, &p))
        .collect()
}

/// A rule text and where it came from.
struct RuleText {
    file: String,
    text: String,
    /// For a rule in its own folder (`<id>/rule.yaml`): the folder name,
    /// which must be the rule's id.
    folder: Option<String>,
}

/// A user pack: every `*.yaml` / `*.yml` file directly in `dir` is a rule,
/// and so is every `<id>/rule.yaml` (the built-in pack's layout, with the
/// rule's cases beside it).
fn pack_sources(dir: &Path) -> Result<Vec<RuleText>, RuleError> {
    let mut out: Vec<RuleText> = text_sources(dir, &["yaml", "yml"])?
        .into_iter()
        .map(|(file, text)| RuleText {
            file,
            text,
            folder: None,
        })
        .collect();
    for sub in entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let rule = sub.join(RULE_FILE);
        if rule.is_file() {
            let (file, text) = read_text(dir, &rule)?;
            out.push(RuleText {
                file,
                text,
                folder: sub.file_name().map(|n| n.to_string_lossy().into_owned()),
            });
        }
    }
    Ok(out)
}

impl RuleSet {
    /// Load catalogs and rules, apply the config, compile every condition.
    /// Every problem is an error naming its file and line; nothing is skipped.
    pub fn load(cfg: &RulesConfig, base: &Path) -> Result<RuleSet, RuleError> {
        let mut catalog_texts: Vec<(String, String)> = embedded::CATALOGS
            .iter()
            .map(|(n, t)| (format!("rules/controls/{n}"), t.to_string()))
            .collect();
        for dir in &cfg.catalogs {
            catalog_texts.extend(text_sources(&base.join(dir), &["yaml", "yml"])?);
        }
        let catalogs = Catalogs::parse(&catalog_texts)?;

        let mut rule_texts: Vec<RuleText> = Vec::new();
        if cfg.builtin {
            rule_texts.extend(embedded::RULES.iter().map(|(n, t)| RuleText {
                file: format!("rules/builtin/{n}"),
                text: t.to_string(),
                folder: n.split_once('/').map(|(id, _)| id.to_string()),
            }));
        }
        for dir in &cfg.paths {
            rule_texts.extend(pack_sources(&base.join(dir))?);
        }
        let mut docs = Vec::new();
        for t in &rule_texts {
            let doc: RuleDoc = parse_yaml(&t.file, &t.text)?;
            // The folder names the rule, so its cases and docs are found by id.
            if let Some(folder) = t.folder.as_ref().filter(|f| **f != doc.id) {
                return Err(RuleError {
                    file: t.file.clone(),
                    line: 1,
                    message: format!("rule id {:?} differs from its folder {folder:?}", doc.id),
                    key: Vec::new(),
                });
            }
            docs.push((t.file.clone(), doc));
        }

        // Config must only name rules and parameters that exist.
        let declared: std::collections::BTreeSet<&str> = docs
            .iter()
            .flat_map(|(_, d)| d.params.keys().map(String::as_str))
            .collect();
        let cfg_err = |key: &[&str], m: String| RuleError {
            file: "config [rules]".into(),
            line: 0,
            message: m,
            key: key.iter().map(|s| s.to_string()).collect(),
        };
        for p in cfg.params.keys() {
            if !declared.contains(p.as_str()) {
                return Err(cfg_err(
                    &["rules", "params", p],
                    format!("unknown rule parameter {p:?}; declared: {declared:?}"),
                ));
            }
        }
        for id in cfg.overrides.keys() {
            if !docs.iter().any(|(_, d)| &d.id == id) {
                return Err(cfg_err(
                    &["rules", "overrides", id],
                    format!("override for unknown rule {id:?}"),
                ));
            }
        }

        let mut rules: Vec<Rule> = Vec::new();
        for (file, d) in docs {
            let at = |line: u32, message: String| RuleError {
                file: file.clone(),
                line,
                message,
                key: Vec::new(),
            };
            if rules.iter().any(|r| r.id == d.id) {
                return Err(at(1, format!("duplicate rule id {:?}", d.id)));
            }
            let ov = cfg.overrides.get(&d.id).cloned().unwrap_or_default();
            let mut params = d.params.clone();
            for (k, v) in cfg.params.iter().chain(ov.params.iter()) {
                let key: &[&str] = if ov.params.contains_key(k) {
                    &["rules", "overrides", &d.id, "params", k]
                } else {
                    &["rules", "params", k]
                };
                match params.get(k) {
                    Some(old) if std::mem::discriminant(old) == std::mem::discriminant(v) => {
                        params.insert(k.clone(), v.clone());
                    }
                    Some(old) => {
                        return Err(cfg_err(
                            key,
                            format!(
                                "parameter {k} of rule {} must be like {old:?}, got {v:?}",
                                d.id
                            ),
                        ))
                    }
                    None if ov.params.contains_key(k) => {
                        return Err(cfg_err(key, format!("rule {} has no parameter {k}", d.id)))
                    }
                    None => {}
                }
            }
            let cond_line = d.condition.referenced.line() as u32;
            let compiled = compile::compile(&d.condition.value, d.subject, &params)
                .map_err(|m| at(cond_line, format!("rule {}: condition: {m}", d.id)))?;
            let target = d.target.unwrap_or(match d.subject {
                Kind::Credential => Target::Credential,
                _ => Target::Identity,
            });
            let action = ov.action.unwrap_or(d.action);
            let valid_target = match d.subject {
                Kind::Credential => target == Target::Credential,
                Kind::Identity => target != Target::Credential,
                Kind::Approval => action == Action::Flag && d.target.is_none(),
            };
            if !valid_target || (action == Action::Delete && target == Target::Identity) {
                return Err(at(
                    1,
                    format!(
                        "rule {}: action {} on target {:?} is not possible for a {} rule",
                        d.id,
                        action.as_str(),
                        target,
                        d.subject.as_str()
                    ),
                ));
            }
            if target == Target::UnusedEntitlements
                && !matches!(params.get(UNUSED_DAYS), Some(Param::Int(_)))
            {
                return Err(at(
                    1,
                    format!(
                        "rule {}: target unused_entitlements needs an int parameter {UNUSED_DAYS}",
                        d.id
                    ),
                ));
            }
            let ctl_line = d.controls.referenced.line() as u32;
            if d.controls.value.is_empty() {
                return Err(at(ctl_line, format!("rule {}: maps to no control", d.id)));
            }
            for c in &d.controls.value {
                catalogs
                    .check(c)
                    .map_err(|m| at(ctl_line, format!("rule {}: {m}", d.id)))?;
            }
            if ov.enabled == Some(false) {
                continue;
            }
            rules.push(Rule {
                id: d.id,
                title: d.title,
                description: d.description.trim().to_string(),
                severity: ov.severity.unwrap_or(d.severity),
                subject: d.subject,
                condition_source: d.condition.value.trim().to_string(),
                params,
                action,
                target,
                remediation: d.remediation.trim().to_string(),
                controls: d.controls.value.into(),
                origin: file,
                condition: compiled.condition,
                fields: compiled.fields,
                depends: compiled.depends,
            });
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(RuleSet { rules, catalogs })
    }

    /// Evaluate every rule on every subject of its kind. Returns compact
    /// hits (rule index, subject index), grouped by rule then subject.
    pub fn evaluate(&self, env: &Env<'_>) -> Vec<Hit> {
        let mut hits = Vec::new();
        for kind in [Kind::Credential, Kind::Identity, Kind::Approval] {
            let rules: Vec<(u16, &Rule)> = self
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.subject == kind)
                .map(|(i, r)| (i as u16, r))
                .collect();
            if rules.is_empty() {
                continue;
            }
            let n = match kind {
                Kind::Credential => env.estate.credentials.len(),
                Kind::Identity => env.estate.identities.len(),
                Kind::Approval => env.estate.approvals.len(),
            } as u32;
            // Subjects in parallel chunks; each chunk tests every rule.
            let part: Vec<Hit> = (0..n)
                .into_par_iter()
                .with_min_len(4096)
                .fold(Vec::new, |mut acc, s| {
                    for &(ri, r) in &rules {
                        if r.matches(env, s) {
                            acc.push(Hit {
                                rule: ri,
                                subject: s,
                                exception: None,
                            });
                        }
                    }
                    acc
                })
                .reduce(Vec::new, |mut a, mut b| {
                    a.append(&mut b);
                    a
                });
            hits.extend(part);
        }
        hits
    }
}

/// A rule that fired on one subject: the compact form the engine passes
/// around. Findings are materialised from hits only for output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index into `RuleSet::rules`.
    pub rule: u16,
    /// Index of the subject in the estate vector of the rule's kind.
    pub subject: u32,
    /// Index into `Estate::exceptions` of the exception that accepts this
    /// finding's risk, if one applies: recorded, never acted on.
    pub exception: Option<u32>,
}

/// Facts a rule read, as JSON, for a finding's evidence.
pub fn evidence_value(env: &Env<'_>, kind: Kind, path: &str, s: u32) -> serde_json::Value {
    use compile::Typed;
    let Some((root, name)) = path.split_once('.') else {
        return serde_json::Value::Null;
    };
    match fields::field(kind, root, name) {
        Some(Typed::Bool(f)) => serde_json::Value::Bool(f(env, s)),
        Some(Typed::Int(f)) => f(env, s).map_or(serde_json::Value::Null, Into::into),
        Some(Typed::Str(f)) => f(env, s).map_or(serde_json::Value::Null, Into::into),
        _ => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests;
