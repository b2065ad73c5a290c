//! Rendering findings, plans, rules and controls as table, JSON or CSV.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use serde::Serialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use crate::engine::estate::SourceStatus;
use crate::engine::findings::Finding;
use crate::engine::plan::{ResolvedAction, Verdict};
use crate::engine::rules::Severity;

/// Version of the JSON documents `scan`, `plan` and `reconcile` print.
/// 2: a partial source names the facets its gaps blind (`blinds`), where 1
/// had `unseen_kinds` and `unseen_other`.
pub const JSON_FORMAT_VERSION: u32 = 2;

/// What a JSON document of a pass says about its run: which sources it
/// could see. A consumer can tell a clean run from a blind one without the
/// exit code.
#[derive(Debug, Clone, Copy)]
pub struct RunView<'a> {
    /// The run's id in the store.
    pub run_id: i64,
    /// How each source fared.
    pub sources: &'a [SourceStatus],
}

impl<'a> From<&'a crate::pass::PassResult> for RunView<'a> {
    fn from(p: &'a crate::pass::PassResult) -> RunView<'a> {
        RunView {
            run_id: p.summary.run_id,
            sources: &p.sources,
        }
    }
}

impl RunView<'_> {
    /// Whether every source was read completely.
    pub fn complete(&self) -> bool {
        self.sources.iter().all(|s| s.state.is_complete())
    }

    /// `{format_version, run_id, complete, sources, <key>: body}`, keys
    /// in order as a parsed document has them. The body is written one
    /// element at a time: a million findings made into one document tree
    /// first took gigabytes.
    fn envelope<'b, T: Serialize>(
        &self,
        key: &'b str,
        body: &'b [T],
    ) -> anyhow::Result<Envelope<'b, T>> {
        let sources: Vec<serde_json::Value> = self
            .sources
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(&s.state)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("name".into(), s.name.clone().into());
                    o.insert("provider".into(), s.provider.as_str().into());
                }
                Ok(v)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        let mut head = serde_json::Map::new();
        head.insert("format_version".into(), JSON_FORMAT_VERSION.into());
        head.insert("run_id".into(), self.run_id.into());
        head.insert("complete".into(), self.complete().into());
        head.insert("sources".into(), sources.into());
        Ok(Envelope { head, key, body })
    }
}

/// A run's JSON document: its head, and a body serialised as it is written.
struct Envelope<'a, T> {
    head: serde_json::Map<String, serde_json::Value>,
    key: &'a str,
    body: &'a [T],
}

/// Each element as its parsed value: keys sorted, as the document was.
struct Sorted<'a, T>(&'a [T]);

impl<T: Serialize> Serialize for Sorted<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&serde_json::to_value(item).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

impl<T: Serialize> Serialize for Envelope<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.head.len() + 1))?;
        let mut body = Some(Sorted(self.body));
        // The head's map iterates in key order; the body goes in its place.
        for (k, v) in &self.head {
            if k.as_str() > self.key {
                if let Some(b) = body.take() {
                    map.serialize_entry(self.key, &b)?;
                }
            }
            map.serialize_entry(k, v)?;
        }
        if let Some(b) = body {
            map.serialize_entry(self.key, &b)?;
        }
        map.end()
    }
}

pub use super::format::Format;

/// Shorten long provider ids for the terminal: the tail carries the name.
fn short(id: &str, max: usize) -> String {
    let n = id.chars().count();
    if n <= max {
        id.to_string()
    } else {
        let tail: String = id.chars().skip(n - (max - 1)).collect();
        format!("…{tail}")
    }
}

#[derive(Tabled)]
struct FindingRow {
    #[tabled(rename = "SEVERITY")]
    severity: String,
    #[tabled(rename = "RULE")]
    rule: String,
    #[tabled(rename = "IDENTITY")]
    identity: String,
    #[tabled(rename = "CREDENTIAL")]
    credential: String,
    #[tabled(rename = "ACTION")]
    action: String,
}

/// Findings rendered as CSV together, per core.
const CSV_BLOCK: usize = 8_192;

/// `list` as CSV rows, without a header.
fn csv_rows(list: &[Finding]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::with_capacity(list.len() * 512));
    for f in list {
        w.write_record([
            &f.rule_id,
            &f.title,
            f.severity.as_str(),
            f.provider.as_deref().unwrap_or(""),
            f.identity_id.as_str(),
            f.credential_id.as_deref().unwrap_or(""),
            &f.controls.join(" "),
            f.recommended_action.as_str(),
            &*f.evidence.json(),
            f.exception.as_ref().map(|e| e.id.as_str()).unwrap_or(""),
        ])?;
    }
    Ok(w.into_inner().map_err(|e| e.into_error())?)
}

/// Findings a table shows at most; the machine formats list every one.
pub const TABLE_ROWS: usize = 1_000;

/// Write findings in `format`.
pub fn findings(
    out: &mut dyn Write,
    format: Format,
    run: &RunView<'_>,
    list: &[Finding],
) -> anyhow::Result<()> {
    match format {
        f @ (Format::Ocsf | Format::Sarif | Format::Html) => {
            return Err(f.unsupported("a pass's findings"))
        }
        Format::Json => json(out, &run.envelope("findings", list)?)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record([
                "rule_id",
                "title",
                "severity",
                "provider",
                "identity_id",
                "credential_id",
                "controls",
                "recommended_action",
                "evidence",
                "exception_id",
            ])?;
            w.flush()?;
            drop(w);
            // Rows rendered a block at a time on every core, written in
            // order: a million rows took seconds on one. The next window
            // is rendered while this one is written (900 MB at a million
            // findings: the cores sat idle through each write).
            use rayon::prelude::*;
            let render = |window: &[Finding]| {
                window
                    .par_chunks(CSV_BLOCK)
                    .map(csv_rows)
                    .collect::<anyhow::Result<Vec<Vec<u8>>>>()
            };
            std::thread::scope(|s| -> anyhow::Result<()> {
                let mut windows = list.chunks(CSV_BLOCK * rayon::current_num_threads().max(1));
                let mut next = windows.next().map(|w| s.spawn(move || render(w)));
                while let Some(rendering) = next {
                    let blocks = rendering
                        .join()
                        .map_err(|_| anyhow::anyhow!("rendering CSV rows panicked"))??;
                    next = windows.next().map(|w| s.spawn(move || render(w)));
                    for block in blocks {
                        out.write_all(&block)?;
                    }
                }
                Ok(())
            })?;
        }
        Format::Table => {
            if list.is_empty() {
                writeln!(out, "No findings.")?;
                return Ok(());
            }
            // A terminal table of a large estate's findings is unreadable
            // and costs more than the pass (1.25 million rows: 179 MB of
            // text, gigabytes to lay out): the most severe are shown, in
            // the order found, and the machine formats list them all.
            let shown: Vec<&Finding> = if list.len() > TABLE_ROWS {
                let mut by_severity: Vec<&Finding> = list.iter().collect();
                by_severity.sort_by_key(|f| std::cmp::Reverse(f.severity));
                by_severity.truncate(TABLE_ROWS);
                by_severity
            } else {
                list.iter().collect()
            };
            let rows = shown.iter().map(|f| FindingRow {
                severity: f.severity.as_str().to_uppercase(),
                rule: f.rule_id.to_string(),
                identity: short(&f.identity_id, 46),
                credential: f
                    .credential_id
                    .as_deref()
                    .map(|c| short(c, 24))
                    .unwrap_or_default(),
                action: match &f.exception {
                    Some(e) => format!(
                        "{} (excepted: {} until {})",
                        f.recommended_action.as_str(),
                        e.id,
                        e.expires_at.format("%Y-%m-%d")
                    ),
                    None => f.recommended_action.as_str().to_string(),
                },
            });
            let mut t = Table::new(rows);
            t.with(Style::sharp());
            writeln!(out, "{t}")?;
            if shown.len() < list.len() {
                writeln!(
                    out,
                    "{} more not shown (the {TABLE_ROWS} most severe are); --format json or csv lists every finding.",
                    list.len() - shown.len()
                )?;
            }
            let counts: Vec<String> = [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low,
                Severity::Info,
            ]
            .into_iter()
            .filter_map(|sev| {
                let n = list.iter().filter(|f| f.severity == sev).count();
                (n > 0).then(|| format!("{n} {sev}"))
            })
            .collect();
            let excepted = list.iter().filter(|f| f.exception.is_some()).count();
            let excepted = match excepted {
                0 => String::new(),
                n => format!(" ({n} excepted)"),
            };
            writeln!(
                out,
                "{} finding(s): {}{excepted}",
                list.len(),
                counts.join(", ")
            )?;
        }
    }
    Ok(())
}

#[derive(Tabled)]
struct PlanRow {
    #[tabled(rename = "OPERATION")]
    operation: String,
    #[tabled(rename = "PROVIDER")]
    provider: String,
    #[tabled(rename = "IDENTITY")]
    identity: String,
    #[tabled(rename = "CREDENTIAL")]
    credential: String,
    #[tabled(rename = "RULES")]
    rules: String,
    #[tabled(rename = "STATUS")]
    status: String,
}

/// Write the plan in `format`.
pub fn plan(
    out: &mut dyn Write,
    format: Format,
    run: &RunView<'_>,
    actions: &[ResolvedAction],
) -> anyhow::Result<()> {
    let status = |a: &ResolvedAction| match &a.reason {
        None => a.status.to_string(),
        Some(r) => format!("{}: {r}", a.status),
    };
    match format {
        f @ (Format::Ocsf | Format::Sarif | Format::Html) => return Err(f.unsupported("a plan")),
        Format::Json => json(out, &run.envelope("actions", actions)?)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "operation",
                "provider",
                "identity_id",
                "credential_id",
                "entitlements",
                "rules",
                "status",
            ])?;
            for a in actions {
                w.write_record([
                    a.request.operation.as_str(),
                    a.request.provider.as_str(),
                    a.request.identity_id.as_str(),
                    a.request.credential_id.as_deref().unwrap_or(""),
                    &a.request.entitlements.join(" "),
                    &a.rules.join(" "),
                    &status(a),
                ])?;
            }
            w.flush()?;
        }
        Format::Table => {
            if actions.is_empty() {
                writeln!(out, "Nothing to do.")?;
                return Ok(());
            }
            let rows = actions.iter().map(|a| PlanRow {
                operation: a.request.operation.as_str().to_string(),
                provider: a.request.provider.to_string(),
                identity: short(&a.request.identity_id, 48),
                credential: a
                    .request
                    .credential_id
                    .as_deref()
                    .map(|c| short(c, 24))
                    .unwrap_or_default(),
                rules: a.rules.join("\n"),
                status: status(a),
            });
            let mut t = Table::new(rows);
            t.with(Style::sharp());
            writeln!(out, "{t}")?;
            let acting = actions.iter().filter(|a| a.status == Verdict::Act).count();
            writeln!(
                out,
                "Dry run: {acting} action(s) would run, {} skipped. Nothing was changed.",
                actions.len() - acting
            )?;
        }
    }
    Ok(())
}

/// Write any serialisable rows as JSON (used for `rules` / `controls`).
pub fn json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    super::pretty::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

#[derive(Tabled)]
struct OutcomeRow {
    #[tabled(rename = "ID")]
    id: String,
    #[tabled(rename = "OPERATION")]
    operation: String,
    #[tabled(rename = "IDENTITY")]
    identity: String,
    #[tabled(rename = "CREDENTIAL")]
    credential: String,
    #[tabled(rename = "STATUS")]
    status: String,
    #[tabled(rename = "DETAIL")]
    detail: String,
}

/// Write what enforce (or undo) did; with a run, JSON says which sources
/// the run could see.
pub fn outcomes(
    out: &mut dyn Write,
    format: Format,
    run: Option<&RunView<'_>>,
    list: &[crate::act::Outcome],
) -> anyhow::Result<()> {
    if format == Format::Json {
        return match run {
            Some(r) => json(out, &r.envelope("outcomes", list)?),
            None => json(out, list),
        };
    }
    if list.is_empty() {
        writeln!(out, "Nothing to do.")?;
        return Ok(());
    }
    let rows = list.iter().map(|o| OutcomeRow {
        id: o.action_id.map(|i| i.to_string()).unwrap_or_default(),
        operation: o.request.operation.as_str().to_string(),
        identity: short(&o.request.identity_id, 46),
        credential: o
            .request
            .credential_id
            .as_deref()
            .map(|c| short(c, 24))
            .unwrap_or_default(),
        status: o.status.to_string(),
        detail: o.detail.clone().unwrap_or_default(),
    });
    let mut t = Table::new(rows);
    t.with(Style::sharp());
    writeln!(out, "{t}")?;
    Ok(())
}

#[derive(Tabled)]
struct RevocationRow {
    #[tabled(rename = "APPROVAL")]
    approval: String,
    #[tabled(rename = "REVOKED AT")]
    revoked_at: String,
    #[tabled(rename = "BY")]
    by: String,
    #[tabled(rename = "STATE")]
    state: String,
}

/// Write webhook revocations.
pub fn revocations(
    out: &mut dyn Write,
    format: Format,
    list: &[crate::store::journal::Revocation],
) -> anyhow::Result<()> {
    if format == Format::Json {
        return json(out, list);
    }
    if list.is_empty() {
        writeln!(out, "No revocations.")?;
        return Ok(());
    }
    let rows = list.iter().map(|r| RevocationRow {
        approval: r.approval_id.clone(),
        revoked_at: r.revoked_at.clone(),
        by: r.requested_by.clone(),
        state: match (&r.withdrawn_at, &r.unmatched_since) {
            (Some(at), _) => format!(
                "withdrawn {at} by {}: {}",
                r.withdrawn_by.as_deref().unwrap_or("?"),
                r.withdraw_reason.as_deref().unwrap_or("")
            ),
            (None, Some(since)) => format!("in force, names no known approval since {since}"),
            (None, None) => "in force".into(),
        },
    });
    let mut t = Table::new(rows);
    t.with(Style::sharp());
    writeln!(out, "{t}")?;
    Ok(())
}

/// Write what `render` produces to `path` — created like every file the
/// tool writes (`safe_file`: never through a planted link, `0644`) — or to
/// stdout.
pub fn emit(
    path: Option<&Path>,
    render: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match path {
        Some(p) => {
            // Streamed into the file as rendered: a million findings held
            // as one buffer first cost a gigabyte and its regrowth copies.
            let cannot = || format!("cannot write {}", p.display());
            let mut file =
                crate::safe_file::AtomicFile::create(p, crate::safe_file::Access::Shared)
                    .with_context(cannot)?;
            {
                let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
                render(&mut w)?;
                w.flush().with_context(cannot)?;
            }
            file.commit().with_context(cannot)?;
        }
        None => {
            // Stdout is line-buffered: a write per row without this.
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::rules::Action;

    fn finding(n: usize, severity: Severity) -> Finding {
        Finding {
            rule_id: "credential-stale".into(),
            title: "t".into(),
            severity,
            provider: Some("aws".into()),
            identity_id: format!("arn:aws:iam::1:user/u{n}"),
            credential_id: Some(format!("AKIA{n:06}")),
            controls: Default::default(),
            evidence: serde_json::json!({}).into(),
            recommended_action: Action::Disable,
            exception: None,
        }
    }

    fn table(list: &[Finding]) -> String {
        let run = RunView {
            run_id: 1,
            sources: &[],
        };
        let mut out = Vec::new();
        findings(&mut out, Format::Table, &run, list).expect("table");
        String::from_utf8(out).expect("utf8")
    }

    /// Rendered in blocks on every core, the rows are every finding's, in
    /// order, each once, under one header, and read back as written.
    #[test]
    fn csv_in_blocks_lists_every_finding_in_order() {
        let n = CSV_BLOCK * 3 + 17;
        let mut list: Vec<Finding> = (0..n).map(|i| finding(i, Severity::Low)).collect();
        list[CSV_BLOCK].evidence = serde_json::json!({"note": "a \"quoted\", line\nbreak"}).into();
        let run = RunView {
            run_id: 1,
            sources: &[],
        };
        let mut out = Vec::new();
        findings(&mut out, Format::Csv, &run, &list).expect("csv");
        let mut r = csv::Reader::from_reader(&out[..]);
        assert_eq!(r.headers().expect("header").get(0), Some("rule_id"));
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
        assert_eq!(rows.len(), n);
        for (row, f) in rows.iter().zip(&list) {
            assert_eq!(row.get(4), Some(f.identity_id.as_str()));
            assert_eq!(row.get(5), f.credential_id.as_deref());
            assert_eq!(row.get(8), Some(&*f.evidence.json()));
        }
    }

    #[test]
    fn a_large_table_shows_the_most_severe_and_counts_every_finding() {
        // Low first, then the few critical and high ones last.
        let mut list: Vec<Finding> = (0..TABLE_ROWS + 500)
            .map(|n| finding(n, Severity::Low))
            .collect();
        list.extend((0..3).map(|n| finding(900_000 + n, Severity::Critical)));
        list.extend((0..2).map(|n| finding(800_000 + n, Severity::High)));
        let text = table(&list);
        let rows = |t: &str| t.lines().filter(|l| l.contains("AKIA")).count();
        assert_eq!(rows(&text), TABLE_ROWS);
        for n in [900_000, 900_001, 900_002, 800_000, 800_001] {
            assert!(text.contains(&format!("AKIA{n}")), "AKIA{n} not shown");
        }
        assert!(
            text.contains("505 more not shown (the 1000 most severe are)"),
            "{}",
            &text[text.len().saturating_sub(300)..]
        );
        assert!(text.contains("1505 finding(s): 3 critical, 2 high, 1500 low"));

        // Up to the limit, every finding, as found, and no note.
        let small: Vec<Finding> = list[..TABLE_ROWS].to_vec();
        let text = table(&small);
        assert_eq!(rows(&text), TABLE_ROWS);
        assert!(!text.contains("not shown"));
        let first = text.find("AKIA000000").expect("first");
        let last = text.find("AKIA000999").expect("last");
        assert!(first < last, "the order found");
    }
}
