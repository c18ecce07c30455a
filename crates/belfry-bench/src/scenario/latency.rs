//! **latency**: `users` connected users, single-notification publishes at a fixed rate, open
//! loop; publish → receive percentiles and loss. One phase (and one fresh server) per rate and
//! server.

use std::time::Duration;

use serde::Serialize;

use super::{LoadOutcome, Setup, on_each_server, run_load};
use crate::record::Tally;
use crate::report::{Better, Row, cores, count, ms, rate};
use crate::target::{Target, TargetSpec};

/// Parameters of the latency scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connected users (one connection each).
    pub users: usize,
    /// Publish rates to measure, notifications per second.
    pub rates: Vec<f64>,
    /// Publishing time per rate.
    pub duration: Duration,
    /// Unanswered requests allowed at once.
    pub max_in_flight: usize,
    /// A send that starts later than this behind schedule counts as late.
    pub late_after: Duration,
}

/// One phase's result.
#[derive(Debug, Serialize)]
pub struct LatencyRow {
    scenario: &'static str,
    server: &'static str,
    target: String,
    transport: &'static str,
    rate: f64,
    users: usize,
    connect_errors: usize,
    duration_s: f64,
    /// Publishing time including the last answers.
    publish_s: f64,
    acked_per_s: f64,
    delivered_per_s: f64,
    /// Server CPU while publishing and draining, in cores.
    server_cores: Option<f64>,
    /// Bench CPU over the same time, in cores.
    bench_cores: Option<f64>,
    #[serde(flatten)]
    tally: Tally,
}

impl Row for LatencyRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        let e2e = &self.tally.e2e_ms;
        vec![
            ("server", self.server.to_owned()),
            ("transport", self.transport.to_owned()),
            ("rate/s", rate(self.rate)),
            ("users", count(self.users as u64)),
            ("seconds", format!("{:.0}", self.duration_s)),
            ("sent", count(self.tally.sent)),
            ("late", count(self.tally.late)),
            ("unsent", count(self.tally.unsent)),
            ("p50 ms", ms(e2e.p50)),
            ("p90 ms", ms(e2e.p90)),
            ("p99 ms", ms(e2e.p99)),
            ("p99.9 ms", ms(e2e.p999)),
            ("max ms", ms(e2e.max)),
            ("ack p99 ms", ms(self.tally.ack_ms.p99)),
            ("lost", count(self.tally.lost)),
            ("dup", count(self.tally.duplicated)),
            ("failed", count(self.tally.failed)),
            ("server CPU", cores(self.server_cores)),
            ("bench CPU", cores(self.bench_cores)),
        ]
    }

    fn is_clean(&self) -> bool {
        self.connect_errors == 0 && self.tally.is_clean()
    }

    fn server(&self) -> &str {
        self.server
    }

    fn phase(&self) -> String {
        format!(
            "latency {}/s {} users {}",
            rate(self.rate),
            count(self.users as u64),
            self.transport
        )
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        vec![
            ("p50 ms", Some(self.tally.e2e_ms.p50), Better::Lower),
            ("p99 ms", Some(self.tally.e2e_ms.p99), Better::Lower),
            ("delivered/s", Some(self.delivered_per_s), Better::Higher),
        ]
    }
}

impl LatencyRow {
    /// The counts.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The offered rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Notifications acknowledged per second of publishing.
    pub fn acked_per_s(&self) -> f64 {
        self.acked_per_s
    }
}

/// Runs one phase per rate, each on a fresh server.
pub async fn run(setup: &Setup, params: &Params) -> anyhow::Result<Vec<LatencyRow>> {
    let mut rows = Vec::new();
    for &rate in &params.rates {
        let found = on_each_server(setup, params.duration, async |spec, target| {
            let outcome = phase(setup, spec, target, params, rate).await?;
            Ok(row(setup, spec, params, rate, outcome))
        })
        .await?;
        for row in found {
            eprintln!(
                "{}",
                crate::report::markdown(std::slice::from_ref(&row)).trim()
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// One open-loop phase on a running server.
pub async fn phase(
    setup: &Setup,
    spec: &TargetSpec,
    target: &mut Target,
    params: &Params,
    rate: f64,
) -> anyhow::Result<LoadOutcome> {
    let (duration, in_flight, late) = (params.duration, params.max_in_flight, params.late_after);
    run_load(
        setup,
        target,
        params.users,
        &format!("{} {rate}/s", spec.name()),
        move |publisher| async move { publisher.open_loop(rate, duration, in_flight, late).await },
    )
    .await
}

/// Shapes a phase's outcome as a row.
pub fn row(
    setup: &Setup,
    spec: &TargetSpec,
    params: &Params,
    rate: f64,
    outcome: LoadOutcome,
) -> LatencyRow {
    LatencyRow {
        scenario: "latency",
        server: spec.name(),
        target: spec.describe(),
        transport: setup.connect.transport.name(),
        rate,
        users: outcome.users,
        connect_errors: outcome.connect_errors,
        duration_s: params.duration.as_secs_f64(),
        publish_s: outcome.publish_secs,
        acked_per_s: outcome.acked_per_s,
        delivered_per_s: outcome.delivered_per_s,
        server_cores: outcome.server_cores,
        bench_cores: outcome.bench_cores,
        tally: outcome.tally,
    }
}
