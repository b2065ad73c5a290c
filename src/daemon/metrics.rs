//! `/metrics`: what the daemon's passes did, in Prometheus text format.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::Shared;
use crate::act::Outcome;
use crate::engine::rules::Severity;
use crate::pass::PassResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// The daemon's metrics.
pub(super) struct Metrics {
    registry: Registry,
    passes: Counter,
    failed_passes: Counter,
    duration: Histogram,
    findings: Family<SeverityLabel, Gauge>,
    actions: Family<OutcomeLabel, Counter>,
    source_failures: Counter,
    notify_sent: Family<SinkLabel, Counter>,
    notify_failed: Family<SinkLabel, Counter>,
    pub(super) leader: Gauge,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("nhi_assure");
        let passes = Counter::default();
        let failed_passes = Counter::default();
        let duration = Histogram::new([0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]);
        let findings = Family::<SeverityLabel, Gauge>::default();
        let actions = Family::<OutcomeLabel, Counter>::default();
        let source_failures = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        registry.register("passes", "Passes completed", passes.clone());
        registry.register(
            "failed_passes",
            "Passes that stopped with an error",
            failed_passes.clone(),
        );
        registry.register(
            "pass_duration_seconds",
            "Wall time of a pass",
            duration.clone(),
        );
        registry.register(
            "findings",
            "Findings of the last pass by severity",
            findings.clone(),
        );
        registry.register("actions", "Enforce actions by outcome", actions.clone());
        registry.register(
            "source_failures",
            "Sources failed or partial, per pass",
            source_failures.clone(),
        );
        let notify_sent = Family::<SinkLabel, Counter>::default();
        let notify_failed = Family::<SinkLabel, Counter>::default();
        registry.register(
            "notify_sent",
            "Notification digests delivered, per sink",
            notify_sent.clone(),
        );
        registry.register(
            "notify_failed",
            "Notification digests not delivered after their retries, per sink",
            notify_failed.clone(),
        );
        Metrics {
            registry,
            notify_sent,
            notify_failed,
            passes,
            failed_passes,
            duration,
            findings,
            actions,
            source_failures,
            leader,
        }
    }

    /// A pass that completed, with what enforce did in it.
    pub(super) fn record_pass(&self, took: Duration, pass: &PassResult, outcomes: &[Outcome]) {
        self.duration.observe(took.as_secs_f64());
        self.passes.inc();
        // A targeted pass saw its subjects' findings only: the gauges stay
        // as the last full pass set them.
        for sev in Severity::ALL
            .into_iter()
            .filter(|_| pass.targeted.is_none())
        {
            let n = pass.findings.iter().filter(|f| f.severity == sev).count();
            self.findings
                .get_or_create(&SeverityLabel {
                    severity: sev.as_str().into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for o in outcomes {
            self.actions
                .get_or_create(&OutcomeLabel {
                    outcome: o.status.as_str().into(),
                })
                .inc();
        }
        let bad = pass
            .sources
            .iter()
            .filter(|s| !s.state.is_complete())
            .count();
        self.source_failures.inc_by(bad as u64);
    }

    /// What a pass's notifications did, per sink.
    pub(super) fn record_notify(&self, report: &crate::notify::Report) {
        for (sink, (sent, failed)) in &report.sinks {
            let label = SinkLabel { sink: sink.clone() };
            self.notify_sent.get_or_create(&label).inc_by(*sent);
            self.notify_failed.get_or_create(&label).inc_by(*failed);
        }
    }

    /// A pass that stopped with an error.
    pub(super) fn record_failure(&self, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        self.failed_passes.inc();
    }
}

/// The `/metrics` route.
pub(super) async fn metrics(State(s): State<Arc<Shared>>) -> (StatusCode, String) {
    let mut out = String::new();
    let ok = s
        .metrics
        .lock()
        .ok()
        .and_then(|m| prometheus_client::encoding::text::encode(&mut out, &m.registry).ok());
    match ok {
        Some(()) => (StatusCode::OK, out),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics unavailable\n".into(),
        ),
    }
}
