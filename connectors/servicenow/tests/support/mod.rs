//! A local HTTP server answering like a ServiceNow instance's Table API
//! and OAuth token endpoint, from the documented examples in `testdata/`:
//! offset paging with the `Link` header, `sysparm_fields` projection, the
//! `sysapprovalIN…^stateIN…` query of the approval rows, basic or bearer
//! authentication, injected faults, and a record of every request.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

pub const USER: &str = "nhi.reader";
pub const PASSWORD: &str = "s3cret-pw";
pub const CLIENT_ID: &str = "ac0dd3408c1031006907010c2cc6ef6d";
pub const CLIENT_SECRET: &str = "oauth-client-s3cret";
pub const TOKEN: &str =
    "RjLy4GmgKZ2mzBlzOVtEMfmdxiCYcvSo6RWWzhyk3TXbjnyDPbfCxnKlnmL8fNNHFi9WUtrINLOnbWOPOuyMuA";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Decoded query parameters, in order.
    pub params: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: String,
}

impl Seen {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A canned answer served instead of the next request's.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct Instance {
    pub tables: std::collections::HashMap<String, Vec<Value>>,
    pub faults: VecDeque<Fault>,
    /// Requests let through before the faults apply.
    pub faults_after: usize,
    /// Answer every request with this status (after the faults).
    pub always: Option<u16>,
    pub seen: Vec<Seen>,
    /// After serving the first page of this table, delete its first
    /// record (a record leaving the query while it is being paged).
    pub churn: Option<String>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Instance>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn testdata(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn result_of(v: Value) -> Vec<Value> {
    match v {
        Value::Object(mut o) => match o.remove("result") {
            Some(Value::Array(a)) => a,
            _ => panic!("no result array"),
        },
        _ => panic!("not an object"),
    }
}

impl Server {
    /// Serve the documented examples.
    pub async fn start() -> Server {
        let mut i = Instance::default();
        for t in ["sc_req_item", "change_request", "sysapproval_approver"] {
            i.tables
                .insert(t.into(), result_of(testdata(&format!("{t}.json"))));
        }
        Server::with(i).await
    }

    pub async fn with(instance: Instance) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(instance));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, state, task }
    }

    pub fn instance(&self) -> std::sync::MutexGuard<'_, Instance> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.instance().seen.clone()
    }

    /// A `[[approvals]]` TOML entry reading `table` from this server.
    pub fn toml(&self, extra: &str) -> String {
        format!(
            r#"name = "snow"
instance_url = "https://example.service-now.com"
test_loopback = "{}"
initial_backoff_ms = 5
max_retries = 2
{extra}
"#,
            self.addr
        )
    }
}

fn json_resp(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::to_vec(v).expect("json"),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    json_resp(
        status,
        &json!({"error": {"message": message, "detail": null}, "status": "failure"}),
    )
}

async fn handle(
    State(state): State<Arc<Mutex<Instance>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        params,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.seen.push(seen.clone());
    let due = st.seen.len() > st.faults_after;
    if let Some(f) = if due { st.faults.pop_front() } else { None } {
        let mut r = json_resp(
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &f.body,
        );
        if let Some(a) = f.retry_after {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_str(&a).expect("header"));
        }
        return r;
    }
    if let Some(s) = st.always {
        return error(
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "Internal server error",
        );
    }
    if seen.path == "/oauth_token.do" {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(seen.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if method == Method::POST
            && get("grant_type") == Some("client_credentials")
            && get("client_id") == Some(CLIENT_ID)
            && get("client_secret") == Some(CLIENT_SECRET)
        {
            return json_resp(StatusCode::OK, &testdata("oauth_token.json"));
        }
        return json_resp(
            StatusCode::UNAUTHORIZED,
            &json!({"error_description": "access_denied", "error": "server_error"}),
        );
    }
    let basic = format!("Basic {}", b64(format!("{USER}:{PASSWORD}").as_bytes()));
    let bearer = format!("Bearer {TOKEN}");
    if seen.authorization.as_deref() != Some(&basic)
        && seen.authorization.as_deref() != Some(&bearer)
    {
        return json_resp(StatusCode::UNAUTHORIZED, &testdata("error_401.json"));
    }
    let Some(table) = seen.path.strip_prefix("/api/now/table/") else {
        return error(
            StatusCode::BAD_REQUEST,
            "Requested URI does not represent any resource",
        );
    };
    let Some(rows) = st.tables.get(table).cloned() else {
        return error(StatusCode::BAD_REQUEST, "Invalid table");
    };
    let query = seen.param("sysparm_query").unwrap_or("").to_string();
    let rows: Vec<Value> = rows.into_iter().filter(|r| matches(&query, r)).collect();
    let limit: usize = seen
        .param("sysparm_limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let offset: usize = seen
        .param("sysparm_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fields: Option<Vec<String>> = seen
        .param("sysparm_fields")
        .map(|f| f.split(',').map(str::to_string).collect());
    let page: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|r| project(r, fields.as_deref()))
        .collect();
    if st.churn.as_deref() == Some(table) && offset == 0 {
        st.churn = None;
        if let Some(t) = st.tables.get_mut(table) {
            t.remove(0);
        }
    }
    let mut resp = json_resp(StatusCode::OK, &json!({ "result": page }));
    let total = rows.len();
    let link = |o: usize, rel: &str| {
        format!(
            "<https://example.service-now.com/api/now/table/{table}?sysparm_limit={limit}&sysparm_offset={o}>;rel=\"{rel}\""
        )
    };
    let mut links = vec![link(0, "first")];
    if offset.saturating_add(limit) < total {
        links.push(link(offset + limit, "next"));
    }
    links.push(link(total.saturating_sub(1) / limit.max(1) * limit, "last"));
    resp.headers_mut().insert(
        "link",
        HeaderValue::from_str(&links.join(",")).expect("link"),
    );
    resp.headers_mut().insert(
        "x-total-count",
        HeaderValue::from_str(&total.to_string()).expect("count"),
    );
    resp
}

/// The encoded-query terms the source sends: `a=b`, `aINx,y`, `ORDERBYf`,
/// joined by `^`; anything else matches everything (the caller's own query).
fn matches(query: &str, r: &Value) -> bool {
    query.split('^').all(|term| {
        let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        if term.starts_with("ORDERBY") || term.is_empty() {
            true
        } else if let Some((f, list)) = term.split_once("IN") {
            list.split(',').any(|v| v == field(f))
        } else if let Some((f, v)) = term.split_once('=') {
            field(f) == v
        } else {
            true
        }
    })
}

fn project(r: &Value, fields: Option<&[String]>) -> Value {
    match (r, fields) {
        (Value::Object(o), Some(fs)) => {
            let mut out = Map::new();
            for f in fs {
                if let Some(v) = o.get(f) {
                    out.insert(f.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
        _ => r.clone(),
    }
}

pub fn b64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | (u32::from(c) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
