//! Service last-accessed data: which services a principal's policies allow
//! it has used, and when (IAM access advisor). Each principal costs one
//! `GenerateServiceLastAccessedDetails` and at least one
//! `GetServiceLastAccessedDetails` (polls while the job runs, one per
//! further page), so the reading runs within a per-scan call budget.
//!
//! Which principals, when the budget is short: those holding at least one
//! policy directly (only those can be right-sized by detaching), admin-
//! equivalent first, then write, then read, each by ARN; two calls are
//! reserved per principal in that order before any call is made, so the
//! choice does not depend on timing. A principal not read keeps `None` on
//! its grants (unknown, never unused) and the account reports an
//! [`Unseen::EntitlementUsage`] gap, so no finding that depends on it is
//! resolved or acted on for the pass.
//!
//! Each grant's last use is the latest access among the services its
//! entitlement's actions name. Never accessed within IAM's tracking period
//! is `Never`; a service the entitlement names that the report does not
//! list (or an entitlement whose actions are unknown) leaves it `Unknown`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_iam::types::{AccessAdvisorUsageGranularityType, JobStatusType};
use aws_sdk_iam::Client;
use futures_util::stream::{self, StreamExt};
use nhi_contract::pattern::Syntax;
use nhi_contract::{
    Entitlement, Gap, IdentityKind, Inventory, PrivilegeLevel, Timestamp, Unseen, Usage,
};

use crate::config::AwsConfig;
use crate::sdk::{source_error, ts, CallStats};

/// Principal ARNs in scope: `*` only, case exact (ARNs are).
const ARNS: Syntax = Syntax::IAM_RESOURCE;

/// IAM calls left for last-accessed reading in one scan, shared by every
/// account of the source.
#[derive(Debug)]
pub(crate) struct Budget(AtomicU64);

impl Budget {
    /// A budget of `calls`.
    pub(crate) fn new(calls: u64) -> Budget {
        Budget(AtomicU64::new(calls))
    }

    /// Take `n` calls if that many are left.
    fn take(&self, n: u64) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }
}

/// When one service was last accessed, as the report gives it.
#[derive(Debug, Clone, PartialEq)]
struct Access {
    at: Option<Timestamp>,
    region: Option<String>,
}

/// Service namespace → its last access, for one principal.
type Report = BTreeMap<String, Access>;

/// Whether a grant is the principal's own (not through a group): only those
/// can be detached from it.
fn direct(g: &nhi_contract::Grant) -> bool {
    !g.eligible && matches!(g.via.as_deref(), None | Some("inline"))
}

/// Service-linked roles are AWS's: never right-sized.
fn service_linked(arn: &str) -> bool {
    arn.contains(":role/aws-service-role/")
}

/// The principals of `inv` to read, in budget order (see the module docs).
fn candidates(cfg: &AwsConfig, inv: &Inventory) -> Vec<String> {
    let holders: std::collections::HashSet<&str> = inv
        .grants
        .iter()
        .filter(|g| direct(g))
        .map(|g| g.identity.as_str())
        .collect();
    let mut out: Vec<(std::cmp::Reverse<PrivilegeLevel>, &str)> = inv
        .identities
        .iter()
        .filter(|i| matches!(i.kind, IdentityKind::User | IdentityKind::Role))
        .filter(|i| !service_linked(&i.id))
        .filter(|i| {
            cfg.last_accessed
                .principals
                .iter()
                .any(|p| ARNS.matches(p, &i.id))
        })
        .filter(|i| holders.contains(i.id.as_str()))
        .map(|i| {
            (
                std::cmp::Reverse(i.privilege.unwrap_or_default()),
                i.id.as_str(),
            )
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, id)| id.to_string()).collect()
}

/// Read the last-accessed data of one account's principals within
/// `budget`, and set each of their grants' `last_used`. Returns the gap
/// when some principal in scope was not read.
pub(crate) async fn annotate(
    client: &Client,
    cfg: &AwsConfig,
    calls: &CallStats,
    budget: &Budget,
    inv: &mut Inventory,
) -> Option<Gap> {
    let wanted = candidates(cfg, inv);
    // A generate and a first get, reserved in order: who is read does not
    // depend on which job finishes first.
    let mut chosen = Vec::new();
    let mut unaffordable = 0usize;
    for arn in &wanted {
        if budget.take(2) {
            chosen.push(arn.clone());
        } else {
            unaffordable += 1;
        }
    }
    let reader = Reader {
        client,
        cfg,
        calls,
        budget,
    };
    let results: Vec<(String, Result<Report, String>)> = stream::iter(chosen)
        .map(|arn| async {
            let r = reader.principal(&arn).await;
            (arn, r)
        })
        .buffer_unordered(cfg.max_concurrency.max(1))
        .collect()
        .await;
    let mut failed: Vec<String> = Vec::new();
    let mut reports: BTreeMap<String, Report> = BTreeMap::new();
    for (arn, r) in results {
        match r {
            Ok(report) => {
                reports.insert(arn, report);
            }
            Err(why) => {
                tracing::warn!(principal = %arn, error = %why, "service last-accessed data not read");
                failed.push(why);
            }
        }
    }
    let entitlements: BTreeMap<&str, &Entitlement> = inv
        .entitlements
        .iter()
        .map(|e| (e.id.as_str(), e))
        .collect();
    let mut last_used: Vec<Option<Usage>> = Vec::with_capacity(inv.grants.len());
    for g in &inv.grants {
        last_used.push(
            reports
                .get(&g.identity)
                .map(|r| grant_usage(entitlements.get(g.entitlement.as_str()).copied(), r)),
        );
    }
    for (g, u) in inv.grants.iter_mut().zip(last_used) {
        if u.is_some() {
            g.last_used = u;
        }
    }
    tracing::info!(
        read = reports.len(),
        failed = failed.len(),
        over_budget = unaffordable,
        "service last-accessed data"
    );
    if failed.is_empty() && unaffordable == 0 {
        return None;
    }
    let mut reason = format!(
        "{} of {} principals not read",
        failed.len() + unaffordable,
        wanted.len()
    );
    if unaffordable > 0 {
        reason.push_str(&format!(
            "; {unaffordable} beyond the call budget (last_accessed.max_calls = {})",
            cfg.last_accessed.max_calls
        ));
    }
    if let Some(first) = failed.first() {
        reason.push_str(&format!("; {}: {first}", failed.len()));
    }
    Some(Gap {
        unseen: Unseen::EntitlementUsage,
        reason,
    })
}

/// The service namespaces an action pattern names (`s3:Get*` → `s3`,
/// `*` → `*`).
fn service_of(action: &str) -> &str {
    action.split_once(':').map_or(action, |(s, _)| s)
}

/// A grant's last use from its holder's report: the latest access among the
/// services the entitlement names.
fn grant_usage(ent: Option<&Entitlement>, report: &Report) -> Usage {
    let Some(ent) = ent.filter(|e| !e.actions.is_empty()) else {
        return Usage::Unknown;
    };
    let services: Vec<&str> = ent.actions.iter().map(|a| service_of(a)).collect();
    let mut latest: Option<(Timestamp, &str, &Access)> = None;
    for (ns, access) in report {
        if !services.iter().any(|s| Syntax::IAM_ACTION.matches(s, ns)) {
            continue;
        }
        if let Some(at) = access.at {
            if latest.is_none_or(|(l, _, _)| at > l) {
                latest = Some((at, ns, access));
            }
        }
    }
    if let Some((at, ns, access)) = latest {
        return Usage::Used {
            at,
            service: Some(ns.to_string()),
            region: access.region.clone(),
        };
    }
    // IAM lists every service the principal's policies allow: one the
    // entitlement names but the report lacks was not judged, not unused.
    let concrete_missing = services
        .iter()
        .any(|s| !s.contains(['*', '?']) && !report.contains_key(&s.to_ascii_lowercase()));
    let any_listed = report
        .keys()
        .any(|ns| services.iter().any(|s| Syntax::IAM_ACTION.matches(s, ns)));
    if concrete_missing || !any_listed {
        Usage::Unknown
    } else {
        Usage::Never
    }
}

struct Reader<'a> {
    client: &'a Client,
    cfg: &'a AwsConfig,
    calls: &'a CallStats,
    budget: &'a Budget,
}

impl Reader<'_> {
    /// One principal's report. Its generate and first get are already
    /// paid for; further polls and pages draw on the budget.
    async fn principal(&self, arn: &str) -> Result<Report, String> {
        self.calls.count("GenerateServiceLastAccessedDetails");
        let job = self
            .client
            .generate_service_last_accessed_details()
            .arn(arn)
            .granularity(AccessAdvisorUsageGranularityType::ServiceLevel)
            .send()
            .await
            .map_err(|e| source_error("GenerateServiceLastAccessedDetails", e).to_string())?;
        let Some(job) = job.job_id().map(str::to_string) else {
            return Err("GenerateServiceLastAccessedDetails: no JobId".into());
        };
        let la = &self.cfg.last_accessed;
        let mut report = Report::new();
        let mut marker: Option<String> = None;
        let mut polls = 0u32;
        let mut paid = true;
        loop {
            if !paid && !self.budget.take(1) {
                return Err("call budget spent while reading the job".into());
            }
            paid = false;
            self.calls.count("GetServiceLastAccessedDetails");
            let page = self
                .client
                .get_service_last_accessed_details()
                .job_id(&job)
                .max_items(la.page_size)
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| source_error("GetServiceLastAccessedDetails", e).to_string())?;
            match page.job_status() {
                JobStatusType::Completed => {}
                JobStatusType::InProgress => {
                    polls += 1;
                    if polls >= la.max_polls {
                        return Err(format!("job still in progress after {polls} polls"));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(la.poll_interval_ms)).await;
                    continue;
                }
                other => {
                    let why = page
                        .error()
                        .map(|e| format!("{}: {}", e.code(), e.message()))
                        .unwrap_or_default();
                    return Err(format!("job {}: {why}", other.as_str()));
                }
            }
            for s in page.services_last_accessed() {
                report.insert(
                    s.service_namespace().to_ascii_lowercase(),
                    Access {
                        at: s.last_authenticated().and_then(ts),
                        region: s.last_authenticated_region().map(str::to_string),
                    },
                );
            }
            if !page.is_truncated() {
                return Ok(report);
            }
            // A truncated page without a marker leaves the rest unread: not
            // a complete report, so nothing of it is "never used".
            match page.marker() {
                Some(m) => marker = Some(m.to_string()),
                None => return Err("truncated page without a Marker".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(actions: &[&str]) -> Entitlement {
        Entitlement {
            id: "p".into(),
            name: "p".into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            resources: vec!["*".into()],
            privilege: PrivilegeLevel::Read,
        }
    }

    fn at(days: i64) -> Option<Timestamp> {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z").ok()?;
        Some(now.with_timezone(&chrono::Utc) - chrono::Duration::days(days))
    }

    fn report(entries: &[(&str, Option<Timestamp>)]) -> Report {
        entries
            .iter()
            .map(|(ns, t)| {
                (
                    ns.to_string(),
                    Access {
                        at: *t,
                        region: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_grant_reads_the_latest_access_among_its_services() {
        let r = report(&[("s3", at(200)), ("dynamodb", at(5)), ("sqs", None)]);
        let u = grant_usage(Some(&ent(&["s3:GetObject", "dynamodb:*"])), &r);
        assert!(matches!(&u, Usage::Used { service: Some(s), .. } if s == "dynamodb"));
        let u = grant_usage(Some(&ent(&["s3:GetObject"])), &r);
        assert_eq!(u.last_used_at(), at(200));
        assert!(matches!(&u, Usage::Used { service: Some(s), .. } if s == "s3"));
        assert_eq!(
            grant_usage(Some(&ent(&["sqs:SendMessage"])), &r),
            Usage::Never
        );
        // All services: the latest of any.
        assert!(matches!(
            grant_usage(Some(&ent(&["*"])), &r),
            Usage::Used { service: Some(s), .. } if s == "dynamodb"
        ));
    }

    #[test]
    fn what_the_report_does_not_judge_is_unknown() {
        let r = report(&[("sqs", None)]);
        // A service the report does not list was not judged.
        assert_eq!(
            grant_usage(Some(&ent(&["sqs:*", "sns:Publish"])), &r),
            Usage::Unknown
        );
        assert_eq!(grant_usage(Some(&ent(&[])), &r), Usage::Unknown);
        assert_eq!(grant_usage(None, &r), Usage::Unknown);
        assert_eq!(
            grant_usage(Some(&ent(&["*"])), &report(&[])),
            Usage::Unknown
        );
    }

    #[test]
    fn the_budget_never_goes_below_zero() {
        let b = Budget::new(5);
        assert!(b.take(2) && b.take(2));
        assert!(!b.take(2));
        assert!(b.take(1) && !b.take(1));
    }
}
