//! Configuration: one TOML file, every value overridable from the
//! environment with the `NHI_ASSURE_` prefix.
//!
//! Environment keys map to config paths by lowercasing and splitting on
//! `__`: `NHI_ASSURE_STORE` sets `store`, `NHI_ASSURE_RULES__PARAMS__STALE_DAYS`
//! sets `rules.params.stale_days`, `NHI_ASSURE_SOURCES__0__PATH` sets the
//! first source's `path`. Values are read as TOML (`30`, `true`,
//! `["a","b"]`) and fall back to a plain string.
//!
//! Every variable under the prefix must name a config key: one that does
//! not is refused, naming the variable and what it would set. Secrets are
//! therefore never kept under the prefix: the config names the variable
//! that holds each one (`[daemon] webhook_secret_env`, Azure `secret_env`),
//! conventionally under [`SECRET_ENV_PREFIX`], and naming one under the
//! override prefix is refused.
//!
//! Errors in the file name the file, line and column of the key; errors
//! from an override name the variable. Values are range-checked in one
//! place ([`Config::problems`]). Everything is reported before anything runs.

use std::path::{Path, PathBuf};

use nhi_contract::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::rules::RulesConfig;
pub use crate::sources::{ApprovalConfig, SourceConfig};

mod daemon;
mod enforce;
mod notify;
pub use daemon::{BrokerConfig, DaemonConfig, OidcIssuerConfig};
pub(crate) use enforce::default_rule_grace;
pub use enforce::{Budget, EnforceConfig, Limit, LoginKind, Mode, PlanConfig, Removable};
pub use notify::{NotifyConfig, Route, SinkConfig, SmtpTls};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "NHI_ASSURE_";

/// Conventional prefix of the variables holding secrets (`NHI_SECRET_WEBHOOK`):
/// outside [`ENV_PREFIX`], so a secret is never read as an override.
pub const SECRET_ENV_PREFIX: &str = "NHI_SECRET_";

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
    /// Exceptions as code: time-boxed acceptances of one rule's risk.
    #[serde(default)]
    pub exceptions: ExceptionsConfig,
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
    pub daemon: DaemonConfig,
    /// Outbound notifications to identities' owners.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Directory relative paths are resolved against (the config file's).
    #[serde(skip)]
    pub base: PathBuf,
    /// The text and overrides it was read from, to locate later problems.
    #[serde(skip)]
    pub origin: Origin,
}

/// `[exceptions]`: where exception files live and how long one may last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionsConfig {
    /// Directory of exception YAML files (relative to the config file);
    /// none: no exceptions.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Longest an exception may last, in days from its `approved_at`.
    #[serde(default = "default_max_exception_days")]
    pub max_exception_days: i64,
}

impl Default for ExceptionsConfig {
    fn default() -> Self {
        ExceptionsConfig {
            path: None,
            max_exception_days: default_max_exception_days(),
        }
    }
}

fn default_max_exception_days() -> i64 {
    90
}

fn default_store() -> String {
    "nhi-assure.db".to_string()
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

/// Longest duration any setting may name, in days (ten years): every later
/// date computation stays far from `chrono`'s and `i64`'s limits.
pub const MAX_DAYS: i64 = 3650;
/// [`MAX_DAYS`] in hours.
pub const MAX_HOURS: i64 = MAX_DAYS * 24;
/// Largest count (subjects, credentials, concurrency) a setting may name.
pub const MAX_COUNT: i64 = 1_000_000;

/// A key path into the configuration: table keys, and list indices as
/// decimal strings (`["sources", "0", "path"]`).
pub type KeyPath = Vec<String>;

/// One invalid setting, named by its key path; [`Origin::locate`] turns
/// the path into `file:line:column` or the variable that set it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The setting.
    pub key: KeyPath,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    fn new(key: &[&str], message: String) -> Problem {
        Problem {
            key: key.iter().map(|s| s.to_string()).collect(),
            message,
        }
    }
}

/// Where a configuration came from: the file's text and the overrides
/// applied on top, so problems found after parsing (ranges, rule ids) are
/// located at the key that set them.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    file: String,
    text: String,
    /// Variable name and the key path it set, in the order applied.
    overrides: Vec<(String, KeyPath)>,
}

impl Origin {
    /// `file:line:column` of the key at `key` (the deepest part of it the
    /// file has), or the variable that set it.
    pub fn locate(&self, key: &[String]) -> String {
        if let Some((var, _)) = self
            .overrides
            .iter()
            .rev()
            .find(|(_, set)| key.starts_with(set) || set.starts_with(key))
        {
            return var.clone();
        }
        match key_span(&self.text, key) {
            Some(at) => {
                let (line, col) = line_col(&self.text, at);
                format!("{}:{line}:{col}", self.file)
            }
            None => self.file.clone(),
        }
    }

    /// A located error for `problems` (all of them, one per line).
    pub fn error(&self, problems: &[Problem]) -> Option<ConfigError> {
        let (first, rest) = problems.split_first()?;
        let mut message = format!("{}: {}", show_key(&first.key), first.message);
        for p in rest {
            message.push_str(&format!(
                "\n{}: {}: {}",
                self.locate(&p.key),
                show_key(&p.key),
                p.message
            ));
        }
        Some(ConfigError::Invalid {
            path: self.locate(&first.key),
            message,
        })
    }
}

/// `sources[0].path` for `["sources", "0", "path"]`.
pub fn show_key(key: &[String]) -> String {
    let mut out = String::new();
    for seg in key {
        if seg.bytes().all(|b| b.is_ascii_digit()) && !seg.is_empty() && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Byte offset of the deepest key of `key` present in the TOML `text`.
fn key_span(text: &str, key: &[String]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let mut cur = &root;
    let mut found = None;
    for seg in key {
        let next = match cur {
            DeValue::Table(t) => {
                let (k, v) = t
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == seg.as_str())?;
                found = Some(k.span().start);
                v.get_ref()
            }
            DeValue::Array(a) => {
                let item = a.get(seg.parse::<usize>().ok()?)?;
                found = Some(item.span().start);
                item.get_ref()
            }
            _ => break,
        };
        cur = next;
    }
    found
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
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::from_text(&path.display().to_string(), text, base, env)
    }

    /// Parse a config file's `text` (shown as `file` in errors), apply the
    /// overrides in `env`, validate; relative paths resolve against `base`.
    pub fn from_text(
        file: &str,
        text: String,
        base: PathBuf,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut origin = Origin {
            file: file.to_string(),
            text,
            overrides: Vec::new(),
        };
        let located = |e: toml::de::Error| {
            let (line, col) = e
                .span()
                .map(|s| pinpoint(&origin.text, s.start, e.message()).unwrap_or(s.start))
                .map(|at| line_col(&origin.text, at))
                .unwrap_or((0, 0));
            ConfigError::Invalid {
                path: format!("{file}:{line}:{col}"),
                message: e.message().to_string(),
            }
        };
        // Validate the file on its own first, so its errors carry its lines.
        let mut cfg: Config =
            toml::from_str(&origin.text).map_err(|e| located(refine(&origin.text, e)))?;
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(&origin.text).map_err(located)?;
            for (var, value) in &overrides {
                let key = override_key(var)?;
                apply_override(&mut table, var, &key, value)?;
                // One variable at a time, so an error names the one to blame.
                cfg = table
                    .clone()
                    .try_into()
                    .map_err(|e: toml::de::Error| override_error(var, &key, value, &e))?;
                origin.overrides.push((var.clone(), key));
            }
        }
        cfg.base = base;
        cfg.origin = origin;
        cfg.validate()?;
        Ok(cfg)
    }

    /// SHA-256 of the file as read (hex): what the audit log records of a
    /// config, which may hold nothing secret but is identified all the same.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.origin.text.as_bytes()))
    }

    /// Where this config came from (locates problems found later).
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| ConfigError::Invalid {
            path: self.origin.file.clone(),
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
        match self.origin.error(&self.problems()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every value outside its range or otherwise unusable, by key. The one
    /// place numeric settings are checked: a new setting adds its check
    /// here, and [`Origin`] locates it at the key in the file or the
    /// variable that set it.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let o = &mut out;
        for (name, v) in &self.rules.params {
            param_range(o, &["rules", "params", name], name, v);
        }
        for (id, ov) in &self.rules.overrides {
            for (name, v) in &ov.params {
                param_range(o, &["rules", "overrides", id, "params", name], name, v);
            }
        }
        // Each connector checks its own settings; they are located under
        // its entry.
        let connectors = self
            .approvals
            .iter()
            .map(|a| ("approvals", a.connector().problems()))
            .chain(
                self.sources
                    .iter()
                    .map(|s| ("sources", s.connector().problems())),
            );
        let mut index: std::collections::HashMap<&str, usize> = Default::default();
        for (list, problems) in connectors {
            let i = index.entry(list).or_default();
            for p in problems {
                let mut key = vec![list.to_string(), i.to_string()];
                key.extend(p.key);
                o.push(Problem {
                    key,
                    message: p.message,
                });
            }
            *i += 1;
        }
        range(
            o,
            &["exceptions", "max_exception_days"],
            self.exceptions.max_exception_days,
            1,
            365,
        );
        let e = &self.enforce;
        range(
            o,
            &["enforce", "max_subjects"],
            wide(e.max_subjects),
            0,
            MAX_COUNT,
        );
        range(
            o,
            &["enforce", "percent_floor"],
            wide(e.percent_floor),
            0,
            MAX_COUNT,
        );
        range(
            o,
            &["enforce", "default_grace_hours"],
            e.default_grace_hours,
            0,
            MAX_HOURS,
        );
        for (rule, h) in &e.grace_hours {
            range(o, &["enforce", "grace_hours", rule], *h, 0, MAX_HOURS);
        }
        range(
            o,
            &["enforce", "quarantine_days"],
            e.quarantine_days,
            0,
            MAX_DAYS,
        );
        range(
            o,
            &["enforce", "unmatched_revocation_days"],
            e.unmatched_revocation_days,
            1,
            MAX_DAYS,
        );
        // Budget windows bounded so `now - window` cannot overflow.
        for (list, limits) in [
            ("overall", &e.budget.overall),
            ("per_source", &e.budget.per_source),
        ] {
            for (i, l) in limits.iter().enumerate() {
                let i = i.to_string();
                range(
                    o,
                    &["enforce", "budget", list, &i, "window_secs"],
                    wide(l.window_secs),
                    1,
                    31 * 86_400,
                );
                range(
                    o,
                    &["enforce", "budget", list, &i, "actions"],
                    wide(l.actions),
                    0,
                    MAX_COUNT,
                );
            }
        }
        let d = &self.daemon;
        for (key, v, lo, hi) in [
            ("webhook_window_secs", d.webhook_window_secs, 1, 3600),
            ("lease_secs", wide(d.lease_secs), 3, 3600),
            ("header_timeout_secs", wide(d.header_timeout_secs), 1, 3600),
            ("body_timeout_secs", wide(d.body_timeout_secs), 1, 3600),
            ("idle_timeout_secs", wide(d.idle_timeout_secs), 1, 3600),
            ("max_connections", wide(d.max_connections), 1, 65_536),
            ("max_body_bytes", wide(d.max_body_bytes), 1024, 16 << 20),
            ("auth_failure_burst", wide(d.auth_failure_burst), 1, 10_000),
            (
                "auth_failures_per_minute",
                wide(d.auth_failures_per_minute),
                1,
                60_000,
            ),
        ] {
            range(o, &["daemon", key], v, lo, hi);
        }
        // Percentages: NaN fails `contains`, so it cannot switch the rail off.
        if !(0.0..=100.0).contains(&e.max_percent) {
            out.push(Problem::new(
                &["enforce", "max_percent"],
                format!("{} is not a percentage (0 to 100)", e.max_percent),
            ));
        }
        self.notify.problems(&mut out);
        for (key, var) in self.secret_variables() {
            if var.starts_with(ENV_PREFIX) {
                out.push(Problem {
                    key,
                    message: format!(
                        "{var:?} is under the override prefix {ENV_PREFIX}, where every variable sets a config key; \
                         name a variable outside it, e.g. {SECRET_ENV_PREFIX}…"
                    ),
                });
            }
        }
        out
    }

    /// The settings naming an environment variable that holds a secret.
    fn secret_variables(&self) -> Vec<(KeyPath, String)> {
        let mut out = Vec::new();
        if let Some(v) = &self.daemon.webhook_secret_env {
            out.push((
                vec!["daemon".into(), "webhook_secret_env".into()],
                v.clone(),
            ));
        }
        let connectors = self
            .sources
            .iter()
            .map(|s| ("sources", s.connector().secret_variables()))
            .enumerate()
            .chain(
                self.approvals
                    .iter()
                    .map(|a| ("approvals", a.connector().secret_variables()))
                    .enumerate(),
            );
        out.extend(self.notify.secret_variables());
        for (i, (list, vars)) in connectors {
            for v in vars {
                let mut key = vec![list.to_string(), i.to_string()];
                key.extend(v.key);
                out.push((key, v.variable));
            }
        }
        out
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

    /// The rule set this config selects. Errors in the config's own rule
    /// settings are located at their key; per-rule settings elsewhere in
    /// the config (`[enforce.grace_hours]`) must name rules that exist.
    pub fn rule_set(&self) -> Result<crate::engine::rules::RuleSet, ConfigError> {
        let set = crate::engine::rules::RuleSet::load(&self.rules, &self.base).map_err(|e| {
            if e.key.is_empty() {
                ConfigError::Invalid {
                    path: format!("{}:{}", e.file, e.line),
                    message: e.message,
                }
            } else {
                ConfigError::Invalid {
                    path: self.origin.locate(&e.key),
                    message: format!("{}: {}", show_key(&e.key), e.message),
                }
            }
        })?;
        self.check_rule_ids(
            set.rules
                .iter()
                .map(|r| r.id.as_str())
                .chain(self.rules.overrides.keys().map(String::as_str)),
        )?;
        Ok(set)
    }

    /// Refuse per-rule settings for rules that do not exist (a misspelled
    /// id would silently keep the default), located at the key.
    pub fn check_rule_ids<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let known: std::collections::BTreeSet<&str> = known.into_iter().collect();
        let problems: Vec<Problem> = self
            .enforce
            .grace_hours
            .keys()
            .filter(|id| !known.contains(id.as_str()) && !default_rule_grace().contains_key(*id))
            .map(|id| {
                Problem::new(
                    &["enforce", "grace_hours", id],
                    format!("no rule has the id {id:?}"),
                )
            })
            .collect();
        match self.origin.error(&problems) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The fuzzing entry point (`fuzz/fuzz_targets/config_toml.rs`): `data`
/// as a config file, with the lines after a `%%` line as `KEY=VALUE`
/// overrides under [`ENV_PREFIX`]. Loads or is refused; never panics.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (doc, env) = text.split_once("\n%%\n").unwrap_or((&text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("{ENV_PREFIX}{k}"), v.to_string()))
        .collect();
    if let Ok(cfg) = Config::from_text("fuzz.toml", doc.to_string(), PathBuf::from("."), env) {
        assert!(cfg.problems().is_empty(), "a loaded config is in range");
    }
}

/// Where inside a table an error located at the table itself belongs:
/// serde reports errors of internally tagged enums (an Azure `[sources.auth]`
/// table) at the table. The message names the culprit — ``unknown field
/// `x` `` or ``invalid type: integer `5` `` — so the key holding it is found
/// in that table.
fn pinpoint(text: &str, at: usize, message: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    /// The innermost table starting at `at` (by its key or its value).
    fn table_at<'a, 'i>(
        v: &'a DeValue<'i>,
        starts: [usize; 2],
        at: usize,
    ) -> Option<&'a DeTable<'i>> {
        let inner = match v {
            DeValue::Table(t) => t
                .iter()
                .find_map(|(k, v)| table_at(v.get_ref(), [k.span().start, v.span().start], at)),
            DeValue::Array(a) => a
                .iter()
                .find_map(|v| table_at(v.get_ref(), [v.span().start, v.span().start], at)),
            _ => None,
        };
        inner.or(match v {
            DeValue::Table(t) if starts.contains(&at) => Some(t),
            _ => None,
        })
    }
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let table = table_at(&root, [usize::MAX; 2], at)?;
    let quoted = |open: char, close: char| {
        let start = message.find(open)? + 1;
        let end = start + message.get(start..)?.find(close)?;
        message.get(start..end)
    };
    if message.starts_with("unknown field") {
        let name = quoted('`', '`')?;
        return table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == name)
            .map(|(k, _)| k.span().start);
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        // The literal as serde shows it: `5`, `true`, or "text".
        let literal = quoted('`', '`').or_else(|| quoted('"', '"'))?;
        return table
            .iter()
            .find(|(_, v)| {
                let raw = text.get(v.span()).unwrap_or_default();
                raw == literal || raw.trim_matches(|c| c == '"' || c == '\'') == literal
            })
            .map(|(k, _)| k.span().start);
    }
    None
}

/// A deserialization error inside a `[[sources]]` or `[[approvals]]` entry
/// comes located at the entry's header: serde buffers internally tagged
/// enums and loses the positions. Deserializing the entry again as the
/// type its `type` names locates the error at the key.
fn refine(text: &str, err: toml::de::Error) -> toml::de::Error {
    use toml::de::{DeTable, DeValue, Deserializer};
    let Some(at) = err.span() else {
        return err;
    };
    let Ok(doc) = DeTable::parse(text) else {
        return err;
    };
    for list in ["sources", "approvals"] {
        let Some(DeValue::Array(items)) = doc.get_ref().get(list).map(|v| v.get_ref()) else {
            continue;
        };
        // The entry holding the error first; serde may also place it at the
        // list as a whole, so then every entry is tried.
        let holds = |span: &std::ops::Range<usize>| span.start <= at.start && at.start < span.end;
        let mut order: Vec<_> = items.iter().filter(|i| holds(&i.span())).collect();
        order.extend(items.iter().filter(|i| !holds(&i.span())));
        for item in order {
            let span = item.span();
            let DeValue::Table(t) = item.get_ref() else {
                continue;
            };
            let kind = match t.get("type").map(|v| v.get_ref()) {
                Some(DeValue::String(k)) => k.to_string(),
                _ => continue,
            };
            let mut t = t.clone();
            t.remove("type");
            let de = Deserializer::from(toml::Spanned::new(span, t));
            let again = match list {
                "sources" => SourceConfig::deserialize_as(&kind, de),
                _ => ApprovalConfig::deserialize_as(&kind, de),
            }
            .and_then(Result::err);
            if let Some(e) = again.filter(|e| e.span().is_some()) {
                return e;
            }
        }
    }
    err
}

/// An unsigned setting as `i64` for range checks (saturating: anything
/// that large is out of every range).
fn wide<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

fn range(out: &mut Vec<Problem>, key: &[&str], v: i64, lo: i64, hi: i64) {
    if !(lo..=hi).contains(&v) {
        out.push(Problem::new(
            key,
            format!("{v} is out of range {lo}..={hi}"),
        ));
    }
}

/// Rule parameters are thresholds: never negative, and bounded by their
/// unit (by name: `_days`, `_hours`, anything else a count).
fn param_range(out: &mut Vec<Problem>, key: &[&str], name: &str, v: &crate::engine::rules::Param) {
    if let crate::engine::rules::Param::Int(n) = v {
        let hi = if name.ends_with("_days") {
            MAX_DAYS
        } else if name.ends_with("_hours") {
            MAX_HOURS
        } else {
            MAX_COUNT
        };
        range(out, key, *n, 0, hi);
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |n| before.len() - n - 1)
        + 1;
    (line, col)
}

/// The key path an override variable names: `NHI_ASSURE_SOURCES__0__PATH`
/// → `["sources", "0", "path"]`.
fn override_key(var: &str) -> Result<KeyPath, ConfigError> {
    let key: KeyPath = var
        .get(ENV_PREFIX.len()..)
        .unwrap_or_default()
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if key.iter().any(String::is_empty) {
        return Err(ConfigError::Invalid {
            path: var.to_string(),
            message: format!(
                "empty key segment; variables under {ENV_PREFIX} name a config key with `__` between its parts"
            ),
        });
    }
    Ok(key)
}

/// The error for an override the config refuses: which variable, what it
/// would set, and never its value (it may be a secret).
fn override_error(var: &str, key: &[String], value: &str, e: &toml::de::Error) -> ConfigError {
    let mut why = e.message().to_string();
    // The value as given and as TOML read it (a quoted string unquoted).
    for shown in [value, value.trim().trim_matches(|c| c == '"' || c == '\'')] {
        if !shown.is_empty() {
            why = why.replace(shown, "<value>");
        }
    }
    let message = if why.starts_with("unknown field")
        || why.starts_with("unknown variant") && key.len() == 1
    {
        format!(
            "would set `{}`, which is not a config key ({why}); every variable under {ENV_PREFIX} sets a config key, \
             so keep other variables (secrets named by `*_env` settings) outside that prefix, e.g. {SECRET_ENV_PREFIX}…",
            show_key(key)
        )
    } else {
        format!("would set `{}`: {why}", show_key(key))
    };
    ConfigError::Invalid {
        path: var.to_string(),
        message,
    }
}

fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &[String],
    raw: &str,
) -> Result<(), ConfigError> {
    let bad = |m: String| ConfigError::Invalid {
        path: var.to_string(),
        message: format!("would set `{}`: {m}", show_key(path)),
    };
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
            Some(&crate::engine::rules::Param::Int(30))
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

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const TABLES: &[&str] = &[
            "[enforce]",
            "[daemon]",
            "[plan]",
            "[rules]",
            "[rules.params]",
            "[rules.overrides.credential-stale]",
            "[rules.overrides.credential-stale.params]",
            "[enforce.grace_hours]",
            "[[sources]]",
            "[[approvals]]",
            "[sources.auth]",
        ];
        const KEYS: &[&str] = &[
            "type",
            "name",
            "path",
            "provider",
            "store",
            "mode",
            "as_of",
            "max_subjects",
            "max_percent",
            "percent_floor",
            "default_grace_hours",
            "quarantine_days",
            "approval-expired",
            "credential-stale",
            "stale_days",
            "never_used_days",
            "max_validity_days",
            "webhook_window_secs",
            "lease_secs",
            "schedule",
            "listen",
            "webhook_secret_env",
            "header_timeout_secs",
            "max_connections",
            "max_body_bytes",
            "max_concurrency",
            "max_attempts",
            "protected",
            "builtin",
            "tenant_id",
            "method",
            "remove_when_cannot_disable",
            "x",
        ];

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|v| v.to_string()),
                prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(-1), Just(0)]
                    .prop_map(|v| v.to_string()),
                any::<f64>().prop_map(|v| format!("{v:?}")),
                prop_oneof![
                    Just("nan"),
                    Just("inf"),
                    Just("-inf"),
                    Just("-0.0"),
                    Just("1e308")
                ]
                .prop_map(str::to_string),
                "[a-zA-Z0-9_:/. -]{0,12}".prop_map(|v| format!("{v:?}")),
                prop_oneof![
                    Just("snapshot"),
                    Just("aws"),
                    Just("azure"),
                    Just("files"),
                    Just("enforce")
                ]
                .prop_map(|v| format!("{v:?}")),
                any::<bool>().prop_map(|v| v.to_string()),
                Just("[1, \"a\", -3]".to_string()),
                Just("{ a = 1 }".to_string()),
                Just("1979-05-27T07:32:00Z".to_string()),
                "\\PC{0,8}",
            ]
        }

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                1 => proptest::sample::select(TABLES).prop_map(str::to_string),
                4 => (proptest::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
                1 => "\\PC{0,20}",
            ]
        }

        /// A config that starts valid (one snapshot source) and then gets
        /// random tables and keys with extreme values.
        fn document() -> impl Strategy<Value = String> {
            proptest::collection::vec(line(), 0..12).prop_map(|lines| {
                format!(
                    "[[sources]]\ntype = \"snapshot\"\nname = \"s\"\nprovider = \"aws\"\npath = \"a.json\"\n{}\n",
                    lines.join("\n")
                )
            })
        }

        fn load(text: String, env: Vec<(String, String)>) -> Result<Config, ConfigError> {
            Config::from_text("c.toml", text, PathBuf::from("."), env)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            /// Structured nonsense: never a panic; what loads is in range, what
            /// does not is located.
            #[test]
            fn any_document_loads_or_is_refused_located(text in document()) {
                match load(text, Vec::new()) {
                    Ok(cfg) => prop_assert!(cfg.problems().is_empty()),
                    Err(e) => prop_assert!(e.to_string().starts_with("c.toml")),
                }
            }

            /// Arbitrary text and overrides: never a panic (the fuzz target's body).
            #[test]
            fn any_text_is_handled(text in "\\PC{0,200}", data in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = load(text, Vec::new());
                fuzz_one(&data);
            }

            /// Overrides: any variable under the prefix with any value loads or
            /// is refused naming the variable, and never echoes the value.
            #[test]
            fn any_override_is_handled(
                parts in proptest::collection::vec(
                    prop_oneof![
                        proptest::sample::select(KEYS).prop_map(str::to_string),
                        proptest::sample::select(&["0", "1", "99999999999999999999", "", "SOURCES", "ENFORCE", "DAEMON", "RULES", "PARAMS"][..]).prop_map(str::to_string),
                    ],
                    1..4,
                ),
                value in prop_oneof![value(), "[a-zA-Z0-9]{12,20}"],
            ) {
                let var = format!("{ENV_PREFIX}{}", parts.join("__").to_ascii_uppercase());
                let doc = "[[sources]]\ntype = \"snapshot\"\nname = \"s\"\nprovider = \"aws\"\npath = \"a.json\"\n".to_string();
                match load(doc, vec![(var.clone(), value.clone())]) {
                    Ok(cfg) => prop_assert!(cfg.problems().is_empty()),
                    Err(e) => {
                        let shown = e.to_string();
                        prop_assert!(shown.starts_with(&var) || shown.starts_with("c.toml"), "{}", shown);
                        // A secret-like value (a number in range messages is fine).
                        let secret_like = value.len() >= 12
                            && value.chars().all(|c| c.is_ascii_alphanumeric())
                            && value.chars().any(|c| c.is_ascii_alphabetic());
                        if secret_like {
                            prop_assert!(!shown.contains(&value), "{}", shown);
                        }
                    }
                }
            }
        }
    }
}
