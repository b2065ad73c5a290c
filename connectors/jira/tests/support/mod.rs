//! A local Jira: `GET /rest/api/3/search/jql` paged by `nextPageToken`
//! (fields projected to those asked for, changelog embedded only with
//! `expand=changelog`, the last page with `isLast: true` and no token, as
//! Jira Cloud answers), `GET /rest/servicedeskapi/request/{key}/approval`,
//! the documented error envelopes, queued faults (429 with `Retry-After`,
//! 401, 500), and a record of every request.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use nhi_jira::{FieldMap, JiraAuth, JiraConfig};
use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
}

impl Seen {
    /// The value of query parameter `k`.
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A fault answered instead of the next request.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<String>,
}

#[derive(Default)]
pub struct Jira {
    /// Issues in full (every field, every history).
    pub issues: Vec<Value>,
    /// JSM approval lists by key.
    pub approvals: BTreeMap<String, Vec<Value>>,
    pub faults: Vec<Fault>,
    pub seen: Vec<Seen>,
    /// Histories embedded in a search result with `expand=changelog`
    /// (Jira embeds a limited number; `total` says how many there are).
    pub embed_histories: Option<usize>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<Jira>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub const EMAIL: &str = "integration@example.com";
pub const TOKEN_ENV: &str = "NHI_TEST_JIRA_TOKEN";
pub const TOKEN: &str = "test-token-not-secret";

impl Server {
    pub async fn start(jira: Jira) -> Server {
        // Every test of this binary sets the same value.
        std::env::set_var(TOKEN_ENV, TOKEN);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(jira));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, state, task }
    }

    pub fn jira(&self) -> std::sync::MutexGuard<'_, Jira> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.jira().seen.clone()
    }

    /// A config reading this server.
    pub fn config(&self, jql: &str) -> JiraConfig {
        let mut c = JiraConfig::new(
            "jira",
            "https://example.atlassian.net",
            jql,
            JiraAuth::ApiToken {
                email: EMAIL.into(),
                token_env: TOKEN_ENV.into(),
            },
            fields(),
        );
        c.test_loopback = Some(self.addr.to_string());
        c.initial_backoff_ms = 10;
        c
    }
}

/// The field mapping every test uses.
pub fn fields() -> FieldMap {
    FieldMap {
        subjects: "customfield_10040".into(),
        credentials: Some("customfield_10041".into()),
        actions: Some("customfield_10044".into()),
        entitlements: Some("labels".into()),
        assume: None,
        services: None,
        regions: None,
        starts_at: Some("customfield_10043".into()),
        expires_at: "customfield_10042".into(),
    }
}

pub fn user(id: &str) -> Value {
    json!({
        "self": format!("https://example.atlassian.net/rest/api/3/user?accountId={id}"),
        "accountId": id,
        "emailAddress": format!("{id}@example.com"),
        "displayName": id,
        "active": true,
    })
}

/// A status change history entry, as the changelog has it.
pub fn moved(n: usize, author: &str, at: &str, from: &str, to: &str) -> Value {
    json!({
        "id": format!("{}", 20000 + n),
        "author": user(author),
        "created": at,
        "items": [{"field": "status", "fieldtype": "jira", "fieldId": "status",
                   "from": "1", "fromString": from, "to": "2", "toString": to}],
    })
}

/// An issue in the documented shape.
pub fn issue(
    key: &str,
    status: &str,
    reporter: &str,
    assignee: Option<&str>,
    extra: Value,
    histories: Vec<Value>,
) -> Value {
    let id = 10000 + key.bytes().map(u32::from).sum::<u32>();
    let mut fields = json!({
        "status": {"name": status, "id": "1", "statusCategory": {"key": "indeterminate"}},
        "reporter": user(reporter),
        "assignee": assignee.map(user),
        "resolutiondate": null,
        "updated": "2026-11-02T09:15:00.000+0000",
        "summary": "Machine access",
        "description": {"type": "doc", "version": 1, "content": []},
        "customfield_10040": ["arn:aws:iam::123456789012:user/ci"],
        "customfield_10041": "AKIAEXAMPLE",
        "customfield_10042": "2027-03-31",
        "customfield_10044": "s3:GetObject",
        "labels": [],
    });
    if let (Some(f), Some(e)) = (fields.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            f.insert(k.clone(), v.clone());
        }
    }
    let total = histories.len();
    json!({
        "expand": "",
        "id": id.to_string(),
        "self": format!("https://example.atlassian.net/rest/api/3/issue/{id}"),
        "key": key,
        "fields": fields,
        "changelog": {"startAt": 0, "maxResults": total, "total": total, "histories": histories},
    })
}

/// The usual history: requested, then approved by `approver`.
pub fn approved_by(approver: &str) -> Vec<Value> {
    vec![
        moved(
            1,
            "someone",
            "2026-11-01T08:00:00.000+0000",
            "Open",
            "Waiting for approval",
        ),
        moved(
            2,
            approver,
            "2026-11-02T09:15:00.000+0000",
            "Waiting for approval",
            "Approved",
        ),
    ]
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(code, json!({"errorMessages": [message], "errors": {}}))
}

async fn handle(State(state): State<Arc<Mutex<Jira>>>, headers: HeaderMap, uri: Uri) -> Response {
    let query: Vec<(String, String)> = reqwest::Url::parse(&format!("http://x{uri}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let seen = Seen {
        path: uri.path().to_string(),
        query,
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let mut jira = state.lock().unwrap_or_else(|p| p.into_inner());
    jira.seen.push(seen.clone());
    if !jira.faults.is_empty() {
        let f = jira.faults.remove(0);
        let mut r = error(f.status, "fault injected by the test");
        if let Some(ra) = f.retry_after {
            if let Ok(v) = ra.parse() {
                r.headers_mut().insert("retry-after", v);
            }
        }
        return r;
    }
    let basic = format!("Basic {}", b64(&format!("{EMAIL}:{TOKEN}")));
    let bearer = format!("Bearer {TOKEN}");
    let auth = seen.authorization.as_deref();
    if auth != Some(basic.as_str()) && auth != Some(bearer.as_str()) {
        return error(401, "Client must be authenticated to access this resource.");
    }
    let path = seen.path.clone();
    if path == "/rest/api/3/search/jql" {
        return search(&jira, &seen);
    }
    let parts: Vec<&str> = path.split('/').collect();
    if let ["", "rest", "api", "3", "issue", key, "changelog"] = parts.as_slice() {
        return changelog(&jira, key, &seen);
    }
    if let ["", "rest", "servicedeskapi", "request", key, "approval"] = parts.as_slice() {
        return match jira.approvals.get(*key) {
            Some(values) => reply(
                StatusCode::OK,
                json!({
                    "_expands": [], "size": values.len(), "start": 0, "limit": 50,
                    "isLastPage": true, "values": values,
                }),
            ),
            None => error(404, "The request could not be found."),
        };
    }
    error(404, "not found")
}

fn search(jira: &Jira, seen: &Seen) -> Response {
    let max: usize = seen
        .param("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(50)
        .min(5000);
    let start: usize = match seen.param("nextPageToken") {
        None => 0,
        Some(t) => match t.strip_prefix("tok-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return error(400, "Invalid nextPageToken"),
        },
    };
    let wanted: Vec<&str> = seen
        .param("fields")
        .map(|f| f.split(',').collect())
        .unwrap_or_default();
    let changelog = seen
        .param("expand")
        .is_some_and(|e| e.split(',').any(|x| x == "changelog"));
    let end = start.saturating_add(max).min(jira.issues.len());
    let issues: Vec<Value> = jira.issues[start.min(end)..end]
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if let Some(f) = i.get_mut("fields").and_then(Value::as_object_mut) {
                f.retain(|k, _| wanted.contains(&k.as_str()));
            }
            if !changelog {
                if let Some(o) = i.as_object_mut() {
                    o.remove("changelog");
                }
            } else if let Some(n) = jira.embed_histories {
                if let Some(h) = i["changelog"]["histories"].as_array_mut() {
                    h.truncate(n);
                }
                i["changelog"]["maxResults"] = json!(n);
            }
            i
        })
        .collect();
    let last = end >= jira.issues.len();
    let mut page = json!({"issues": issues, "isLast": last});
    if !last {
        page["nextPageToken"] = json!(format!("tok-{end}"));
    }
    reply(StatusCode::OK, page)
}

/// `GET /rest/api/3/issue/{key}/changelog`: a page of the issue's histories.
fn changelog(jira: &Jira, key: &str, seen: &Seen) -> Response {
    let Some(issue) = jira.issues.iter().find(|i| i["key"] == key) else {
        return error(
            404,
            "Issue does not exist or you do not have permission to see it.",
        );
    };
    let all = issue["changelog"]["histories"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let num = |k: &str, d: usize| seen.param(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let start = num("startAt", 0).min(all.len());
    // Jira pages the changelog by at most 100; the tests use 2 to see paging.
    let max = num("maxResults", 100).min(2);
    let end = start.saturating_add(max).min(all.len());
    reply(
        StatusCode::OK,
        json!({
            "startAt": start, "maxResults": max, "total": all.len(),
            "isLast": end >= all.len(), "values": &all[start..end],
        }),
    )
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
