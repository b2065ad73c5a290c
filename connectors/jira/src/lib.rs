//! Jira Cloud / Jira Service Management as an approval source.
//!
//! The tickets a configured JQL finds (`GET /rest/api/3/search/jql`, every
//! page by `nextPageToken`, only the mapped fields) become approvals, one
//! per subject id the ticket names. The approver and the decision come from
//! Jira's own record, never from a field the requester can edit: the JSM
//! approval list (`/rest/servicedeskapi/request/{key}/approval`) with
//! `use_jsm_approvals`, else the changelog entry that moved the issue into
//! an approved status (its author approved, at its time).
//!
//! Ticket state is approval state:
//!
//! | status (configurable names)            | approval                                                    |
//! |----------------------------------------|-------------------------------------------------------------|
//! | approved (`Approved`, `In Progress`)   | valid from the start field (or approval time) to the expiry |
//! | done (`Done`, `Resolved`, `Closed`)    | ends at resolution: `expires_at` = min(expiry, `resolutiondate`) |
//! | cancelled / rejected                   | `revoked_at` = the transition into that status              |
//! | anything else (waiting, reopened)      | none: a reopened ticket follows its current status           |
//!
//! A ticket whose mapped field is missing or malformed is reported as
//! [`nhi_contract::Unmapped`] (key, field, the subjects if readable); the
//! other tickets are still read. A failing source (auth, retries run out, a
//! malformed page, more than `max_tickets`) fails the whole read: unknown,
//! never empty.

mod client;
mod config;
mod map;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use nhi_contract::{Approval, ApprovalRead, ApprovalSource, SourceError};
use serde_json::Value;

pub use config::{FieldMap, JiraAuth, JiraConfig, Statuses};

use client::Client;
use map::{issue_key, map_issue, Mapped};

/// Changelog entries asked for per page when the search's embedded
/// changelog is incomplete.
const CHANGELOG_PAGE: &str = "100";
/// JSM approvals asked for per page.
const APPROVAL_PAGE: &str = "50";

/// The Jira [`ApprovalSource`].
pub struct JiraSource {
    config: JiraConfig,
    calls: Arc<AtomicU64>,
}

impl JiraSource {
    /// A source; nothing is read until asked.
    pub fn new(config: JiraConfig) -> Self {
        JiraSource {
            config,
            calls: Arc::default(),
        }
    }

    /// HTTP requests sent so far (retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The fields asked for: what the state mapping needs, then the mapped ones.
    pub fn requested_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            "status",
            "reporter",
            "assignee",
            "resolutiondate",
            "updated",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (_, f) in self.config.fields.named() {
            if !out.iter().any(|o| o == f) {
                out.push(f.to_string());
            }
        }
        out
    }

    fn map_all(&self, issues: &[Value], jsm: &[Option<Vec<Value>>]) -> ApprovalRead {
        let mut read = ApprovalRead::default();
        for (i, issue) in issues.iter().enumerate() {
            let approvals = jsm.get(i).and_then(|a| a.as_deref());
            match map_issue(&self.config, issue, approvals) {
                Mapped::Approvals(a) => read.approvals.extend(a),
                Mapped::Unmapped(u) => {
                    tracing::warn!(source = %self.config.name, ticket = %u.reference, problem = %u.problem, "jira: ticket not mapped");
                    read.unmapped.push(u)
                }
                Mapped::Nothing => {}
            }
        }
        read
    }

    async fn read_server(&self) -> Result<ApprovalRead, SourceError> {
        let client = Client::new(&self.config, self.calls.clone())?;
        let fields = self.requested_fields().join(",");
        let page_size = self.config.page_size.to_string();
        let mut issues: Vec<Value> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // The changelog also with JSM approvals: it dates the move
            // into a cancelled or rejected status.
            let mut query = vec![
                ("jql", self.config.jql.as_str()),
                ("fields", fields.as_str()),
                ("maxResults", page_size.as_str()),
                ("expand", "changelog"),
            ];
            if let Some(t) = &token {
                query.push(("nextPageToken", t.as_str()));
            }
            let url = client.url(&["rest", "api", "3", "search", "jql"], &query)?;
            let page = client
                .get(url, "GET /rest/api/3/search/jql")
                .await?
                .ok_or_else(|| SourceError::Unavailable("jira search: HTTP 404".into()))?;
            let (got, next) = self.page(&page, "jira search/jql")?;
            let empty = got.is_empty();
            issues.extend(got);
            self.check_bound(issues.len())?;
            match next {
                Some(n) if token.as_deref() == Some(n.as_str()) || empty => {
                    return Err(SourceError::Invalid {
                        location: "jira search/jql".into(),
                        message: "a page without progress (empty, or the same nextPageToken)"
                            .into(),
                    })
                }
                Some(n) => token = Some(n),
                None => break,
            }
        }
        let client = &client;
        let per_ticket = issues.into_iter().map(|mut issue| async move {
            self.complete_changelog(client, &mut issue).await?;
            let approvals = if self.config.use_jsm_approvals {
                self.jsm_approvals(client, &issue).await?
            } else {
                None
            };
            Ok::<_, SourceError>((issue, approvals))
        });
        // In ticket order; the first failure fails the read.
        let done: Vec<(Value, Option<Vec<Value>>)> = stream::iter(per_ticket)
            .buffered(self.config.max_concurrency.max(1))
            .try_collect()
            .await?;
        let (issues, jsm): (Vec<Value>, Vec<Option<Vec<Value>>>) = done.into_iter().unzip();
        Ok(self.map_all(&issues, &jsm))
    }

    fn check_bound(&self, n: usize) -> Result<(), SourceError> {
        if n > self.config.max_tickets {
            return Err(SourceError::Invalid {
                location: format!("jira {}", self.config.name),
                message: format!(
                    "more than max_tickets = {} tickets match the JQL; narrow it or raise the bound",
                    self.config.max_tickets
                ),
            });
        }
        Ok(())
    }

    /// A search page's issues, and the next page's token unless it is the last.
    fn page(
        &self,
        page: &Value,
        location: &str,
    ) -> Result<(Vec<Value>, Option<String>), SourceError> {
        let issues = page
            .get("issues")
            .and_then(Value::as_array)
            .ok_or_else(|| SourceError::Invalid {
                location: location.into(),
                message: "no `issues` list in the search response".into(),
            })?;
        let last = page.get("isLast").and_then(Value::as_bool).unwrap_or(false);
        let next = page
            .get("nextPageToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && !last)
            .map(str::to_string);
        Ok((issues.clone(), next))
    }

    /// The search embeds a limited changelog; fetch the rest when it says
    /// there is more, so the approving transition is never missed.
    async fn complete_changelog(
        &self,
        client: &Client,
        issue: &mut Value,
    ) -> Result<(), SourceError> {
        let Some(key) = issue_key(issue).map(str::to_string) else {
            return Ok(());
        };
        let log = issue.get("changelog");
        let have = log
            .and_then(|c| c.get("histories"))
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let total = log
            .and_then(|c| c.get("total"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if total <= have as u64 {
            return Ok(());
        }
        let mut all = Vec::new();
        let mut start: u64 = 0;
        loop {
            let start_s = start.to_string();
            let url = client.url(
                &["rest", "api", "3", "issue", &key, "changelog"],
                &[
                    ("startAt", start_s.as_str()),
                    ("maxResults", CHANGELOG_PAGE),
                ],
            )?;
            let Some(page) = client
                .get(url, "GET /rest/api/3/issue/{key}/changelog")
                .await?
            else {
                return Ok(());
            };
            let values = page
                .get("values")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = values.len() as u64;
            all.extend(values);
            let last = page.get("isLast").and_then(Value::as_bool).unwrap_or(true);
            if last || n == 0 || all.len() > 100_000 {
                break;
            }
            start = start.saturating_add(n);
        }
        if let Some(c) = issue.get_mut("changelog").and_then(Value::as_object_mut) {
            c.insert("histories".into(), Value::Array(all));
        }
        Ok(())
    }

    /// Every page of the issue's JSM approval list; `None` when Jira has
    /// none (not a service request: the ticket is then unmapped).
    async fn jsm_approvals(
        &self,
        client: &Client,
        issue: &Value,
    ) -> Result<Option<Vec<Value>>, SourceError> {
        let Some(key) = issue_key(issue) else {
            return Ok(None);
        };
        let mut all = Vec::new();
        let mut start: u64 = 0;
        loop {
            let start_s = start.to_string();
            let url = client.url(
                &["rest", "servicedeskapi", "request", key, "approval"],
                &[("start", start_s.as_str()), ("limit", APPROVAL_PAGE)],
            )?;
            let Some(page) = client
                .get(url, "GET /rest/servicedeskapi/request/{key}/approval")
                .await?
            else {
                return Ok(None);
            };
            let values = page
                .get("values")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let n = values.len() as u64;
            all.extend(values);
            let last = page
                .get("isLastPage")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if last || n == 0 || all.len() > 10_000 {
                break;
            }
            start = start.saturating_add(n);
        }
        Ok(Some(all))
    }

    /// The offline export: `*.json` search pages at the top of `dir` (read
    /// in name order), `approvals/{KEY}.json` JSM approval lists.
    fn read_export(&self, dir: &Path) -> Result<ApprovalRead, SourceError> {
        let io = |path: &Path, source: std::io::Error| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect();
        pages.sort();
        let mut issues = Vec::new();
        for p in &pages {
            let page = self.read_json(p)?;
            let (got, _) = self.page(&page, &p.display().to_string())?;
            issues.extend(got);
            self.check_bound(issues.len())?;
        }
        let mut jsm = Vec::with_capacity(issues.len());
        for issue in &issues {
            let file = issue_key(issue)
                .filter(|k| {
                    k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
                .map(|k| dir.join("approvals").join(format!("{k}.json")));
            match file {
                Some(f) if self.config.use_jsm_approvals && f.is_file() => {
                    let page = self.read_json(&f)?;
                    jsm.push(page.get("values").and_then(Value::as_array).cloned());
                }
                _ => jsm.push(None),
            }
        }
        Ok(self.map_all(&issues, &jsm))
    }

    fn read_json(&self, path: &Path) -> Result<Value, SourceError> {
        let io = |source: std::io::Error| SourceError::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > self.config.max_response_bytes as u64 {
            return Err(SourceError::Invalid {
                location: path.display().to_string(),
                message: format!("larger than {} bytes", self.config.max_response_bytes),
            });
        }
        let text = std::fs::read(path).map_err(io)?;
        serde_json::from_slice(&text).map_err(|e| SourceError::Invalid {
            location: path.display().to_string(),
            message: format!("not JSON: {e}"),
        })
    }
}

#[async_trait]
impl ApprovalSource for JiraSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// The approvals only; an unmapped ticket fails this strict read (the
    /// pass uses [`ApprovalSource::read`], which reports it instead).
    async fn approvals(&self) -> Result<Vec<Approval>, SourceError> {
        let read = self.read().await?;
        if let Some(u) = read.unmapped.first() {
            return Err(SourceError::Invalid {
                location: u.reference.clone(),
                message: u.problem.clone(),
            });
        }
        Ok(read.approvals)
    }

    async fn read(&self) -> Result<ApprovalRead, SourceError> {
        match &self.config.export_dir {
            Some(dir) => self.read_export(dir),
            None => self.read_server().await,
        }
    }
}
