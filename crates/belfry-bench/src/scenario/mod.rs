//! Scenarios: each one command, each made of phases. A phase gets its own server when the bench
//! starts servers (a fresh database, so phases do not disturb each other), connects its users,
//! runs its load, waits for deliveries to drain, and tallies.

pub mod hold;
pub mod latency;
pub mod smoke;
pub mod soak;
pub mod throughput;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clients::{ConnectOptions, Fleet};
use crate::progress::Progress;
use crate::publish::Publisher;
use crate::record::{Recorder, Tally};
use crate::target::{Target, TargetSpec, cpu_secs};

/// How long a phase may overrun its planned duration before it is abandoned.
const PHASE_SLACK: Duration = Duration::from_secs(180);
/// Extra wait after the last expected delivery, to catch late duplicates.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What every scenario needs: where the server comes from and how to connect and wait.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The server for each phase.
    pub spec: TargetSpec,
    /// How clients connect.
    pub connect: ConnectOptions,
    /// Longest wait for acknowledged notifications to arrive after publishing stops.
    pub drain: Duration,
    /// Progress display.
    pub progress: Progress,
}

/// What a load phase measured.
#[derive(Debug, Clone)]
pub struct LoadOutcome {
    /// Connected users.
    pub users: usize,
    /// Connections that failed to open.
    pub connect_errors: usize,
    /// Publishing time, including the last answers.
    pub publish_secs: f64,
    /// Notifications acknowledged per second of publishing.
    pub acked_per_s: f64,
    /// Notifications delivered per second, from the first send to the last delivery.
    pub delivered_per_s: f64,
    /// Server CPU while publishing and draining, in cores (1.0 = one core busy).
    pub server_cores: Option<f64>,
    /// This bench's CPU over the same time, in cores.
    pub bench_cores: Option<f64>,
    /// The counts.
    pub tally: Tally,
}

/// A prefix that keeps this phase's users apart from any other run's on the same server.
pub fn user_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("b{}-", &id[..8])
}

/// Connects `users` clients to `target`, runs `load` with a publisher aimed at them, drains and
/// tallies.
pub async fn run_load<F, Fut>(
    setup: &Setup,
    target: &mut Target,
    users: usize,
    label: &str,
    load: F,
) -> anyhow::Result<LoadOutcome>
where
    F: FnOnce(Arc<Publisher>) -> Fut,
    Fut: Future<Output = Duration>,
{
    let recorder = Arc::new(Recorder::new()?);
    let prefix = user_prefix();
    let names = (0..users).map(|i| format!("{prefix}{i}")).collect();
    let bar = setup
        .progress
        .bar(&format!("{label}: connect"), users as u64);
    let fleet = Fleet::connect(target, names, setup.connect, &recorder, &bar).await?;
    bar.finish_and_clear();
    if let Some(first) = fleet.errors.first() {
        eprintln!(
            "{label}: {} of {users} connections failed (first: {first})",
            fleet.errors.len()
        );
    }
    anyhow::ensure!(!fleet.users.is_empty(), "{label}: no connection opened");
    let publisher = Arc::new(Publisher::new(
        target,
        fleet.users.clone(),
        Arc::clone(&recorder),
    )?);
    let live = setup.progress.live(label, &recorder);
    let publish_start = recorder.now_us() as f64 / 1e6;
    let cpu_before = (target.cpu_secs(), cpu_secs(std::process::id()));
    let publish_time = load(publisher).await;
    drain(&recorder, setup.drain).await;
    let cpu_after = (target.cpu_secs(), cpu_secs(std::process::id()));
    let busy_secs = recorder.now_us() as f64 / 1e6 - publish_start;
    let cores = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map(|(b, a)| (a - b) / busy_secs.max(1e-3))
    };
    live.finish();
    let connected = fleet.users.len();
    let connect_errors = fleet.errors.len();
    let seen = fleet.close().await;
    target.check_alive()?;
    let tally = recorder.tally(&seen);
    let publish_secs = publish_time.as_secs_f64();
    let delivering = tally.last_delivery_secs - publish_start;
    Ok(LoadOutcome {
        users: connected,
        connect_errors,
        publish_secs,
        acked_per_s: per_second(tally.acked, publish_secs),
        delivered_per_s: per_second(tally.delivered, delivering),
        server_cores: cores(cpu_before.0, cpu_after.0),
        bench_cores: cores(cpu_before.1, cpu_after.1),
        tally,
    })
}

fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Waits until every acknowledged notification arrived, or `limit` passed.
async fn drain(recorder: &Recorder, limit: Duration) {
    let until = Instant::now() + limit;
    while recorder.outstanding() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(DRAIN_GRACE).await;
}

/// Runs one phase on its own server: start, `phase`, stop (also when the phase failed), with
/// an overall deadline of `planned` plus slack.
pub async fn on_fresh_server<T, F>(
    spec: &TargetSpec,
    planned: Duration,
    phase: F,
) -> anyhow::Result<T>
where
    F: AsyncFnOnce(&mut Target) -> anyhow::Result<T>,
{
    let mut target = spec.start().await?;
    let result = tokio::time::timeout(planned + PHASE_SLACK, phase(&mut target))
        .await
        .with_context(|| format!("phase did not finish within {:?}", planned + PHASE_SLACK));
    let problems = target.log_problems();
    let stopped = target.stop().await;
    for line in problems {
        eprintln!("server log: {line}");
    }
    let value = result??;
    stopped?;
    Ok(value)
}
