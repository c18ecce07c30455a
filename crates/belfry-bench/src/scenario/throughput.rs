//! **throughput**: the highest sustained rate of notifications stored, acknowledged and
//! delivered, with users connected. Closed loop: `concurrency` publishers each send the next
//! request as soon as the previous one is answered; first single-notification requests, then
//! batches. With a started Belfry the phases are repeated for each SQLite `synchronous` mode,
//! interleaved (and with the peer, if any) so that noise on a shared machine hits all alike.

use std::time::Duration;

use serde::Serialize;

use super::{LoadOutcome, Setup, on_fresh_server, peer_may_fail, run_load};
use crate::record::Tally;
use crate::report::{Better, Row, cores, count, ms, rate};
use crate::target::TargetSpec;

/// Parameters of the throughput scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connected users (one connection each).
    pub users: usize,
    /// Publishing time per phase.
    pub duration: Duration,
    /// Concurrent publishers sending single-notification requests (0 skips those phases).
    pub concurrency: usize,
    /// Notifications per batch request (0 skips the batch phases).
    pub batch: u64,
    /// Concurrent publishers sending batch requests (0 skips those phases).
    pub batch_concurrency: usize,
    /// `store.sqlite_synchronous` values to compare (spawned servers only).
    pub synchronous: Vec<String>,
}

/// One phase's result.
#[derive(Debug, Serialize)]
pub struct ThroughputRow {
    scenario: &'static str,
    server: &'static str,
    target: String,
    transport: &'static str,
    synchronous: String,
    /// Notifications per request (1: the single endpoint).
    batch: u64,
    concurrency: usize,
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

impl Row for ThroughputRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        let requests = if self.batch > 1 {
            format!("batch of {}", self.batch)
        } else {
            "single".into()
        };
        vec![
            ("server", self.server.to_owned()),
            ("transport", self.transport.to_owned()),
            ("synchronous", self.synchronous.clone()),
            ("requests", requests),
            ("publishers", self.concurrency.to_string()),
            ("users", count(self.users as u64)),
            ("stored+acked/s", rate(self.acked_per_s)),
            ("delivered/s", rate(self.delivered_per_s)),
            ("ack p50 ms", ms(self.tally.ack_ms.p50)),
            ("ack p99 ms", ms(self.tally.ack_ms.p99)),
            ("e2e p99 ms", ms(self.tally.e2e_ms.p99)),
            ("acked", count(self.tally.acked)),
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
        let requests = if self.batch > 1 {
            format!("batch of {}", self.batch)
        } else {
            "single".into()
        };
        // The peer has one mode; it is compared with Belfry's `full` (both fsync every commit).
        let mode = match self.synchronous.as_str() {
            "default" => "full",
            other => other,
        };
        format!(
            "throughput {requests} ×{} {} {mode}",
            self.concurrency, self.transport
        )
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        vec![
            ("stored+acked/s", Some(self.acked_per_s), Better::Higher),
            ("delivered/s", Some(self.delivered_per_s), Better::Higher),
            ("ack p99 ms", Some(self.tally.ack_ms.p99), Better::Lower),
        ]
    }
}

impl ThroughputRow {
    /// The counts.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// Runs every phase, each on a fresh server.
pub async fn run(setup: &Setup, params: &Params) -> anyhow::Result<Vec<ThroughputRow>> {
    let modes = |spec: &TargetSpec| -> Vec<Option<String>> {
        match spec {
            TargetSpec::Belfry { .. } if !params.synchronous.is_empty() => {
                params.synchronous.iter().cloned().map(Some).collect()
            }
            _ => vec![None],
        }
    };
    let mut shapes = Vec::new();
    if params.concurrency > 0 {
        shapes.push((1, params.concurrency));
    }
    if params.batch > 1 && params.batch_concurrency > 0 {
        shapes.push((params.batch, params.batch_concurrency));
    }
    let mut rows = Vec::new();
    for &(batch, concurrency) in &shapes {
        for server in &setup.servers {
            for mode in modes(server) {
                let spec = match &mode {
                    Some(m) => server.with_setting("store.sqlite_synchronous", m.as_str().into()),
                    None => server.clone(),
                };
                let result = on_fresh_server(&spec, params.duration, async |target| {
                    let outcome = phase(setup, &spec, target, params, batch, concurrency).await?;
                    Ok(row(
                        setup,
                        &spec,
                        mode.as_deref(),
                        params,
                        batch,
                        concurrency,
                        outcome,
                    ))
                })
                .await;
                let Some(row) = peer_may_fail(&spec, result)? else {
                    continue;
                };
                eprintln!(
                    "{}",
                    crate::report::markdown(std::slice::from_ref(&row)).trim()
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// One closed-loop phase on a running server.
pub async fn phase(
    setup: &Setup,
    spec: &TargetSpec,
    target: &mut crate::target::Target,
    params: &Params,
    batch: u64,
    concurrency: usize,
) -> anyhow::Result<LoadOutcome> {
    let label = if batch > 1 {
        format!("{} batch×{batch}", spec.name())
    } else {
        format!("{} single", spec.name())
    };
    let duration = params.duration;
    run_load(
        setup,
        target,
        params.users,
        &label,
        move |publisher| async move { publisher.closed_loop(concurrency, batch, duration).await },
    )
    .await
}

/// Shapes a phase's outcome as a row.
pub fn row(
    setup: &Setup,
    spec: &TargetSpec,
    mode: Option<&str>,
    params: &Params,
    batch: u64,
    concurrency: usize,
    outcome: LoadOutcome,
) -> ThroughputRow {
    let synchronous = mode
        .map(str::to_owned)
        .or_else(|| {
            spec.setting("store.sqlite_synchronous")
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| match spec {
            TargetSpec::Belfry { .. } => "full".into(),
            TargetSpec::Peer { .. } => "default".into(),
            TargetSpec::External { .. } => "?".into(),
        });
    ThroughputRow {
        scenario: "throughput",
        server: spec.name(),
        target: spec.describe(),
        transport: setup.connect.transport.name(),
        synchronous,
        batch,
        concurrency,
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
