//! One pass, end to end: sources → estate → graph → facts → rules → plan.
//!
//! [`collect`] does the I/O (connectors, approval sources); [`evaluate`] is
//! pure and is what the benchmark measures. Approval sources are read
//! first and any error there stops the pass before anything else: a partly
//! read approval set would make approved credentials look unapproved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nhi_approvals_as_code::FilesSource;
use nhi_aws::AwsSource;
use nhi_azure::AzureSource;
use nhi_contract::{ApprovalSource, InventorySource, Timestamp};
use nhi_snapshot::SnapshotSource;
use serde::Serialize;

use crate::config::{ApprovalConfig, Config, SourceConfig};
use crate::estate::Estate;
use crate::facts::Facts;
use crate::graph::Graph;
use crate::plan::{Plan, Protected};
use crate::rules::{Env, Hit, RuleSet};

/// Why a pass could not run.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// An approval source failed: nothing is evaluated without approvals.
    #[error("approval source {name}: {error}")]
    Approvals {
        /// Source name.
        name: String,
        /// What went wrong (with file and line for files).
        error: nhi_contract::SourceError,
    },
}

/// Build the configured inventory sources (one line per connector).
pub fn inventory_sources(cfg: &Config) -> Vec<Box<dyn InventorySource>> {
    cfg.sources
        .iter()
        .map(|s| -> Box<dyn InventorySource> {
            match s {
                SourceConfig::Snapshot(c) => {
                    let mut c = c.clone();
                    c.path = cfg.resolve(&c.path);
                    Box::new(SnapshotSource::new(c))
                }
                SourceConfig::Aws(c) => Box::new(AwsSource::new(c.clone())),
                SourceConfig::Azure(c) => Box::new(AzureSource::new(c.clone())),
            }
        })
        .collect()
}

/// Build the configured approval sources.
pub fn approval_sources(cfg: &Config) -> Vec<Box<dyn ApprovalSource>> {
    cfg.approvals
        .iter()
        .map(|s| -> Box<dyn ApprovalSource> {
            match s {
                ApprovalConfig::Files(c) => {
                    let mut c = c.clone();
                    c.path = cfg.resolve(&c.path);
                    Box::new(FilesSource::new(c))
                }
            }
        })
        .collect()
}

/// Read every approval source. Any error stops the pass before an
/// inventory source is contacted.
pub async fn read_approvals(
    sources: &[Box<dyn ApprovalSource>],
) -> Result<Vec<nhi_contract::Approval>, PassError> {
    let mut all = Vec::new();
    for src in sources {
        let list = src
            .approvals()
            .await
            .map_err(|error| PassError::Approvals {
                name: src.name().to_string(),
                error,
            })?;
        tracing::info!(
            source = src.name(),
            approvals = list.len(),
            "approvals read"
        );
        all.extend(list);
    }
    Ok(all)
}

/// Inventories of the last full pass, by source name: the base a targeted
/// pass re-reads its subjects on top of.
pub type InventoryCache = HashMap<String, nhi_contract::Inventory>;

/// Scan every inventory source into an estate holding `approvals`. A
/// source error marks that source failed (unknown) and the pass goes on.
pub async fn scan_inventories(
    sources: &[Box<dyn InventorySource>],
    approvals: Vec<nhi_contract::Approval>,
) -> Estate {
    read_inventories(sources, approvals, None, None).await
}

/// Like [`scan_inventories`], keeping what was read in `cache` (the daemon
/// keeps one; a one-shot command does not pay for the copy). With
/// `subjects`, a source with a cached inventory re-reads only those
/// identities on top of it (a source without one is scanned whole).
pub async fn read_inventories(
    sources: &[Box<dyn InventorySource>],
    approvals: Vec<nhi_contract::Approval>,
    mut cache: Option<&mut InventoryCache>,
    subjects: Option<&[String]>,
) -> Estate {
    let mut estate = Estate {
        approvals,
        ..Estate::default()
    };
    // Sources are independent: read them concurrently.
    let reads = futures_util::future::join_all(sources.iter().map(|s| {
        match (subjects, cache.as_deref().and_then(|c| c.get(s.name()))) {
            (Some(subjects), Some(base)) => s.refresh(base, subjects),
            _ => s.scan(),
        }
    }))
    .await;
    for (src, result) in sources.iter().zip(reads) {
        match result {
            Ok(inv) => {
                tracing::info!(
                    source = src.name(),
                    identities = inv.identities.len(),
                    credentials = inv.credentials.len(),
                    gaps = inv.coverage.gaps.len(),
                    targeted = subjects.is_some(),
                    "inventory read"
                );
                if let Some(c) = cache.as_deref_mut() {
                    c.insert(src.name().to_string(), inv.clone());
                }
                estate.add_inventory(src.name(), src.provider(), inv);
            }
            Err(e) => {
                tracing::error!(source = src.name(), error = %e, "source failed: its subjects are unknown this pass");
                if let Some(c) = cache.as_deref_mut() {
                    c.remove(src.name());
                }
                estate.add_failed(src.name(), src.provider(), e.to_string());
            }
        }
    }
    estate
}

/// Wall time of each stage of [`evaluate`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Graph build.
    pub graph: Duration,
    /// Facts.
    pub facts: Duration,
    /// Rules.
    pub rules: Duration,
    /// Plan.
    pub plan: Duration,
}

/// Everything one evaluation produced.
pub struct Evaluation {
    /// The joined graph.
    pub graph: Graph,
    /// The facts.
    pub facts: Facts,
    /// Rule hits.
    pub hits: Vec<Hit>,
    /// The plan.
    pub plan: Plan,
    /// Stage timings.
    pub timings: Timings,
}

/// Evaluate an estate at `now`: the pure part of a pass.
pub fn evaluate(
    estate: &Estate,
    rules: &RuleSet,
    protected: &Protected,
    now: Timestamp,
) -> Evaluation {
    let mut t = Timings::default();
    let start = Instant::now();
    let graph = Graph::build(estate);
    t.graph = start.elapsed();

    let start = Instant::now();
    let facts = Facts::compute(estate, &graph, now);
    t.facts = start.elapsed();

    let start = Instant::now();
    let env = Env {
        estate,
        facts: &facts,
    };
    let hits = rules.evaluate(&env);
    t.rules = start.elapsed();

    let start = Instant::now();
    let plan = Plan::build(estate, &facts, rules, &hits, protected);
    t.plan = start.elapsed();
    Evaluation {
        graph,
        facts,
        hits,
        plan,
        timings: t,
    }
}
