//! The command line: `scan`, `plan`, `reconcile`, `report`, `evidence`, `rules`, `controls`, …

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::act::OutcomeStatus;
use crate::config::Config;
use crate::engine::rules::{RuleSet, RulesConfig, Severity};
use crate::pass::Context;
use crate::report::format::{self, Format};
use crate::report::output;
use crate::store::SqlStore;

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
        #[arg(long, value_parser = Format::parser(format::TABLE_OR_JSON), default_value = "table")]
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
    /// Issue a just-in-time session for an approval in force that names a
    /// role, and print it as AWS `credential_process` JSON on stdout (and
    /// nothing else there): `credential_process = nhi-assure credentials
    /// --approval APR-123 --config /etc/nhi-assure.toml` in ~/.aws/config.
    Credentials {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// The approval id.
        #[arg(long)]
        approval: String,
    },
    /// Inventory, correlate with approvals, evaluate rules, print findings.
    Scan {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_parser = Format::parser(format::PASS), default_value = "table")]
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
        #[arg(long, value_parser = Format::parser(format::PASS), default_value = "table")]
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
        #[arg(long, value_parser = Format::parser(format::PASS), default_value = "table")]
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
        #[arg(long, value_parser = Format::parser(format::REPORT), value_delimiter = ',', default_value = "table")]
        format: Vec<Format>,
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
        #[arg(long, value_parser = Format::parser(format::TRACE), default_value = "json")]
        format: Format,
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
        #[arg(long, value_parser = Format::parser(format::TABLE_OR_JSON), default_value = "table")]
        format: Format,
    },
    /// Signed evidence bundles: keygen, export, verify.
    Evidence {
        /// What to do.
        #[command(subcommand)]
        command: crate::report::commands::EvidenceCommand,
    },
    /// Validate the approval files only (no store, no provider); SARIF for pull requests.
    CheckApprovals {
        /// Config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_parser = Format::parser(format::CHECK), default_value = "table")]
        format: Format,
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
        #[arg(long, value_parser = Format::parser(format::TABLE_OR_JSON), default_value = "table")]
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
        #[arg(long, value_parser = Format::parser(format::TABLE_OR_JSON), default_value = "table")]
        format: Format,
    },
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

/// The store a config names (for commands that only read or amend it).
async fn open_store(config: &Path) -> anyhow::Result<SqlStore> {
    Ok(SqlStore::open(&load_config(config)?.store_location()).await?)
}

/// The rule set of `config`, or the built-in one without a config.
fn load_rules(config: Option<&Path>) -> anyhow::Result<RuleSet> {
    Ok(match config {
        Some(c) => load_config(c)?.rule_set()?,
        None => RuleSet::load(&RulesConfig::default(), Path::new("."))?,
    })
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
            let ctx = Context::load(&config)?;
            let mut pass = ctx.pass("scan").await?;
            crate::notify::Notifier::new(&pass, &config)
                .pass_events(&pass, false)
                .await;
            output::emit(out.as_deref(), |w| {
                output::findings(w, format, &(&pass).into(), &pass.findings)
            })?;
            pass.report_summary();
            // An excepted finding's risk is accepted until its exception ends.
            let failing = fail_on.is_some_and(|s| {
                pass.findings
                    .iter()
                    .any(|f| f.severity >= s && f.exception.is_none())
            });
            let code = exit_seen(
                u8::from(failing),
                pass.unseen(allow_partial, fail_on.is_some()),
            );
            // The process ends next: freeing a million findings one by one
            // took seconds of a scan (and the approvals and owners a tenth
            // of one more). Data only: the store closes as it should.
            std::mem::forget(std::mem::take(&mut pass.findings));
            std::mem::forget(std::mem::take(&mut pass.approvals));
            std::mem::forget(std::mem::take(&mut pass.owners));
            Ok(code)
        }
        Command::Plan {
            config,
            format,
            output: out,
            allow_partial,
        } => {
            let ctx = Context::load(&config)?;
            let pass = ctx.pass("plan").await?;
            crate::notify::Notifier::new(&pass, &config)
                .pass_events(&pass, false)
                .await;
            let plan = crate::act::plan_with_issuance(&ctx, &pass).await?;
            output::emit(out.as_deref(), |w| {
                output::plan(w, format, &(&pass).into(), &plan)
            })?;
            pass.report_summary();
            Ok(exit_seen(0, pass.unseen(allow_partial, false)))
        }
        Command::Reconcile {
            config,
            enforce,
            format,
            pause_after_call_ms,
            allow_partial,
        } => {
            let ctx = Context::load(&config)?;
            if !(enforce || ctx.cfg.mode == crate::config::Mode::Enforce) {
                let pass = ctx.pass("reconcile").await?;
                pass.report_summary();
                crate::notify::Notifier::new(&pass, &config)
                    .pass_events(&pass, false)
                    .await;
                let plan = crate::act::plan_with_issuance(&ctx, &pass).await?;
                output::plan(
                    &mut std::io::stdout().lock(),
                    format,
                    &(&pass).into(),
                    &plan,
                )?;
                return Ok(exit_seen(0, pass.unseen(allow_partial, false)));
            }
            let pause = pause_after_call_ms.map(std::time::Duration::from_millis);
            let (pass, outcomes) = crate::notify::reconcile(&ctx, "reconcile", pause).await?;
            let mut out = std::io::stdout().lock();
            output::outcomes(&mut out, format, Some(&(&pass).into()), &outcomes)?;
            let failed = outcomes.iter().any(|o| o.status == OutcomeStatus::Failed);
            Ok(exit_seen(
                if failed { 2 } else { 0 },
                pass.unseen(allow_partial, false),
            ))
        }
        Command::Credentials { config, approval } => credentials(&config, &approval).await,
        Command::Revocations { action } => match action {
            RevocationCommand::List { config, format } => {
                let store = open_store(&config).await?;
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
                let store = open_store(&config).await?;
                let actor = crate::act::actor();
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
            let ctx = Context::load(&config)?;
            let which = match (action, run) {
                (Some(id), _) => crate::act::UndoScope::Action(id),
                (None, Some(r)) => crate::act::UndoScope::Run(r),
                (None, None) => anyhow::bail!("give an action id or --run RUN_ID"),
            };
            let outcomes = crate::act::undo_journaled(&ctx, which).await?;
            output::outcomes(
                &mut std::io::stdout().lock(),
                Format::Table,
                None,
                &outcomes,
            )?;
            let failed = outcomes.iter().any(|o| o.status == OutcomeStatus::Failed);
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
                let store = open_store(&config).await?;
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
                let store = open_store(&config).await?;
                output::json(
                    &mut std::io::stdout().lock(),
                    &store.audit_entries(run).await?,
                )?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Journal { config, run } => {
            let store = open_store(&config).await?;
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
        } => {
            crate::report::commands::report(&config, run, &format, out.as_deref(), &framework).await
        }
        Command::Trace {
            config,
            subject,
            run,
            format,
            output: out,
        } => crate::report::commands::trace(&config, &subject, run, format, out.as_deref()).await,
        Command::Diff {
            config,
            from,
            to,
            format,
        } => crate::report::commands::diff_cmd(&config, from, to, format).await,
        Command::Evidence { command } => crate::report::commands::evidence_cmd(command).await,
        Command::CheckApprovals {
            config,
            format,
            output: out,
        } => crate::report::commands::check_approvals(&config, format, out.as_deref()).await,
        Command::Rules {
            config,
            format,
            test,
        } => {
            if test {
                let cfg = config.as_deref().map(load_config).transpose()?;
                let passed = crate::report::listing::rule_cases(cfg.as_ref(), format)?;
                return Ok(ExitCode::from(u8::from(!passed)));
            }
            crate::report::listing::rules(&load_rules(config.as_deref())?, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controls { config, format } => {
            crate::report::listing::controls(&load_rules(config.as_deref())?, format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `credentials`: the session's JSON on stdout, every refusal on stderr
/// with exit 1 (the AWS SDKs show a credential process's stderr).
#[cfg(feature = "aws")]
async fn credentials(config: &Path, approval: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let ctx = Context::load(config)?;
    match crate::act::issue::issue(&ctx, approval, &crate::act::actor()).await {
        Ok(session) => {
            let json = crate::act::issue::credential_process_json(&session);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{json}")?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(crate::act::issue::IssuanceError::Other(e)) => Err(e),
        Err(e) => {
            eprintln!("nhi-assure credentials: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `credentials` in a build without the AWS connector.
#[cfg(not(feature = "aws"))]
async fn credentials(_config: &Path, _approval: &str) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this build has no AWS connector: nothing can be issued")
}
