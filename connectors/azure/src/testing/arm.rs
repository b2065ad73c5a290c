//! The ARM routes of the fake tenant: Authorization (api-version
//! 2022-04-01) — role definitions and role assignments per subscription,
//! one role assignment by id (GET, DELETE, PUT), a failing subscription —
//! and Microsoft.ManagedIdentity (2024-11-30) — a user-assigned identity's
//! federated credentials, 403 under their fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::server::{created, ok_json, page, Req};
use super::tenant::Tenant;
use super::ARM;
use crate::model::{ARM_API_VERSION, MSI_API_VERSION};

fn arm_err(status: StatusCode, code: &str, message: &str) -> Response {
    let b = json!({"error": {"code": code, "message": message}});
    (
        status,
        [("content-type", "application/json")],
        b.to_string(),
    )
        .into_response()
}

/// Answer one authorized ARM request.
pub(super) fn route(t: &mut Tenant, r: &Req) -> Response {
    if let Some(resp) = super::entitlements::route_arm(t, r) {
        return resp;
    }
    let msi = r
        .segs
        .iter()
        .any(|s| s.eq_ignore_ascii_case("Microsoft.ManagedIdentity"));
    let version = if msi {
        MSI_API_VERSION
    } else {
        ARM_API_VERSION
    };
    if r.q.get("api-version").map(String::as_str) != Some(version) {
        return arm_err(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    if let ["subscriptions", sub, ..] = r.segs.as_slice() {
        if t.failing_subscriptions.contains(*sub) {
            return arm_err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "Encountered internal server error.",
            );
        }
    }
    if msi {
        return identity_federated(t, r);
    }
    match (r.method.as_str(), r.segs.as_slice()) {
        (
            "GET",
            ["subscriptions", _, "providers", "Microsoft.Authorization", "roleDefinitions"],
        ) => page(ARM, r.path, &r.q, t.role_definitions.clone(), r.size, true),
        (
            "GET",
            ["subscriptions", sub, "providers", "Microsoft.Authorization", "roleAssignments"],
        ) => role_assignments(t, r, sub),
        (m, [.., "providers", "Microsoft.Authorization", "roleAssignments", name]) => {
            role_assignment(t, r, m, name)
        }
        _ => arm_err(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            &format!("Unsupported request: {} {}", r.method, r.path),
        ),
    }
}

/// A user-assigned identity's federated credentials: the list (403 under
/// their fault), and one by id — GET, DELETE (204 when absent, as ARM
/// answers), PUT. Resource ids compare without case, as ARM does.
fn identity_federated(t: &mut Tenant, r: &Req) -> Response {
    const FIC: &str = "/federatedIdentityCredentials";
    let Some(at) = r.path.find(FIC) else {
        return arm_err(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            &format!("Unsupported request: {} {}", r.method, r.path),
        );
    };
    let identity = &r.path[..at];
    let name = r.path[at + FIC.len()..].trim_start_matches('/');
    let same = |k: &String| k.eq_ignore_ascii_case(identity);
    if t.failing_mi_fics.iter().any(same) {
        return arm_err(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            "The client does not have authorization to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read'.",
        );
    }
    let Some(items) = t.mi_fics.iter_mut().find(|(k, _)| same(k)).map(|(_, v)| v) else {
        return arm_err(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The Resource '{identity}' was not found."),
        );
    };
    let pos = items.iter().position(|f| {
        f["id"]
            .as_str()
            .is_some_and(|i| i.eq_ignore_ascii_case(r.path))
    });
    match (r.method.as_str(), name.is_empty(), pos) {
        ("GET", true, _) => page(ARM, r.path, &r.q, items.clone(), r.size, true),
        ("GET", false, Some(i)) => ok_json(items[i].clone()),
        ("DELETE", false, Some(i)) => {
            items.remove(i);
            StatusCode::OK.into_response()
        }
        ("DELETE", false, None) => StatusCode::NO_CONTENT.into_response(),
        ("PUT", false, _) => {
            let f = json!({
                "id": r.path, "name": name,
                "properties": r.body.as_ref().map(|b| b["properties"].clone()).unwrap_or_default(),
                "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
            });
            match pos {
                Some(i) => items[i] = f.clone(),
                None => items.push(f.clone()),
            }
            created(&f)
        }
        _ => arm_err(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The Resource '{}' was not found.", r.path),
        ),
    }
}

/// The role assignments visible in a subscription (its own and those at
/// management-group scope), filtered by `principalId eq '…'`.
fn role_assignments(t: &Tenant, r: &Req, sub: &str) -> Response {
    let principal =
        r.q.get("$filter")
            .and_then(|f| f.strip_prefix("principalId eq '"))
            .map(|p| p.trim_end_matches('\'').to_string());
    let items = t
        .role_assignments
        .iter()
        .filter(|a| {
            let scope = a["properties"]["scope"].as_str().unwrap_or("");
            scope.starts_with(&format!("/subscriptions/{sub}"))
                || scope.starts_with("/providers/Microsoft.Management")
        })
        .filter(|a| {
            principal
                .as_ref()
                .is_none_or(|p| a["properties"]["principalId"] == p.as_str())
        })
        .cloned()
        .collect();
    page(ARM, r.path, &r.q, items, r.size, true)
}

/// One role assignment by id: read, delete (204 when absent, as ARM
/// answers), create (409 when it exists).
fn role_assignment(t: &mut Tenant, r: &Req, m: &str, name: &str) -> Response {
    let path = r.path;
    let pos = t.role_assignments.iter().position(|a| a["id"] == path);
    match (m, pos) {
        ("GET", Some(i)) => ok_json(t.role_assignments[i].clone()),
        ("DELETE", Some(i)) => ok_json(t.role_assignments.remove(i)),
        ("DELETE", None) => StatusCode::NO_CONTENT.into_response(),
        ("PUT", None) => {
            let props = r
                .body
                .as_ref()
                .map(|b| b["properties"].clone())
                .unwrap_or_default();
            let scope = path
                .split("/providers/Microsoft.Authorization/")
                .next()
                .unwrap_or("");
            let mut p = props.clone();
            p["scope"] = json!(scope);
            let ra = json!({"id": path, "name": name, "type": "Microsoft.Authorization/roleAssignments", "properties": p});
            t.role_assignments.push(ra.clone());
            created(&ra)
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
