//! HTTP to Jira: one reqwest client, the token from its environment
//! variable at each request, retries on 429 (honouring `Retry-After`, each
//! wait bounded) and 5xx / connection errors with doubling backoff, bodies
//! read up to a bound, and errors mapped to [`SourceError`]: 401/403 are
//! `Auth`, retries running out are `Unavailable`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nhi_contract::SourceError;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::config::{JiraAuth, JiraConfig};

/// Longest error text kept from a response (Jira's `errorMessages`).
const ERROR_TEXT: usize = 300;

pub(crate) struct Client {
    http: reqwest::Client,
    config: JiraConfig,
    calls: Arc<AtomicU64>,
}

impl Client {
    pub(crate) fn new(config: &JiraConfig, calls: Arc<AtomicU64>) -> Result<Client, SourceError> {
        let http = reqwest::Client::builder()
            // A redirect could carry the Authorization header elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| SourceError::Unavailable(format!("jira: HTTP client: {e}")))?;
        Ok(Client {
            http,
            config: config.clone(),
            calls,
        })
    }

    /// `{base_url}` with `segments` as its path and `query`, redirected to
    /// the loopback address in tests.
    pub(crate) fn url(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, SourceError> {
        let invalid = |m: String| SourceError::Invalid {
            location: "jira base_url".into(),
            message: m,
        };
        let mut url = Url::parse(&self.config.base_url).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != "https" {
            return Err(invalid("must be an https:// URL".into()));
        }
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| invalid("cannot hold a path".into()))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        if let Some(l) = &self.config.test_loopback {
            let addr: std::net::SocketAddr = l
                .parse()
                .ok()
                .filter(|a: &std::net::SocketAddr| a.ip().is_loopback())
                .ok_or_else(|| invalid("test_loopback must be a loopback address".into()))?;
            let ok = url.set_scheme("http").is_ok()
                && url.set_ip_host(addr.ip()).is_ok()
                && url.set_port(Some(addr.port())).is_ok();
            if !ok {
                return Err(invalid("cannot redirect to loopback".into()));
            }
        }
        Ok(url)
    }

    fn request(&self, url: Url) -> Result<reqwest::RequestBuilder, SourceError> {
        let req = self.http.get(url).header("Accept", "application/json");
        let secret = |var: &str| {
            std::env::var(var).map_err(|_| {
                SourceError::Auth(format!("jira: environment variable {var} is not set"))
            })
        };
        match self.config.auth.as_deref() {
            Some(JiraAuth::ApiToken { email, token_env }) => {
                Ok(req.basic_auth(email, Some(secret(token_env)?)))
            }
            Some(JiraAuth::Oauth { token_env }) => Ok(req.bearer_auth(secret(token_env)?)),
            None => Err(SourceError::Auth("jira: no auth configured".into())),
        }
    }

    /// GET `url` as JSON; `Ok(None)` when the resource does not exist (404).
    pub(crate) async fn get(&self, url: Url, op: &str) -> Result<Option<Value>, SourceError> {
        let max_wait = Duration::from_secs(self.config.max_retry_secs);
        let mut backoff = Duration::from_millis(self.config.initial_backoff_ms).min(max_wait);
        let mut tries: u32 = 0;
        loop {
            let req = self.request(url.clone())?;
            self.calls.fetch_add(1, Ordering::Relaxed);
            tries = tries.saturating_add(1);
            let (why, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return self.body(resp, op).await.map(Some);
                    }
                    let retry_after = retry_after(resp.headers());
                    let text = self.error_text(resp).await;
                    match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            return Err(SourceError::Auth(format!(
                                "jira {op}: HTTP {status}{text}"
                            )))
                        }
                        StatusCode::NOT_FOUND => return Ok(None),
                        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                            (format!("HTTP {status}{text}"), retry_after)
                        }
                        StatusCode::BAD_REQUEST => {
                            return Err(SourceError::Invalid {
                                location: format!("jira {op}"),
                                message: format!("HTTP {status}{text}"),
                            })
                        }
                        _ => {
                            return Err(SourceError::Unavailable(format!(
                                "jira {op}: HTTP {status}{text}"
                            )))
                        }
                    }
                }
                Err(e) => (chain(&e.without_url()), None),
            };
            if tries > self.config.max_retries {
                return Err(SourceError::Unavailable(format!(
                    "jira {op}: {why} (gave up after {tries} tries)"
                )));
            }
            let wait = retry_after
                .map_or(backoff, |r| r.max(backoff))
                .min(max_wait);
            tracing::debug!(op, %why, wait_ms = wait.as_millis() as u64, "jira: retrying");
            tokio::time::sleep(wait).await;
            backoff = backoff.saturating_mul(2).min(max_wait);
        }
    }

    async fn body(&self, mut resp: reqwest::Response, op: &str) -> Result<Value, SourceError> {
        let max = self.config.max_response_bytes;
        let invalid = |m: String| SourceError::Invalid {
            location: format!("jira {op}"),
            message: m,
        };
        let too_big = || invalid(format!("response larger than {max} bytes"));
        if resp.content_length().is_some_and(|l| l > max as u64) {
            return Err(too_big());
        }
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if buf.len().saturating_add(c.len()) > max {
                        return Err(too_big());
                    }
                    buf.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(SourceError::Unavailable(format!(
                        "jira {op}: reading the response: {}",
                        e.without_url()
                    )))
                }
            }
        }
        serde_json::from_slice(&buf).map_err(|e| invalid(format!("not JSON: {e}")))
    }

    /// `: message` from Jira's error body (`errorMessages`, `errors`), short.
    async fn error_text(&self, mut resp: reqwest::Response) -> String {
        let mut buf = Vec::new();
        while let Ok(Some(c)) = resp.chunk().await {
            buf.extend_from_slice(&c);
            if buf.len() > 16 * 1024 {
                return String::new();
            }
        }
        let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
            return String::new();
        };
        let mut parts: Vec<String> = v
            .get("errorMessages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if let Some(errors) = v.get("errors").and_then(Value::as_object) {
            parts.extend(
                errors
                    .iter()
                    .filter_map(|(k, m)| m.as_str().map(|m| format!("{k}: {m}"))),
            );
        }
        let text: String = parts.join("; ").chars().take(ERROR_TEXT).collect();
        if text.is_empty() {
            text
        } else {
            format!(": {text}")
        }
    }
}

/// An error and its causes (`error sending request: connection refused`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    // Bounded: a cyclic or deep chain cannot grow the message forever.
    for _ in 0..4 {
        let Some(c) = cause else { break };
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `Retry-After`, as [`nhi_contract::time::retry_after`] reads it.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    nhi_contract::time::retry_after(h.get(RETRY_AFTER)?.to_str().ok()?, chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            if let Ok(v) = v.parse() {
                m.insert(RETRY_AFTER, v);
            }
            m
        };
        assert_eq!(retry_after(&h("7")), Some(Duration::from_secs(7)));
        let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc2822();
        let d = retry_after(&h(&soon)).unwrap_or_default();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            retry_after(&h("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&h("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
