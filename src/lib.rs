//! nhi-assure: continuous assurance for non-human identities.
//!
//! The pipeline, one way through (see `ARCHITECTURE.md`):
//! connectors → [`estate`] → [`graph`] → [`facts`] → [`rules`] → [`plan`],
//! with [`findings`] materialised for [`output`] and the [`store`];
//! [`report`] and [`evidence`] render recorded runs for auditors.
//! [`engine`] strings a pass together; [`cli`] is the command line.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod estate;
pub mod evidence;
pub mod facts;
pub mod findings;
pub mod graph;
pub mod output;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod report;
pub mod rules;
pub mod safe_file;
pub mod store;
pub mod synth;
