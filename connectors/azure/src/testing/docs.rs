//! Microsoft's published response examples the fake tenant is built from
//! (`testdata/docs/*.json`, each `{"source", "type", "example"}`), and the
//! drift check: every object the fake serves for a resource type may use
//! only fields — recursively, with compatible JSON types — that the
//! documented examples of that type show.
//!
//! A documented value `{"@odata.type": "microsoft.graph.X"}` (as resource
//! pages write a nested type) stands for the examples of type `X`;
//! relationships served by `$expand` (`owners`, `sponsors`) stand for the
//! directory objects documented (`user`, `directoryObject`). OData
//! annotations (`@odata.*`) are not fields and are not checked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::tenant::Tenant;

/// Documented examples by resource type.
pub type Examples = BTreeMap<String, Vec<Value>>;

/// Fields whose elements are documented as a type of their own:
/// relationships the fake serves by `$expand` (the directory objects they
/// hold), and an ARM role definition's `permissions` blocks (documented
/// with their `notActions` on the role-definitions page, not in the REST
/// examples, whose blocks exclude nothing).
const RELATIONS: [(&str, &[&str]); 3] = [
    ("owners", &["user", "directoryObject"]),
    ("sponsors", &["user", "directoryObject"]),
    ("permissions", &["roleDefinitionPermission"]),
];

/// The folder of the documented examples.
pub fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/docs")
}

/// Every documented example, by type (a collection response contributes
/// each of its items).
pub fn examples() -> Result<Examples, String> {
    let mut out = Examples::new();
    let dir = folder();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let (Some(kind), Some(_), Some(example)) = (
            doc["type"].as_str(),
            doc["source"].as_str(),
            doc.get("example"),
        ) else {
            return Err(format!(
                "{}: needs \"source\", \"type\" and \"example\"",
                path.display()
            ));
        };
        let items = match example.get("value").and_then(Value::as_array) {
            Some(list) => list.clone(),
            None => vec![example.clone()],
        };
        out.entry(kind.to_string()).or_default().extend(items);
    }
    Ok(out)
}

/// What the fake serves, by documented type (its demo state, before any
/// write).
pub fn served(t: &Tenant) -> Vec<(&'static str, &Value)> {
    let mut out: Vec<(&'static str, &Value)> = Vec::new();
    out.extend(t.apps.iter().map(|o| ("application", o)));
    out.extend(t.sps.iter().map(|o| ("servicePrincipal", o)));
    out.extend(t.agents.iter().map(|o| ("agentIdentity", o)));
    out.extend(
        t.fics
            .values()
            .flatten()
            .map(|o| ("federatedIdentityCredential", o)),
    );
    out.extend(
        t.mi_fics
            .values()
            .flatten()
            .map(|o| ("managedIdentityFederatedIdentityCredential", o)),
    );
    out.extend(
        t.app_role_assignments
            .iter()
            .map(|o| ("appRoleAssignment", o)),
    );
    out.extend(t.grants.iter().map(|o| ("oAuth2PermissionGrant", o)));
    out.extend(
        t.sp_activity
            .iter()
            .map(|o| ("servicePrincipalSignInActivity", o)),
    );
    out.extend(
        t.cred_activity
            .iter()
            .map(|o| ("appCredentialSignInActivity", o)),
    );
    out.extend(
        t.directory_roles
            .iter()
            .map(|o| ("unifiedRoleDefinition", o)),
    );
    out.extend(
        t.directory_role_assignments
            .iter()
            .map(|o| ("unifiedRoleAssignment", o)),
    );
    out.extend(t.role_definitions.iter().map(|o| ("roleDefinition", o)));
    out.extend(t.role_assignments.iter().map(|o| ("roleAssignment", o)));
    out.extend(t.groups.iter().map(|o| ("group", o)));
    out.extend(
        t.group_app_role_assignments
            .iter()
            .map(|o| ("appRoleAssignment", o)),
    );
    out.extend(
        t.directory_eligibility
            .iter()
            .map(|o| ("unifiedRoleEligibilityScheduleInstance", o)),
    );
    out.extend(
        t.rbac_eligibility
            .iter()
            .map(|o| ("armRoleEligibilityScheduleInstance", o)),
    );
    out
}

/// Every place the fake departs from the documented shapes, as
/// `type id: path: what` (`servicePrincipal b1…: madeUpField: a field no
/// documented example shows`). Empty: no drift.
pub fn drift(t: &Tenant, docs: &Examples) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, obj) in served(t) {
        let id = obj["id"].as_str().unwrap_or("?");
        let Some(shown) = docs.get(kind) else {
            out.push(format!("{kind} {id}: no documented example of this type"));
            continue;
        };
        let shown: Vec<&Value> = shown.iter().collect();
        check(&format!("{kind} {id}:"), obj, &shown, docs, &mut out);
    }
    out
}

/// A documented value, nested type references replaced by that type's
/// examples.
fn resolve<'d>(v: &'d Value, docs: &'d Examples) -> Vec<&'d Value> {
    if let Some(m) = v.as_object() {
        if m.len() == 1 {
            if let Some(t) = m.get("@odata.type").and_then(Value::as_str) {
                let name = t
                    .trim_start_matches('#')
                    .trim_start_matches("microsoft.graph.");
                return docs
                    .get(name)
                    .map(|l| l.iter().collect())
                    .unwrap_or_default();
            }
        }
    }
    vec![v]
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whether a served scalar fits a documented one: the same JSON type, a
/// documented null (type not shown), or a resource page's type name in
/// place of a value (`"Boolean"`, `"Integer"`).
fn scalar_fits(served: &Value, doc: &Value) -> bool {
    match (served, doc) {
        (_, Value::Null) => true,
        (Value::Bool(_), Value::String(s)) => s == "Boolean",
        (Value::Number(_), Value::String(s)) => {
            matches!(s.as_str(), "Integer" | "Int32" | "Int64" | "Double")
        }
        _ => kind(served) == kind(doc),
    }
}

/// The path of field `k` under `path` (`servicePrincipal b1…: keyCredentials[0].keyId`).
fn child(path: &str, k: &str) -> String {
    if path.ends_with(':') {
        format!("{path} {k}")
    } else {
        format!("{path}.{k}")
    }
}

/// `path: what` (the root already ends with its colon).
fn say(path: &str, what: &str) -> String {
    if path.ends_with(':') {
        format!("{path} {what}")
    } else {
        format!("{path}: {what}")
    }
}

fn check(path: &str, served: &Value, shown: &[&Value], docs: &Examples, out: &mut Vec<String>) {
    let shown: Vec<&Value> = shown.iter().flat_map(|v| resolve(v, docs)).collect();
    match served {
        Value::Null => {}
        Value::Object(m) => {
            let objects: Vec<&serde_json::Map<String, Value>> =
                shown.iter().filter_map(|v| v.as_object()).collect();
            if objects.is_empty() {
                out.push(say(path, "an object where the docs show no object"));
                return;
            }
            for (k, v) in m {
                if k.starts_with("@odata.") {
                    continue;
                }
                let mut shown_k: Vec<&Value> = objects.iter().filter_map(|o| o.get(k)).collect();
                let related: Vec<Value>;
                if let Some((_, types)) = RELATIONS.iter().find(|(r, _)| r == k) {
                    related = types
                        .iter()
                        .filter_map(|t| docs.get(*t))
                        .flatten()
                        .map(|x| Value::Array(vec![x.clone()]))
                        .collect();
                    shown_k.extend(related.iter());
                }
                if shown_k.is_empty() {
                    out.push(say(&child(path, k), "a field no documented example shows"));
                    continue;
                }
                check(&child(path, k), v, &shown_k, docs, out);
            }
        }
        Value::Array(items) => {
            let arrays: Vec<&Vec<Value>> = shown.iter().filter_map(|v| v.as_array()).collect();
            if arrays.is_empty() && !shown.iter().all(|v| v.is_null()) {
                out.push(say(path, "an array where the docs show none"));
                return;
            }
            let elements: Vec<&Value> = arrays.iter().flat_map(|a| a.iter()).collect();
            for (i, item) in items.iter().enumerate() {
                if elements.is_empty() {
                    out.push(say(
                        &format!("{path}[{i}]"),
                        "elements no documented example shows",
                    ));
                    break;
                }
                check(&format!("{path}[{i}]"), item, &elements, docs, out);
            }
        }
        scalar => {
            if !shown.iter().any(|d| scalar_fits(scalar, d)) {
                let mut doc_kinds: Vec<&str> = shown.iter().map(|d| kind(d)).collect();
                doc_kinds.dedup();
                out.push(say(
                    path,
                    &format!(
                        "a {} where the docs show {}",
                        kind(scalar),
                        doc_kinds.join(" or ")
                    ),
                ));
            }
        }
    }
}
