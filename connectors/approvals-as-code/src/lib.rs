//! Approvals as code: a directory of YAML files, reviewed through pull requests.
//!
//! Each `*.yaml` / `*.yml` file holds a list under `approvals:`. Validation is
//! strict and complete: every problem in every file is reported with
//! `file:line:column`, and a single problem fails the whole read — a partly
//! read approval set would make approved credentials look unapproved (and,
//! in enforce mode, get them disabled). The checks:
//!
//! - YAML syntax, unknown fields, missing required fields (`expires_at` among them);
//! - separation of duties: `approver` must differ from `requester`;
//! - ids unique across the whole directory;
//! - `expires_at` after the start, and no later than `max_validity_days`
//!   after `approved_at`;
//! - a non-empty scope (an approval that approves nothing is a mistake);
//! - for issuance: `role` an IAM role ARN (or an Azure application id),
//!   `issue_to` an https issuer and a non-empty, exact subject, and only
//!   beside a `role`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nhi_contract::{
    time, Approval, ApprovalRead, ApprovalSource, Emergency, Scope, SourceError, Timestamp,
    Workload,
};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Configuration of one approvals-as-code source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Source name, unique in the config.
    pub name: String,
    /// Directory holding the YAML files (read recursively).
    pub path: PathBuf,
    /// Longest validity an approval may have, in days from `approved_at`.
    #[serde(default = "default_max_validity_days")]
    pub max_validity_days: i64,
}

fn default_max_validity_days() -> i64 {
    365
}

/// One problem found in an approval file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File it is in.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read at all).
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a directory of approval files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in approval files", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    approvals: Vec<Spanned<ApprovalDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalDoc {
    id: Spanned<String>,
    subject: String,
    #[serde(default)]
    credentials: Vec<String>,
    scope: Scope,
    requester: String,
    approver: Spanned<String>,
    #[serde(deserialize_with = "time::deserialize")]
    approved_at: Timestamp,
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    starts_at: Option<Timestamp>,
    expires_at: Spanned<time::Bounded>,
    #[serde(default, deserialize_with = "time::deserialize_opt")]
    revoked_at: Option<Timestamp>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    emergency: Option<Emergency>,
    #[serde(default)]
    role: Option<Spanned<String>>,
    #[serde(default)]
    issue_to: Option<Spanned<Workload>>,
}

impl nhi_contract::ApprovalConnector for FilesConfig {
    fn name(&self) -> &str {
        &self.name
    }

    fn approvals(&self, base: &std::path::Path) -> Box<dyn ApprovalSource> {
        // `join` keeps an absolute path as it is.
        Box::new(FilesSource::new(FilesConfig {
            path: base.join(&self.path),
            ..self.clone()
        }))
    }

    fn problems(&self) -> Vec<nhi_contract::SettingProblem> {
        let mut out = Vec::new();
        nhi_contract::check_range(
            &mut out,
            "max_validity_days",
            self.max_validity_days,
            1,
            3650,
        );
        out
    }
}

/// The approvals-as-code [`ApprovalSource`].
#[derive(Debug)]
pub struct FilesSource {
    config: FilesConfig,
    /// Each file's text and approvals as last parsed without a problem: a
    /// daemon re-reading the directory on every pass (each approval end,
    /// each webhook event) parses only the files whose text changed.
    parsed: std::sync::Mutex<Kept>,
}

/// What the source keeps between reads.
#[derive(Debug, Default)]
struct Kept {
    parsed: Parsed,
    /// Each file's stamp at the last clean read.
    stamps: Stamps,
    /// The last read returned the approvals (no problem anywhere, duplicate
    /// ids across files included): an unchanged directory reads the same.
    clean: bool,
}

/// Per file: its text and its approvals, as last parsed cleanly.
pub type Parsed = HashMap<PathBuf, (String, Vec<Approval>)>;

impl FilesSource {
    /// Create a source; nothing is read until asked.
    pub fn new(config: FilesConfig) -> Self {
        FilesSource {
            config,
            parsed: std::sync::Mutex::new(Kept::default()),
        }
    }
}

#[async_trait]
impl ApprovalSource for FilesSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    async fn approvals(&self) -> Result<Vec<Approval>, SourceError> {
        self.load(false).map(|read| read.unwrap_or_default())
    }

    async fn reread(&self) -> Result<Option<ApprovalRead>, SourceError> {
        Ok(self.load(true)?.map(|approvals| ApprovalRead {
            approvals,
            unmapped: Vec::new(),
        }))
    }

    async fn read_once(&self) -> Result<ApprovalRead, SourceError> {
        self.release();
        let approvals = load_texts(
            &self.config.path,
            self.config.max_validity_days,
            &mut Parsed::new(),
            Keep::Nothing,
        )
        .map_err(|p| SourceError::Invalid {
            location: self.config.path.display().to_string(),
            message: p.to_string(),
        })?;
        Ok(ApprovalRead {
            approvals: approvals.unwrap_or_default(),
            unmapped: Vec::new(),
        })
    }

    /// The files' texts and approvals as last parsed go: the next read
    /// parses every file.
    fn release(&self) {
        let mut kept = self
            .parsed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *kept = Kept::default();
    }
}

impl FilesSource {
    /// Read the directory; with `may_skip`, `None` when it reads as the
    /// last clean read did.
    fn load(&self, may_skip: bool) -> Result<Option<Vec<Approval>>, SourceError> {
        // A poisoned cache (a panic elsewhere while it was held) is only a
        // cache: start again from nothing.
        let mut kept = self.parsed.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            *g = Kept::default();
            g
        });
        let skip = may_skip && kept.clean;
        let Kept { parsed, stamps, .. } = &mut *kept;
        let read = load_stamped(
            &self.config.path,
            self.config.max_validity_days,
            parsed,
            skip,
            stamps,
        );
        match read {
            Ok(None) => Ok(None),
            Ok(Some(approvals)) => {
                kept.clean = true;
                Ok(Some(approvals))
            }
            Err(p) => {
                kept.clean = false;
                Err(SourceError::Invalid {
                    location: self.config.path.display().to_string(),
                    message: p.to_string(),
                })
            }
        }
    }
}

/// Read and validate every approval file under `dir`.
///
/// Only regular files are read. Hidden directories (`.git`, the `..data`
/// and timestamped directories of a Kubernetes ConfigMap mount) and
/// symbolic links to directories are not entered; a symbolic link to a file
/// is followed only when it stays inside `dir` (a ConfigMap mount is made of
/// such links). A link leading out of `dir`, a broken link, or a `*.yaml`
/// that is not a regular file (a FIFO would block the read forever) is a
/// located problem.
pub fn load_dir(dir: &Path, max_validity_days: i64) -> Result<Vec<Approval>, Problems> {
    load_texts(dir, max_validity_days, &mut Parsed::new(), Keep::Nothing)
        .map(Option::unwrap_or_default)
}

/// [`load_dir`], taking each file whose text is as in `parsed` from there
/// instead of parsing it again, and leaving in `parsed` what this read
/// parsed cleanly (a file with a problem is parsed, and reported, every
/// time). Parsing depends on nothing but the text and `max_validity_days`,
/// which `parsed` must be used with alone.
pub fn load_dir_with(
    dir: &Path,
    max_validity_days: i64,
    parsed: &mut Parsed,
) -> Result<Vec<Approval>, Problems> {
    load(dir, max_validity_days, parsed, false).map(Option::unwrap_or_default)
}

/// [`load_dir_with`]; with `skip`, `None` when every file is as `parsed`
/// holds it and no other is there (the caller knows the read that left
/// `parsed` so was clean): nothing is copied out.
fn load(
    dir: &Path,
    max_validity_days: i64,
    parsed: &mut Parsed,
    skip: bool,
) -> Result<Option<Vec<Approval>>, Problems> {
    load_stamped(dir, max_validity_days, parsed, skip, &mut Stamps::new())
}

/// What identifies a file's content without reading it: the file a path
/// resolves to, its length, modification time and inode. Taken before the
/// text is read, so a file written meanwhile reads as changed next time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    real: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: (u64, u64),
}

/// Per file, its stamp when last read cleanly, and when they were taken.
#[derive(Debug, Default, PartialEq, Eq)]
struct Stamps {
    files: HashMap<PathBuf, Stamp>,
    taken: Option<std::time::SystemTime>,
}

/// A file modified this close to when its stamp was taken may be written
/// again within the file system's timestamp granularity (a few ms on
/// Linux) without its stamp changing: it is read, not trusted, until its
/// stamp is older than this (git's "racily clean" entries).
const RACY: std::time::Duration = std::time::Duration::from_secs(2);

impl Stamps {
    fn new() -> Stamps {
        Stamps::default()
    }

    /// Whether `now` shows every file as stamped here, each written
    /// long enough before the stamps were taken to be trusted.
    fn vouch_for(&self, now: &Stamps) -> bool {
        let Some(taken) = self.taken else {
            return false;
        };
        self.files == now.files
            && self.files.values().all(|s| {
                s.modified
                    .and_then(|m| m.checked_add(RACY))
                    .is_some_and(|m| m < taken)
            })
    }
}

/// Every approval file's stamp, or `None` if the directory cannot be
/// listed without a problem (then everything is read).
fn stamp_dir(dir: &Path) -> Option<Stamps> {
    let taken = std::time::SystemTime::now();
    let root = std::fs::canonicalize(dir).ok()?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    collect_files(&root, dir, &mut files, &mut problems).ok()?;
    if !problems.is_empty() {
        return None;
    }
    files
        .into_iter()
        .map(|(f, real)| {
            let m = std::fs::metadata(&real).ok()?;
            #[cfg(unix)]
            let inode = {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino())
            };
            #[cfg(not(unix))]
            let inode = (0, 0);
            let stamp = Stamp {
                real,
                len: m.len(),
                modified: m.modified().ok(),
                inode,
            };
            Some((f, stamp))
        })
        .collect::<Option<HashMap<_, _>>>()
        .map(|files| Stamps {
            files,
            taken: Some(taken),
        })
}

/// [`load`]; with `skip`, every file's stamp as in `stamps` (left by the
/// last clean read) answers `None` without reading a file. `stamps` is
/// left as this read found the files when it returns the approvals or
/// `None`, empty when it fails.
fn load_stamped(
    dir: &Path,
    max_validity_days: i64,
    parsed: &mut Parsed,
    skip: bool,
    stamps: &mut Stamps,
) -> Result<Option<Vec<Approval>>, Problems> {
    let before = stamp_dir(dir);
    if skip
        && stamps.files.len() == parsed.len()
        && before.as_ref().is_some_and(|now| stamps.vouch_for(now))
    {
        return Ok(None);
    }
    let read = load_texts(dir, max_validity_days, parsed, Keep::Parsed { skip });
    *stamps = match (&read, before) {
        (Ok(_), Some(now)) => now,
        _ => Stamps::new(),
    };
    read
}

/// What a read keeps in its [`Parsed`].
#[derive(Clone, Copy)]
enum Keep {
    /// What it parsed cleanly; with `skip`, nothing is returned when every
    /// file is as kept (`None`).
    Parsed { skip: bool },
    /// Nothing: what it parses moves into what it returns, not copied.
    Nothing,
}

fn load_texts(
    dir: &Path,
    max_validity_days: i64,
    parsed: &mut Parsed,
    keep: Keep,
) -> Result<Option<Vec<Approval>>, Problems> {
    let skip = matches!(keep, Keep::Parsed { skip: true });
    use rayon::prelude::*;
    let mut problems = Vec::new();
    let files = read_files(dir, "approvals", &mut problems)?;
    // Parsed again: the files whose text is not as last parsed, in parallel.
    let fresh: Vec<Option<(Vec<Approval>, Vec<Problem>)>> = files
        .par_iter()
        .map(|(f, text)| {
            if parsed.get(f).is_some_and(|(was, _)| was == text) {
                return None;
            }
            let (mut these, mut found) = (Vec::new(), Vec::new());
            parse_file(f, text, max_validity_days, &mut these, &mut found);
            Some((these, found))
        })
        .collect();
    if skip
        && problems.is_empty()
        && files.len() == parsed.len()
        && fresh.iter().all(Option::is_none)
    {
        return Ok(None);
    }
    // Sized once: grown by doubling, tens of thousands of approvals were
    // copied again at each step into memory the kernel had to zero first.
    let total = files
        .iter()
        .zip(&fresh)
        .map(|((f, _), fresh)| match fresh {
            Some((these, _)) => these.len(),
            None => parsed.get(f).map_or(0, |(_, kept)| kept.len()),
        })
        .sum();
    let mut out = Vec::with_capacity(total);
    let mut kept = Parsed::new();
    for ((f, text), fresh) in files.into_iter().zip(fresh) {
        match fresh {
            None => {
                if let Some((was, approvals)) = parsed.remove(&f) {
                    out.extend(approvals.iter().cloned());
                    kept.insert(f, (was, approvals));
                }
            }
            Some((these, found)) if found.is_empty() => match keep {
                Keep::Parsed { .. } => {
                    out.extend(these.iter().cloned());
                    kept.insert(f, (text, these));
                }
                Keep::Nothing => out.extend(these),
            },
            Some((these, found)) => {
                out.extend(these);
                problems.extend(found);
            }
        }
    }
    *parsed = kept;
    // Duplicate ids across the whole directory: name both places.
    let mut seen: HashMap<&str, &str> = HashMap::new();
    let mut dupes = Vec::new();
    for a in &out {
        if let Some(first) = seen.insert(a.id.as_str(), a.source.as_str()) {
            dupes.push((a.source.clone(), a.id.clone(), first.to_string()));
        }
    }
    for (src, id, first) in dupes {
        let (file, line, column) = split_source(&src);
        problems.push(Problem {
            file,
            line,
            column,
            message: format!("duplicate approval id {id:?} (first defined at {first})"),
        });
    }
    if problems.is_empty() {
        Ok(Some(out))
    } else {
        problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(Problems(problems))
    }
}

/// Every YAML file under `dir` (as shown in problems) with its text, in
/// path order; a file refused or unreadable is a problem in `problems`, a
/// directory that cannot be read fails outright. `what` names the
/// directory's contents in that error.
pub(crate) fn read_files(
    dir: &Path,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Result<Vec<(PathBuf, String)>, Problems> {
    let unreadable = |e: &std::io::Error| {
        Problems(vec![Problem {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read {what} directory: {e}"),
        }])
    };
    let mut files = Vec::new();
    let root = std::fs::canonicalize(dir).map_err(|e| unreadable(&e))?;
    collect_files(&root, dir, &mut files, problems).map_err(|e| unreadable(&e))?;
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for (f, real) in files {
        match read_regular(&real) {
            Ok(text) => out.push((f, text)),
            Err(e) => problems.push(Problem {
                file: f,
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    Ok(out)
}

/// A YAML syntax or shape error as a located problem: the library's
/// Display repeats the snippet, the first line is the message.
pub(crate) fn yaml_problem(file: &Path, e: &serde_saphyr::Error) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((0, 0));
    let msg = e.to_string();
    Problem {
        file: file.to_path_buf(),
        line,
        column,
        message: msg.lines().next().unwrap_or("invalid YAML").to_string(),
    }
}

fn is_approval_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Approval files under `dir` as (path shown in problems, path to open),
/// and a problem for each entry refused. `root` is the canonical top.
fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(PathBuf, PathBuf)>,
    problems: &mut Vec<Problem>,
) -> std::io::Result<()> {
    let refuse = |path: PathBuf, message: String| Problem {
        file: path,
        line: 0,
        column: 0,
        message,
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        // The entry itself, not what a link points to.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !entry.file_name().to_string_lossy().starts_with('.') {
                collect_files(root, &path, out, problems)?;
            }
        } else if !is_approval_file(&path) {
            continue;
        } else if kind.is_symlink() {
            match std::fs::canonicalize(&path) {
                Err(e) => problems.push(refuse(
                    path,
                    format!("symbolic link that cannot be followed: {e}"),
                )),
                Ok(real) if !real.starts_with(root) => problems.push(refuse(
                    path,
                    format!(
                        "symbolic link to {}, outside the approvals directory: refused",
                        real.display()
                    ),
                )),
                // A link to a directory is not entered (loops, and a
                // ConfigMap's files are reached through their own links).
                Ok(real) if real.is_dir() => {}
                Ok(real) => out.push((path, real)),
            }
        } else if kind.is_file() {
            out.push((path.clone(), path));
        } else {
            problems.push(refuse(
                path,
                "not a regular file (a FIFO, socket or device): refused".into(),
            ));
        }
    }
    Ok(())
}

/// Largest approval or exception file read: about 300,000 approvals.
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The YAML budget of one file. The library's default (250,000 nodes,
/// 1,000,000 events) holds about 25,000 approvals, so a tracker's export of
/// a large estate in one file breached it. A node takes at least one byte
/// of the text unless an alias replays it, so the node and event budgets
/// grow with the file (at most `MAX_FILE_BYTES`), while aliases keep the
/// library's bounded replay: an alias bomb still stops at the same limits.
pub(crate) fn yaml_options(text: &str) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text.len());
    budget.max_events = budget.max_events.max(text.len().saturating_mul(2));
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Read a file that must be regular, without blocking on what is not: a
/// FIFO swapped in after the directory was listed would otherwise hang the
/// read, so it is opened non-blocking and checked before reading. Its size
/// is bounded.
fn read_regular(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let f = opts.open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, socket or device): refused",
        ));
    }
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB: refused",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(text)
}

/// Parse and validate one approval file's text as if read from `file`
/// (what [`load_dir`] does per file, without the cross-file duplicate check).
pub fn parse_text(
    file: &Path,
    text: &str,
    max_validity_days: i64,
) -> Result<Vec<Approval>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    parse_file(file, text, max_validity_days, &mut out, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

/// Split a record's `source` (`file:line:column`) back into its parts.
pub fn split_source(src: &str) -> (PathBuf, u32, u32) {
    let mut parts = src.rsplitn(3, ':');
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    (PathBuf::from(parts.next().unwrap_or(src)), line, col)
}

/// Parse and validate one file's text, appending approvals and problems.
fn parse_file(
    file: &Path,
    text: &str,
    max_validity_days: i64,
    out: &mut Vec<Approval>,
    problems: &mut Vec<Problem>,
) {
    if let Some(items) = json_items(text) {
        let (mut these, mut found) = (Vec::new(), Vec::new());
        check_items(file, items, max_validity_days, &mut these, &mut found);
        if found.is_empty() {
            match out.is_empty() {
                true => *out = these,
                false => out.append(&mut these),
            }
            return;
        }
        // A problem: read again as YAML, whose spans place it exactly.
    }
    parse_yaml(file, text, max_validity_days, out, problems);
}

/// [`parse_file`] by the YAML reader alone.
fn parse_yaml(
    file: &Path,
    text: &str,
    max_validity_days: i64,
    out: &mut Vec<Approval>,
    problems: &mut Vec<Problem>,
) {
    let doc: FileDoc = match serde_saphyr::from_str_with_options(text, yaml_options(text)) {
        Ok(d) => d,
        Err(e) => {
            problems.push(yaml_problem(file, &e));
            return;
        }
    };
    let items = doc.approvals.into_iter().map(|item| {
        let at = item.referenced;
        (at.line() as u32, at.column() as u32, item.value)
    });
    check_items(file, items, max_validity_days, out, problems);
}

/// A file's approvals with the line and column each starts at, if the
/// whole text is JSON of the file's shape (`None` otherwise, and then the
/// YAML reading decides).
///
/// JSON is YAML and machine-written approval sets often are JSON: read as
/// JSON they parse an order of magnitude faster (93 MB, 270,000
/// approvals: 0.4 s instead of 6 s). The YAML reader stays the authority:
/// any text this refuses, and any file with a problem, is read as YAML,
/// so what is accepted and every problem's position are as before.
fn json_items(text: &str) -> Option<Vec<(u32, u32, ApprovalDoc)>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw<'a> {
        #[serde(borrow)]
        approvals: Vec<&'a serde_json::value::RawValue>,
    }
    let bytes = text.as_bytes();
    // A lone CR breaks a line for YAML, not for JSON: leave such text to it.
    let lone_cr = |i: usize| bytes.get(i + 1) != Some(&b'\n');
    if !text.trim_start().starts_with('{') || carriage_returns(bytes).any(lone_cr) {
        return None;
    }
    let raw: Raw = serde_json::from_str(text).ok()?;
    let mut at = Cursor::default();
    let mut items = Vec::with_capacity(raw.approvals.len());
    for r in raw.approvals {
        // Each raw value is a slice of `text`, so its address is its offset.
        let offset = (r.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let (line, col) = at.advance(text, offset)?;
        items.push((line, col, serde_json::from_str(r.get()).ok()?));
    }
    Some(items)
}

/// Positions of the carriage returns in `bytes`.
fn carriage_returns(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter_map(|(i, &b)| (b == b'\r').then_some(i))
}

/// Line and column (1-based, counted in characters as the YAML reader
/// counts them) of increasing byte offsets in one text, found in one walk.
#[derive(Default)]
struct Cursor {
    offset: usize,
    line: u32,
    column: u32,
}

impl Cursor {
    /// Move to `offset` (not before the last one); `None` if it is not on
    /// a character boundary of `text` or the counts overflow.
    fn advance(&mut self, text: &str, offset: usize) -> Option<(u32, u32)> {
        let between = text.get(self.offset..offset)?;
        match between.rfind('\n') {
            Some(nl) => {
                let newlines =
                    u32::try_from(between.bytes().filter(|&b| b == b'\n').count()).ok()?;
                self.line = self.line.checked_add(newlines)?;
                self.column = u32::try_from(between[nl + 1..].chars().count()).ok()?;
            }
            None => {
                let n = u32::try_from(between.chars().count()).ok()?;
                self.column = self.column.checked_add(n)?;
            }
        }
        self.offset = offset;
        Some((self.line.checked_add(1)?, self.column.checked_add(1)?))
    }
}

/// Validate approvals read from `file` (each with its line and column),
/// appending the valid ones and every problem.
fn check_items(
    file: &Path,
    items: impl IntoIterator<Item = (u32, u32, ApprovalDoc)>,
    max_validity_days: i64,
    out: &mut Vec<Approval>,
    problems: &mut Vec<Problem>,
) {
    let problem = |line: u32, column: u32, message: String| Problem {
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    let items = items.into_iter();
    out.reserve(items.size_hint().0);
    for (line, col, d) in items {
        let mut ok = true;
        let mut fail = |l: u32, c: u32, m: String| {
            problems.push(problem(l, c, m));
            ok = false;
        };
        let id = d.id.value.trim().to_string();
        if id.is_empty() {
            fail(
                d.id.referenced.line() as u32,
                d.id.referenced.column() as u32,
                "empty id".into(),
            );
        }
        if d.subject.trim().is_empty() {
            fail(line, col, format!("approval {id}: empty subject"));
        }
        let approver = &d.approver.value;
        if approver.trim().is_empty() || d.requester.trim().is_empty() {
            fail(
                line,
                col,
                format!("approval {id}: requester and approver are required"),
            );
        } else if approver.trim().eq_ignore_ascii_case(d.requester.trim()) {
            let l = d.approver.referenced;
            fail(
                l.line() as u32,
                l.column() as u32,
                format!(
                    "approval {id}: approver {approver:?} is also the requester (separation of duties)"
                ),
            );
        }
        let expires = d.expires_at.value.0;
        let start = d.starts_at.unwrap_or(d.approved_at);
        let el = d.expires_at.referenced;
        if expires <= start {
            fail(
                el.line() as u32,
                el.column() as u32,
                format!("approval {id}: expires_at {expires} is not after its start {start}"),
            );
        }
        let limit = time::add(d.approved_at, time::days(max_validity_days));
        if expires > limit {
            fail(
                el.line() as u32,
                el.column() as u32,
                format!(
                    "approval {id}: expires_at {expires} is more than {max_validity_days} days after approved_at (maximum validity)"
                ),
            );
        }
        let s = &d.scope;
        if s.actions.is_empty() && s.entitlements.is_empty() && s.assume.is_empty() {
            fail(
                line,
                col,
                format!(
                    "approval {id}: scope approves nothing (give actions, entitlements or assume)"
                ),
            );
        }
        let role = d.role.as_ref().map(|r| r.value.trim().to_string());
        if let Some(r) = &d.role {
            if let Err(m) = check_role(&r.value) {
                let l = r.referenced;
                fail(
                    l.line() as u32,
                    l.column() as u32,
                    format!("approval {id}: role {m}"),
                );
            }
        }
        if let Some(w) = &d.issue_to {
            let l = w.referenced;
            for m in check_workload(&w.value) {
                fail(
                    l.line() as u32,
                    l.column() as u32,
                    format!("approval {id}: issue_to {m}"),
                );
            }
            if d.role.is_none() {
                fail(
                    l.line() as u32,
                    l.column() as u32,
                    format!("approval {id}: issue_to without a role (name the role the session is issued for)"),
                );
            }
        }
        if ok {
            out.push(Approval {
                id,
                subject: d.subject.trim().to_string(),
                credentials: d.credentials,
                scope: d.scope,
                requester: d.requester,
                approver: d.approver.value,
                approved_at: d.approved_at,
                starts_at: d.starts_at,
                expires_at: expires,
                revoked_at: d.revoked_at,
                reference: d.reference,
                emergency: d.emergency,
                source: format!("{}:{line}:{col}", file.display()),
                url: None,
                assignee: None,
                role,
                issue_to: d.issue_to.map(|w| Workload {
                    issuer: w.value.issuer.trim().to_string(),
                    subject: w.value.subject.trim().to_string(),
                }),
            });
        }
    }
}

/// Whether `role` names a role sessions can be issued for: an IAM role ARN
/// (`arn:aws:iam::123456789012:role/path/name`, any partition) or an Azure
/// application (client) id, a GUID. Whether the account belongs to the
/// estate is checked where the estate is known (issuance).
pub fn check_role(role: &str) -> Result<(), String> {
    let role = role.trim();
    if role.is_empty() {
        return Err("is empty".into());
    }
    if role.starts_with("arn:") {
        let parts: Vec<&str> = role.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5]
                .strip_prefix("role/")
                .and_then(|r| r.rsplit('/').next())
                .is_some_and(|n| !n.is_empty() && !n.contains('*'));
        if ok {
            return Ok(());
        }
        return Err(format!(
            "{role:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>, no wildcard)"
        ));
    }
    if is_guid(role) {
        return Ok(());
    }
    Err(format!(
        "{role:?} is neither an IAM role ARN nor an Azure application id (GUID)"
    ))
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Problems with a workload identity: an https issuer with a host, a
/// non-empty subject without wildcards (a subject is matched exactly, so a
/// `*` would be a silent never-match or, worse, read as "any").
pub fn check_workload(w: &Workload) -> Vec<String> {
    let mut out = Vec::new();
    let issuer = w.issuer.trim();
    match issuer.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
        _ => out.push(format!(
            "issuer {issuer:?} is not an https URL (the token issuer, e.g. https://token.actions.githubusercontent.com)"
        )),
    }
    let subject = w.subject.trim();
    if subject.is_empty() {
        out.push("subject is empty".into());
    } else if subject.contains('*') {
        out.push(format!(
            "subject {subject:?} has a wildcard: a session is issued to exactly one workload"
        ));
    }
    out
}

pub mod exceptions;

#[cfg(test)]
mod tests;
