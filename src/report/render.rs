//! Report formats and the files each writes: table (`report.txt`), JSON
//! (`report.json`), CSV (`coverage.csv`, one row per control, and
//! `findings.csv`, one row per finding), OCSF (`report.ocsf.json`), SARIF
//! (`report.sarif`), HTML (`report.html`).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tabled::settings::{object::Columns, Modify, Style, Width};

use super::coverage::FrameworkCoverage;
pub use super::format::Format;
use super::{ReportError, ReportFinding, RunData};
use crate::store::journal::Entry;
use crate::store::runs::RunInfo;

/// The JSON report. Coverage comes last: when it was not computed before,
/// it is tallied from the findings as they are written, so the report
/// reads them once.
#[derive(Serialize)]
pub struct JsonReport<'a> {
    /// What this document is.
    pub report: &'static str,
    /// Tool version that wrote it.
    pub tool_version: &'static str,
    /// The run reported on.
    pub run: &'a RunInfo,
    /// Findings of the run, with first-seen dates (read as written).
    findings: Tallied<'a>,
    /// Findings this run resolved, as last seen.
    pub resolved: &'a super::Resolved,
    /// Actions the run journaled.
    pub actions: &'a [Entry],
    /// Standing vs issued access per approval.
    pub access: &'a [super::access::ApprovalAccess],
    /// Coverage per framework.
    frameworks: Frameworks<'a>,
}

/// A coverage tally shared by the findings (which feed it) and the
/// frameworks (written from it after them).
type PendingFold<'a> = std::cell::RefCell<Option<super::coverage::Fold<'a>>>;

/// The findings, each added to the pending coverage tally as written.
struct Tallied<'a> {
    findings: &'a super::Findings,
    fold: &'a PendingFold<'a>,
}

impl Serialize for Tallied<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_stream(
            s,
            self.findings.iter().inspect(|f| {
                if let (Ok(f), Some(fold)) = (f, self.fold.borrow_mut().as_mut()) {
                    fold.add(f);
                }
            }),
        )
    }
}

/// Coverage as computed, or the tally the findings fed.
struct Frameworks<'a> {
    computed: Option<&'a [FrameworkCoverage]>,
    fold: &'a PendingFold<'a>,
}

impl Serialize for Frameworks<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.computed {
            Some(c) => c.serialize(s),
            None => self
                .fold
                .borrow_mut()
                .take()
                .map(super::coverage::Fold::finish)
                .unwrap_or_default()
                .serialize(s),
        }
    }
}

/// A report's coverage: computed before it is written, or still to be
/// computed for these frameworks (the JSON report tallies it as it writes
/// the findings; the formats that show it first compute it first).
#[derive(Debug, Clone, Copy)]
pub enum Coverage<'a> {
    /// Computed.
    Computed(&'a [FrameworkCoverage]),
    /// To compute, for the frameworks named (all when empty).
    Pending(&'a [String]),
}

impl<'a> Coverage<'a> {
    /// The coverage, computed now if it is pending.
    fn ready(
        self,
        data: &RunData,
    ) -> Result<std::borrow::Cow<'a, [FrameworkCoverage]>, ReportError> {
        match self {
            Coverage::Computed(c) => Ok(std::borrow::Cow::Borrowed(c)),
            Coverage::Pending(f) => Ok(std::borrow::Cow::Owned(super::coverage::compute(data, f)?)),
        }
    }
}

/// One row of `coverage.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageRow {
    /// Framework id.
    pub framework: String,
    /// Control id.
    pub control: String,
    /// Title.
    pub title: String,
    /// `pass`, `fail`, `excepted`, `unknown`, `not_evaluated`.
    pub status: String,
    /// Mapped rules evaluated, space-separated.
    pub rules: String,
    /// Subjects evaluated.
    pub subjects_evaluated: usize,
    /// Subjects passing.
    pub subjects_passing: usize,
    /// Subjects failing.
    pub subjects_failing: usize,
    /// Subjects whose findings are all excepted.
    pub subjects_excepted: usize,
    /// Failing findings.
    pub findings: usize,
    /// Highest severity among them.
    pub worst_severity: String,
    /// Their fingerprints, space-separated.
    pub finding_fingerprints: String,
}

/// One row of `findings.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRow {
    /// Fingerprint.
    pub fingerprint: String,
    /// Rule.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// Provider.
    pub provider: String,
    /// Source.
    pub source: String,
    /// Identity.
    pub identity_id: String,
    /// Credential.
    pub credential_id: String,
    /// Controls, space-separated.
    pub controls: String,
    /// Recommended action.
    pub recommended_action: String,
    /// Id of the exception accepting its risk (empty: none).
    pub exception_id: String,
    /// When that exception ends (empty: none).
    pub exception_expires_at: String,
    /// First seen.
    pub first_seen: String,
    /// Evidence (JSON).
    pub evidence: String,
}

/// Coverage rows, as written to `coverage.csv`.
pub fn coverage_rows(cov: &[FrameworkCoverage]) -> Vec<CoverageRow> {
    cov.iter()
        .flat_map(|fw| {
            fw.controls.iter().map(move |c| CoverageRow {
                framework: fw.framework.clone(),
                control: c.id.clone(),
                title: c.title.clone(),
                status: c.status.as_str().to_string(),
                rules: c.rules.join(" "),
                subjects_evaluated: c.subjects.evaluated,
                subjects_passing: c.subjects.passing,
                subjects_failing: c.subjects.failing,
                subjects_excepted: c.subjects.excepted,
                findings: c.findings_total,
                worst_severity: c.worst_severity.clone().unwrap_or_default(),
                finding_fingerprints: c.findings.join(" "),
            })
        })
        .collect()
}

/// One finding's row, as written to `findings.csv`.
pub fn finding_row(f: &ReportFinding) -> Result<FindingRow, ReportError> {
    {
        let d = &f.finding;
        Ok(FindingRow {
            fingerprint: f.fingerprint.clone(),
            rule_id: d.rule_id.to_string(),
            title: d.title.to_string(),
            severity: d.severity.as_str().to_string(),
            provider: d.provider.as_deref().unwrap_or_default().to_string(),
            source: f.source.clone(),
            identity_id: d.identity_id.clone(),
            credential_id: d.credential_id.clone().unwrap_or_default(),
            controls: d.controls.join(" "),
            recommended_action: d.recommended_action.as_str().to_string(),
            exception_id: d
                .exception
                .as_ref()
                .map(|e| e.id.clone())
                .unwrap_or_default(),
            exception_expires_at: d
                .exception
                .as_ref()
                .map(|e| e.expires_at.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
            first_seen: f.first_seen.clone(),
            evidence: d.evidence.json().into_owned(),
        })
    }
}

/// Rows as CSV on `w`, one row serialised at a time.
fn write_csv<T: Serialize>(
    w: &mut dyn std::io::Write,
    rows: impl Iterator<Item = Result<T, ReportError>>,
) -> Result<(), ReportError> {
    let err = |e: csv::Error| ReportError::Render {
        what: "csv",
        message: e.to_string(),
    };
    let mut out = csv::Writer::from_writer(w);
    for r in rows {
        out.serialize(r?).map_err(err)?;
    }
    out.flush().map_err(|e| ReportError::Render {
        what: "csv",
        message: e.to_string(),
    })
}

/// The coverage tables.
pub fn table(data: &RunData, cov: &[FrameworkCoverage]) -> String {
    let mut out = String::new();
    let r = &data.run;
    let _ = writeln!(
        out,
        "Control coverage — run {} ({}), as of {}, {} finding(s)\n",
        r.id,
        r.command,
        r.as_of,
        data.findings.len()
    );
    for fw in cov {
        let t = &fw.totals;
        let _ = writeln!(
            out,
            "{} ({} {}): {} controls — {} pass, {} fail, {} excepted, {} unknown, {} not evaluated",
            fw.framework,
            fw.name,
            fw.version,
            t.controls,
            t.pass,
            t.fail,
            t.excepted,
            t.unknown,
            t.not_evaluated
        );
        let mut b = tabled::builder::Builder::default();
        b.push_record([
            "CONTROL",
            "TITLE",
            "STATUS",
            "SUBJECTS PASS/FAIL",
            "FINDINGS",
            "RULES",
        ]);
        for c in &fw.controls {
            b.push_record([
                c.id.clone(),
                c.title.clone(),
                c.status.as_str().replace('_', " ").to_uppercase(),
                if c.rules.is_empty() {
                    "-".into()
                } else {
                    match c.subjects.excepted {
                        0 => format!("{}/{}", c.subjects.passing, c.subjects.failing),
                        n => format!(
                            "{}/{} (+{n} excepted)",
                            c.subjects.passing, c.subjects.failing
                        ),
                    }
                },
                c.findings_total.to_string(),
                if c.rules.is_empty() {
                    "-".into()
                } else {
                    c.rules.join("\n")
                },
            ]);
        }
        let mut t = b.build();
        t.with(Style::sharp())
            .with(Modify::new(Columns::one(1)).with(Width::wrap(40)));
        let _ = writeln!(out, "{t}\n");
    }
    access_table(&mut out, &data.access);
    for s in &data.reading.sources {
        if !s.state.is_complete() {
            let _ = writeln!(
                out,
                "warning: source {} was not read completely in this run: controls without failures are UNKNOWN, not passing",
                s.name
            );
        }
    }
    out
}

/// Rows the table shows per section; the JSON report has every approval.
const ACCESS_ROWS: usize = 50;

/// Standing vs issued access: the counts, then the approvals that could be
/// served by issuance or were (those an auditor asks about), capped.
fn access_table(out: &mut String, access: &[super::access::ApprovalAccess]) {
    use super::access::Served;
    if access.is_empty() {
        return;
    }
    let count = |s: Served| access.iter().filter(|a| a.served == s).count();
    let issuable_standing = access
        .iter()
        .filter(|a| a.issuance.is_some() && !a.standing.is_empty())
        .count();
    let _ = writeln!(
        out,
        "Access per approval: {} approval(s) — {} standing only, {} issued only, {} both, {} neither; {} could be served by issuance but still rest on standing secrets",
        access.len(),
        count(Served::Standing),
        count(Served::Issued),
        count(Served::Both),
        count(Served::None),
        issuable_standing
    );
    let shown: Vec<_> = access
        .iter()
        .filter(|a| a.issuance.is_some() || a.sessions_issued > 0 || a.federated)
        .collect();
    if shown.is_empty() {
        let _ = writeln!(out);
        return;
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record([
        "APPROVAL",
        "STATE",
        "ISSUANCE",
        "STANDING",
        "SESSIONS (VALID/ISSUED)",
        "FEDERATED",
        "SERVED",
    ]);
    for a in shown.iter().take(ACCESS_ROWS) {
        b.push_record([
            a.approval.clone(),
            a.state.to_string(),
            a.issuance.map_or("-", |i| i.as_str()).to_string(),
            if a.standing.is_empty() {
                "-".into()
            } else {
                a.standing.join("\n")
            },
            format!("{}/{}", a.sessions_valid, a.sessions_issued),
            if a.federated { "yes" } else { "no" }.to_string(),
            a.served.as_str().to_string(),
        ]);
    }
    let mut t = b.build();
    t.with(Style::sharp());
    let _ = writeln!(out, "{t}");
    if shown.len() > ACCESS_ROWS {
        let _ = writeln!(
            out,
            "… and {} more: every approval is in the JSON report's `access`",
            shown.len() - ACCESS_ROWS
        );
    }
    let _ = writeln!(out);
}

/// `findings.csv` on `w`, each finding added to `fold` (when given) as it
/// is written: `coverage.csv` then comes from the same pass.
pub fn write_findings_csv(
    data: &RunData,
    mut fold: Option<&mut super::coverage::Fold<'_>>,
    w: &mut dyn std::io::Write,
) -> Result<(), ReportError> {
    write_csv(
        w,
        data.findings.iter().map(|f| {
            let f = f?;
            if let Some(fold) = fold.as_deref_mut() {
                fold.add(&f);
            }
            finding_row(&f)
        }),
    )
}

/// The files `format` writes, in order.
pub fn file_names(format: Format) -> &'static [&'static str] {
    match format {
        Format::Table => &["report.txt"],
        Format::Json => &["report.json"],
        Format::Csv => &["coverage.csv", "findings.csv"],
        Format::Ocsf => &["report.ocsf.json"],
        Format::Sarif => &["report.sarif"],
        Format::Html => &["report.html"],
    }
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> ReportError {
    move |e| ReportError::Render {
        what,
        message: e.to_string(),
    }
}

/// Write file `name` (one of [`file_names`]) of `format` to `w`. Every
/// format is serialised as it is written, finding by finding as they are
/// read from the store: no copy of the document, nor every finding, is
/// held in memory. OCSF (one event per line) and SARIF are compact.
pub fn write_file(
    data: &RunData,
    cov: Coverage<'_>,
    format: Format,
    name: &str,
    w: &mut dyn std::io::Write,
) -> Result<(), ReportError> {
    match (format, name) {
        (Format::Table, _) => w
            .write_all(table(data, &cov.ready(data)?).as_bytes())
            .map_err(io_err("table"))?,
        (Format::Json, _) => {
            let fold = std::cell::RefCell::new(match cov {
                Coverage::Computed(_) => None,
                Coverage::Pending(f) => Some(super::coverage::Fold::new(data, f)?),
            });
            let doc = JsonReport {
                report: "nhi-assure control coverage",
                tool_version: data.version,
                run: &data.run,
                findings: Tallied {
                    findings: &data.findings,
                    fold: &fold,
                },
                resolved: &data.resolved,
                actions: &data.journal,
                access: &data.access,
                frameworks: Frameworks {
                    computed: match cov {
                        Coverage::Computed(c) => Some(c),
                        Coverage::Pending(_) => None,
                    },
                    fold: &fold,
                },
            };
            super::pretty::to_writer(&mut *w, &doc)?;
            w.write_all(b"\n").map_err(io_err("json"))?;
        }
        (Format::Csv, "coverage.csv") => {
            write_csv(w, coverage_rows(&cov.ready(data)?).into_iter().map(Ok))?
        }
        (Format::Csv, _) => write_findings_csv(data, None, w)?,
        (Format::Ocsf, _) => super::ocsf::write_lines(data, w)?,
        (Format::Sarif, _) => {
            // Compact: a SARIF log of a million results is for tools.
            serde_json::to_writer(&mut *w, &super::sarif::Log(data))?;
            w.write_all(b"\n").map_err(io_err("sarif"))?;
        }
        (Format::Html, _) => w
            .write_all(super::html::render(data, cov)?.as_bytes())
            .map_err(io_err("html"))?,
    }
    Ok(())
}

/// Writes one file: its name, and how to render it into a writer.
pub type Render<'r> = dyn FnMut(&mut dyn std::io::Write) -> Result<(), ReportError> + 'r;

/// Every file of `formats` through `sink`, which opens, fills (with the
/// renderer it is handed) and closes one file, in [`file_names`] order.
/// Files that read the findings are written at once, each on its own
/// thread, from one read of them (see `Pages` in [`crate::report`]); the
/// JSON and HTML reports tally coverage for `frameworks` as they go. The
/// table and the coverage CSV need coverage before they start: it is
/// counted by a reader of its own alongside the others, and they are
/// written after.
pub fn write_files<T: Send, E: From<ReportError> + Send>(
    data: &RunData,
    formats: &[Format],
    frameworks: &[String],
    sink: &(dyn Fn(&'static str, &mut Render<'_>) -> Result<T, E> + Sync),
) -> Result<Vec<(&'static str, T)>, E> {
    super::coverage::check_filter(data, frameworks)?;
    let mut files: Vec<(Format, &'static str)> = Vec::new();
    for &f in formats {
        for &name in file_names(f) {
            // A format named twice is one file, written once.
            if !files.iter().any(|&(_, n)| n == name) {
                files.push((f, name));
            }
        }
    }
    let needs_coverage = |&(f, name): &(Format, &str)| f == Format::Table || name == "coverage.csv";
    let panicked = |what: &str| ReportError::Render {
        what: "report",
        message: format!("writing {what} panicked"),
    };
    let (cov, mut streamed) = tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            let cov = files
                .iter()
                .any(needs_coverage)
                .then(|| s.spawn(|| super::coverage::compute(data, frameworks)));
            let streamed: Vec<_> = files
                .iter()
                .filter(|f| !needs_coverage(f))
                .map(|&(f, name)| {
                    let write = move || {
                        sink(name, &mut |w| {
                            write_file(data, Coverage::Pending(frameworks), f, name, w)
                        })
                    };
                    (name, s.spawn(write))
                })
                .collect();
            let streamed = streamed
                .into_iter()
                .map(|(name, h)| Ok((name, h.join().map_err(|_| panicked(name))??)))
                .collect::<Result<std::collections::HashMap<_, _>, E>>();
            let cov = match cov {
                Some(h) => Some(h.join().map_err(|_| panicked("coverage"))??),
                None => None,
            };
            Ok::<_, E>((cov, streamed?))
        })
    })?;
    let cov = cov.unwrap_or_default();
    files
        .into_iter()
        .map(|(f, name)| {
            let written = match streamed.remove(name) {
                Some(t) => t,
                None => sink(name, &mut |w| {
                    write_file(data, Coverage::Computed(&cov), f, name, w)
                })?,
            };
            Ok((name, written))
        })
        .collect()
}
