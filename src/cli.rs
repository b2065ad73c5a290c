//! The command line: `scan`, `plan`, `reconcile`, `report`, `evidence`, `rules`, `controls`, …

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::config::Config;
use crate::engine;
use crate::estate::{SourceState, SourceStatus};
use crate::findings::{self, Finding};
use crate::output::{self, Format};
use crate::plan::Protected;
use crate::rules::{RuleSet, RulesConfig, Severity};
use crate::store::lease::{holder_id, Leadership, LeaseState};
use crate::store::{RunRecord, SourcedFinding, SqlStore, Store};

/// Continuous assurance for non-human identities.
#[derive(Debug, Parser)]
#[command(name = "nhi-assure", version, about)]
pub struct Cli {
    /// More logging (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the chain: exit 0 and print the head hash if it holds, exit 1
    /// naming the first edited, removed or reordered entry if not.
    Verify {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print entries as JSON.
    List {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this run.
        #[arg(long)]
        run: Option<i64>,
    },
}

/// `revocations` subcommands.
#[derive(Debug, Subcommand)]
pub enum RevocationCommand {
    /// Every revocation: in force, unmatched (names no known approval) or withdrawn.
    List {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Withdraw a revocation: its approval counts again from the next pass.
    Withdraw {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The approval id the revocation names.
        approval_id: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// Exit code of a `scan`, `plan` or `reconcile` that could not see: a
/// source failed or was partial (without `--allow-partial`), every source
/// failed, or `--fail-on` was asked of a run with a failed source.
pub const EXIT_UNSEEN: u8 = 3;

/// Why this run must exit [`EXIT_UNSEEN`], if it must.
fn unseen(sources: &[SourceStatus], allow_partial: bool, fail_on: bool) -> Option<String> {
    let failed: Vec<&str> = sources
        .iter()
        .filter(|s| matches!(s.state, SourceState::Failed { .. }))
        .map(|s| s.name.as_str())
        .collect();
    let partial: Vec<&str> = sources
        .iter()
        .filter(|s| matches!(s.state, SourceState::Partial { .. }))
        .map(|s| s.name.as_str())
        .collect();
    if failed.len() == sources.len() {
        return Some("no source could be read: the run saw nothing".into());
    }
    if failed.is_empty() && partial.is_empty() {
        return None;
    }
    let what = || {
        let mut parts = Vec::new();
        if !failed.is_empty() {
            parts.push(format!("failed: {}", failed.join(", ")));
        }
        if !partial.is_empty() {
            parts.push(format!("partial: {}", partial.join(", ")));
        }
        parts.join("; ")
    };
    if !allow_partial {
        return Some(format!(
            "the run could not see everything ({}); --allow-partial accepts that",
            what()
        ));
    }
    if fail_on && !failed.is_empty() {
        return Some(format!(
            "--fail-on cannot pass on a run that could not see ({})",
            what()
        ));
    }
    None
}

/// Exit code `code`, or [`EXIT_UNSEEN`] (said on stderr) when the run could
/// not see and the caller did not accept it.
fn exit_seen(code: u8, why_unseen: Option<String>) -> ExitCode {
    match why_unseen {
        Some(why) if code != 2 => {
            eprintln!("exit {EXIT_UNSEEN}: {why}");
            ExitCode::from(EXIT_UNSEEN)
        }
        _ => ExitCode::from(code),
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inventory, correlate with approvals, evaluate rules, print findings.
    Scan {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write the output here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Exit 1 when a finding at or above this severity exists.
        #[arg(long, value_enum)]
        fail_on: Option<Severity>,
        /// Do not exit 3 when a source failed or was partial (a source that
        /// failed still fails `--fail-on`).
        #[arg(long)]
        allow_partial: bool,
    },
    /// Like scan, then print what enforce mode would do (dry run: nothing is changed).
    Plan {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write the output here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Do not exit 3 when a source failed or was partial.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Like plan; with --enforce (or `mode = "enforce"`), carry it out behind the safety rails.
    Reconcile {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Act. Without it (and without `mode = "enforce"`), a dry run.
        #[arg(long)]
        enforce: bool,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Test hook: wait this long between the provider call and the journal outcome.
        #[arg(long, hide = true)]
        pause_after_call_ms: Option<u64>,
        /// Do not exit 3 when a source failed or was partial.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Webhook revocations: list them, or withdraw one (journaled in the audit log).
    Revocations {
        /// What to do.
        #[command(subcommand)]
        action: RevocationCommand,
    },
    /// Undo a journaled action (or every action of a run), where the provider allows it.
    Undo {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Action id (see `nhi-assure journal`).
        action: Option<i64>,
        /// Undo every action of this run instead.
        #[arg(long, conflicts_with = "action")]
        run: Option<i64>,
    },
    /// Run continuously: passes on the cron schedule and at approval ends; health and metrics.
    Daemon {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Health/metrics address (overrides `[daemon] listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Check the config as the daemon would start from it (overrides,
        /// ranges, schedule, listen address, rules, webhook secret) and
        /// exit: 0 when it would start. Opens no store, contacts nothing.
        #[arg(long)]
        check: bool,
    },
    /// Show the action journal: what was done, why, by whom, before and after.
    Journal {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Only this run.
        #[arg(long)]
        run: Option<i64>,
    },
    /// The hash-chained audit log: verify it, or list its entries.
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// Compliance report on a recorded run: control coverage per framework, findings, evidence.
    Report {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// `latest` or a run id.
        #[arg(long, default_value = "latest")]
        run: crate::report::RunSel,
        /// Formats (comma-separated or repeated).
        #[arg(long, value_enum, value_delimiter = ',', default_value = "table")]
        format: Vec<crate::report::render::ReportFormat>,
        /// Write the files into this directory instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only these frameworks (e.g. OWASP-NHI-2025), comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        framework: Vec<String>,
    },
    /// Trace one identity or credential: entitlements, approval, findings, actions.
    Trace {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Identity id (ARN, object id) or credential id.
        subject: String,
        /// `latest` or a run id.
        #[arg(long, default_value = "latest")]
        run: crate::report::RunSel,
        /// Output format.
        #[arg(long, value_enum, default_value = "json")]
        format: crate::report::cli::TraceFormat,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// What changed between two runs: new, resolved, still open; time to remediate.
    Diff {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Earlier run (default: the one before --to).
        #[arg(long)]
        from: Option<i64>,
        /// Later run.
        #[arg(long, default_value = "latest")]
        to: crate::report::RunSel,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::report::cli::DiffFormat,
    },
    /// Signed evidence bundles: keygen, export, verify.
    Evidence {
        /// What to do.
        #[command(subcommand)]
        command: crate::report::cli::EvidenceCommand,
    },
    /// Validate the approval files only (no store, no provider); SARIF for pull requests.
    CheckApprovals {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::report::cli::CheckFormat,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List the rules and the controls each maps to.
    Rules {
        /// Config file, to include its rule packs and overrides.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Run the rule packs' cases instead (the built-in pack's and each
        /// `<id>/cases.yaml` in the config's rule paths); exit 1 if one fails.
        #[arg(long)]
        test: bool,
    },
    /// List the control catalogs and which rules cover each control.
    Controls {
        /// Config file, to include its rule packs and catalogs.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output format (table or json).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

/// Logs go to stderr: human-readable on a terminal, JSON lines otherwise.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // sqlx warns about connect parameters it ignores with their values
    // (`sslpassword=…`): never at any level the user picks.
    let filter = match "sqlx_postgres::options::parse=error".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().try_init()
    };
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

fn load_rules(cfg: Option<&Config>) -> anyhow::Result<RuleSet> {
    Ok(match cfg {
        Some(c) => c.rule_set()?,
        None => RuleSet::load(&RulesConfig::default(), Path::new("."))?,
    })
}

/// Write what `render` produces to `path` — created like every file the
/// tool writes (`safe_file`: never through a planted link, `0644`) — or to
/// stdout.
fn emit(
    path: Option<&Path>,
    render: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match path {
        Some(p) => {
            let mut buf = Vec::new();
            render(&mut buf)?;
            crate::safe_file::write(p, crate::safe_file::Access::Shared, &buf)
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Run a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(
        cli.command,
        Command::Scan { .. } | Command::Plan { .. } | Command::Reconcile { .. }
    ) {
        crate::progress::enable();
    }
    match cli.command {
        Command::Scan {
            config,
            format,
            output: out,
            fail_on,
            allow_partial,
        } => {
            let pass = pass(&config, "scan").await?;
            emit(out.as_deref(), |w| {
                output::findings(w, format, &pass.view(), &pass.findings)
            })?;
            pass.report_summary();
            let failing = fail_on.is_some_and(|s| pass.findings.iter().any(|f| f.severity >= s));
            Ok(exit_seen(
                u8::from(failing),
                unseen(&pass.sources, allow_partial, fail_on.is_some()),
            ))
        }
        Command::Plan {
            config,
            format,
            output: out,
            allow_partial,
        } => {
            let pass = pass(&config, "plan").await?;
            emit(out.as_deref(), |w| {
                output::plan(w, format, &pass.view(), &pass.plan)
            })?;
            pass.report_summary();
            Ok(exit_seen(0, unseen(&pass.sources, allow_partial, false)))
        }
        Command::Reconcile {
            config,
            enforce,
            format,
            pause_after_call_ms,
            allow_partial,
        } => {
            let cfg = load_config(&config)?;
            let enforcing = enforce || cfg.mode == crate::config::Mode::Enforce;
            if !enforcing {
                let pass = pass(&config, "reconcile").await?;
                pass.report_summary();
                output::plan(
                    &mut std::io::stdout().lock(),
                    format,
                    &pass.view(),
                    &pass.plan,
                )?;
                return Ok(exit_seen(0, unseen(&pass.sources, allow_partial, false)));
            }
            // Lead for the whole pass, so what is acted on is what this
            // process saw while no one else could act.
            let store = SqlStore::open(&cfg.store_location()).await?;
            let leader = lead(&store, &cfg).await?;
            let acted = async {
                let pass = pass(&config, "reconcile").await?;
                pass.report_summary();
                let rems = crate::reconcile::remediators(&pass.cfg).await;
                let outcomes = crate::reconcile::enforce(
                    &pass,
                    &rems,
                    leader.fence(),
                    pause_after_call_ms.map(std::time::Duration::from_millis),
                )
                .await?;
                anyhow::Ok((pass, outcomes))
            }
            .await;
            leader.release().await;
            let (pass, outcomes) = acted?;
            let mut out = std::io::stdout().lock();
            output::outcomes(&mut out, format, Some(&pass.view()), &outcomes)?;
            let failed = outcomes.iter().any(|o| o.status == "failed");
            Ok(exit_seen(
                if failed { 2 } else { 0 },
                unseen(&pass.sources, allow_partial, false),
            ))
        }
        Command::Revocations { action } => match action {
            RevocationCommand::List { config, format } => {
                let cfg = load_config(&config)?;
                let store = SqlStore::open(&cfg.store_location()).await?;
                output::revocations(
                    &mut std::io::stdout().lock(),
                    format,
                    &store.revocation_list().await?,
                )?;
                Ok(ExitCode::SUCCESS)
            }
            RevocationCommand::Withdraw {
                config,
                approval_id,
                reason,
            } => {
                let cfg = load_config(&config)?;
                let store = SqlStore::open(&cfg.store_location()).await?;
                let actor = crate::reconcile::actor();
                if store
                    .withdraw_revocation(&approval_id, &actor, &reason)
                    .await?
                {
                    println!(
                        "revocation of {approval_id} withdrawn by {actor}: the approval counts again from the next pass"
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!("no revocation in force names approval {approval_id}");
                    Ok(ExitCode::from(1))
                }
            }
        },
        Command::Undo {
            config,
            action,
            run,
        } => {
            let cfg = load_config(&config)?;
            let store = SqlStore::open(&cfg.store_location()).await?;
            let entries = match (action, run) {
                (Some(id), _) => vec![store
                    .journal_get(id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no action {id} in the journal"))?],
                (None, Some(r)) => store.journal_list(Some(r)).await?,
                (None, None) => anyhow::bail!("give an action id or --run RUN_ID"),
            };
            let rems = crate::reconcile::remediators(&cfg).await;
            let run_id = entries.first().map_or(0, |e| e.run_id);
            let leader = lead(&store, &cfg).await?;
            let mut outcomes = Vec::new();
            // Newest first: undo in the reverse order things were done.
            for e in entries.iter().rev().filter(|e| e.undo_of.is_none()) {
                match crate::reconcile::undo(&store, &rems, e, run_id, leader.fence()).await {
                    Ok(o) => outcomes.push(o),
                    Err(err) => {
                        leader.release().await;
                        return Err(err);
                    }
                }
            }
            leader.release().await;
            output::outcomes(
                &mut std::io::stdout().lock(),
                Format::Table,
                None,
                &outcomes,
            )?;
            let failed = outcomes.iter().any(|o| o.status == "failed");
            Ok(if failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Daemon {
            config,
            listen,
            check: true,
        } => {
            let env = std::env::vars().collect();
            let checked = crate::daemon::check(&config, listen, &env)?;
            println!(
                "{}: the daemon would start (listen {}, schedule {:?}, webhook {})",
                config.display(),
                checked.addr,
                checked.cfg.daemon.schedule,
                if checked.cfg.daemon.webhook_secret_env.is_some() {
                    "on"
                } else {
                    "off"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon {
            config,
            listen,
            check: false,
        } => {
            crate::daemon::run(config, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { action } => match action {
            AuditCommand::Verify { config } => {
                let cfg = load_config(&config)?;
                let store = SqlStore::open(&cfg.store_location()).await?;
                match store.audit_verify().await? {
                    crate::store::audit::Verdict::Intact { entries, head } => {
                        println!("audit log intact: {entries} entries, head {head}");
                        Ok(ExitCode::SUCCESS)
                    }
                    crate::store::audit::Verdict::Broken { seq, reason } => {
                        println!("audit log BROKEN at entry {seq}: {reason}");
                        Ok(ExitCode::from(1))
                    }
                }
            }
            AuditCommand::List { config, run } => {
                let cfg = load_config(&config)?;
                let store = SqlStore::open(&cfg.store_location()).await?;
                output::json(
                    &mut std::io::stdout().lock(),
                    &store.audit_entries(run).await?,
                )?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Journal { config, run } => {
            let cfg = load_config(&config)?;
            let store = SqlStore::open(&cfg.store_location()).await?;
            output::json(
                &mut std::io::stdout().lock(),
                &store.journal_list(run).await?,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            config,
            run,
            format,
            out,
            framework,
        } => crate::report::cli::report(&config, run, &format, out.as_deref(), &framework).await,
        Command::Trace {
            config,
            subject,
            run,
            format,
            output: out,
        } => crate::report::cli::trace(&config, &subject, run, format, out.as_deref()).await,
        Command::Diff {
            config,
            from,
            to,
            format,
        } => crate::report::cli::diff_cmd(&config, from, to, format).await,
        Command::Evidence { command } => crate::report::cli::evidence_cmd(command).await,
        Command::CheckApprovals {
            config,
            format,
            output: out,
        } => crate::report::cli::check_approvals(&config, format, out.as_deref()),
        Command::Rules {
            config,
            format,
            test,
        } => {
            let cfg = config.as_deref().map(load_config).transpose()?;
            if test {
                return test_rules(cfg.as_ref(), format);
            }
            let set = load_rules(cfg.as_ref())?;
            list_rules(&set, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controls { config, format } => {
            let cfg = config.as_deref().map(load_config).transpose()?;
            let set = load_rules(cfg.as_ref())?;
            list_controls(&set, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Take the leader lease for a one-shot command that acts, or say plainly
/// who holds it: a daemon (or another operator) is acting on this store.
async fn lead(store: &SqlStore, cfg: &Config) -> anyhow::Result<Leadership> {
    let ttl = std::time::Duration::from_secs(cfg.daemon.lease_secs);
    match Leadership::acquire(store, &holder_id(), ttl).await? {
        Ok(l) => Ok(l),
        Err(LeaseState::Busy {
            holder,
            remaining_ms,
        }) => anyhow::bail!(
            "not acting: {holder} holds the leader lease on this store for {:.1} s more \
             (a daemon or another operator is acting; stop it or let its lease expire)",
            remaining_ms as f64 / 1000.0
        ),
        Err(LeaseState::Held(_)) => anyhow::bail!("leader lease in an impossible state"),
    }
}

/// What a pass produced, for the commands to print and enforce to act on.
pub struct PassResult {
    /// The configuration.
    pub cfg: Config,
    /// The store the run was recorded in.
    pub store: SqlStore,
    /// Findings of the pass.
    pub findings: Vec<Finding>,
    /// The plan, in provider ids.
    pub plan: Vec<crate::plan::ResolvedAction>,
    /// Source statuses.
    pub sources: Vec<crate::estate::SourceStatus>,
    /// Credentials per source index, for the blast-radius share.
    pub source_credentials: Vec<usize>,
    /// Last use of each credential that an action targets, by id.
    pub last_used: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// The run as recorded.
    pub summary: crate::store::RunSummary,
    /// Evaluation instant.
    pub now: chrono::DateTime<chrono::Utc>,
    /// The next instant an approval ends (expiry, or an emergency's end)
    /// and the subjects of the approvals ending then: the daemon runs a
    /// targeted pass for them at that instant.
    pub next_expiry: Option<(chrono::DateTime<chrono::Utc>, Vec<String>)>,
    /// For a targeted pass, the identities it was limited to.
    pub targeted: Option<Vec<String>>,
    /// Webhook revocations in force that name no approval read this pass.
    pub unmatched_revocations: Vec<crate::store::journal::Revocation>,
    /// What this pass read of the targets of interrupted actions, by
    /// journal id (recovery re-checks them before finishing).
    pub target_states: std::collections::HashMap<i64, crate::reconcile::TargetState>,
}

/// What a targeted pass is for: identities, and approvals whose subjects
/// are to be re-read (resolved once the approvals are read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Identity ids.
    pub identities: Vec<String>,
    /// Approval ids.
    pub approvals: Vec<String>,
}

impl PassResult {
    /// The run and what it could see, for JSON documents.
    pub fn view(&self) -> output::RunView<'_> {
        output::RunView {
            run_id: self.summary.run_id,
            sources: &self.sources,
        }
    }

    /// Print the run summary and source warnings to stderr.
    pub fn report_summary(&self) {
        let s = &self.summary;
        eprintln!(
            "run {}: {} finding(s), {} new, {} resolved",
            s.run_id, s.findings, s.opened, s.resolved
        );
        for r in &self.unmatched_revocations {
            eprintln!(
                "warning: the webhook revocation of {} names no approval any source returned (since {}); it is withdrawn after [enforce] unmatched_revocation_days (see `nhi-assure revocations list`)",
                r.approval_id,
                r.unmatched_since.as_deref().unwrap_or("now")
            );
        }
        for src in &self.sources {
            match &src.state {
                SourceState::Complete => {}
                SourceState::Failed { error } => eprintln!(
                    "warning: source {} is FAILED ({error}): everything it holds is unknown this run; its findings stay open and nothing of it is acted on",
                    src.name
                ),
                SourceState::Partial {
                    gaps,
                    unseen_kinds,
                    unseen_other,
                } => {
                    let held = if *unseen_other {
                        "nothing of it is acted on or resolved this run".to_string()
                    } else {
                        let kinds: Vec<&str> = unseen_kinds.iter().map(|k| k.as_str()).collect();
                        format!(
                            "findings and actions on {} credentials are held this run",
                            kinds.join(", ")
                        )
                    };
                    eprintln!("warning: source {} is PARTIAL ({}): {held}", src.name, gaps.join("; "));
                }
            }
        }
    }
}

/// Config → rules → sources → evaluation → findings → store. Every input is
/// validated before any source is contacted.
/// Config → rules → approvals → store → sources → evaluation → findings.
pub async fn pass(config: &Path, command: &str) -> anyhow::Result<PassResult> {
    pass_scoped(config, command, None, None).await
}

/// A pass that keeps the inventories read in `cache`; with `targets`, it
/// re-reads only their identities on top of the cache and plans actions
/// only for them (everything else is as of the last full read, too old to
/// act on). Targets naming nothing known fall back to a full pass.
pub async fn pass_scoped(
    config: &Path,
    command: &str,
    cache: Option<&mut engine::InventoryCache>,
    targets: Option<&Targets>,
) -> anyhow::Result<PassResult> {
    let started = chrono::Utc::now();
    let progress = crate::progress::spinner();
    progress.set_message("reading config, rules and approvals");
    let cfg = load_config(config)?;
    let rules = load_rules(Some(&cfg))?;
    let protected = Protected::new(&cfg.plan.protected);
    let now = cfg.as_of.unwrap_or(started);
    // Approvals are local and strict: a bad file stops here, before the
    // store is touched or any provider is contacted.
    let mut approvals = engine::read_approvals(&engine::approval_sources(&cfg)).await?;
    let store = SqlStore::open(&cfg.store_location()).await?;
    // A changed config is an audit event (its digest; the file may hold
    // nothing secret, but the log keeps only what identifies it).
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(config)?))
    };
    store
        .audit_config(&config.display().to_string(), &digest)
        .await?;
    // Revocations received by the webhook end approvals early; one naming
    // no approval is shown, then dropped, never kept silently.
    let known: std::collections::HashSet<&str> = approvals.iter().map(|a| a.id.as_str()).collect();
    let unmatched_revocations = store
        .match_revocations(
            &known,
            nhi_contract::time::days(cfg.enforce.unmatched_revocation_days),
        )
        .await?;
    drop(known);
    let revoked = store.revocations().await?;
    for a in &mut approvals {
        if let Some(at) = revoked.get(&a.id) {
            a.revoked_at = Some(a.revoked_at.map_or(*at, |r| r.min(*at)));
        }
    }
    let subjects: Option<Vec<String>> = targets
        .map(|t| {
            let mut ids = t.identities.clone();
            ids.extend(
                approvals
                    .iter()
                    .filter(|a| t.approvals.contains(&a.id))
                    .map(|a| a.subject.clone()),
            );
            ids.sort();
            ids.dedup();
            ids
        })
        .filter(|ids| !ids.is_empty());
    progress.set_message(format!("reading {} source(s)", cfg.sources.len()));
    let estate = engine::read_inventories(
        &engine::inventory_sources(&cfg),
        approvals,
        cache,
        subjects.as_deref(),
    )
    .await;
    progress.set_message(format!(
        "evaluating {} identities, {} credentials",
        estate.identities.len(),
        estate.credentials.len()
    ));
    let eval = engine::evaluate(&estate, &rules, &protected, now);
    tracing::info!(timings = ?eval.timings, hits = eval.hits.len(), "evaluated");
    let materialized =
        findings::materialize_with_subjects(&estate, &eval.facts, &eval.graph, &rules, &eval.hits);
    let sourced: Vec<SourcedFinding> = materialized
        .into_iter()
        .map(|m| SourcedFinding {
            source: m
                .identity
                .map(|i| {
                    estate.sources[estate.identity_source[i as usize] as usize]
                        .name
                        .clone()
                })
                .unwrap_or_default(),
            credential_kind: m.credential_kind,
            finding: m.finding,
        })
        .collect();
    let list: Vec<Finding> = sourced.iter().map(|s| s.finding.clone()).collect();
    let rule_ids: Vec<String> = rules.rules.iter().map(|r| r.id.clone()).collect();
    progress.set_message("recording the run");
    let summary = store
        .record_run(RunRecord {
            started_at: started,
            as_of: now,
            command,
            sources: &estate.sources,
            rules: &rule_ids,
            findings: &sourced,
        })
        .await?;
    // What this run read, kept with it so any past run can be reported on.
    crate::report::snapshot::record(&store, summary.run_id, &estate, &rules, &sourced).await?;
    let mut source_credentials = vec![0usize; estate.sources.len()];
    for i in eval.graph.credential_identity.iter().flatten() {
        source_credentials[estate.identity_source[*i as usize] as usize] += 1;
    }
    let target_states = crate::reconcile::target_states(&estate, &store.journal_open().await?);
    let mut plan = eval.plan.resolve(&estate, &eval.facts, &rules);
    if let Some(ids) = &subjects {
        plan.retain(|a| ids.contains(&a.request.identity_id));
    }
    let last_used = estate
        .credentials
        .iter()
        .filter(|c| {
            plan.iter()
                .any(|a| a.request.credential_id.as_deref() == Some(c.id.as_str()))
        })
        .filter_map(|c| c.usage.last_used_at().map(|t| (c.id.clone(), t)))
        .collect();
    let end = |a: &nhi_contract::Approval| {
        let ended = a.emergency.as_ref().and_then(|e| e.ended_at);
        ended.map_or(a.expires_at, |e| e.min(a.expires_at))
    };
    let live = || {
        estate
            .approvals
            .iter()
            .filter(|a| a.revoked_at.is_none() && end(a) > now)
    };
    // Approvals ending within a second of the next end share its pass.
    let next_expiry = live().map(end).min().map(|first| {
        let mut ids: Vec<String> = live()
            .filter(|a| end(a) <= first + chrono::Duration::seconds(1))
            .map(|a| a.subject.clone())
            .collect();
        ids.sort();
        ids.dedup();
        (first, ids)
    });
    progress.finish_and_clear();
    Ok(PassResult {
        unmatched_revocations,
        target_states,
        next_expiry,
        targeted: subjects,
        cfg,
        store,
        findings: list,
        plan,
        sources: estate.sources.clone(),
        source_credentials,
        last_used,
        summary,
        now,
    })
}

#[derive(Serialize)]
struct RuleInfo<'a> {
    id: &'a str,
    title: &'a str,
    severity: Severity,
    subject: &'a str,
    action: &'a str,
    condition: &'a str,
    controls: &'a [String],
    origin: &'a str,
}

/// `rules --test`: run the configured packs' cases, list the failures.
fn test_rules(cfg: Option<&Config>, format: Format) -> anyhow::Result<ExitCode> {
    let checked = match cfg {
        Some(c) => crate::rules::cases::check(&c.rules, &c.base)?,
        None => crate::rules::cases::check(&RulesConfig::default(), Path::new("."))?,
    };
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        output::json(&mut out, &checked)?;
    } else {
        writeln!(out, "{checked}")?;
    }
    Ok(if checked.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list_rules(set: &RuleSet, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let infos: Vec<RuleInfo> = set
        .rules
        .iter()
        .map(|r| RuleInfo {
            id: &r.id,
            title: &r.title,
            severity: r.severity,
            subject: r.subject.as_str(),
            action: r.action.as_str(),
            condition: &r.condition_source,
            controls: &r.controls,
            origin: &r.origin,
        })
        .collect();
    if format == Format::Json {
        return output::json(&mut out, &infos);
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record(["RULE", "SEVERITY", "SUBJECT", "ACTION", "CONTROLS"]);
    for r in &infos {
        b.push_record([
            r.id.to_string(),
            r.severity.as_str().to_string(),
            r.subject.to_string(),
            r.action.to_string(),
            r.controls.join("\n"),
        ]);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::sharp());
    writeln!(out, "{t}")?;
    Ok(())
}

#[derive(Serialize)]
struct ControlInfo<'a> {
    control: String,
    title: &'a str,
    rules: Vec<&'a str>,
}

fn list_controls(set: &RuleSet, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let infos: Vec<ControlInfo> = set
        .catalogs
        .0
        .iter()
        .flat_map(|cat| {
            cat.controls.iter().map(move |c| {
                let reference = format!("{}:{}", cat.framework, c.id);
                let rules = set
                    .rules
                    .iter()
                    .filter(|r| r.controls.contains(&reference))
                    .map(|r| r.id.as_str())
                    .collect();
                ControlInfo {
                    control: reference,
                    title: &c.title,
                    rules,
                }
            })
        })
        .collect();
    if format == Format::Json {
        return output::json(&mut out, &infos);
    }
    let mut b = tabled::builder::Builder::default();
    b.push_record(["CONTROL", "TITLE", "RULES"]);
    for c in &infos {
        b.push_record([
            c.control.clone(),
            c.title.to_string(),
            if c.rules.is_empty() {
                "-".to_string()
            } else {
                c.rules.join("\n")
            },
        ]);
    }
    let mut t = b.build();
    t.with(tabled::settings::Style::sharp()).with(
        tabled::settings::Modify::new(tabled::settings::object::Columns::one(1))
            .with(tabled::settings::Width::wrap(60)),
    );
    writeln!(out, "{t}")?;
    Ok(())
}
