//! The fake tenant served over HTTP on loopback: the token endpoint, the
//! bearer check and the throttling fault, the request record, and the
//! shapes every route shares (paging, `$select` projection, error
//! envelopes). The routes are in [`super::graph`] and [`super::arm`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::Utc;
use serde_json::{json, Map, Value};

use super::tenant::{Recorded, Tenant};
use super::{arm, graph, ARM, AUTHORITY, CLIENT_ID, CLIENT_SECRET, GRAPH, SUBSCRIPTION, TENANT};

/// A running fake tenant.
pub struct FakeTenant {
    /// Loopback address it listens on (`test_loopback`).
    pub addr: SocketAddr,
    /// Shared state: inspect requests, flip faults, read the directory.
    pub state: Arc<Mutex<Tenant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTenant {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTenant {
    /// Serve `tenant` on a free loopback port.
    pub async fn start(tenant: Tenant) -> std::io::Result<FakeTenant> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(tenant));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTenant { addr, state, task })
    }

    /// Lock the state (test helper: a poisoned lock still yields the data).
    pub fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A TOML `[[sources]]` block pointing an Azure source at this fake,
    /// authenticating with a client secret read from `secret_env`.
    pub fn source_toml(&self, name: &str, secret_env: &str) -> String {
        format!(
            r#"[[sources]]
type = "azure"
name = "{name}"
tenant_id = "{TENANT}"
subscriptions = ["{SUBSCRIPTION}"]
authority_host = "{AUTHORITY}"
graph_url = "{GRAPH}"
arm_url = "{ARM}"
test_loopback = "{}"
initial_backoff_ms = 10
max_retries = 3
[sources.auth]
method = "client_secret"
client_id = "{CLIENT_ID}"
secret_env = "{secret_env}"
"#,
            self.addr
        )
    }
}

pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "innerError": {
        "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2",
        "client-request-id": "94fb3b52-452a-4535-a601-69e0a90e3aa2"}}});
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `201 Created` with the new object.
pub(super) fn created(v: &Value) -> Response {
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `$select` projection (annotations such as `@odata.type` always kept;
/// owners and sponsors only with `$expand=owners…` / `$expand=sponsors…`).
pub(super) fn project(obj: &Value, q: &BTreeMap<String, String>, single: bool) -> Value {
    const RELATIONS: [&str; 2] = ["owners", "sponsors"];
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let select: Option<Vec<&str>> = q.get("$select").map(|s| s.split(',').collect());
    for (k, v) in map {
        if RELATIONS.contains(&k.as_str()) {
            continue;
        }
        if !k.starts_with("@odata.") && select.as_ref().is_some_and(|s| !s.contains(&k.as_str())) {
            continue;
        }
        let mut v = v.clone();
        // A collection never returns a certificate's public key; a single
        // object selected with keyCredentials does (as documented).
        if k == "keyCredentials" && !single {
            if let Some(list) = v.as_array_mut() {
                for c in list {
                    c["key"] = Value::Null;
                }
            }
        }
        out.insert(k.clone(), v);
    }
    for rel in RELATIONS {
        if q.get("$expand").is_some_and(|e| e.starts_with(rel)) {
            out.insert(rel.into(), map.get(rel).cloned().unwrap_or(json!([])));
        }
    }
    Value::Object(out)
}

/// One page of `items`; the next link repeats the query with `$skiptoken`.
pub(super) fn page(
    base: &str,
    path: &str,
    q: &BTreeMap<String, String>,
    items: Vec<Value>,
    size: usize,
    arm: bool,
) -> Response {
    let size = size.max(1);
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunk: Vec<Value> = items.iter().skip(skip).take(size).cloned().collect();
    let mut body = Map::new();
    if !arm {
        body.insert(
            "@odata.context".into(),
            json!(format!(
                "{base}/v1.0/$metadata#{}",
                path.rsplit('/').next().unwrap_or("")
            )),
        );
    }
    body.insert("value".into(), Value::Array(chunk));
    if skip + size < items.len() {
        let mut rest: Vec<String> = q
            .iter()
            .filter(|(k, _)| *k != "$skiptoken")
            .map(|(k, v)| format!("{k}={}", v.replace(' ', "%20").replace('\'', "%27")))
            .collect();
        rest.push(format!("$skiptoken={}", skip + size));
        let link = format!("{base}{path}?{}", rest.join("&"));
        body.insert(
            if arm { "nextLink" } else { "@odata.nextLink" }.into(),
            json!(link),
        );
    }
    ok_json(Value::Object(body))
}

async fn handle(
    State(state): State<Arc<Mutex<Tenant>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let delay = {
        let mut t = lock();
        t.in_flight += 1;
        t.max_in_flight = t.max_in_flight.max(t.in_flight);
        t.delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let resp = respond(&mut lock(), method, uri, headers, body);
    lock().in_flight -= 1;
    resp
}

/// One authorized request, parsed, as the routes see it.
pub(super) struct Req<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    /// The path's segments, without the leading `/`.
    pub segs: Vec<&'a str>,
    /// The query, percent-decoded.
    pub q: BTreeMap<String, String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// Where Graph next links point (another host under the fault).
    pub next_base: &'static str,
    /// Items per page.
    pub size: usize,
}

fn respond(t: &mut Tenant, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let raw_q = uri.query().unwrap_or("").to_string();
    let token_req = path.ends_with("/oauth2/v2.0/token");
    let json_body: Option<Value> = if token_req {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    t.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: (!raw_q.is_empty()).then(|| decode(&raw_q)),
        body: json_body.clone(),
    });
    if token_req {
        return token(t, &path, &body);
    }
    if let Some(refused) = refuse(t, &headers, &path) {
        return refused;
    }
    let req = Req {
        method: &method,
        path: &path,
        segs: path.trim_start_matches('/').split('/').collect(),
        q: query_map(&raw_q),
        body: json_body,
        // A hostile or broken next link: the client must not follow it.
        next_base: if t.foreign_next_link {
            "https://graph.attacker.example"
        } else {
            GRAPH
        },
        size: t.page_size,
    };
    let is_arm = req
        .segs
        .first()
        .is_some_and(|s| *s == "subscriptions" || *s == "providers");
    if is_arm {
        arm::route(t, &req)
    } else {
        graph::route(t, &req)
    }
}

/// The token endpoint: the client-credentials grant of the one client.
fn token(t: &mut Tenant, path: &str, body: &Bytes) -> Response {
    let form = query_map(&String::from_utf8_lossy(body));
    let tenant_ok = path == format!("/{TENANT}/oauth2/v2.0/token");
    if !tenant_ok
        || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
    {
        let e = json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]});
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            e.to_string(),
        )
            .into_response();
    }
    t.counter += 1;
    let tok = format!("eyJ0eXAiOiJKV1Qi.fake.{}", t.counter);
    t.issued.insert(tok.clone());
    ok_json(
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok}),
    )
}

/// A request without a token the fake issued, or the one throttled request
/// of a path: its answer.
fn refuse(t: &mut Tenant, headers: &HeaderMap, path: &str) -> Option<Response> {
    let authorized = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|tok| t.issued.contains(tok));
    if !authorized {
        return Some(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        ));
    }
    if t.throttle_once.remove(path) {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests",
        );
        let secs = t.retry_after_secs.unwrap_or(1).to_string();
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs) {
            r.headers_mut().insert("retry-after", v);
        }
        return Some(r);
    }
    None
}
