//! `[notify]`: where owners are told about their findings and about the
//! actions enforce mode is about to take. Every secret (a webhook URL that
//! carries its token, a bot token, a routing key, an SMTP password, an HMAC
//! key) is named by the environment variable holding it, never written here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{KeyPath, Problem};

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Sinks by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Owner → sinks, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Sinks for owners no route matches (and identities with no owner).
    #[serde(default)]
    pub default_route: Vec<String>,
    /// The reminder before enforcement is sent this many hours before the
    /// action's time (the first warning goes when the grace period starts).
    #[serde(default = "default_warn_lead_hours")]
    pub warn_lead_hours: i64,
    /// Enforce rail: hold an action until its owner was sent the warning
    /// that it is coming.
    #[serde(default)]
    pub hold_unnotified: bool,
    /// Tries per message (first included) on 429, 5xx and transport errors.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest wait between tries, `Retry-After` included (seconds).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Time one request may take (seconds) …
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// … or, for the sinks named here, this long (a slow relay).
    #[serde(default)]
    pub sink_timeout_secs: BTreeMap<String, u64>,
    /// Time all deliveries of one pass may take together (seconds): a dead
    /// sink cannot slow a pass beyond it.
    #[serde(default = "default_budget_secs")]
    pub budget_secs: u64,
}

/// One route: owners matching `owner` (exact, or with `*` wildcards,
/// case-insensitive) go to `sinks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Owner, exact or a `*` pattern.
    pub owner: String,
    /// Sink names.
    pub sinks: Vec<String>,
}

/// A destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Slack incoming webhook (the URL is the secret).
    SlackWebhook {
        /// Variable holding the webhook URL.
        url_env: String,
    },
    /// Slack `chat.postMessage` with a bot token.
    SlackApi {
        /// Variable holding the bot token (`xoxb-…`).
        token_env: String,
        /// Channel id or name.
        channel: String,
        /// API base URL.
        #[serde(default = "default_slack_base")]
        base_url: String,
    },
    /// Microsoft Teams workflow webhook (Adaptive Card).
    Teams {
        /// Variable holding the workflow URL (it carries a signature).
        url_env: String,
    },
    /// PagerDuty Events API v2.
    Pagerduty {
        /// Variable holding the integration's routing key.
        routing_key_env: String,
        /// Events API base URL.
        #[serde(default = "default_pagerduty_base")]
        base_url: String,
        /// `critical`, `error`, `warning` or `info`.
        #[serde(default = "default_pagerduty_severity")]
        severity: String,
    },
    /// E-mail over SMTP.
    Email {
        /// SMTP server.
        host: String,
        /// Port (587 with STARTTLS by default).
        #[serde(default = "default_smtp_port")]
        port: u16,
        /// `starttls` (default), `tls` (implicit, port 465) or `none`
        /// (loopback relays only).
        #[serde(default)]
        tls: SmtpTls,
        /// Login, if the server wants one …
        #[serde(default)]
        username: Option<String>,
        /// … and the variable holding its password.
        #[serde(default)]
        password_env: Option<String>,
        /// Sender address.
        from: String,
        /// Recipients.
        to: Vec<String>,
    },
    /// A JSON POST signed like nhi-assure's own inbound webhook.
    Webhook {
        /// Destination URL.
        url: String,
        /// Variable holding the HMAC key.
        secret_env: String,
    },
    /// JSON lines appended to a file (the demo; a log shipper's input).
    File {
        /// The file (relative to the config file).
        path: PathBuf,
    },
}

/// How the e-mail sink talks to its server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, required.
    #[default]
    Starttls,
    /// TLS from the first byte.
    Tls,
    /// Plain text (a local relay).
    None,
}

impl SinkConfig {
    /// The kind, as journaled and counted in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::SlackWebhook { .. } => "slack-webhook",
            SinkConfig::SlackApi { .. } => "slack-api",
            SinkConfig::Teams { .. } => "teams",
            SinkConfig::Pagerduty { .. } => "pagerduty",
            SinkConfig::Email { .. } => "email",
            SinkConfig::Webhook { .. } => "webhook",
            SinkConfig::File { .. } => "file",
        }
    }

    /// The settings naming a secret's variable: (key, variable).
    pub fn secret_variables(&self) -> Vec<(&'static str, &str)> {
        match self {
            SinkConfig::SlackWebhook { url_env } | SinkConfig::Teams { url_env } => {
                vec![("url_env", url_env)]
            }
            SinkConfig::SlackApi { token_env, .. } => vec![("token_env", token_env)],
            SinkConfig::Pagerduty {
                routing_key_env, ..
            } => vec![("routing_key_env", routing_key_env)],
            SinkConfig::Email { password_env, .. } => password_env
                .as_deref()
                .map(|v| ("password_env", v))
                .into_iter()
                .collect(),
            SinkConfig::Webhook { secret_env, .. } => vec![("secret_env", secret_env)],
            SinkConfig::File { .. } => Vec::new(),
        }
    }
}

fn default_warn_lead_hours() -> i64 {
    24
}
fn default_max_attempts() -> u32 {
    3
}
fn default_max_backoff_secs() -> u64 {
    5
}
fn default_timeout_secs() -> u64 {
    5
}
fn default_budget_secs() -> u64 {
    10
}
fn default_slack_base() -> String {
    "https://slack.com/api".into()
}
fn default_pagerduty_base() -> String {
    "https://events.pagerduty.com".into()
}
fn default_pagerduty_severity() -> String {
    "warning".into()
}
fn default_smtp_port() -> u16 {
    587
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            sinks: BTreeMap::new(),
            routes: Vec::new(),
            default_route: Vec::new(),
            warn_lead_hours: default_warn_lead_hours(),
            hold_unnotified: false,
            max_attempts: default_max_attempts(),
            max_backoff_secs: default_max_backoff_secs(),
            timeout_secs: default_timeout_secs(),
            sink_timeout_secs: BTreeMap::new(),
            budget_secs: default_budget_secs(),
        }
    }
}

impl NotifyConfig {
    /// Whether any sink is configured.
    pub fn enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Time one request to sink `name` may take.
    pub fn timeout(&self, name: &str) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.sink_timeout_secs
                .get(name)
                .copied()
                .unwrap_or(self.timeout_secs),
        )
    }

    /// The sinks `owner` is routed to (`None`: no owner recorded).
    pub fn route(&self, owner: Option<&str>) -> &[String] {
        let matched = owner.and_then(|o| {
            self.routes
                .iter()
                .find(|r| nhi_contract::pattern::Syntax::STAR_ASCII_CASELESS.matches(&r.owner, o))
        });
        match matched {
            Some(r) => &r.sinks,
            None => &self.default_route,
        }
    }

    /// Ranges, unknown sink names, and URLs that do not parse.
    pub(super) fn problems(&self, o: &mut Vec<Problem>) {
        for (key, v, lo, hi) in [
            ("warn_lead_hours", self.warn_lead_hours, 0, super::MAX_HOURS),
            ("max_attempts", i64::from(self.max_attempts), 1, 10),
            (
                "max_backoff_secs",
                super::wide(self.max_backoff_secs),
                0,
                300,
            ),
            ("timeout_secs", super::wide(self.timeout_secs), 1, 300),
            ("budget_secs", super::wide(self.budget_secs), 1, 3600),
        ] {
            super::range(o, &["notify", key], v, lo, hi);
        }
        let known = |name: &str| self.sinks.contains_key(name);
        for (name, t) in &self.sink_timeout_secs {
            let key = ["notify", "sink_timeout_secs", name.as_str()];
            super::range(o, &key, super::wide(*t), 1, 300);
            if !known(name) {
                o.push(Problem::new(
                    &key,
                    format!("no sink is named {name:?} in [notify.sinks]"),
                ));
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            for s in r.sinks.iter().filter(|s| !known(s)) {
                o.push(Problem {
                    key: vec![
                        "notify".into(),
                        "routes".into(),
                        i.to_string(),
                        "sinks".into(),
                    ],
                    message: format!("no sink is named {s:?} in [notify.sinks]"),
                });
            }
        }
        for s in self.default_route.iter().filter(|s| !known(s)) {
            o.push(Problem::new(
                &["notify", "default_route"],
                format!("no sink is named {s:?} in [notify.sinks]"),
            ));
        }
        if self.enabled() && self.default_route.is_empty() && self.routes.is_empty() {
            o.push(Problem::new(
                &["notify", "default_route"],
                "sinks are configured but no route leads to them: set default_route".into(),
            ));
        }
        for (name, s) in &self.sinks {
            let key = |k: &str| -> KeyPath {
                vec!["notify".into(), "sinks".into(), name.clone(), k.into()]
            };
            let url = |o: &mut Vec<Problem>, k: &str, v: &str| {
                let ok = url::Url::parse(v)
                    .ok()
                    .is_some_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    o.push(Problem {
                        key: key(k),
                        message: format!("{v:?} is not an http(s) URL"),
                    });
                }
            };
            match s {
                SinkConfig::SlackApi { base_url, .. } | SinkConfig::Pagerduty { base_url, .. } => {
                    url(o, "base_url", base_url)
                }
                SinkConfig::Webhook { url: u, .. } => url(o, "url", u),
                _ => {}
            }
            if let SinkConfig::Pagerduty { severity, .. } = s {
                if !["critical", "error", "warning", "info"].contains(&severity.as_str()) {
                    o.push(Problem {
                        key: key("severity"),
                        message: format!(
                            "{severity:?} is not a PagerDuty severity (critical, error, warning, info)"
                        ),
                    });
                }
            }
            if let SinkConfig::Email {
                to,
                username,
                password_env,
                ..
            } = s
            {
                if to.is_empty() {
                    o.push(Problem {
                        key: key("to"),
                        message: "no recipient".into(),
                    });
                }
                if username.is_some() != password_env.is_some() {
                    o.push(Problem {
                        key: key(if username.is_some() {
                            "username"
                        } else {
                            "password_env"
                        }),
                        message: "username and password_env go together".into(),
                    });
                }
            }
        }
    }

    /// The settings naming a secret's variable.
    pub(super) fn secret_variables(&self) -> Vec<(KeyPath, String)> {
        self.sinks
            .iter()
            .flat_map(|(name, s)| {
                s.secret_variables().into_iter().map(move |(k, v)| {
                    (
                        vec!["notify".into(), "sinks".into(), name.clone(), k.into()],
                        v.to_string(),
                    )
                })
            })
            .collect()
    }
}
