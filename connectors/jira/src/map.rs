//! One Jira issue (as the search API returns it, changelog expanded) and,
//! with JSM, its approval list, turned into approvals — or into an
//! [`Unmapped`] naming the key and the field when a mapped field is missing
//! or malformed. Nothing here trusts the issue's shape: every value is
//! looked up and checked, and a surprise becomes a message, never a panic.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use nhi_contract::{time, Approval, Scope, Timestamp, Unmapped};
use serde_json::Value;

use crate::config::JiraConfig;

/// What one issue turned into.
#[derive(Debug, PartialEq)]
pub(crate) enum Mapped {
    /// One approval per subject it names.
    Approvals(Vec<Approval>),
    /// It could not be mapped.
    Unmapped(Unmapped),
    /// It approves nothing (waiting for approval, cancelled before approval).
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Approved,
    Done,
    Cancelled,
    Rejected,
    Other,
}

/// The longest value quoted in a message.
const QUOTE: usize = 80;

/// `value` as shown in a problem message, shortened.
fn quote(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > QUOTE {
        let cut: String = s.chars().take(QUOTE).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The issue's key, if it has a usable one.
pub(crate) fn issue_key(issue: &Value) -> Option<&str> {
    issue
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && k.len() <= 255)
}

/// `{base_url}/browse/{key}`.
pub(crate) fn browse_url(config: &JiraConfig, key: &str) -> String {
    format!("{}/browse/{key}", config.base_url.trim_end_matches('/'))
}

/// Map one issue. `jsm` is its JSM approval list (`values` of
/// `/rest/servicedeskapi/request/{key}/approval`) when JSM approvals are used.
pub(crate) fn map_issue(config: &JiraConfig, issue: &Value, jsm: Option<&[Value]>) -> Mapped {
    let Some(key) = issue_key(issue) else {
        let id = issue.get("id").map(quote).unwrap_or_else(|| "?".into());
        return Mapped::Unmapped(Unmapped {
            reference: format!("jira issue id {id}"),
            url: None,
            subjects: Vec::new(),
            problem: "key: missing".into(),
        });
    };
    let url = browse_url(config, key);
    let unmapped = |subjects: &[String], problem: String| {
        Mapped::Unmapped(Unmapped {
            reference: key.to_string(),
            url: Some(url.clone()),
            subjects: subjects.to_vec(),
            problem,
        })
    };
    let empty = serde_json::Map::new();
    let fields = issue
        .get("fields")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let f = &config.fields;

    let subjects = match read_list(fields, &f.subjects) {
        Ok(Some(s)) if !s.is_empty() => s,
        Ok(_) => return unmapped(&[], format!("{}: missing (no subject ids)", f.subjects)),
        Err(e) => return unmapped(&[], e),
    };

    let Some(status) = fields
        .get("status")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
    else {
        return unmapped(&subjects, "status: missing".into());
    };
    let class = classify(config, status);
    if class == Class::Other {
        return Mapped::Nothing;
    }

    let histories = histories(issue);
    let decision = if config.use_jsm_approvals {
        jsm_decision(jsm.unwrap_or(&[]))
    } else {
        changelog_decision(config, &histories)
    };
    let (approver, approved_at) = match decision {
        Ok(Some(d)) => d,
        // Never approved: a cancelled or rejected request approves nothing.
        Ok(None) if matches!(class, Class::Cancelled | Class::Rejected) => return Mapped::Nothing,
        Ok(None) if config.use_jsm_approvals => {
            return unmapped(
                &subjects,
                format!("JSM approval: no approved decision recorded, yet status is {status:?}"),
            )
        }
        Ok(None) => {
            return unmapped(
                &subjects,
                format!(
                    "changelog: no transition into an approved status (approver unknown), yet status is {status:?}"
                ),
            )
        }
        Err(e) => return unmapped(&subjects, e),
    };

    let Some(requester) = fields.get("reporter").and_then(user_id) else {
        return unmapped(&subjects, "reporter: missing".into());
    };
    let assignee = fields.get("assignee").and_then(user_id);

    let expires = match read_date(fields, &f.expires_at, true) {
        Ok(Some(t)) => t,
        Ok(None) => return unmapped(&subjects, format!("{}: missing (no expiry)", f.expires_at)),
        Err(e) => return unmapped(&subjects, e),
    };
    let starts_at = match f.starts_at.as_deref().map(|s| read_date(fields, s, false)) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return unmapped(&subjects, e),
        None => None,
    };
    if let (Some(s), Some(name)) = (starts_at, f.starts_at.as_deref()) {
        if expires <= s {
            return unmapped(
                &subjects,
                format!(
                    "{}: expiry {expires} is not after the start ({name}: {s})",
                    f.expires_at
                ),
            );
        }
    }
    let longest = time::add(approved_at, time::days(config.max_validity_days));
    if expires > longest {
        return unmapped(
            &subjects,
            format!(
                "{}: expiry {expires} is more than max_validity_days = {} after the approval ({approved_at})",
                f.expires_at, config.max_validity_days
            ),
        );
    }
    let mut lists: [Vec<String>; 6] = Default::default();
    let optional = [
        &f.credentials,
        &f.actions,
        &f.entitlements,
        &f.assume,
        &f.services,
        &f.regions,
    ];
    for (slot, field) in lists.iter_mut().zip(optional) {
        if let Some(field) = field {
            match read_list(fields, field) {
                Ok(v) => *slot = v.unwrap_or_default(),
                Err(e) => return unmapped(&subjects, e),
            }
        }
    }
    let [credentials, actions, entitlements, assume, services, regions] = lists;

    let transition = |names: &[String]| last_transition_into(&histories, names);
    let resolved = match read_date(fields, "resolutiondate", false) {
        Ok(t) => t,
        Err(e) => return unmapped(&subjects, e),
    };
    let (expires_at, revoked_at) = match class {
        Class::Approved | Class::Other => (expires, None),
        // The task is finished: access ends when the ticket was resolved.
        Class::Done => match resolved.or_else(|| transition(&config.statuses.done)) {
            Some(end) => (expires.min(end), None),
            None => {
                return unmapped(
                    &subjects,
                    format!("resolutiondate: missing, yet status is {status:?}"),
                )
            }
        },
        Class::Cancelled | Class::Rejected => {
            let names = if class == Class::Cancelled {
                &config.statuses.cancelled
            } else {
                &config.statuses.rejected
            };
            let updated = read_date(fields, "updated", false).ok().flatten();
            match transition(names).or(resolved).or(updated) {
                Some(t) => (expires, Some(t)),
                None => {
                    return unmapped(
                        &subjects,
                        format!("changelog: no time for the move to {status:?}"),
                    )
                }
            }
        }
    };

    let scope = Scope {
        actions,
        entitlements,
        assume,
        services,
        regions,
    };
    let many = subjects.len() > 1;
    let approvals = subjects
        .iter()
        .map(|subject| Approval {
            id: if many {
                format!("jira:{key}:{subject}")
            } else {
                format!("jira:{key}")
            },
            subject: subject.clone(),
            credentials: credentials.clone(),
            scope: scope.clone(),
            requester: requester.clone(),
            approver: approver.clone(),
            assignee: assignee.clone(),
            approved_at,
            starts_at,
            expires_at,
            revoked_at,
            reference: Some(key.to_string()),
            emergency: None,
            source: format!("jira:{key}"),
            url: Some(url.clone()),
            role: None,
            issue_to: None,
        })
        .collect();
    Mapped::Approvals(approvals)
}

fn classify(config: &JiraConfig, status: &str) -> Class {
    let s = &config.statuses;
    let is = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case(status));
    if is(&s.approved) {
        Class::Approved
    } else if is(&s.done) {
        Class::Done
    } else if is(&s.cancelled) {
        Class::Cancelled
    } else if is(&s.rejected) {
        Class::Rejected
    } else {
        Class::Other
    }
}

/// Jira's own id of a user: the Cloud `accountId`, else (Server / Data
/// Center) `name`, else the email. The same rule for requester, approver
/// and assignee, so separation of duties compares like with like.
fn user_id(user: &Value) -> Option<String> {
    ["accountId", "name", "emailAddress"]
        .iter()
        .find_map(|k| user.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A status change: (author, when, from, to).
struct Move<'a> {
    author: Option<String>,
    at: Option<Timestamp>,
    from: &'a str,
    to: &'a str,
}

fn histories(issue: &Value) -> Vec<Move<'_>> {
    let mut out = Vec::new();
    let list = issue
        .get("changelog")
        .and_then(|c| c.get("histories"))
        .and_then(Value::as_array);
    for h in list.into_iter().flatten() {
        let author = h.get("author").and_then(user_id);
        let at = h
            .get("created")
            .and_then(Value::as_str)
            .and_then(parse_time);
        let items = h.get("items").and_then(Value::as_array);
        for i in items.into_iter().flatten() {
            if i.get("field").and_then(Value::as_str) != Some("status") {
                continue;
            }
            out.push(Move {
                author: author.clone(),
                at,
                from: i.get("fromString").and_then(Value::as_str).unwrap_or(""),
                to: i.get("toString").and_then(Value::as_str).unwrap_or(""),
            });
        }
    }
    // Jira returns histories oldest first, but order by time to be sure.
    out.sort_by_key(|m| m.at);
    out
}

fn among(names: &[String], s: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(s))
}

/// When the issue last moved into one of `names`.
fn last_transition_into(histories: &[Move<'_>], names: &[String]) -> Option<Timestamp> {
    histories
        .iter()
        .rev()
        .find(|m| among(names, m.to))
        .and_then(|m| m.at)
}

/// The approver and time of the last move from a status that is neither
/// approved nor done into an approved one (a move between two approved
/// statuses is the assignee starting work, not an approval).
fn changelog_decision(
    config: &JiraConfig,
    histories: &[Move<'_>],
) -> Result<Option<(String, Timestamp)>, String> {
    let s = &config.statuses;
    let Some(m) = histories.iter().rev().find(|m| {
        among(&s.approved, m.to) && !among(&s.approved, m.from) && !among(&s.done, m.from)
    }) else {
        return Ok(None);
    };
    match (&m.author, m.at) {
        (Some(a), Some(t)) => Ok(Some((a.clone(), t))),
        (None, _) => Err(format!("changelog: the move to {:?} has no author", m.to)),
        (_, None) => Err(format!(
            "changelog: the move to {:?} has no valid time",
            m.to
        )),
    }
}

/// The approver and completion time of the last approved JSM approval.
fn jsm_decision(values: &[Value]) -> Result<Option<(String, Timestamp)>, String> {
    let mut best: Option<(String, Timestamp)> = None;
    for v in values {
        if v.get("finalDecision").and_then(Value::as_str) != Some("approved") {
            continue;
        }
        let at = v
            .get("completedDate")
            .and_then(jsm_date)
            .ok_or_else(|| "JSM approval: approved without a valid completedDate".to_string())?;
        let approver = v
            .get("approvers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| a.get("approverDecision").and_then(Value::as_str) == Some("approved"))
            .and_then(|a| a.get("approver"))
            .and_then(user_id)
            .ok_or_else(|| {
                "JSM approval: approved, but no approver decided \"approved\"".to_string()
            })?;
        if best.as_ref().is_none_or(|(_, t)| at >= *t) {
            best = Some((approver, at));
        }
    }
    Ok(best)
}

/// A JSM date object: `epochMillis`, else `iso8601`.
fn jsm_date(d: &Value) -> Option<Timestamp> {
    let t = match d.get("epochMillis").and_then(Value::as_i64) {
        Some(ms) => Utc.timestamp_millis_opt(ms).single(),
        None => d
            .get("iso8601")
            .and_then(Value::as_str)
            .and_then(parse_time),
    }?;
    time::check(t).ok()
}

/// A Jira date-time: RFC 3339, or Jira's own `2024-05-01T10:00:00.000+0000`.
fn parse_time(s: &str) -> Option<Timestamp> {
    let t = DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()?
        .with_timezone(&Utc);
    time::check(t).ok()
}

/// A date field: a date-time, or a date (`2026-03-31`, a date picker),
/// taken as the start of that day UTC — or, for an expiry
/// (`end_of_day`), the end of it: "valid until the 31st" includes the 31st.
fn read_date(
    fields: &serde_json::Map<String, Value>,
    field: &str,
    end_of_day: bool,
) -> Result<Option<Timestamp>, String> {
    let v = match fields.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let bad = || format!("{field}: {} is not a date", quote(v));
    let s = v.as_str().map(str::trim).ok_or_else(bad)?;
    if s.is_empty() {
        return Ok(None);
    }
    if let Some(t) = parse_time(s) {
        return Ok(Some(t));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
    let d = if end_of_day {
        d.succ_opt().ok_or_else(bad)?
    } else {
        d
    };
    let t = Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN));
    time::check(t)
        .map(Some)
        .map_err(|e| format!("{field}: {e}"))
}

/// A list field: a Jira multi-value field (strings, options `{value}`,
/// users / components `{name}`), text separated by commas or newlines, or
/// a rich-text (ADF) document holding such text. Absent or null: `None`.
fn read_list(
    fields: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, String> {
    let v = match fields.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let bad = || format!("{field}: {} is not a list of ids", quote(v));
    let mut out = Vec::new();
    match v {
        Value::String(s) => split_into(s, &mut out),
        Value::Array(items) => {
            for i in items {
                match i {
                    Value::String(s) => split_into(s, &mut out),
                    Value::Object(o) => {
                        let s = ["value", "name", "key"]
                            .iter()
                            .find_map(|k| o.get(*k).and_then(Value::as_str))
                            .ok_or_else(bad)?;
                        split_into(s, &mut out);
                    }
                    _ => return Err(bad()),
                }
            }
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("doc") => {
            let mut text = String::new();
            adf_text(v, &mut text, 0);
            split_into(&text, &mut out);
        }
        Value::Object(o) => {
            let s = o.get("value").and_then(Value::as_str).ok_or_else(bad)?;
            split_into(s, &mut out);
        }
        _ => return Err(bad()),
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    Ok(Some(out))
}

fn split_into(s: &str, out: &mut Vec<String>) {
    out.extend(
        s.split([',', '\n', '\r'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    );
}

/// The text of an Atlassian Document Format node, one line per block.
/// Depth-bounded: a hostile document cannot exhaust the stack.
fn adf_text(node: &Value, out: &mut String, depth: usize) {
    if depth > 32 {
        return;
    }
    if let Some(t) = node.get("text").and_then(Value::as_str) {
        out.push_str(t);
    }
    if node.get("type").and_then(Value::as_str) == Some("hardBreak") {
        out.push('\n');
    }
    if let Some(children) = node.get("content").and_then(Value::as_array) {
        for c in children {
            adf_text(c, out, depth + 1);
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn lists_from_every_shape_jira_uses() {
        let f = fields(json!({
            "t": "a, b\nc",
            "m": ["a", {"value": "b"}, {"name": "c"}],
            "adf": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "a"}]},
                {"type": "paragraph", "content": [{"type": "text", "text": "b,c"}]}]},
            "n": 5,
        }));
        let abc = Some(vec!["a".to_string(), "b".into(), "c".into()]);
        assert_eq!(read_list(&f, "t"), Ok(abc.clone()));
        assert_eq!(read_list(&f, "m"), Ok(abc.clone()));
        assert_eq!(read_list(&f, "adf"), Ok(abc));
        assert_eq!(read_list(&f, "x"), Ok(None));
        assert_eq!(read_list(&f, "n"), Err("n: 5 is not a list of ids".into()));
    }

    #[test]
    fn dates_jira_writes() {
        let f = fields(json!({
            "d": "2026-03-31",
            "t": "2026-03-31T10:00:00.000+0200",
            "bad": "next tuesday",
            "far": "+262142-01-01T00:00:00Z",
        }));
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
        };
        assert_eq!(read_date(&f, "d", false), Ok(at("2026-03-31T00:00:00Z")));
        assert_eq!(read_date(&f, "d", true), Ok(at("2026-04-01T00:00:00Z")));
        assert_eq!(read_date(&f, "t", true), Ok(at("2026-03-31T08:00:00Z")));
        assert_eq!(
            read_date(&f, "bad", true),
            Err("bad: \"next tuesday\" is not a date".into())
        );
        assert!(read_date(&f, "far", true).is_err());
    }

    mod no_panic {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON, a few levels deep, with the strings Jira code looks at.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                prop_oneof![
                    Just("Approved".to_string()),
                    Just("Done".to_string()),
                    Just("Canceled".to_string()),
                    Just("status".to_string()),
                    Just("2026-03-31".to_string()),
                    Just("+262142-01-01T00:00:00Z".to_string()),
                    Just("2026-11-02T09:15:00.000+0000".to_string()),
                    ".{0,12}",
                ]
                .prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("name".to_string()),
                            Just("accountId".to_string()),
                            Just("histories".to_string()),
                            Just("items".to_string()),
                            Just("field".to_string()),
                            Just("toString".to_string()),
                            Just("fromString".to_string()),
                            Just("created".to_string()),
                            Just("author".to_string()),
                            Just("type".to_string()),
                            Just("content".to_string()),
                            Just("text".to_string()),
                            Just("value".to_string()),
                            Just("finalDecision".to_string()),
                            Just("approvers".to_string()),
                            Just("completedDate".to_string()),
                            Just("epochMillis".to_string()),
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn config() -> ProptestConfig {
            let cases = std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(256);
            ProptestConfig {
                cases,
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        proptest! {
            #![proptest_config(config())]
            /// Whatever a server sends in an issue, mapping it answers.
            #[test]
            fn mapping_any_issue_never_panics(
                status in any_json(), subjects in any_json(), expiry in any_json(),
                changelog in any_json(), jsm in prop::collection::vec(any_json(), 0..3),
                reporter in any_json(), resolved in any_json(),
            ) {
                let issue = json!({
                    "key": "ACC-1",
                    "fields": {
                        "status": status, "customfield_10040": subjects,
                        "customfield_10042": expiry, "reporter": reporter,
                        "resolutiondate": resolved,
                    },
                    "changelog": changelog,
                });
                let mut config = crate::JiraConfig::new(
                    "t",
                    "https://example.atlassian.net",
                    "x",
                    crate::JiraAuth::Oauth { token_env: "T".into() },
                    crate::FieldMap {
                        subjects: "customfield_10040".into(),
                        credentials: None,
                        actions: None,
                        entitlements: None,
                        assume: None,
                        services: None,
                        regions: None,
                        starts_at: None,
                        expires_at: "customfield_10042".into(),
                    },
                );
                let _ = map_issue(&config, &issue, Some(&jsm));
                config.use_jsm_approvals = true;
                let _ = map_issue(&config, &issue, Some(&jsm));
            }
        }
    }
}
