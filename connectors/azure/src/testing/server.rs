//! The fake tenant served over HTTP on loopback: token endpoint, Graph and
//! ARM routes, paging, projection, faults, and the request record.

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

use super::tenant::{ago, Recorded, Tenant};
use super::{ARM, AUTHORITY, CLIENT_ID, CLIENT_SECRET, GRAPH, SUBSCRIPTION, TENANT};

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

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
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

fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
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

/// `$select` projection (owners only with `$expand=owners`).
fn project(obj: &Value, q: &BTreeMap<String, String>, single: bool) -> Value {
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let select: Option<Vec<&str>> = q.get("$select").map(|s| s.split(',').collect());
    for (k, v) in map {
        if k == "owners" {
            continue;
        }
        if select.as_ref().is_some_and(|s| !s.contains(&k.as_str())) {
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
    if q.get("$expand").is_some_and(|e| e.starts_with("owners")) {
        out.insert(
            "owners".into(),
            map.get("owners").cloned().unwrap_or(json!([])),
        );
    }
    Value::Object(out)
}

/// One page of `items`; the next link repeats the query with `$skiptoken`.
fn page(
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

fn respond(t: &mut Tenant, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let raw_q = uri.query().unwrap_or("").to_string();
    let q = query_map(&raw_q);
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
        let form = query_map(&String::from_utf8_lossy(&body));
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
        return ok_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok}),
        );
    }

    let authorized = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|tok| t.issued.contains(tok));
    if !authorized {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    }
    if t.throttle_once.remove(&path) {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests",
        );
        let secs = t.retry_after_secs.unwrap_or(1).to_string();
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let size = t.page_size;
    // A hostile or broken next link: the client must not follow it.
    let next_base = if t.foreign_next_link {
        "https://graph.attacker.example"
    } else {
        GRAPH
    };
    let is_arm = segs
        .first()
        .is_some_and(|s| *s == "subscriptions" || *s == "providers");
    if is_arm {
        return arm(t, &method, &path, &segs, &q, json_body);
    }
    let not_found = |id: &str| {
        graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["beta", "reports", report]) => {
            if t.reports_forbidden {
                return graph_error(
                    StatusCode::FORBIDDEN,
                    "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                    "Neither tenant is B2C or tenant doesn't have premium license",
                );
            }
            if t.reports_down {
                return graph_error(StatusCode::INTERNAL_SERVER_ERROR, "UnknownError", "");
            }
            let items = match *report {
                "servicePrincipalSignInActivities" => t.sp_activity.clone(),
                "appCredentialSignInActivities" => t.cred_activity.clone(),
                _ => return not_found(report),
            };
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", coll @ ("applications" | "servicePrincipals")]) => {
            if t.directory_down {
                return graph_error(StatusCode::INTERNAL_SERVER_ERROR, "UnknownError", "");
            }
            let list = if *coll == "applications" {
                &t.apps
            } else {
                &t.sps
            };
            let items = list.iter().map(|o| project(o, &q, false)).collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", coll @ ("applications" | "servicePrincipals"), id]) => {
            let list = if *coll == "applications" {
                &t.apps
            } else {
                &t.sps
            };
            match list.iter().find(|o| o["id"] == *id) {
                Some(o) => ok_json(project(o, &q, true)),
                None => not_found(id),
            }
        }
        ("PATCH", ["v1.0", coll @ ("applications" | "servicePrincipals"), id]) => {
            let list = if *coll == "applications" {
                &mut t.apps
            } else {
                &mut t.sps
            };
            let Some(o) = list.iter_mut().find(|o| o["id"] == *id) else {
                return not_found(id);
            };
            let Some(Value::Object(patch)) = json_body else {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Empty Payload. JSON content expected.",
                );
            };
            for (k, v) in patch {
                if k == "keyCredentials" {
                    // Graph rejects a kept certificate sent back without its key.
                    if v.as_array()
                        .is_some_and(|l| l.iter().any(|c| c["key"].is_null()))
                    {
                        return graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", "Invalid value specified for property 'key' of resource 'KeyCredential'.");
                    }
                }
                o[k.as_str()] = v;
            }
            no_content()
        }
        ("POST", ["v1.0", coll @ ("applications" | "servicePrincipals"), id, "removePassword"]) => {
            let list = if *coll == "applications" {
                &mut t.apps
            } else {
                &mut t.sps
            };
            let Some(o) = list.iter_mut().find(|o| o["id"] == *id) else {
                return not_found(id);
            };
            let key = json_body
                .as_ref()
                .and_then(|b| b["keyId"].as_str())
                .unwrap_or("")
                .to_string();
            let creds = o["passwordCredentials"].as_array_mut();
            match creds {
                Some(l) if l.iter().any(|c| c["keyId"] == key.as_str()) => {
                    l.retain(|c| c["keyId"] != key.as_str());
                    no_content()
                }
                _ => graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "No password credential found with keyId.",
                ),
            }
        }
        ("GET", ["v1.0", "applications", id, "federatedIdentityCredentials", fid]) => {
            match t
                .fics
                .get(*id)
                .and_then(|l| l.iter().find(|f| f["id"] == *fid))
            {
                Some(f) => ok_json(f.clone()),
                None => not_found(fid),
            }
        }
        ("DELETE", ["v1.0", "applications", id, "federatedIdentityCredentials", fid]) => {
            let list = t.fics.entry(id.to_string()).or_default();
            let before = list.len();
            list.retain(|f| f["id"] != *fid);
            if list.len() == before {
                return not_found(fid);
            }
            no_content()
        }
        ("POST", ["v1.0", "applications", id, "federatedIdentityCredentials"]) => {
            let mut f = json_body.unwrap_or_default();
            t.counter += 1;
            f["id"] = json!(format!("fc000000-0000-4000-8000-{:012}", t.counter));
            t.fics.entry(id.to_string()).or_default().push(f.clone());
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                f.to_string(),
            )
                .into_response()
        }
        ("GET", ["v1.0", "applications", id, "federatedIdentityCredentials"]) => {
            let items = t.fics.get(*id).cloned().unwrap_or_default();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "servicePrincipals", id, "appRoleAssignments"]) => {
            let items = t
                .app_role_assignments
                .iter()
                .filter(|a| a["principalId"] == *id)
                .cloned()
                .collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "servicePrincipals", sp, "appRoleAssignments", aid]) => {
            match t
                .app_role_assignments
                .iter()
                .find(|a| a["principalId"] == *sp && a["id"] == *aid)
            {
                Some(a) => ok_json(a.clone()),
                None => not_found(aid),
            }
        }
        ("DELETE", ["v1.0", "servicePrincipals", sp, "appRoleAssignments", aid]) => {
            let before = t.app_role_assignments.len();
            t.app_role_assignments
                .retain(|a| !(a["principalId"] == *sp && a["id"] == *aid));
            if t.app_role_assignments.len() == before {
                return not_found(aid);
            }
            no_content()
        }
        ("POST", ["v1.0", "servicePrincipals", sp, "appRoleAssignments"]) => {
            let b = json_body.unwrap_or_default();
            t.counter += 1;
            let a = json!({
                "id": format!("bmV3LWFzc2lnbm1lbnQ{}", t.counter), "deletedDateTime": null,
                "appRoleId": b["appRoleId"], "createdDateTime": ago(0), "principalDisplayName": null,
                "principalId": sp, "principalType": "ServicePrincipal",
                "resourceDisplayName": "Microsoft Graph", "resourceId": b["resourceId"],
            });
            t.app_role_assignments.push(a.clone());
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                a.to_string(),
            )
                .into_response()
        }
        ("GET", ["v1.0", "roleManagement", "directory", "roleDefinitions"]) => {
            let items = t
                .directory_roles
                .iter()
                .map(|o| project(o, &q, false))
                .collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "roleManagement", "directory", "roleAssignments"]) => {
            if t.directory_roles_forbidden {
                return graph_error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                );
            }
            let principal = q
                .get("$filter")
                .and_then(|f| f.strip_prefix("principalId eq '"))
                .map(|p| p.trim_end_matches('\'').to_string());
            let items = t
                .directory_role_assignments
                .iter()
                .filter(|r| {
                    principal
                        .as_ref()
                        .is_none_or(|p| r["principalId"] == p.as_str())
                })
                .map(|o| project(o, &q, false))
                .collect();
            page(next_base, &path, &q, items, size, false)
        }
        ("GET", ["v1.0", "roleManagement", "directory", "roleAssignments", rid]) => {
            match t
                .directory_role_assignments
                .iter()
                .find(|r| r["id"] == *rid)
            {
                Some(r) => ok_json(r.clone()),
                None => not_found(rid),
            }
        }
        ("DELETE", ["v1.0", "roleManagement", "directory", "roleAssignments", rid]) => {
            let before = t.directory_role_assignments.len();
            t.directory_role_assignments.retain(|r| r["id"] != *rid);
            if t.directory_role_assignments.len() == before {
                return not_found(rid);
            }
            no_content()
        }
        ("POST", ["v1.0", "roleManagement", "directory", "roleAssignments"]) => {
            let mut r = json_body.unwrap_or_default();
            t.counter += 1;
            r["id"] = json!(format!("bmV3LWRpcmVjdG9yeS1yb2xl{}", t.counter));
            t.directory_role_assignments.push(r.clone());
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                r.to_string(),
            )
                .into_response()
        }
        ("GET", ["v1.0", "oauth2PermissionGrants"]) => {
            let items = t.grants.clone();
            page(next_base, &path, &q, items, size, false)
        }
        _ => graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Unsupported request: {method} {path}"),
        ),
    }
}

fn arm(
    t: &mut Tenant,
    method: &Method,
    path: &str,
    segs: &[&str],
    q: &BTreeMap<String, String>,
    body: Option<Value>,
) -> Response {
    let arm_err = |status: StatusCode, code: &str, message: &str| {
        let b = json!({"error": {"code": code, "message": message}});
        (
            status,
            [("content-type", "application/json")],
            b.to_string(),
        )
            .into_response()
    };
    if q.get("api-version").map(String::as_str) != Some("2022-04-01") {
        return arm_err(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    if let ["subscriptions", sub, ..] = segs {
        if t.failing_subscriptions.contains(*sub) {
            return arm_err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Encountered internal server error.",
            );
        }
    }
    let size = t.page_size;
    match (method.as_str(), segs) {
        (
            "GET",
            ["subscriptions", _, "providers", "Microsoft.Authorization", "roleDefinitions"],
        ) => page(ARM, path, q, t.role_definitions.clone(), size, true),
        (
            "GET",
            ["subscriptions", sub, "providers", "Microsoft.Authorization", "roleAssignments"],
        ) => {
            let principal = q
                .get("$filter")
                .and_then(|f| f.strip_prefix("principalId eq '"))
                .map(|p| p.trim_end_matches('\'').to_string());
            let items = t
                .role_assignments
                .iter()
                .filter(|r| {
                    let scope = r["properties"]["scope"].as_str().unwrap_or("");
                    scope.starts_with(&format!("/subscriptions/{sub}"))
                        || scope.starts_with("/providers/Microsoft.Management")
                })
                .filter(|r| {
                    principal
                        .as_ref()
                        .is_none_or(|p| r["properties"]["principalId"] == p.as_str())
                })
                .cloned()
                .collect();
            page(ARM, path, q, items, size, true)
        }
        (m, [.., "providers", "Microsoft.Authorization", "roleAssignments", name]) => {
            let pos = t.role_assignments.iter().position(|r| r["id"] == path);
            match (m, pos) {
                ("GET", Some(i)) => ok_json(t.role_assignments[i].clone()),
                ("DELETE", Some(i)) => ok_json(t.role_assignments.remove(i)),
                ("DELETE", None) => StatusCode::NO_CONTENT.into_response(),
                ("PUT", None) => {
                    let props = body.map(|b| b["properties"].clone()).unwrap_or_default();
                    let scope = path
                        .split("/providers/Microsoft.Authorization/")
                        .next()
                        .unwrap_or("");
                    let mut p = props.clone();
                    p["scope"] = json!(scope);
                    let ra = json!({"id": path, "name": name, "type": "Microsoft.Authorization/roleAssignments", "properties": p});
                    t.role_assignments.push(ra.clone());
                    (
                        StatusCode::CREATED,
                        [("content-type", "application/json")],
                        ra.to_string(),
                    )
                        .into_response()
                }
                ("PUT", Some(_)) => arm_err(
                    StatusCode::CONFLICT,
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ),
                _ => arm_err(
                    StatusCode::NOT_FOUND,
                    "RoleAssignmentNotFound",
                    &format!("The role assignment '{name}' is not found."),
                ),
            }
        }
        _ => arm_err(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            &format!("Unsupported request: {method} {path}"),
        ),
    }
}
