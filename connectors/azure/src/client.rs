//! HTTP plumbing shared by inventory and remediation: tokens from
//! `azure_identity`, one `azure_core` pipeline per API (Graph, ARM) with
//! bearer authentication and azure_core's exponential retry policy (429 and
//! 503 honour `Retry-After`, each wait bounded by the retry budget), paging through `@odata.nextLink` / `nextLink`,
//! call counting and error mapping.
//!
//! Why azure_core's pipeline rather than a bare reqwest client: it is the
//! same reqwest + rustls stack `azure_identity` already brings, its retry
//! policy already implements Retry-After and capped exponential backoff, and
//! its bearer policy refuses to send a token over plain HTTP.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::headers::{
    HeaderName, HeaderValue, RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS,
};
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::{Policy, PolicyResult, RetryHeaders, RetryPolicy};
use azure_core::http::{
    AsyncRawResponse, ClientOptions, Context, HttpClient, Method, Pipeline, PipelineSendOptions,
    Request, RetryOptions, StatusCode, Transport, Url,
};
use nhi_contract::SourceError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::config::{AzureAuth, AzureConfig};

/// Counts HTTP tries (retries included) by method and path shape, ids
/// replaced by `{id}`: the figure frugality is measured in.
#[derive(Debug, Clone, Default)]
pub struct CallStats(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallStats {
    fn count(&self, key: String) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_insert(0) += 1;
        }
    }

    /// Calls per `METHOD /path/{id}` so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Total calls so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }
}

/// `GET /v1.0/servicePrincipals/{id}/appRoleAssignments`: ids become
/// `{id}`, the query is dropped. An id is a segment that is not a word of
/// the APIs' vocabulary (a GUID, a base64url assignment id, anything with
/// `-`, `_` or `=`), or the name after an ARM collection that names
/// resources (`subscriptions/{id}`, `resourceGroups/{id}`, a provider's
/// resource type followed by its name). Collection and action names
/// (`oauth2PermissionGrants`, `transitiveMemberOf`, `microsoft.graph.group`,
/// `Microsoft.Authorization`) are kept, whatever their length or digits.
fn shape(method: &str, url: &Url) -> String {
    let mut out: Vec<&str> = Vec::new();
    // ARM: after `providers/{Namespace}`, segments alternate type, name.
    let mut arm_name_next = false;
    let mut after_namespace: Option<bool> = None;
    let mut prev = "";
    for s in url.path().split('/') {
        let arm_name = matches!(
            prev,
            "subscriptions" | "resourceGroups" | "resourcegroups" | "managementGroups"
        ) || arm_name_next;
        let masked = if prev == "providers" {
            after_namespace = Some(true);
            arm_name_next = false;
            s
        } else if arm_name || !api_word(s) {
            arm_name_next = false;
            "{id}"
        } else {
            // A provider's resource type: the next segment names one.
            arm_name_next = after_namespace.is_some();
            s
        };
        out.push(masked);
        prev = s;
    }
    format!("{method} {}", out.join("/"))
}

/// Whether a path segment is a word of the Graph or ARM vocabulary:
/// empty, an API version (`v1.0`, `beta`), an OData segment (`$count`), or
/// dot-separated camelCase words (`appRoleAssignments`,
/// `oauth2PermissionGrants`, `Microsoft.ManagedIdentity`). Random ids
/// almost never are: base64url has runs of capitals and digits after
/// capitals, GUIDs and ARM names have `-`.
fn api_word(s: &str) -> bool {
    if s.is_empty() || s.starts_with('$') {
        return true;
    }
    if s.len() > 1
        && s.starts_with('v')
        && s[1..]
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return true;
    }
    s.split('.').all(camel_word)
}

/// `oauth2PermissionGrants`, `Microsoft`, `transitiveMemberOf`: letters
/// where each capital starts a lowercase run, digits only right after a
/// lowercase letter and before a capital or the end.
fn camel_word(w: &str) -> bool {
    let b = w.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphabetic() {
        return false;
    }
    for i in 0..b.len() {
        let c = b[i];
        let prev = if i > 0 { Some(b[i - 1]) } else { None };
        let ok = if c.is_ascii_uppercase() {
            // A capital is followed by a lowercase letter.
            b.get(i + 1).is_some_and(u8::is_ascii_lowercase)
        } else if c.is_ascii_lowercase() {
            true
        } else if c.is_ascii_digit() {
            prev.is_some_and(|p| p.is_ascii_lowercase())
                && b.get(i + 1).is_none_or(|n| n.is_ascii_uppercase())
        } else {
            false
        };
        if !ok {
            return false;
        }
    }
    true
}

#[derive(Debug)]
struct Counter(CallStats);

#[async_trait]
impl Policy for Counter {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        self.0
            .count(shape(request.method().as_ref(), request.url()));
        next[0].send(ctx, request, &next[1..]).await
    }
}

/// azure_core's exponential backoff and `Retry-After` handling (429 and 503;
/// the `x-ms-retry-after-ms`, `retry-after-ms` and `Retry-After` headers),
/// with one bound added: a single wait never exceeds the call's retry
/// budget, so a service asking for an hour cannot stall a scheduled pass
/// for an hour — the call fails after the budget and the source is unknown.
#[derive(Debug)]
struct BoundedRetry {
    initial: azure_core::time::Duration,
    max_retries: u32,
    budget: azure_core::time::Duration,
    headers: RetryHeaders,
}

#[async_trait]
impl RetryPolicy for BoundedRetry {
    fn is_expired(&self, since_start: azure_core::time::Duration, retries: u32) -> bool {
        retries >= self.max_retries || since_start >= self.budget
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // Empty: azure_core's defaults (408, 429, 500, 502, 503, 504).
        &[]
    }

    fn sleep_duration(&self, retries: u32) -> azure_core::time::Duration {
        let factor = 2i32.saturating_pow(retries.min(16));
        (self.initial * factor).min(azure_core::time::Duration::seconds(30))
    }

    async fn wait(&self, retries: u32, retry_after: Option<azure_core::time::Duration>) {
        let backoff = self.sleep_duration(retries);
        let wait = retry_after
            .map_or(backoff, |r| r.max(backoff))
            .min(self.budget);
        azure_core::sleep(wait).await;
    }
}

/// Sends every request over plain HTTP to one loopback address (tests).
#[derive(Debug)]
struct Loopback {
    addr: SocketAddr,
    inner: Arc<dyn HttpClient>,
}

#[async_trait]
impl HttpClient for Loopback {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let mut req = request.clone();
        let url = req.url_mut();
        let ok = url.set_scheme("http").is_ok()
            && url.set_ip_host(self.addr.ip()).is_ok()
            && url.set_port(Some(self.addr.port())).is_ok();
        if !ok {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                "cannot redirect request to loopback",
            ));
        }
        self.inner.execute_request(&req).await
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error status.
    #[error("{op}: HTTP {status}{}", fmt_code(code, message))]
    Status {
        /// `GET /v1.0/applications` (shape, no ids).
        op: String,
        /// HTTP status.
        status: u16,
        /// Service error code (`Authorization_RequestDenied`).
        code: Option<String>,
        /// Service error message, shortened.
        message: Option<String>,
    },
    /// No token could be obtained.
    #[error("token: {0}")]
    Token(String),
    /// The request could not be sent or retries ran out on a transport error.
    #[error("{op}: {message}")]
    Transport {
        /// Call shape.
        op: String,
        /// Why.
        message: String,
    },
    /// The response was not the documented shape.
    #[error("{op}: unexpected response: {message}")]
    Decode {
        /// Call shape.
        op: String,
        /// Why.
        message: String,
    },
}

fn fmt_code(code: &Option<String>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" {c}: {m}"),
        (Some(c), None) => format!(" {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

impl ApiError {
    /// HTTP status, if the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<ApiError> for SourceError {
    fn from(e: ApiError) -> SourceError {
        match e.status() {
            Some(401) | Some(403) => SourceError::Auth(e.to_string()),
            _ if matches!(e, ApiError::Token(_)) => SourceError::Auth(e.to_string()),
            _ if matches!(e, ApiError::Decode { .. }) => SourceError::Invalid {
                location: "azure response".into(),
                message: e.to_string(),
            },
            _ => SourceError::Unavailable(e.to_string()),
        }
    }
}

/// Which API a call goes to (each has its own token audience).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Graph,
    Arm,
}

/// One page of a Graph or ARM collection.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", alias = "nextLink", default)]
    next_link: Option<String>,
}

/// Authenticated Graph and ARM clients for one tenant.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    graph: Pipeline,
    arm: Pipeline,
    pub(crate) graph_url: String,
    pub(crate) arm_url: String,
}

fn base_options(cfg: &AzureConfig, calls: &CallStats) -> Result<ClientOptions, SourceError> {
    let retry = BoundedRetry {
        initial: azure_core::time::Duration::milliseconds(
            cfg.initial_backoff_ms.clamp(1, 60_000) as i64
        ),
        max_retries: cfg.max_retries,
        budget: azure_core::time::Duration::seconds(cfg.max_retry_secs.max(1) as i64),
        headers: RetryHeaders {
            retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER],
        },
    };
    let transport = match &cfg.test_loopback {
        None => None,
        Some(addr) => {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| invalid_cfg(cfg, "test_loopback must be IP:PORT"))?;
            if !addr.ip().is_loopback() {
                return Err(invalid_cfg(
                    cfg,
                    "test_loopback must be a loopback address: tokens are never sent over plain HTTP off the machine",
                ));
            }
            Some(Transport::new(Arc::new(Loopback {
                addr,
                inner: azure_core::http::new_http_client(None),
            })))
        }
    };
    let mut custom = CustomConfiguration::default();
    custom.authority_host = cfg.authority_host.trim_end_matches('/').to_string();
    Ok(ClientOptions {
        retry: RetryOptions::custom(Arc::new(retry)),
        transport,
        per_try_policies: vec![Arc::new(Counter(calls.clone()))],
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    })
}

fn invalid_cfg(cfg: &AzureConfig, m: &str) -> SourceError {
    SourceError::Invalid {
        location: format!("source {}", cfg.name),
        message: m.to_string(),
    }
}

fn cred_err(cfg: &AzureConfig) -> impl Fn(azure_core::Error) -> SourceError + '_ {
    move |e| SourceError::Auth(format!("source {}: credential: {e}", cfg.name))
}

/// The credential the config asks for.
pub(crate) fn credential(
    cfg: &AzureConfig,
    options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, SourceError> {
    let err = cred_err(cfg);
    Ok(match &cfg.auth {
        AzureAuth::ClientSecret {
            client_id,
            secret_env,
        } => {
            let secret = std::env::var(secret_env).map_err(|_| {
                invalid_cfg(
                    cfg,
                    &format!("environment variable {secret_env} (the client secret) is not set"),
                )
            })?;
            azure_identity::ClientSecretCredential::new(
                &cfg.tenant_id,
                client_id.clone(),
                Secret::new(secret),
                Some(azure_identity::ClientSecretCredentialOptions {
                    client_options: options,
                }),
            )
            .map_err(err)?
        }
        AzureAuth::WorkloadIdentity {
            client_id,
            token_file,
        } => azure_identity::WorkloadIdentityCredential::new(Some(
            azure_identity::WorkloadIdentityCredentialOptions {
                credential_options: azure_identity::ClientAssertionCredentialOptions {
                    client_options: options,
                },
                client_id: client_id.clone(),
                tenant_id: Some(cfg.tenant_id.clone()),
                token_file_path: token_file.as_ref().map(Into::into),
            },
        ))
        .map_err(err)?,
        AzureAuth::ManagedIdentity { client_id } => {
            azure_identity::ManagedIdentityCredential::new(Some(
                azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id
                        .clone()
                        .map(azure_identity::UserAssignedId::ClientId),
                    client_options: options,
                },
            ))
            .map_err(err)?
        }
        AzureAuth::AzureCli => azure_identity::AzureCliCredential::new(Some(
            azure_identity::AzureCliCredentialOptions {
                tenant_id: Some(cfg.tenant_id.clone()),
                ..Default::default()
            },
        ))
        .map_err(err)?,
        #[cfg(feature = "client-certificate")]
        AzureAuth::ClientCertificate {
            client_id,
            certificate_path,
            password_env,
        } => {
            let bytes = std::fs::read(certificate_path).map_err(|source| SourceError::Io {
                path: certificate_path.clone(),
                source,
            })?;
            let password = match password_env {
                Some(v) => Some(Secret::new(std::env::var(v).map_err(|_| {
                    invalid_cfg(cfg, &format!("environment variable {v} is not set"))
                })?)),
                None => None,
            };
            azure_identity::ClientCertificateCredential::new(
                cfg.tenant_id.clone(),
                client_id.clone(),
                azure_core::credentials::SecretBytes::new(bytes),
                Some(azure_identity::ClientCertificateCredentialOptions {
                    client_options: options,
                    password,
                }),
            )
            .map_err(err)?
        }
        #[cfg(not(feature = "client-certificate"))]
        AzureAuth::ClientCertificate { .. } => {
            return Err(invalid_cfg(
                cfg,
                "client_certificate authentication needs nhi-assure built with the azure client-certificate feature (OpenSSL); use workload_identity, managed_identity or client_secret",
            ))
        }
    })
}

fn scope_of(base: &str) -> String {
    format!("{}/.default", base.trim_end_matches('/'))
}

/// Short, bounded error text from a Graph or ARM error body: code and
/// message only (never the whole body, which may echo request data).
fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Outer {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: Option<String>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Outer>(body) {
        Ok(Outer { error: Some(i) }) => (
            i.code,
            i.message.map(|m| m.chars().take(200).collect::<String>()),
        ),
        _ => (None, None),
    }
}

impl Client {
    /// Build the credential and both pipelines.
    pub(crate) fn new(cfg: &AzureConfig, calls: CallStats) -> Result<Client, SourceError> {
        for (what, url) in [
            ("graph_url", &cfg.graph_url),
            ("arm_url", &cfg.arm_url),
            ("authority_host", &cfg.authority_host),
        ] {
            let ok = Url::parse(url)
                .map(|u| u.scheme() == "https")
                .unwrap_or(false);
            if !ok {
                return Err(invalid_cfg(cfg, &format!("{what} must be an https URL")));
            }
        }
        let cred = credential(cfg, base_options(cfg, &calls)?)?;
        let pipeline = |base: &str| -> Result<Pipeline, SourceError> {
            let auth: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(
                cred.clone(),
                [scope_of(base)],
            ));
            Ok(Pipeline::new(
                Some("nhi-azure"),
                Some(env!("CARGO_PKG_VERSION")),
                base_options(cfg, &calls)?,
                vec![auth],
                Vec::new(),
                None,
            ))
        };
        Ok(Client {
            graph: pipeline(&cfg.graph_url)?,
            arm: pipeline(&cfg.arm_url)?,
            graph_url: cfg.graph_url.trim_end_matches('/').to_string(),
            arm_url: cfg.arm_url.trim_end_matches('/').to_string(),
        })
    }

    fn base(&self, api: Api) -> &str {
        match api {
            Api::Graph => &self.graph_url,
            Api::Arm => &self.arm_url,
        }
    }

    /// Send one request; `Ok((status, body))` for any status the service
    /// answered with after retries, so callers decide what 404 means.
    pub(crate) async fn send(
        &self,
        api: Api,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let parsed = Url::parse(url).map_err(|e| ApiError::Transport {
            op: format!("{method} {url}"),
            message: e.to_string(),
        })?;
        let op = shape(method.as_ref(), &parsed);
        let mut req = Request::new(parsed, method);
        req.insert_header(
            HeaderName::from_static("accept"),
            HeaderValue::from_static("application/json"),
        );
        if let Some(b) = body {
            req.insert_header(
                HeaderName::from_static("content-type"),
                HeaderValue::from_static("application/json"),
            );
            let bytes = serde_json::to_vec(b).map_err(|e| ApiError::Decode {
                op: op.clone(),
                message: e.to_string(),
            })?;
            req.set_body(bytes);
        }
        let pipeline = match api {
            Api::Graph => &self.graph,
            Api::Arm => &self.arm,
        };
        let opts = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let resp = pipeline
            .send(&Context::new(), &mut req, Some(opts))
            .await
            .map_err(|e| match e.kind() {
                azure_core::error::ErrorKind::Credential => ApiError::Token(e.to_string()),
                azure_core::error::ErrorKind::HttpResponse { .. } => ApiError::Token(e.to_string()),
                _ => ApiError::Transport {
                    op: op.clone(),
                    message: e.to_string(),
                },
            })?;
        let status = u16::from(resp.status());
        Ok((status, resp.into_body().as_ref().to_vec()))
    }

    /// Send and require success; decode the body as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        api: Api,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        let op = Url::parse(url)
            .map(|u| shape(method.as_ref(), &u))
            .unwrap_or_else(|_| url.to_string());
        let (status, bytes) = self.send(api, method, url, body).await?;
        if !(200..300).contains(&status) {
            let (code, message) = error_of(&bytes);
            tracing::debug!(%op, status, ?code, "azure call failed");
            return Err(ApiError::Status {
                op,
                status,
                code,
                message,
            });
        }
        let bytes = if bytes.is_empty() {
            b"null".to_vec()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            op,
            message: e.to_string(),
        })
    }

    /// GET a URL relative to the API's base.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
    ) -> Result<T, ApiError> {
        let url = format!("{}{path}", self.base(api));
        self.call(api, Method::Get, &url, None).await
    }

    /// GET every page of a collection, following the next link exactly as
    /// given — but only on the API's own origin: a link elsewhere would
    /// carry our bearer token to another host.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
    ) -> Result<Vec<T>, ApiError> {
        let base = self.base(api).to_string();
        let origin = Url::parse(&base)
            .map(|u| u.origin())
            .map_err(|e| ApiError::Transport {
                op: base.clone(),
                message: e.to_string(),
            })?;
        let mut out = Vec::new();
        let mut next = Some(format!("{base}{path}"));
        let mut seen = HashSet::new();
        while let Some(url) = next.take() {
            let parsed = Url::parse(&url).map_err(|e| ApiError::Decode {
                op: path.to_string(),
                message: format!("next link: {e}"),
            })?;
            if parsed.origin() != origin {
                return Err(ApiError::Decode {
                    op: shape("GET", &parsed),
                    message: "next link points to another host: refused".into(),
                });
            }
            if !seen.insert(url.clone()) {
                return Err(ApiError::Decode {
                    op: shape("GET", &parsed),
                    message: "next link repeats a page already read".into(),
                });
            }
            let page: Page<T> = self.call(api, Method::Get, &url, None).await?;
            out.extend(page.value);
            next = page.next_link;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_shapes_hide_ids() {
        let u = Url::parse("https://graph.microsoft.com/v1.0/servicePrincipals/0b2ec2a6-2e4a-4a36-9b4e-3e6f2b9b0a11/appRoleAssignments?$top=5").expect("url");
        assert_eq!(
            shape("GET", &u),
            "GET /v1.0/servicePrincipals/{id}/appRoleAssignments"
        );
        let u =
            Url::parse("https://graph.microsoft.com/beta/reports/servicePrincipalSignInActivities")
                .expect("url");
        assert_eq!(
            shape("GET", &u),
            "GET /beta/reports/servicePrincipalSignInActivities"
        );
        let u = Url::parse("https://management.azure.com/subscriptions/3f2b8c1d-5e6a-4b7c-9d8e-0f1a2b3c4d5e/resourcegroups/orders/providers/Microsoft.ManagedIdentity/userAssignedIdentities/mi-orders/federatedIdentityCredentials?api-version=2024-11-30").expect("url");
        assert_eq!(
            shape("GET", &u),
            "GET /subscriptions/{id}/resourcegroups/{id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{id}/federatedIdentityCredentials"
        );
        let u = Url::parse("https://management.azure.com/subscriptions/3f2b8c1d-5e6a-4b7c-9d8e-0f1a2b3c4d5e/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01").expect("url");
        assert_eq!(
            shape("GET", &u),
            "GET /subscriptions/{id}/providers/Microsoft.Authorization/roleAssignments"
        );
    }

    #[test]
    fn collection_names_are_never_taken_for_ids() {
        let shape_of = |u: &str| shape("GET", &Url::parse(u).expect("url"));
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/oauth2PermissionGrants"),
            "GET /v1.0/oauth2PermissionGrants"
        );
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/roleManagement/directory/roleEligibilitySchedules?$select=id"),
            "GET /v1.0/roleManagement/directory/roleEligibilitySchedules"
        );
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/roleManagement/directory/roleEligibilityScheduleInstances"),
            "GET /v1.0/roleManagement/directory/roleEligibilityScheduleInstances"
        );
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/servicePrincipals/b1000000-0000-4000-8000-000000000001/transitiveMemberOf/microsoft.graph.group?$select=id"),
            "GET /v1.0/servicePrincipals/{id}/transitiveMemberOf/microsoft.graph.group"
        );
        // Base64url assignment ids, letters only or not.
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/servicePrincipals/b1000000-0000-4000-8000-000000000001/appRoleAssignments/cGF5bWVudHMtdXNlci1yZWFkLWFsbA"),
            "GET /v1.0/servicePrincipals/{id}/appRoleAssignments/{id}"
        );
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/roleManagement/directory/roleAssignments/lAPpYvVpN0KRkAEhdxReEJC2sEqbR_9Hlqk1ihjq0aY-1"),
            "GET /v1.0/roleManagement/directory/roleAssignments/{id}"
        );
        assert_eq!(
            shape_of("https://graph.microsoft.com/v1.0/groups/02bd9fd6-8f93-4758-87c3-1fb73740a315/appRoleAssignments"),
            "GET /v1.0/groups/{id}/appRoleAssignments"
        );
        // ARM resource ids: every name masked, every type kept.
        assert_eq!(
            shape_of("https://management.azure.com/subscriptions/3f2b8c1d-5e6a-4b7c-9d8e-0f1a2b3c4d5e/resourceGroups/orders/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ordersapi/federatedIdentityCredentials/github?api-version=2023-01-31"),
            "GET /subscriptions/{id}/resourceGroups/{id}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{id}/federatedIdentityCredentials/{id}"
        );
        assert_eq!(
            shape_of("https://management.azure.com/providers/Microsoft.Management/managementGroups/contoso/providers/Microsoft.Authorization/roleAssignments/4e000000-0000-4000-8000-0000000000f1"),
            "GET /providers/Microsoft.Management/managementGroups/{id}/providers/Microsoft.Authorization/roleAssignments/{id}"
        );
        assert_eq!(
            shape_of("https://management.azure.com/subscriptions/s1/providers/Microsoft.Authorization/roleEligibilityScheduleInstances?api-version=2020-10-01"),
            "GET /subscriptions/{id}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances"
        );
    }

    #[test]
    fn error_text_is_code_and_short_message_only() {
        let long = "x".repeat(500);
        let body = format!(
            r#"{{"error":{{"code":"Authorization_RequestDenied","message":"{long}","innerError":{{"request-id":"r"}}}}}}"#
        );
        let (c, m) = error_of(body.as_bytes());
        assert_eq!(c.as_deref(), Some("Authorization_RequestDenied"));
        assert_eq!(m.map(|m| m.len()), Some(200));
        assert_eq!(error_of(b"<html>"), (None, None));
    }
}
