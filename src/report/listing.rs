//! `rules` and `controls`: the loaded rule set and the catalogs it maps to.

use std::io::Write;

use serde::Serialize;

use crate::config::Config;
use crate::engine::rules::{RuleSet, RulesConfig, Severity};
use crate::report::output::{self, Format};

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

/// The rules and the controls each maps to, on stdout.
pub fn rules(set: &RuleSet, format: Format) -> anyhow::Result<()> {
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

/// The control catalogs and the rules covering each control, on stdout.
pub fn controls(set: &RuleSet, format: Format) -> anyhow::Result<()> {
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

/// `rules --test`: run the built-in pack's cases and those of the config's
/// rule packs, print the result; whether every case held.
pub fn rule_cases(cfg: Option<&Config>, format: Format) -> anyhow::Result<bool> {
    let checked = match cfg {
        Some(c) => crate::engine::rules::cases::check(&c.rules, &c.base)?,
        None => {
            crate::engine::rules::cases::check(&RulesConfig::default(), std::path::Path::new("."))?
        }
    };
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        output::json(&mut out, &checked)?;
    } else {
        writeln!(out, "{checked}")?;
    }
    Ok(checked.failures.is_empty())
}
