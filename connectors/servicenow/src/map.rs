//! From Table API records and their `sysapproval_approver` rows to
//! approvals. A record is mapped whole or reported as [`Unmapped`] naming
//! its number and the field; it never fails the other records.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use nhi_contract::{time, Approval, Scope, Timestamp, Unmapped};
use serde_json::{Map, Value};

use crate::config::ServiceNowConfig;

/// One record as the Table API returns it.
pub(crate) type Record = Map<String, Value>;

/// Fields every record is read with, besides the mapped ones.
pub(crate) const BASE_FIELDS: [&str; 5] =
    ["sys_id", "number", "approval", "state", "sys_updated_on"];

/// Fields read from `sysapproval_approver`.
pub(crate) const APPROVER_FIELDS: [&str; 4] =
    ["sysapproval", "approver", "state", "sys_updated_on"];

/// The fields asked for (`sysparm_fields`): the base ones, then the mapped
/// ones, each once.
pub(crate) fn fields(cfg: &ServiceNowConfig) -> Vec<String> {
    let m = &cfg.mapping;
    let mapped = [
        Some(&m.subject),
        m.credentials.as_ref(),
        m.actions.as_ref(),
        m.entitlements.as_ref(),
        m.assume.as_ref(),
        m.services.as_ref(),
        m.regions.as_ref(),
        m.starts_at.as_ref(),
        Some(&m.expires_at),
        Some(&m.requester),
        Some(&m.assignee),
        Some(&m.closed_at),
    ];
    let mut out: Vec<String> = BASE_FIELDS.iter().map(|s| s.to_string()).collect();
    for f in mapped.into_iter().flatten() {
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    out
}

/// A field's value: `None` when absent, null or empty. A reference field
/// read with its link (`{"link", "value"}`) or with `sysparm_display_value=all`
/// (`{"display_value", "value"}`) gives its `value`.
pub(crate) fn value(rec: &Record, field: &str) -> Result<Option<String>, String> {
    let v = match rec.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(o) => match o.get("value") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => return Ok(None),
            _ => return Err(format!("{field}: not a text value")),
        },
        Value::Array(_) | Value::Null => return Err(format!("{field}: not a text value")),
    };
    let s = s.trim().to_string();
    Ok(if s.is_empty() { None } else { Some(s) })
}

fn required(rec: &Record, field: &str) -> Result<String, String> {
    value(rec, field)?.ok_or_else(|| format!("{field}: missing"))
}

/// A list field: split on commas and line breaks, blanks dropped.
fn list(rec: &Record, field: Option<&String>) -> Result<Vec<String>, String> {
    let Some(f) = field else {
        return Ok(Vec::new());
    };
    Ok(value(rec, f)?
        .map(|s| {
            s.split([',', '\n', '\r'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// A ServiceNow date-time value (`2026-03-31 17:00:00`, UTC as the Table API
/// gives values), a date (`2026-03-31`, midnight UTC) or RFC 3339.
pub(crate) fn parse_time(field: &str, s: &str) -> Result<Timestamp, String> {
    let t = if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        Utc.from_utc_datetime(&t)
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN))
    } else if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else {
        return Err(format!("{field}: not a date ({:?})", short(s)));
    };
    time::check(t).map_err(|e| format!("{field}: {e}"))
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

fn time_of(rec: &Record, field: &str) -> Result<Option<Timestamp>, String> {
    value(rec, field)?
        .map(|s| parse_time(field, &s))
        .transpose()
}

/// A `sys_id` as the instance makes them (32 hex digits; letters and
/// digits accepted): it goes into the approval rows' encoded query, where
/// `^`, `,` or `=` would change what is asked.
pub(crate) fn valid_sys_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One approval row of a record, as read from `sysapproval_approver`.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    pub(crate) approved: bool,
    pub(crate) approver: Option<String>,
    pub(crate) at: Result<Timestamp, String>,
}

/// Rows by the record they decide (`sysapproval`); a row whose
/// `sysapproval` cannot be read decides nothing we could attribute.
pub(crate) fn decisions(cfg: &ServiceNowConfig, rows: &[Record]) -> HashMap<String, Vec<Decision>> {
    let mut out: HashMap<String, Vec<Decision>> = HashMap::new();
    for r in rows {
        let Ok(Some(record)) = value(r, "sysapproval") else {
            continue;
        };
        let state = value(r, "state").ok().flatten().unwrap_or_default();
        let approved = cfg.states.approved.contains(&state);
        if !approved && !cfg.states.rejected.contains(&state) {
            continue;
        }
        let at = required(r, "sys_updated_on")
            .and_then(|s| parse_time("sysapproval_approver.sys_updated_on", &s));
        out.entry(record).or_default().push(Decision {
            approved,
            approver: value(r, "approver").ok().flatten(),
            at,
        });
    }
    out
}

/// What one record gives.
pub(crate) enum Mapped {
    /// One approval per subject.
    Approvals(Vec<Approval>),
    /// Readable but not an approval (pending, or rejected before any
    /// approval): grants nothing, so nothing is lost.
    NotApproved(String),
    /// Not mappable.
    Unmapped(Unmapped),
}

/// Map one record.
pub(crate) fn record(
    cfg: &ServiceNowConfig,
    rec: &Record,
    decisions: &HashMap<String, Vec<Decision>>,
) -> Mapped {
    let sys_id = value(rec, "sys_id").ok().flatten();
    let number = value(rec, "number").ok().flatten();
    let url = match (&cfg.instance_url, &sys_id) {
        (Some(base), Some(id)) => Some(format!(
            "{}/nav_to.do?uri={}.do?sys_id={id}",
            base.trim_end_matches('/'),
            cfg.table
        )),
        _ => None,
    };
    let reference = number
        .clone()
        .or_else(|| sys_id.clone())
        .unwrap_or_else(|| "(no number)".into());
    let subjects = list(rec, Some(&cfg.mapping.subject));
    let unmapped = |problem: String| {
        Mapped::Unmapped(Unmapped {
            reference: reference.clone(),
            url: url.clone(),
            subjects: subjects.clone().unwrap_or_default(),
            problem,
        })
    };
    match map_fields(
        cfg,
        rec,
        decisions,
        sys_id.as_deref(),
        number.as_deref(),
        url.clone(),
    ) {
        Ok(m) => m,
        Err(problem) => unmapped(problem),
    }
}

fn map_fields(
    cfg: &ServiceNowConfig,
    rec: &Record,
    decisions: &HashMap<String, Vec<Decision>>,
    sys_id: Option<&str>,
    number: Option<&str>,
    url: Option<String>,
) -> Result<Mapped, String> {
    let m = &cfg.mapping;
    let sys_id = sys_id.ok_or("sys_id: missing")?;
    if !valid_sys_id(sys_id) {
        return Err("sys_id: malformed".into());
    }
    let number = number.ok_or("number: missing")?;
    // A record that grants nothing is not read further: its other fields
    // may still be unfilled, and an unmapped record with unknown subjects
    // would hold every subject.
    let approval = required(rec, "approval")?;
    let rejected = cfg.states.rejected.contains(&approval);
    if !rejected && !cfg.states.approved.contains(&approval) {
        return Ok(Mapped::NotApproved(format!("approval is {approval:?}")));
    }
    let rows = decisions.get(sys_id).map(Vec::as_slice).unwrap_or(&[]);
    // The latest approving row is the decision that granted the access.
    let mut latest: Option<(Timestamp, &Decision)> = None;
    for d in rows.iter().filter(|d| d.approved) {
        let at = d.at.clone()?;
        if latest.is_none_or(|(t, _)| at > t) {
            latest = Some((at, d));
        }
    }
    let Some((approved_at, decision)) = latest else {
        if rejected {
            return Ok(Mapped::NotApproved("rejected, never approved".into()));
        }
        return Err(
            "sysapproval_approver: no approved row for the record (the approver cannot be known)"
                .into(),
        );
    };
    let subjects = list(rec, Some(&m.subject))?;
    if subjects.is_empty() {
        return Err(format!("{}: missing", m.subject));
    }
    let approver = decision
        .approver
        .clone()
        .ok_or("sysapproval_approver.approver: missing")?;
    let requester = required(rec, &m.requester)?;
    let assignee = value(rec, &m.assignee)?;
    let expiry =
        time_of(rec, &m.expires_at)?.ok_or_else(|| format!("{}: missing", m.expires_at))?;
    let starts_at = match &m.starts_at {
        Some(f) => time_of(rec, f)?,
        None => None,
    };
    if expiry <= starts_at.unwrap_or(approved_at) {
        return Err(format!(
            "{}: {expiry} is not after the start {}",
            m.expires_at,
            starts_at.unwrap_or(approved_at)
        ));
    }
    let scope = Scope {
        actions: list(rec, m.actions.as_ref())?,
        entitlements: list(rec, m.entitlements.as_ref())?,
        assume: list(rec, m.assume.as_ref())?,
        services: list(rec, m.services.as_ref())?,
        regions: list(rec, m.regions.as_ref())?,
    };
    if scope.actions.is_empty() && scope.entitlements.is_empty() && scope.assume.is_empty() {
        let named: Vec<&str> = [&m.actions, &m.entitlements, &m.assume]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        return Err(if named.is_empty() {
            "mapping: scope approves nothing (map actions, entitlements or assume)".into()
        } else {
            format!("{}: missing (the scope approves nothing)", named.join(", "))
        });
    }
    let credentials = list(rec, m.credentials.as_ref())?;
    let state = value(rec, "state")?.unwrap_or_default();
    let mut expires_at = expiry;
    let mut revoked_at: Option<Timestamp> = None;
    let complete = cfg.states.closed_complete.contains(&state);
    let cancelled = cfg.states.cancelled.contains(&state);
    if complete || cancelled {
        // Closed no later than its last update: without a closing time,
        // access ends then (sooner, never later).
        let closed = match time_of(rec, &m.closed_at)? {
            Some(t) => t,
            None => time_of(rec, "sys_updated_on")?
                .ok_or_else(|| format!("{}: missing on a closed record", m.closed_at))?,
        };
        if complete {
            expires_at = expires_at.min(closed);
        } else {
            revoked_at = Some(closed);
        }
    }
    if rejected {
        // The latest rejecting row; the record's own update time when no
        // row says.
        let mut at: Option<Timestamp> = None;
        for d in rows.iter().filter(|d| !d.approved) {
            if let Ok(t) = d.at {
                at = Some(at.map_or(t, |a: Timestamp| a.max(t)));
            }
        }
        let at = match at {
            Some(t) => t,
            None => time_of(rec, "sys_updated_on")?.ok_or("sys_updated_on: missing")?,
        };
        revoked_at = Some(revoked_at.map_or(at, |r| r.min(at)));
    }
    let many = subjects.len() > 1;
    let approvals = subjects
        .into_iter()
        .map(|subject| Approval {
            id: if many {
                format!("servicenow:{number}:{subject}")
            } else {
                format!("servicenow:{number}")
            },
            subject,
            credentials: credentials.clone(),
            scope: scope.clone(),
            requester: requester.clone(),
            approver: approver.clone(),
            assignee: assignee.clone(),
            approved_at,
            starts_at,
            expires_at,
            revoked_at,
            reference: Some(number.to_string()),
            emergency: None,
            source: format!("servicenow:{number}"),
            url: url.clone(),
            role: None,
            issue_to: None,
        })
        .collect();
    Ok(Mapped::Approvals(approvals))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> ServiceNowConfig {
        serde_json::from_value(serde_json::json!({
            "name": "snow",
            "instance_url": "https://example.service-now.com",
            "export_dir": "x",
            "mapping": {
                "subject": "variables.identity_id",
                "credentials": "variables.keys",
                "actions": "variables.actions",
                "starts_at": "variables.start",
                "expires_at": "variables.until"
            }
        }))
        .expect("config")
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~\n]{0,24}".prop_map(Value::String),
            prop_oneof![
                Just("approved".to_string()),
                Just("rejected".to_string()),
                Just("3".to_string()),
                Just("7".to_string()),
                Just("2026-01-01 00:00:00".to_string()),
                Just("2027-01-01".to_string()),
                Just("0000-00-00 00:00:00".to_string()),
                Just("+262142-01-01T00:00:00Z".to_string()),
                Just("a1d5c3a1db2f0010c8d2f0f5ca9619a1".to_string()),
            ]
            .prop_map(Value::String),
            prop::collection::vec(any::<u8>().prop_map(Value::from), 0..3).prop_map(Value::Array),
            "[a-z]{0,8}".prop_map(|s| serde_json::json!({"value": s, "link": "x"})),
        ]
    }

    const FIELDS: [&str; 12] = [
        "sys_id",
        "number",
        "approval",
        "state",
        "sys_updated_on",
        "variables.identity_id",
        "variables.keys",
        "variables.actions",
        "variables.start",
        "variables.until",
        "requested_for",
        "closed_at",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever a record and its approval rows hold, mapping returns
        /// (an approval, nothing, or an unmapped record naming a problem):
        /// it never panics, and an approval always names who and for whom.
        #[test]
        fn any_record_maps_without_panicking(
            values in prop::collection::vec(any_value(), FIELDS.len()),
            rows in prop::collection::vec(prop::collection::vec(any_value(), 4), 0..3),
        ) {
            let cfg = cfg();
            let rec: Record = FIELDS.iter().map(|f| f.to_string()).zip(values).collect();
            let rows: Vec<Record> = rows
                .into_iter()
                .map(|r| APPROVER_FIELDS.iter().map(|f| f.to_string()).zip(r).collect())
                .collect();
            let d = decisions(&cfg, &rows);
            match record(&cfg, &rec, &d) {
                Mapped::Approvals(list) => {
                    for a in list {
                        prop_assert!(!a.subject.is_empty() && !a.approver.is_empty());
                    }
                }
                Mapped::Unmapped(u) => prop_assert!(!u.problem.is_empty()),
                Mapped::NotApproved(_) => {}
            }
        }
    }

    #[test]
    fn dates_in_every_documented_form() {
        let t = |s: &str| parse_time("f", s);
        assert_eq!(
            t("2026-03-31 17:00:00").map(|t| t.to_rfc3339()),
            Ok("2026-03-31T17:00:00+00:00".into())
        );
        assert_eq!(
            t("2026-03-31").map(|t| t.to_rfc3339()),
            Ok("2026-03-31T00:00:00+00:00".into())
        );
        assert_eq!(
            t("2026-03-31T19:00:00+02:00").map(|t| t.to_rfc3339()),
            Ok("2026-03-31T17:00:00+00:00".into())
        );
        assert!(t("+262142-01-01T00:00:00Z").is_err());
        assert!(t("31/03/2026").is_err());
    }
}
