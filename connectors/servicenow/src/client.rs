//! HTTP to one instance: basic or OAuth client-credentials authentication,
//! retries (429 and 503 honour `Retry-After`, each wait bounded; other 5xx
//! and connection errors back off exponentially), and bounded bodies.

use std::net::SocketAddr;
use std::time::Duration;

use nhi_contract::SourceError;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::config::{ServiceNowAuth, ServiceNowConfig};

/// How one call authenticates.
enum Auth {
    Basic(String),
    Bearer(String),
}

/// An answer: status, the headers and the (bounded) body.
pub(crate) struct Answer {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    loopback: Option<SocketAddr>,
    auth: ServiceNowAuth,
    secret: String,
    token: tokio::sync::Mutex<Option<String>>,
    cfg: ServiceNowConfig,
}

fn invalid(cfg: &ServiceNowConfig, m: impl Into<String>) -> SourceError {
    SourceError::Invalid {
        location: format!("approval source {}", cfg.name),
        message: m.into(),
    }
}

impl Client {
    pub(crate) fn new(cfg: &ServiceNowConfig) -> Result<Client, SourceError> {
        let auth = cfg
            .auth
            .clone()
            .ok_or_else(|| invalid(cfg, "no auth configured"))?;
        let base = cfg
            .instance_url
            .as_deref()
            .and_then(|u| Url::parse(u).ok())
            .filter(|u| u.scheme() == "https" && u.has_host())
            .ok_or_else(|| invalid(cfg, "instance_url must be an https URL"))?;
        let loopback = match &cfg.test_loopback {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a
                    .parse()
                    .map_err(|_| invalid(cfg, "test_loopback must be IP:PORT"))?;
                if !addr.ip().is_loopback() {
                    return Err(invalid(
                        cfg,
                        "test_loopback must be a loopback address: credentials never travel over plain HTTP off the machine",
                    ));
                }
                Some(addr)
            }
        };
        let var = match &auth {
            ServiceNowAuth::Basic { password_env, .. } => password_env,
            ServiceNowAuth::OauthClientCredentials {
                client_secret_env, ..
            } => client_secret_env,
        };
        let secret = std::env::var(var)
            .map_err(|_| invalid(cfg, format!("environment variable {var} is not set")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // A redirect could carry the credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SourceError::Unavailable(format!("HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            loopback,
            auth,
            secret,
            token: tokio::sync::Mutex::new(None),
            cfg: cfg.clone(),
        })
    }

    /// `path` (with its query) on the instance, as sent.
    fn url(&self, path_and_query: &str) -> Result<Url, SourceError> {
        let mut u = self
            .base
            .join(path_and_query)
            .map_err(|e| invalid(&self.cfg, format!("{path_and_query}: {e}")))?;
        if let Some(addr) = self.loopback {
            let ok = u.set_scheme("http").is_ok()
                && u.set_ip_host(addr.ip()).is_ok()
                && u.set_port(Some(addr.port())).is_ok();
            if !ok {
                return Err(invalid(&self.cfg, "cannot redirect to loopback"));
            }
        }
        Ok(u)
    }

    /// How to authenticate the next call, fetching an OAuth token once.
    async fn authorization(&self) -> Result<Auth, SourceError> {
        match &self.auth {
            ServiceNowAuth::Basic { user, .. } => Ok(Auth::Basic(user.clone())),
            ServiceNowAuth::OauthClientCredentials { client_id, .. } => {
                let mut token = self.token.lock().await;
                if let Some(t) = token.as_ref() {
                    return Ok(Auth::Bearer(t.clone()));
                }
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair("client_secret", &self.secret)
                    .finish();
                let a = self
                    .send(Method::POST, "/oauth_token.do", None, Some(body))
                    .await
                    .map_err(|e| match e {
                        SourceError::Auth(m) => SourceError::Auth(format!("OAuth token: {m}")),
                        other => other,
                    })?;
                #[derive(Deserialize)]
                struct Token {
                    access_token: String,
                }
                let t: Token = serde_json::from_slice(&a.body).map_err(|e| {
                    SourceError::Auth(format!("OAuth token: unexpected response: {e}"))
                })?;
                *token = Some(t.access_token.clone());
                Ok(Auth::Bearer(t.access_token))
            }
        }
    }

    /// GET `path_and_query` with the source's authentication.
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<Answer, SourceError> {
        let auth = self.authorization().await?;
        let bearer = matches!(auth, Auth::Bearer(_));
        match self
            .send(Method::GET, path_and_query, Some(auth), None)
            .await
        {
            Err(SourceError::Auth(_)) if bearer => {
                // A token can expire during a long read: one fresh token,
                // one more try; refused again, the source fails.
                *self.token.lock().await = None;
                let auth = self.authorization().await?;
                self.send(Method::GET, path_and_query, Some(auth), None)
                    .await
            }
            other => other,
        }
    }

    /// Send with retries; a 2xx answer, or the error it maps to.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        auth: Option<Auth>,
        form: Option<String>,
    ) -> Result<Answer, SourceError> {
        let url = self.url(path_and_query)?;
        let op = format!("{method} {}", url.path());
        let mut retries = 0u32;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/json");
            req = match &auth {
                Some(Auth::Basic(user)) => req.basic_auth(user, Some(&self.secret)),
                Some(Auth::Bearer(t)) => req.bearer_auth(t),
                None => req,
            };
            if let Some(f) = &form {
                req = req
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(f.clone());
            }
            let (retry, why, after) = match req.send().await {
                Err(e) => (true, format!("{op}: {e}"), None),
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let headers = resp.headers().clone();
                        let body = self.read_body(resp, &op).await?;
                        return Ok(Answer { headers, body });
                    }
                    let after = retry_after(resp.headers());
                    let detail = error_detail(self.read_body(resp, &op).await.ok());
                    let why = format!("{op}: HTTP {}{detail}", status.as_u16());
                    match status {
                        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                            return Err(SourceError::Auth(why))
                        }
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                            (true, why, after)
                        }
                        s if s.is_server_error() => (true, why, None),
                        _ => return Err(SourceError::Unavailable(why)),
                    }
                }
            };
            if !retry || retries >= self.cfg.max_retries {
                return Err(SourceError::Unavailable(format!(
                    "{why} (after {retries} retries)"
                )));
            }
            let backoff = Duration::from_millis(
                self.cfg
                    .initial_backoff_ms
                    .saturating_mul(1u64 << retries.min(16)),
            );
            let cap = Duration::from_secs(self.cfg.max_retry_secs.max(1));
            let wait = after.map_or(backoff, |a| a.max(backoff)).min(cap);
            tracing::debug!(%op, retries, ?wait, "servicenow call retried");
            tokio::time::sleep(wait).await;
            retries = retries.saturating_add(1);
        }
    }

    /// The body, refused past `max_response_bytes`.
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        op: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let limit = usize::try_from(self.cfg.max_response_bytes).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if out.len().saturating_add(c.len()) > limit {
                        return Err(SourceError::Invalid {
                            location: op.to_string(),
                            message: format!("response larger than {limit} bytes: refused"),
                        });
                    }
                    out.extend_from_slice(&c);
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err(SourceError::Unavailable(format!("{op}: {e}"))),
            }
        }
    }
}

/// `Retry-After`, as [`nhi_contract::time::retry_after`] reads it.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    nhi_contract::time::retry_after(h.get(RETRY_AFTER)?.to_str().ok()?, chrono::Utc::now())
}

/// `: message` from ServiceNow's error envelope
/// (`{"error": {"message", "detail"}, "status": "failure"}`), shortened;
/// never the whole body.
fn error_detail(body: Option<Vec<u8>>) -> String {
    #[derive(Deserialize)]
    struct Outer {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    body.and_then(|b| serde_json::from_slice::<Outer>(&b).ok())
        .and_then(|o| o.error)
        .and_then(|i| i.message)
        .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "past date: no wait");
        let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        h.insert(RETRY_AFTER, soon.parse().expect("header"));
        let w = retry_after(&h).expect("date");
        assert!(
            w > Duration::from_secs(25) && w <= Duration::from_secs(30),
            "{w:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&h), None);
    }
}
