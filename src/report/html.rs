//! The self-contained HTML report: one file, no external assets (inline
//! CSS, JS and SVG; a Content-Security-Policy forbids loading anything),
//! summary charts by severity, control and source, the coverage tables,
//! the full finding table with client-side filtering, and the per-subject
//! trace.
//!
//! Rendered with minijinja from `reports/templates/report.html.j2` with
//! auto-escaping on: identity names and tags come from cloud accounts, so
//! anyone able to name an IAM user must not be able to script the auditor's
//! browser.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use minijinja::{AutoEscape, Environment};
use serde::Serialize;
use serde_json::Value;

use super::coverage::FrameworkCoverage;
use super::render::Coverage;
use super::trace::{Context, Trace};
use super::{ReportError, RunData};
use crate::engine::estate::SourceState;

const TEMPLATE: &str = include_str!("../../reports/templates/report.html.j2");
/// Findings shown in the page's table; beyond this the page says so and
/// points at `findings.csv` (a browser filtering a million rows is no use).
pub const MAX_ROWS: usize = 20_000;
/// Subjects traced in the page (worst findings first); `nhi-assure trace`
/// gives any other.
pub const MAX_TRACES: usize = 1_000;
/// Approvals shown in the page's access table; every one is in the JSON.
pub const MAX_ACCESS_ROWS: usize = 5_000;

#[derive(Serialize)]
struct Bar {
    label: String,
    value: usize,
    width: usize,
    y: usize,
    color: &'static str,
}

#[derive(Serialize)]
struct Chart {
    id: &'static str,
    title: String,
    height: usize,
    bars: Vec<Bar>,
}

/// `url` if it may become a link: http(s) only, so a ticket URL naming
/// `javascript:` or `data:` stays text (the template escapes either way).
fn web_link(url: &str) -> Option<&str> {
    let lower = url.trim_start().get(..8).unwrap_or("").to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(url)
}

#[derive(Serialize)]
struct Row {
    severity: &'static str,
    rule_id: String,
    title: String,
    identity_id: String,
    credential_id: Option<String>,
    source: String,
    approval: Option<String>,
    /// The approval's ticket, and its URL if it is a web link.
    ticket: Option<String>,
    ticket_url: Option<String>,
    first_seen: String,
    action: &'static str,
    controls: Vec<String>,
    search: String,
    trace_anchor: usize,
    /// `open` or `excepted` (the status filter's values).
    status: &'static str,
    /// The exception accepting its risk: id, end and reason.
    exception: Option<String>,
}

#[derive(Serialize)]
struct TraceItem<'a> {
    anchor: usize,
    #[serde(flatten)]
    trace: &'a Trace,
}

#[derive(Serialize)]
struct Incomplete {
    name: String,
    state: &'static str,
}

#[derive(Serialize)]
struct Subjects {
    identities: usize,
    credentials: usize,
    approvals: usize,
}

fn sev_color(s: &str) -> &'static str {
    match s {
        "critical" => "#7f1d1d",
        "high" => "#dc2626",
        "medium" => "#d97706",
        "low" => "#2563eb",
        _ => "#64748b",
    }
}

fn chart(
    id: &'static str,
    title: String,
    data: Vec<(String, usize)>,
    color: fn(&str) -> &'static str,
) -> Chart {
    let max = data.iter().map(|d| d.1).max().unwrap_or(1).max(1);
    let bars: Vec<Bar> = data
        .into_iter()
        .enumerate()
        .map(|(i, (label, value))| Bar {
            width: (value * 240).div_ceil(max),
            y: i * 20,
            color: color(&label),
            label,
            value,
        })
        .collect();
    Chart {
        id,
        title,
        height: (bars.len() * 20).max(20),
        bars,
    }
}

/// Render the HTML report.
pub fn render(data: &RunData, cov: Coverage<'_>) -> Result<String, ReportError> {
    page(data, cov, false)
}

fn page(data: &RunData, cov: Coverage<'_>, open_traces: bool) -> Result<String, ReportError> {
    // One pass over the findings: the charts' counts, the first rows,
    // and the identities to trace (worst first), each counted by hash.
    let order = ["critical", "high", "medium", "low", "info"];
    let mut by_sev_n = [0usize; 5];
    let mut by_control_n: HashMap<String, usize> = HashMap::new();
    let mut by_source_n: HashMap<String, usize> = HashMap::new();
    let mut first: Vec<super::ReportFinding> = Vec::new();
    let mut traced: Vec<String> = Vec::new();
    let mut identities: rustc_hash::FxHashSet<u64> = Default::default();
    // Coverage not computed before is tallied in the same pass.
    let mut fold = match cov {
        Coverage::Computed(_) => None,
        Coverage::Pending(filter) => Some(super::coverage::Fold::new(data, filter)?),
    };
    for f in data.findings.iter() {
        let f = f?;
        if let Some(fold) = fold.as_mut() {
            fold.add(&f);
        }
        let d = &f.finding;
        if let Some(n) = order.iter().position(|s| *s == d.severity.as_str()) {
            by_sev_n[n] += 1;
        }
        // Counted under a key copied once per control, not per finding.
        for c in d.controls.iter() {
            match by_control_n.get_mut(c.as_str()) {
                Some(n) => *n += 1,
                None => {
                    by_control_n.insert(c.clone(), 1);
                }
            }
        }
        let source = if f.source.is_empty() {
            "approval records"
        } else {
            f.source.as_str()
        };
        match by_source_n.get_mut(source) {
            Some(n) => *n += 1,
            None => {
                by_source_n.insert(source.to_string(), 1);
            }
        }
        let mut h = std::hash::DefaultHasher::new();
        d.identity_id.hash(&mut h);
        if identities.insert(h.finish()) && traced.len() < MAX_TRACES {
            traced.push(d.identity_id.clone());
        }
        if first.len() < MAX_ROWS {
            first.push((*f).clone());
        }
    }
    let tallied;
    let cov: &[FrameworkCoverage] = match (cov, fold) {
        (Coverage::Computed(c), _) => c,
        (Coverage::Pending(_), fold) => {
            tallied = fold.map(super::coverage::Fold::finish).unwrap_or_default();
            &tallied
        }
    };
    // Then identities with only an action in the run.
    let with_findings: HashSet<&str> = traced.iter().map(String::as_str).collect();
    let mut journal_only: Vec<&str> = Vec::new();
    for a in &data.journal {
        let id = a.request.identity_id.as_str();
        let mut h = std::hash::DefaultHasher::new();
        id.hash(&mut h);
        if !with_findings.contains(id)
            && !identities.contains(&h.finish())
            && !journal_only.contains(&id)
        {
            journal_only.push(id);
        }
    }
    let subjects_traced: HashSet<&str> = traced
        .iter()
        .map(String::as_str)
        .chain(journal_only.iter().copied())
        .collect();
    let ctx = Context::new(
        data,
        &subjects_traced,
        super::trace::findings_of_subjects(data, &subjects_traced)?,
    );
    let mut traces = ctx.traces_of(traced.iter().map(String::as_str));
    let journal_traces = ctx.traces_of(journal_only.iter().copied());
    let traces_total = identities.len() + journal_traces.len();
    traces.extend(journal_traces);
    traces.truncate(MAX_TRACES);
    let anchor_of: HashMap<&str, usize> = traces
        .iter()
        .enumerate()
        .map(|(i, t)| (t.subject.as_str(), i))
        .collect();

    let by_sev: Vec<(String, usize)> = order
        .iter()
        .zip(by_sev_n)
        .map(|(s, n)| (s.to_string(), n))
        .collect();
    let mut by_control = ranked(by_control_n);
    by_control.truncate(15);
    let by_source = ranked(by_source_n);
    let charts = vec![
        chart("severity", "Findings by severity".into(), by_sev, sev_color),
        chart(
            "control",
            "Findings by control (top 15)".into(),
            by_control,
            |_| "#334155",
        ),
        chart("source", "Findings by source".into(), by_source, |_| {
            "#0e7490"
        }),
    ];

    let rows: Vec<Row> = first
        .iter()
        .map(|f| {
            let d = &f.finding;
            // The first page's findings only: parsed to pick a few fields.
            let evidence = d.evidence.value();
            let approval = evidence
                .get("approval")
                .and_then(|a| a.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            // An approval's ticket, or an unmapped record's own.
            let approval_ev = Some(
                evidence
                    .get("approval")
                    .filter(|a| a.is_object())
                    .unwrap_or(&evidence),
            );
            let ticket = approval_ev
                .and_then(|a| a.get("reference"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let ticket_url = approval_ev
                .and_then(|a| a.get("url"))
                .and_then(Value::as_str)
                .and_then(web_link)
                .map(str::to_string);
            let search = format!(
                "{} {} {} {} {} {} {}",
                d.exception.as_ref().map(|e| e.id.as_str()).unwrap_or(""),
                d.rule_id,
                d.identity_id,
                d.credential_id.as_deref().unwrap_or(""),
                d.controls.join(" "),
                approval.as_deref().unwrap_or(""),
                d.title
            )
            .to_lowercase();
            Row {
                severity: d.severity.as_str(),
                rule_id: d.rule_id.to_string(),
                title: d.title.to_string(),
                identity_id: d.identity_id.clone(),
                credential_id: d.credential_id.clone(),
                source: f.source.clone(),
                approval,
                ticket,
                ticket_url,
                first_seen: f.first_seen.clone(),
                action: d.recommended_action.as_str(),
                controls: d.controls.to_vec(),
                search,
                trace_anchor: anchor_of.get(d.identity_id.as_str()).copied().unwrap_or(0),
                status: if d.exception.is_some() {
                    "excepted"
                } else {
                    "open"
                },
                exception: d.exception.as_ref().map(|e| {
                    format!(
                        "{} until {}: {}",
                        e.id,
                        e.expires_at.format("%Y-%m-%d"),
                        e.reason
                    )
                }),
            }
        })
        .collect();
    let mut sources: Vec<&str> = first.iter().map(|f| f.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let incomplete: Vec<Incomplete> = data
        .reading
        .sources
        .iter()
        .filter_map(|s| match s.state {
            SourceState::Complete => None,
            SourceState::Partial { .. } => Some(Incomplete {
                name: s.name.clone(),
                state: "partial",
            }),
            SourceState::Failed { .. } => Some(Incomplete {
                name: s.name.clone(),
                state: "failed",
            }),
        })
        .collect();
    let read = || {
        data.reading
            .sources
            .iter()
            .filter_map(|s| s.inventory.as_ref())
    };
    let subjects = Subjects {
        identities: read().map(|i| i.identities.len()).sum(),
        credentials: read().map(|i| i.credentials.len()).sum(),
        approvals: data.reading.approvals.len(),
    };
    let trace_items: Vec<TraceItem> = traces
        .iter()
        .enumerate()
        .map(|(anchor, trace)| TraceItem { anchor, trace })
        .collect();

    let access: Vec<&super::access::ApprovalAccess> = data
        .access
        .iter()
        .filter(|a| a.issuance.is_some() || a.sessions_issued > 0 || a.federated)
        .collect();
    let access_counts: HashMap<&str, usize> = ["standing", "issued", "both", "none"]
        .into_iter()
        .map(|k| {
            (
                k,
                data.access
                    .iter()
                    .filter(|a| a.served.as_str() == k)
                    .count(),
            )
        })
        .collect();

    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_filter("web_link", |url: Option<String>| {
        url.as_deref().and_then(web_link).map(str::to_string)
    });
    let err = |e: minijinja::Error| ReportError::Render {
        what: "html",
        message: format!("{e:#}"),
    };
    env.add_template("report.html", TEMPLATE).map_err(err)?;
    let tmpl = env.get_template("report.html").map_err(err)?;
    tmpl.render(minijinja::context! {
        version => data.version,
        run => &data.run,
        findings => rows,
        frameworks => cov,
        charts => charts,
        traces => trace_items,
        severities => order,
        sources => sources,
        incomplete => incomplete,
        subjects => subjects,
        open_traces => open_traces,
        findings_total => data.findings.len(),
        traces_total => traces_total,
        access => &access[..access.len().min(MAX_ACCESS_ROWS)],
        access_total => data.access.len(),
        access_total_shown => access.len(),
        access_counts => access_counts,
    })
    .map_err(err)
}

/// Render one subject's trace as a standalone HTML page (the report's
/// template, with only that trace and its findings).
pub fn render_trace(data: &RunData, subject: &str) -> Result<Option<String>, ReportError> {
    let identity = super::trace::identity_of_subject(data, subject);
    let ids: HashSet<&str> = [identity.as_str()].into_iter().collect();
    let ctx = Context::new(data, &ids, super::trace::findings_of_subjects(data, &ids)?);
    if ctx.trace(subject).is_none() {
        return Ok(None);
    }
    let mut one = data.clone();
    // The subject's findings: an identity's, or those on a credential.
    one.findings = data.findings.only(|fp| {
        let mut parts = fp.splitn(3, '|').skip(1);
        parts.next() == Some(subject) || parts.next() == Some(subject)
    });
    one.journal.retain(|a| a.request.identity_id == subject);
    page(&one, Coverage::Computed(&[]), true).map(Some)
}

/// Counts by key, largest first, then by key.
fn ranked(counts: HashMap<String, usize>) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}
