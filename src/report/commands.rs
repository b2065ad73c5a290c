//! The report, trace, diff, evidence and check-approvals commands (the
//! command line edge: `anyhow` here, typed errors below).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Subcommand;
use tabled::settings::Style;

use super::render::{file_names, write_file as write_format, write_files, Coverage, Format};
use super::{coverage, diff, html, load, trace, RunSel};
use crate::config::{ApprovalConfig, Config};
use crate::engine::rules::RuleSet;
use crate::report::evidence;
use crate::store::SqlStore;

/// `nhi-assure evidence …`.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Write a new Ed25519 key pair: PREFIX.key (PKCS#8 PEM, 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a signed evidence bundle (tar.gz) of a run.
    Export {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// `latest` or a run id.
        #[arg(long, default_value = "latest")]
        run: RunSel,
        /// Private key (PEM) to sign with.
        #[arg(long)]
        key: PathBuf,
        /// Bundle to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle's signature and every file's hash; say exactly what failed.
    Verify {
        /// The bundle.
        bundle: PathBuf,
        /// Public key (PEM) of the signer.
        #[arg(long)]
        public_key: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn open_store(cfg: &Config) -> anyhow::Result<SqlStore> {
    let location = cfg.store_location();
    if !crate::store::is_postgres(&location) && !Path::new(&location).exists() {
        anyhow::bail!("no store at {location}: run `nhi-assure scan` first");
    }
    Ok(SqlStore::open(&location).await?)
}

async fn setup(config: &Path) -> anyhow::Result<(Config, SqlStore, RuleSet)> {
    let cfg = Config::load(config, std::env::vars())?;
    let rules = cfg.rule_set()?;
    let store = open_store(&cfg).await?;
    Ok((cfg, store, rules))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::safe_file::write(path, crate::safe_file::Access::Shared, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `nhi-assure report`.
pub async fn report(
    config: &Path,
    run: RunSel,
    formats: &[Format],
    out: Option<&Path>,
    frameworks: &[String],
) -> anyhow::Result<ExitCode> {
    let (_cfg, store, rules) = setup(config).await?;
    let started = Instant::now();
    let mut laps = crate::pass::Laps::start();
    let data = load(&store, run, rules.catalogs).await?;
    laps.lap("load");
    // A framework no catalog names fails before anything is written.
    coverage::check_filter(&data, frameworks)?;
    // Each file is written as it is rendered, finding by finding as they
    // are read from the store, not assembled in memory first.
    match out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let written = write_files(&data, formats, frameworks, &|name, write| {
                let path = dir.join(name);
                let mut file =
                    crate::safe_file::AtomicFile::create(&path, crate::safe_file::Access::Shared)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                {
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
                    write(&mut w)?;
                    w.flush()?;
                }
                file.commit()
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok::<_, anyhow::Error>(path)
            })?;
            for (_, path) in written {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            if formats.len() > 1 {
                anyhow::bail!("several formats write several files: give --out DIR");
            }
            let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            // CSV makes two files; without --out, the per-control one.
            if let Some(f) = formats.first() {
                let names = file_names(*f);
                let cov = Coverage::Pending(frameworks);
                write_format(&data, cov, *f, names[0], &mut stdout)?;
                if names.len() > 1 {
                    eprintln!(
                        "printed {}; give --out DIR for {} too",
                        names[0],
                        names[1..].join(", ")
                    );
                }
            }
            stdout.flush()?;
        }
    }
    laps.lap("write");
    tracing::debug!(run = data.run.id, phases = ?laps.marks, "report timings");
    tracing::info!(
        run = data.run.id,
        ms = started.elapsed().as_millis() as u64,
        "report written"
    );
    Ok(ExitCode::SUCCESS)
}

/// `nhi-assure trace`.
pub async fn trace(
    config: &Path,
    subject: &str,
    run: RunSel,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (_cfg, store, rules) = setup(config).await?;
    let data = load(&store, run, rules.catalogs).await?;
    let bytes = match format {
        f @ (Format::Table | Format::Csv | Format::Ocsf | Format::Sarif) => {
            return Err(f.unsupported("a trace"))
        }
        Format::Json => {
            let identity = trace::identity_of_subject(&data, subject);
            let ids = [identity.as_str()].into_iter().collect();
            let findings = trace::findings_of_subjects(&data, &ids)?;
            let t = trace::Context::new(&data, &ids, findings)
                .trace(subject)
                .ok_or_else(|| {
                    anyhow::anyhow!("run {} knows nothing of {subject:?}", data.run.id)
                })?;
            let mut v = serde_json::to_vec_pretty(&t)?;
            v.push(b'\n');
            v
        }
        Format::Html => html::render_trace(&data, subject)?
            .ok_or_else(|| anyhow::anyhow!("run {} knows nothing of {subject:?}", data.run.id))?
            .into_bytes(),
    };
    match output {
        Some(p) => write_file(p, &bytes)?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `nhi-assure diff`.
pub async fn diff_cmd(
    config: &Path,
    from: Option<i64>,
    to: RunSel,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, std::env::vars())?;
    let store = open_store(&cfg).await?;
    let to = store.resolve_run(to).await?;
    let from = match from {
        Some(f) => store.resolve_run(RunSel::Id(f)).await?,
        None => diff::previous_run(&store, to)
            .await?
            .ok_or_else(|| anyhow::anyhow!("run {to} has no earlier run to compare with"))?,
    };
    if from >= to {
        anyhow::bail!("--from ({from}) must be an earlier run than --to ({to})");
    }
    let d = diff::diff(&store, from, to).await?;
    let mut out = std::io::stdout().lock();
    match format {
        f @ (Format::Csv | Format::Ocsf | Format::Sarif | Format::Html) => {
            return Err(f.unsupported("a diff"))
        }
        Format::Json => {
            super::pretty::to_writer(&mut out, &d)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "Run {} → run {}: {} new, {} resolved, {} still open",
                d.from_run,
                d.to_run,
                d.new.len(),
                d.resolved.len(),
                d.still_open.len()
            )?;
            for (title, list) in [
                ("NEW", &d.new),
                ("RESOLVED", &d.resolved),
                ("STILL OPEN", &d.still_open),
            ] {
                if list.is_empty() {
                    continue;
                }
                let mut b = tabled::builder::Builder::default();
                b.push_record(["SEVERITY", "FINDING", "FIRST SEEN", "RESOLVED"]);
                for e in list.iter() {
                    b.push_record([
                        e.severity.clone(),
                        e.fingerprint.clone(),
                        e.first_seen.clone(),
                        match (&e.resolved_at, e.unverified) {
                            (Some(r), _) => r.clone(),
                            (None, true) => "not seen (source not read)".into(),
                            _ => String::new(),
                        },
                    ]);
                }
                let mut t = b.build();
                t.with(Style::sharp());
                writeln!(out, "\n{title}\n{t}")?;
            }
            if !d.mttr.is_empty() {
                writeln!(out, "\nMean time to remediate (resolved in this window):")?;
                for m in &d.mttr {
                    writeln!(
                        out,
                        "  {:<8} {:>4} resolved, mean {}",
                        m.severity,
                        m.resolved,
                        human_hours(m.mean_hours)
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration in hours, in the unit a reader expects.
fn human_hours(h: f64) -> String {
    let s = h * 3600.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{:.1} min", s / 60.0)
    } else if h < 48.0 {
        format!("{h:.1} h")
    } else {
        format!("{:.1} days", h / 24.0)
    }
}

/// `nhi-assure evidence …`.
pub async fn evidence_cmd(cmd: EvidenceCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EvidenceCommand::Keygen { out } => {
            let (k, p) = evidence::keygen(&out)?;
            eprintln!(
                "wrote {} (private, keep it secret) and {}",
                k.display(),
                p.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Export {
            config,
            run,
            key,
            out,
        } => {
            // Read the key before any work: a wrong path fails fast.
            let key = evidence::read_private(&key)?;
            let (_cfg, store, rules) = setup(&config).await?;
            let started = Instant::now();
            let data = load(&store, run, rules.catalogs).await?;
            let s = evidence::export(&store, &data, &key, &out).await?;
            eprintln!(
                "wrote {}: run {}, {} files, {} bytes, signed by key sha256 {} ({} ms)",
                out.display(),
                s.run_id,
                s.files,
                s.bytes,
                evidence::key_id(&key.verifying_key()),
                started.elapsed().as_millis()
            );
            Ok(ExitCode::SUCCESS)
        }
        EvidenceCommand::Verify {
            bundle,
            public_key,
            json,
        } => {
            let key = evidence::read_public(&public_key)?;
            let v = evidence::verify(&bundle, &key)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &v)?;
                writeln!(out)?;
            } else if v.ok() {
                let m = v.manifest.as_ref();
                writeln!(
                    out,
                    "OK: {} verified — signature valid, {} file(s) intact (run {}, made {})",
                    bundle.display(),
                    v.verified.len(),
                    m.map_or(0, |m| m.run_id),
                    m.map_or("?", |m| m.created_at.as_str())
                )?;
            } else {
                writeln!(out, "FAILED: {}", bundle.display())?;
                for f in &v.failures {
                    writeln!(out, "  {}: {}", f.part, f.problem)?;
                }
            }
            Ok(if v.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `nhi-assure check-approvals`: validate the approval sources only (no
/// store, no provider), e.g. on a pull request to the approvals repository.
pub async fn check_approvals(
    config: &Path,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    check_approvals_with(config, Vec::new(), format, output).await
}

/// [`check_approvals`] with approval sources beyond the config's (an
/// embedder's own). Files are validated by file and line; every other
/// source is read through [`nhi_contract::ApprovalSource::read`], and each
/// record it could not map is reported by its reference and the field
/// named in its problem, as is a source that fails.
pub async fn check_approvals_with(
    config: &Path,
    extra: Vec<Box<dyn nhi_contract::ApprovalSource>>,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config, std::env::vars())?;
    let mut problems = Vec::new();
    let mut unmapped: Vec<crate::pass::UnmappedRecord> = Vec::new();
    let mut approvals = 0usize;
    let mut others: Vec<Box<dyn nhi_contract::ApprovalSource>> = Vec::new();
    for (a, src) in cfg
        .approvals
        .iter()
        .zip(crate::sources::approval_sources(&cfg.approvals, &cfg.base))
    {
        match a {
            ApprovalConfig::Files(c) => {
                match nhi_approvals_as_code::load_dir(&cfg.resolve(&c.path), c.max_validity_days) {
                    Ok(list) => approvals += list.len(),
                    Err(p) => problems.extend(p.0),
                }
            }
            #[allow(unreachable_patterns)]
            _ => others.push(src),
        }
    }
    // Exception files are checked with the approvals: same strictness,
    // and their rules against the rules the config loads.
    let exceptions = match cfg.rule_set() {
        Ok(rules) => match crate::pass::load_exceptions(&cfg, &rules) {
            Ok(list) => list,
            Err(p) => {
                problems.extend(p.0);
                Vec::new()
            }
        },
        Err(e) => return Err(e.into()),
    };
    others.extend(extra);
    for src in &others {
        match src.read().await {
            Ok(read) => {
                approvals += read.approvals.len();
                unmapped.extend(read.unmapped.into_iter().map(|record| {
                    crate::pass::UnmappedRecord {
                        source: src.name().to_string(),
                        record,
                    }
                }));
            }
            // A source that cannot be read is a problem of the whole source.
            Err(e) => unmapped.push(crate::pass::UnmappedRecord {
                source: src.name().to_string(),
                record: nhi_contract::Unmapped {
                    reference: String::new(),
                    url: None,
                    subjects: Vec::new(),
                    problem: e.to_string(),
                },
            }),
        }
    }
    let unmapped_line = |u: &crate::pass::UnmappedRecord| {
        let at = if u.record.reference.is_empty() {
            u.source.clone()
        } else {
            format!("{}:{}", u.source, u.record.reference)
        };
        let url = u
            .record
            .url
            .as_deref()
            .map(|u| format!(" <{u}>"))
            .unwrap_or_default();
        format!("{at}{url}: {}", u.record.problem)
    };
    let bytes = match format {
        f @ (Format::Csv | Format::Ocsf | Format::Html) => {
            return Err(f.unsupported("check-approvals"))
        }
        Format::Sarif => {
            let mut v = serde_json::to_vec_pretty(&super::sarif::from_problems(
                &problems,
                &unmapped,
                env!("CARGO_PKG_VERSION"),
            ))?;
            v.push(b'\n');
            v
        }
        Format::Json => {
            let list: Vec<serde_json::Value> = problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.file.display().to_string(),
                        "line": p.line,
                        "column": p.column,
                        "message": p.message,
                    })
                })
                .chain(unmapped.iter().map(|u| {
                    serde_json::json!({
                        "source": u.source,
                        "reference": u.record.reference,
                        "url": u.record.url,
                        "message": u.record.problem,
                    })
                }))
                .collect();
            let mut v = serde_json::to_vec_pretty(&list)?;
            v.push(b'\n');
            v
        }
        Format::Table => {
            let mut s = String::new();
            for p in &problems {
                s.push_str(&format!("{p}\n"));
            }
            for u in &unmapped {
                s.push_str(&format!("{}\n", unmapped_line(u)));
            }
            if problems.is_empty() && unmapped.is_empty() {
                s.push_str(&format!(
                    "{approvals} approval(s), {} exception(s), no problem\n",
                    exceptions.len()
                ));
                let now = cfg.as_of.unwrap_or_else(chrono::Utc::now);
                for e in &exceptions {
                    let state = if e.applies_at(now) {
                        "applies"
                    } else if now < e.approved_at {
                        "not started"
                    } else {
                        "ended"
                    };
                    s.push_str(&format!(
                        "  exception {} ({state}, until {}): rule {} on {}{}: {} [{}]\n",
                        e.id,
                        e.expires_at.format("%Y-%m-%dT%H:%M:%SZ"),
                        e.rule,
                        e.subject,
                        e.credential
                            .as_deref()
                            .map(|c| format!(" credential {c}"))
                            .unwrap_or_default(),
                        e.reason,
                        e.source
                    ));
                }
            }
            s.into_bytes()
        }
    };
    match output {
        Some(p) => write_file(p, &bytes)?,
        None => std::io::stdout().lock().write_all(&bytes)?,
    }
    Ok(if problems.is_empty() && unmapped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
