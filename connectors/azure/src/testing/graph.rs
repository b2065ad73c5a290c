//! The Microsoft Graph routes of the fake tenant, by object family: the
//! beta sign-in reports, applications and service principals (with their
//! secrets and certificates), federated credentials, app role assignments,
//! directory roles and delegated grants.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::server::{created, graph_error, no_content, ok_json, page, project, Req};
use super::tenant::{ago, Tenant};

/// Answer one authorized Graph request.
pub(super) fn route(t: &mut Tenant, r: &Req) -> Response {
    if let Some(resp) = super::entitlements::route_graph(t, r) {
        return resp;
    }
    match (r.method.as_str(), r.segs.as_slice()) {
        ("GET", ["beta", "reports", report]) => reports(t, r, report),
        ("GET", ["beta", "servicePrincipals", "microsoft.graph.agentIdentity"]) => agents(t, r),
        ("GET", ["v1.0", coll @ ("applications" | "servicePrincipals")]) => {
            list_objects(t, r, coll)
        }
        // An application addressed by its application (client) id:
        // `/applications(appId='{appId}')`, as documented.
        ("GET", ["v1.0", seg]) if app_id_key(seg).is_some() => {
            let app_id = app_id_key(seg).unwrap_or_default();
            match t.apps.iter().find(|o| o["appId"] == app_id.as_str()) {
                Some(o) => ok_json(project(o, &r.q, true)),
                None => not_found(&app_id),
            }
        }
        ("GET", ["v1.0", coll @ ("applications" | "servicePrincipals"), id]) => {
            let list: Vec<&Value> = if *coll == "applications" {
                t.apps.iter().collect()
            } else {
                t.sps.iter().chain(t.agents.iter()).collect()
            };
            match list.into_iter().find(|o| o["id"] == *id) {
                Some(o) => ok_json(project(o, &r.q, true)),
                None => not_found(id),
            }
        }
        ("PATCH", ["v1.0", coll @ ("applications" | "servicePrincipals"), id]) => {
            patch_object(t, r, coll, id)
        }
        ("POST", ["v1.0", coll @ ("applications" | "servicePrincipals"), id, "removePassword"]) => {
            remove_password(t, r, coll, id)
        }
        (
            "GET",
            [version @ ("v1.0" | "beta"), "applications", id, "federatedIdentityCredentials", fid],
        ) => {
            // Addressed by id or by name, as documented.
            match t
                .fics
                .get(*id)
                .and_then(|l| l.iter().find(|f| f["id"] == *fid || f["name"] == *fid))
            {
                Some(f) => {
                    let mut f = f.clone();
                    // A flexible credential's expression is beta only.
                    if *version == "v1.0" {
                        if let Some(o) = f.as_object_mut() {
                            o.remove("claimsMatchingExpression");
                        }
                    }
                    ok_json(f)
                }
                None => not_found(fid),
            }
        }
        ("DELETE", ["v1.0" | "beta", "applications", id, "federatedIdentityCredentials", fid]) => {
            let list = t.fics.entry(id.to_string()).or_default();
            let before = list.len();
            list.retain(|f| f["id"] != *fid && f["name"] != *fid);
            if list.len() == before {
                return not_found(fid);
            }
            no_content()
        }
        ("POST", ["v1.0" | "beta", "applications", id, "federatedIdentityCredentials"]) => {
            create_federated(t, r, id)
        }
        (
            "GET",
            [version @ ("v1.0" | "beta"), "applications", id, "federatedIdentityCredentials"],
        ) => {
            let items = t
                .fics
                .get(*id)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut f| {
                    // A flexible credential's expression is beta only.
                    if *version == "v1.0" {
                        if let Some(o) = f.as_object_mut() {
                            o.remove("claimsMatchingExpression");
                        }
                    }
                    project(&f, &r.q, false)
                })
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        (_, ["v1.0", "servicePrincipals", sp, "appRoleAssignments", rest @ ..]) => {
            app_role_assignments(t, r, sp, rest)
        }
        (_, ["v1.0", "roleManagement", "directory", coll, rest @ ..]) => {
            directory_roles(t, r, coll, rest)
        }
        ("GET", ["v1.0", "oauth2PermissionGrants"]) => {
            let items = t.grants.clone();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        _ => unsupported(r),
    }
}

/// The application id in a `applications(appId='{appId}')` segment.
fn app_id_key(seg: &str) -> Option<String> {
    let seg = seg.replace("%27", "'");
    seg.strip_prefix("applications(appId='")?
        .strip_suffix("')")
        .map(str::to_string)
}

/// Create a federated identity credential, as Graph does: `201 Created`
/// with the object (its new `id`, `description` null when not given);
/// refused with Graph's own errors when the name is taken (409
/// `Request_MultipleObjectsWithSameKeyValue`), the issuer and subject are
/// already trusted (400 `InvalidFederatedIdentityCredentialValue`), a
/// required property is missing, or the application holds 20 already.
/// The 409 and the issuer/subject 400 bodies are the ones Graph returned
/// in public reports (Azure/azure-dev#1482,
/// Azure/azure-workload-identity#434); the limit of 20 is documented
/// ("Create federatedIdentityCredential"), its error body and the
/// missing-property one are this fake's own wording.
fn create_federated(t: &mut Tenant, r: &Req, app: &str) -> Response {
    if !t.apps.iter().any(|o| o["id"] == app) {
        return not_found(app);
    }
    let body = r.body.clone().unwrap_or_default();
    let field = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    let (name, issuer, subject) = (field("name"), field("issuer"), field("subject"));
    let audiences = body["audiences"].as_array().map_or(0, Vec::len);
    let expression = !body["claimsMatchingExpression"].is_null();
    if name.is_empty() || issuer.is_empty() || (subject.is_empty() && !expression) || audiences != 1
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Federated Identity Credential must specify 'name', 'issuer', 'subject' and one 'audience'.",
        );
    }
    let list = t.fics.entry(app.to_string()).or_default();
    if list.iter().any(|f| f["name"] == name.as_str()) {
        return graph_error(
            StatusCode::CONFLICT,
            "Request_MultipleObjectsWithSameKeyValue",
            &format!("FederatedIdentityCredential with name {name} already exists."),
        );
    }
    if !subject.is_empty()
        && list
            .iter()
            .any(|f| f["issuer"] == issuer.as_str() && f["subject"] == subject.as_str())
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidFederatedIdentityCredentialValue",
            &format!("The combination of issuer and subject must be unique for the application. Issuer {issuer} and Subject: {subject} already exist."),
        );
    }
    if list.len() >= 20 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "The application can have at most 20 federated identity credentials.",
        );
    }
    t.counter += 1;
    let mut f = json!({
        "id": format!("fc000000-0000-4000-8000-{:012}", t.counter),
        "name": name, "issuer": issuer, "subject": body["subject"],
        "description": body["description"], "audiences": body["audiences"],
    });
    if expression {
        f["claimsMatchingExpression"] = body["claimsMatchingExpression"].clone();
    }
    t.fics.entry(app.to_string()).or_default().push(f.clone());
    created(&f)
}

fn not_found(id: &str) -> Response {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
    )
}

fn unsupported(r: &Req) -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("Unsupported request: {} {}", r.method, r.path),
    )
}

/// The two beta sign-in activity reports (403 or 500 under their faults).
fn reports(t: &Tenant, r: &Req, report: &str) -> Response {
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
    let items = match report {
        "servicePrincipalSignInActivities" => t.sp_activity.clone(),
        "appCredentialSignInActivities" => t.cred_activity.clone(),
        _ => return not_found(report),
    };
    page(r.next_base, r.path, &r.q, items, r.size, false)
}

/// Applications or service principals (agent identities among them, as
/// the service principals they are), projected (500 under the fault).
fn list_objects(t: &Tenant, r: &Req, coll: &str) -> Response {
    if t.directory_down {
        return graph_error(StatusCode::INTERNAL_SERVER_ERROR, "UnknownError", "");
    }
    let list: Vec<&Value> = if coll == "applications" {
        t.apps.iter().collect()
    } else if t.agents_only_in_beta {
        t.sps.iter().collect()
    } else {
        t.sps.iter().chain(t.agents.iter()).collect()
    };
    let items = list.into_iter().map(|o| project(o, &r.q, false)).collect();
    page(r.next_base, r.path, &r.q, items, r.size, false)
}

/// The beta agent identity listing, projected (its status under the fault:
/// 403 refused, 400 or 404 where the tenant or cloud has none).
fn agents(t: &Tenant, r: &Req) -> Response {
    match t.agents_refused {
        Some(403) => graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ),
        Some(s) => graph_error(
            StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST),
            "BadRequest",
            "Resource not found for the segment 'microsoft.graph.agentIdentity'.",
        ),
        None => {
            let items = t.agents.iter().map(|o| project(o, &r.q, false)).collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
    }
}

fn objects_mut<'t>(t: &'t mut Tenant, coll: &str) -> &'t mut Vec<Value> {
    if coll == "applications" {
        &mut t.apps
    } else {
        &mut t.sps
    }
}

/// PATCH of an application or service principal: `keyCredentials` sent
/// back without a kept certificate's `key` is refused, as Graph does.
fn patch_object(t: &mut Tenant, r: &Req, coll: &str, id: &str) -> Response {
    // An agent identity is a service principal too.
    let in_agents = coll == "servicePrincipals" && t.agents.iter().any(|o| o["id"] == id);
    let list = if in_agents {
        &mut t.agents
    } else {
        objects_mut(t, coll)
    };
    let Some(o) = list.iter_mut().find(|o| o["id"] == id) else {
        return not_found(id);
    };
    let Some(Value::Object(patch)) = r.body.clone() else {
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
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    "Invalid value specified for property 'key' of resource 'KeyCredential'.",
                );
            }
        }
        o[k.as_str()] = v;
    }
    no_content()
}

/// `removePassword` of one client secret by key id.
fn remove_password(t: &mut Tenant, r: &Req, coll: &str, id: &str) -> Response {
    let Some(o) = objects_mut(t, coll).iter_mut().find(|o| o["id"] == id) else {
        return not_found(id);
    };
    let key = r
        .body
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

/// `/servicePrincipals/{sp}/appRoleAssignments[/{id}]`.
fn app_role_assignments(t: &mut Tenant, r: &Req, sp: &str, rest: &[&str]) -> Response {
    match (r.method.as_str(), rest) {
        ("GET", []) => {
            let items = t
                .app_role_assignments
                .iter()
                .filter(|a| a["principalId"] == sp)
                .cloned()
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        ("GET", [aid]) => {
            match t
                .app_role_assignments
                .iter()
                .find(|a| a["principalId"] == sp && a["id"] == *aid)
            {
                Some(a) => ok_json(a.clone()),
                None => not_found(aid),
            }
        }
        ("DELETE", [aid]) => {
            let before = t.app_role_assignments.len();
            t.app_role_assignments
                .retain(|a| !(a["principalId"] == sp && a["id"] == *aid));
            if t.app_role_assignments.len() == before {
                return not_found(aid);
            }
            no_content()
        }
        ("POST", []) => {
            let b = r.body.clone().unwrap_or_default();
            t.counter += 1;
            let a = json!({
                "id": format!("bmV3LWFzc2lnbm1lbnQ{}", t.counter),
                "appRoleId": b["appRoleId"], "createdDateTime": ago(0), "principalDisplayName": null,
                "principalId": sp, "principalType": "ServicePrincipal",
                "resourceDisplayName": "Microsoft Graph", "resourceId": b["resourceId"],
            });
            t.app_role_assignments.push(a.clone());
            created(&a)
        }
        _ => unsupported(r),
    }
}

/// `/roleManagement/directory/{roleDefinitions|roleAssignments}[/{id}]`
/// (role assignments 403 under their fault).
fn directory_roles(t: &mut Tenant, r: &Req, coll: &str, rest: &[&str]) -> Response {
    match (r.method.as_str(), coll, rest) {
        ("GET", "roleDefinitions", []) => {
            let items = t
                .directory_roles
                .iter()
                .map(|o| project(o, &r.q, false))
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        ("GET", "roleAssignments", []) => {
            if t.directory_roles_forbidden {
                return graph_error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                );
            }
            let principal =
                r.q.get("$filter")
                    .and_then(|f| f.strip_prefix("principalId eq '"))
                    .map(|p| p.trim_end_matches('\'').to_string());
            let items = t
                .directory_role_assignments
                .iter()
                .filter(|a| {
                    principal
                        .as_ref()
                        .is_none_or(|p| a["principalId"] == p.as_str())
                })
                .map(|o| project(o, &r.q, false))
                .collect();
            page(r.next_base, r.path, &r.q, items, r.size, false)
        }
        ("GET", "roleAssignments", [rid]) => {
            match t
                .directory_role_assignments
                .iter()
                .find(|a| a["id"] == *rid)
            {
                Some(a) => ok_json(a.clone()),
                None => not_found(rid),
            }
        }
        ("DELETE", "roleAssignments", [rid]) => {
            let before = t.directory_role_assignments.len();
            t.directory_role_assignments.retain(|a| a["id"] != *rid);
            if t.directory_role_assignments.len() == before {
                return not_found(rid);
            }
            no_content()
        }
        ("POST", "roleAssignments", []) => {
            let mut a = r.body.clone().unwrap_or_default();
            t.counter += 1;
            a["id"] = json!(format!("bmV3LWRpcmVjdG9yeS1yb2xl{}", t.counter));
            t.directory_role_assignments.push(a.clone());
            created(&a)
        }
        _ => unsupported(r),
    }
}
