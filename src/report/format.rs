//! The one output-format vocabulary: every format the tool writes, and per
//! command the subset it can render (a command refuses the others at
//! argument parsing, listing what it accepts).

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON (the documented contract of each document).
    Json,
    /// CSV, one row per item.
    Csv,
    /// OCSF 1.6 IAM Analysis Finding events (class 2008), a JSON array.
    Ocsf,
    /// SARIF 2.1.0, located at the approval file and line.
    Sarif,
    /// One self-contained HTML page.
    Html,
}

/// What `scan`, `plan`, `reconcile` print.
pub const PASS: &[Format] = &[Format::Table, Format::Json, Format::Csv];
/// Listings and documents with no CSV form.
pub const TABLE_OR_JSON: &[Format] = &[Format::Table, Format::Json];
/// `report` (and the evidence bundle, which writes them all).
pub const REPORT: &[Format] = &Format::ALL;
/// `trace`.
pub const TRACE: &[Format] = &[Format::Json, Format::Html];
/// `check-approvals`.
pub const CHECK: &[Format] = &[Format::Table, Format::Json, Format::Sarif];

impl Format {
    /// Every format, in the order the evidence bundle writes them.
    pub const ALL: [Format; 6] = [
        Format::Table,
        Format::Json,
        Format::Csv,
        Format::Ocsf,
        Format::Sarif,
        Format::Html,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Ocsf => "ocsf",
            Format::Sarif => "sarif",
            Format::Html => "html",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Format::Table => "human-readable tables",
            Format::Json => "JSON (the documented contract)",
            Format::Csv => "CSV, one row per item",
            Format::Ocsf => "OCSF 1.6 IAM Analysis Finding events (class 2008)",
            Format::Sarif => "SARIF 2.1.0 (pull-request annotations)",
            Format::Html => "one self-contained HTML page",
        }
    }

    /// A clap parser accepting only `allowed`.
    pub fn parser(allowed: &'static [Format]) -> impl TypedValueParser<Value = Format> {
        PossibleValuesParser::new(
            allowed
                .iter()
                .map(|f| PossibleValue::new(f.as_str()).help(f.help())),
        )
        .try_map(|s| s.parse::<Format>())
    }

    /// The error for a format a renderer does not produce (the parser of
    /// its command already refused it; this keeps the library total).
    pub fn unsupported(self, what: &str) -> anyhow::Error {
        anyhow::anyhow!("{what} has no {} form", self.as_str())
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no format.
#[derive(Debug, thiserror::Error)]
#[error("unknown format {0:?}")]
pub struct UnknownFormat(String);

impl std::str::FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}
