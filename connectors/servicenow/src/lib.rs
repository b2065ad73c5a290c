//! ServiceNow as an approval source: requested items (`sc_req_item`) or
//! change requests (`change_request`) selected by an encoded query, read
//! through the Table API, each bound by configured fields and catalog
//! variables to the identities, credentials and scope it approves.
//!
//! # Reading
//!
//! `GET /api/now/table/{table}?sysparm_query={query}^ORDERBYsys_id&sysparm_fields=…&sysparm_limit={page_size}&sysparm_offset={n}`
//! with `sysparm_display_value=false` and `sysparm_exclude_reference_link=true`
//! (reference fields as `sys_id`s, dates as UTC values). Paging by
//! `sysparm_offset`; ordered by `sys_id` so offsets are stable. It stops at
//! a short page, or when the instance sends a `Link` header without
//! `rel="next"`. When the instance's `X-Total-Count` changes between pages
//! (a record left or joined the result set, shifting the offsets) the
//! listing starts again; after three unsettled listings the source fails.
//! Only the mapped fields are asked for. More than
//! `max_records` matches fails the read: a truncated set would make
//! approved credentials look unapproved.
//!
//! The approver and the decision come from the system's own approval
//! records, never from a field the requester can edit: for each page of
//! records, `GET /api/now/table/sysapproval_approver?sysparm_query=sysapprovalIN{sys_ids}^stateINapproved,rejected^ORDERBYsys_id`
//! (`sysapproval`, `approver`, `state`, `sys_updated_on`). The latest
//! approved row gives the approver and `approved_at`. Identities are the
//! instance's own `sys_user` `sys_id`s, so requester, approver and assignee
//! compare exactly.
//!
//! # State mapping
//!
//! | record | approval |
//! |---|---|
//! | `approval` approved, state open / in progress | valid from `starts_at` (else the approval time) to `expires_at` |
//! | state closed complete (`3`) | ends at the closing time: `expires_at` = min(expiry, `closed_at`) |
//! | state closed incomplete / cancelled (`4`, `7`) | `revoked_at` = `closed_at` |
//! | closed, without `closed_at` | as above, at the record's `sys_updated_on` |
//! | `approval` rejected after an approval | `revoked_at` = the rejecting row's time (the record's `sys_updated_on` if none) |
//! | `approval` requested / not yet requested, or rejected and never approved | no approval (nothing was granted) |
//! | reopened | follows the current state and approval |
//!
//! The values are configurable (`[approvals.states]`).
//!
//! # Unmappable records
//!
//! A record whose mapped field is missing or malformed, or that is approved
//! without an approved `sysapproval_approver` row, is reported as
//! [`nhi_contract::Unmapped`] — its number, URL, the problem naming the
//! field, and the subjects if the subject field itself was readable — and
//! the other records are still read. Requester = approver is kept as read:
//! the engine's separation-of-duties rule judges it.
//!
//! # Errors
//!
//! 401/403 → [`SourceError::Auth`]; 429 and 503 wait for `Retry-After`
//! (bounded by `max_retry_secs`), other 5xx and connection errors back off;
//! after `max_retries` → [`SourceError::Unavailable`]. A failing source is
//! unknown, never empty.
//!
//! # Offline
//!
//! `export_dir` holds saved Table API pages in the API's own shape
//! (`{"result": [...]}`): `<export_dir>/<table>/*.json` and
//! `<export_dir>/sysapproval_approver/*.json`, read in file-name order; the
//! pages are taken as the query's result.

mod client;
mod config;
mod map;

use std::collections::HashSet;
use std::path::Path;

use async_trait::async_trait;
use nhi_contract::{Approval, ApprovalRead, ApprovalSource, SourceError};
use reqwest::header::LINK;
use serde::Deserialize;

pub use config::{Mapping, ServiceNowAuth, ServiceNowConfig, States};

use client::Client;
use map::{Mapped, Record};

/// Listings tried before a result set that keeps changing fails the source.
const LIST_ATTEMPTS: u32 = 3;

/// The approval table the decisions are read from.
const APPROVER_TABLE: &str = "sysapproval_approver";

/// The ServiceNow [`ApprovalSource`].
#[derive(Debug, Clone)]
pub struct ServiceNowSource {
    config: ServiceNowConfig,
}

impl ServiceNowSource {
    /// Create a source; nothing is read until asked.
    pub fn new(config: ServiceNowConfig) -> Self {
        ServiceNowSource { config }
    }
}

/// A Table API page.
#[derive(Deserialize)]
struct Page {
    result: Vec<Record>,
}

#[async_trait]
impl ApprovalSource for ServiceNowSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn approvals(&self) -> Result<Vec<Approval>, SourceError> {
        let read = self.read().await?;
        match read.unmapped.first() {
            None => Ok(read.approvals),
            Some(u) => Err(SourceError::Invalid {
                location: format!("servicenow {}", u.reference),
                message: u.problem.clone(),
            }),
        }
    }

    async fn read(&self) -> Result<ApprovalRead, SourceError> {
        let (records, rows) = match &self.config.export_dir {
            Some(dir) => self.read_export(dir)?,
            None => self.read_live().await?,
        };
        let decisions = map::decisions(&self.config, &rows);
        let mut out = ApprovalRead::default();
        for rec in &records {
            match map::record(&self.config, rec, &decisions) {
                Mapped::Approvals(a) => out.approvals.extend(a),
                Mapped::Unmapped(u) => {
                    tracing::warn!(source = %self.config.name, reference = %u.reference, problem = %u.problem, "servicenow record not mapped");
                    out.unmapped.push(u);
                }
                Mapped::NotApproved(why) => {
                    tracing::debug!(source = %self.config.name, why, "servicenow record grants nothing");
                }
            }
        }
        Ok(out)
    }
}

impl ServiceNowSource {
    fn too_many(&self, what: &str) -> SourceError {
        SourceError::Invalid {
            location: format!("approval source {}", self.config.name),
            message: format!(
                "more than {} {what}: raise max_records or narrow the query (a truncated set is never used)",
                self.config.max_records
            ),
        }
    }

    async fn read_live(&self) -> Result<(Vec<Record>, Vec<Record>), SourceError> {
        let cfg = &self.config;
        let client = Client::new(cfg)?;
        let query = if cfg.query.trim().is_empty() {
            "ORDERBYsys_id".to_string()
        } else {
            format!("{}^ORDERBYsys_id", cfg.query.trim())
        };
        let fields = map::fields(cfg).join(",");
        let records = self
            .list(&client, &cfg.table, &query, &fields, "records")
            .await?;
        let ids: Vec<String> = records
            .iter()
            .filter_map(|r| map::value(r, "sys_id").ok().flatten())
            .filter(|id| map::valid_sys_id(id))
            .collect();
        let mut states: Vec<&str> = cfg
            .states
            .approved
            .iter()
            .chain(&cfg.states.rejected)
            .map(String::as_str)
            .collect();
        states.dedup();
        let mut rows = Vec::new();
        for chunk in ids.chunks(usize::try_from(cfg.page_size).unwrap_or(100).max(1)) {
            let q = format!(
                "sysapprovalIN{}^stateIN{}^ORDERBYsys_id",
                chunk.join(","),
                states.join(",")
            );
            rows.extend(
                self.list(
                    &client,
                    APPROVER_TABLE,
                    &q,
                    &map::APPROVER_FIELDS.join(","),
                    "approval rows",
                )
                .await?,
            );
        }
        Ok((records, rows))
    }

    /// Every record of `table` matching `query`, paged by offset. A record
    /// leaving or joining the result set while it is paged shifts the
    /// offsets (a record could be skipped): when the instance's
    /// `X-Total-Count` changes between pages the listing starts again, and
    /// after [`LIST_ATTEMPTS`] unsettled listings the source fails.
    async fn list(
        &self,
        client: &Client,
        table: &str,
        query: &str,
        fields: &str,
        what: &str,
    ) -> Result<Vec<Record>, SourceError> {
        for attempt in 1..=LIST_ATTEMPTS {
            if let Some(out) = self.list_once(client, table, query, fields, what).await? {
                return Ok(out);
            }
            tracing::debug!(
                table,
                attempt,
                "servicenow result set changed while paged; reading again"
            );
        }
        Err(SourceError::Unavailable(format!(
            "GET /api/now/table/{table}: the result set kept changing while it was paged ({LIST_ATTEMPTS} attempts)"
        )))
    }

    /// One listing; `None` when the result set changed under it.
    async fn list_once(
        &self,
        client: &Client,
        table: &str,
        query: &str,
        fields: &str,
        what: &str,
    ) -> Result<Option<Vec<Record>>, SourceError> {
        let limit = self.config.page_size.max(1);
        let mut total: Option<Option<String>> = None;
        let max = usize::try_from(self.config.max_records).unwrap_or(usize::MAX);
        let mut out: Vec<Record> = Vec::new();
        let mut seen = HashSet::new();
        let mut offset: u64 = 0;
        loop {
            let params = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("sysparm_query", query)
                .append_pair("sysparm_fields", fields)
                .append_pair("sysparm_limit", &limit.to_string())
                .append_pair("sysparm_offset", &offset.to_string())
                .append_pair("sysparm_display_value", "false")
                .append_pair("sysparm_exclude_reference_link", "true")
                .finish();
            let path = format!("/api/now/table/{table}?{params}");
            let answer = client.get(&path).await?;
            let page: Page =
                serde_json::from_slice(&answer.body).map_err(|e| SourceError::Invalid {
                    location: format!("GET /api/now/table/{table} offset {offset}"),
                    message: format!("not a Table API page: {e}"),
                })?;
            let count = answer
                .headers
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match &total {
                None => total = Some(count),
                Some(first) if *first != count => return Ok(None),
                Some(_) => {}
            }
            let n = page.result.len();
            for r in page.result {
                // A record moved between pages while reading is kept once.
                let key = map::value(&r, "sys_id").ok().flatten();
                if key.as_ref().is_none_or(|k| seen.insert(k.clone())) {
                    out.push(r);
                }
            }
            if out.len() > max {
                return Err(self.too_many(what));
            }
            let link_says_last = answer
                .headers
                .get_all(LINK)
                .iter()
                .next()
                .is_some_and(|_| !has_next(&answer.headers));
            if n < usize::try_from(limit).unwrap_or(usize::MAX) || n == 0 || link_says_last {
                return Ok(Some(out));
            }
            offset = offset.saturating_add(n as u64);
        }
    }

    fn read_export(&self, dir: &Path) -> Result<(Vec<Record>, Vec<Record>), SourceError> {
        let root = std::fs::canonicalize(dir).map_err(|e| SourceError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let records = self.read_pages(&root, &dir.join(&self.config.table), "records")?;
        let approver_dir = dir.join(APPROVER_TABLE);
        let rows = if approver_dir.exists() {
            self.read_pages(&root, &approver_dir, "approval rows")?
        } else {
            Vec::new()
        };
        Ok((records, rows))
    }

    /// Every `*.json` page in `dir`, in name order. A symbolic link is
    /// followed when it stays inside `root` (a ConfigMap mount is made of
    /// such links) and refused when it leads out; a page that is not a
    /// regular file is refused — never skipped, which would read as fewer
    /// approvals.
    fn read_pages(&self, root: &Path, dir: &Path, what: &str) -> Result<Vec<Record>, SourceError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| SourceError::Io { path, source: e }
        };
        let invalid = |path: &Path, message: String| SourceError::Invalid {
            location: path.display().to_string(),
            message,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let p = entry.map_err(io(dir))?.path();
            if p.extension().and_then(|e| e.to_str()) == Some("json") {
                files.push(p);
            }
        }
        files.sort();
        let max = usize::try_from(self.config.max_records).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        for f in files {
            let real = std::fs::canonicalize(&f).map_err(io(&f))?;
            if !real.starts_with(root) {
                return Err(invalid(
                    &f,
                    format!(
                        "symbolic link to {}, outside the export directory: refused",
                        real.display()
                    ),
                ));
            }
            let meta = std::fs::metadata(&real).map_err(io(&f))?;
            if !meta.is_file() {
                return Err(invalid(&f, "not a regular file: refused".into()));
            }
            if meta.len() > self.config.max_response_bytes {
                return Err(invalid(
                    &f,
                    format!(
                        "larger than max_response_bytes ({})",
                        self.config.max_response_bytes
                    ),
                ));
            }
            let bytes = std::fs::read(&real).map_err(io(&f))?;
            let page: Page = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(&f, format!("not a Table API page: {e}")))?;
            out.extend(page.result);
            if out.len() > max {
                return Err(self.too_many(what));
            }
        }
        Ok(out)
    }
}

/// Whether a `Link` header names a `rel="next"` page.
fn has_next(h: &reqwest::header::HeaderMap) -> bool {
    h.get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            part.split(';')
                .skip(1)
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
        })
}
