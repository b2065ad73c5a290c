//! The engine: the pure part of a pass, in pipeline order —
//! [`estate`] (every source's inventory and the approvals) → [`graph`] →
//! [`facts`] → [`rules`] → [`findings`] and [`plan`]. No I/O: reading is
//! [`crate::pass`]'s, acting [`crate::act`]'s. [`evaluate`] strings the
//! stages together and is what the benchmark measures. [`facets`] is how
//! a source's gaps, a rule's facts and a finding's dependencies meet: a
//! gap holds only what depends on what it blinds.

pub mod estate;
pub mod exceptions;
pub mod facets;
pub mod facts;
pub mod federation;
pub mod findings;
pub mod graph;
pub mod plan;
pub mod rules;

use std::time::{Duration, Instant};

use nhi_contract::Timestamp;
use serde::Serialize;

use crate::engine::estate::Estate;
use crate::engine::facts::Facts;
use crate::engine::graph::Graph;
use crate::engine::plan::{Plan, Protected};
use crate::engine::rules::{Env, Hit, RuleSet};

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
    let mut hits = rules.evaluate(&env);
    exceptions::apply(estate, &facts, rules, &mut hits, now);
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
