//! Scenarios: each one command, each made of phases. A phase gets its own server when the bench
//! starts servers (a fresh database, so phases do not disturb each other), connects its users,
//! runs its load, waits for deliveries to drain, and tallies. With a peer, every phase runs on
//! Belfry and then on the peer, so that both see the same moment of a noisy machine.

pub mod broadcast;
pub mod hold;
pub mod ladder;
pub mod latency;
pub mod smoke;
pub mod soak;
pub mod storm;
pub mod throughput;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clients::{ConnectOptions, Fleet, Plan, Record};
use crate::progress::Progress;
use crate::publish::{Destination, Publisher};
use crate::record::{Expect, Recorder, Tally};
use crate::server::cpu_secs;
use crate::target::{Target, TargetSpec};

/// How long a phase may overrun its planned duration before it is abandoned.
const PHASE_SLACK: Duration = Duration::from_secs(180);
/// Extra wait after the last expected delivery, to catch late duplicates.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What every scenario needs: where the servers come from and how to connect and wait.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The servers each phase runs on, Belfry first, then the peer if any.
    pub servers: Vec<TargetSpec>,
    /// How clients connect.
    pub connect: ConnectOptions,
    /// Longest wait for acknowledged notifications to arrive after publishing stops.
    pub drain: Duration,
    /// Progress display.
    pub progress: Progress,
}

/// Who the clients of a load phase are and who gets what is published.
#[derive(Debug, Clone)]
pub struct Audience {
    /// One client per entry, named by its user (a user may have many clients).
    pub clients: Vec<String>,
    /// What is published, to whom.
    pub kind: AudienceKind,
    /// What the clients do besides reading.
    pub plan: Plan,
}

/// The shape of an audience.
#[derive(Debug, Clone)]
pub enum AudienceKind {
    /// Distinct users, one connection each; notifications go round robin over them.
    PerUser,
    /// Every client belongs to the first user; notifications go to that user (a broadcast).
    OneUser,
    /// Every client joined this room; messages go to the room (a broadcast, nothing stored).
    Room(String),
}

impl Audience {
    /// `n` distinct users, one connection each.
    pub fn per_user(n: usize) -> Self {
        let prefix = user_prefix();
        Self {
            clients: (0..n).map(|i| format!("{prefix}{i}")).collect(),
            kind: AudienceKind::PerUser,
            plan: Plan::default(),
        }
    }
}

/// What a load phase measured.
pub struct LoadOutcome {
    /// Open connections.
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
    /// The user of each open connection, in the order the publisher addressed them.
    pub connected: Vec<String>,
    /// What each client saw.
    pub records: Vec<Record>,
    /// The phase's recorder (acknowledgement times).
    pub recorder: Arc<Recorder>,
}

/// A prefix that keeps this phase's users apart from any other run's on the same server.
pub fn user_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("b{}-", &id[..8])
}

/// Connects `users` clients (one distinct user each) to `target`, runs `load` with a
/// publisher aimed at them, drains and tallies.
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
    run_audience(
        setup,
        target,
        Audience::per_user(users),
        label,
        async |publisher, _target| load(publisher).await,
    )
    .await
}

/// Connects `audience`'s clients to `target`, runs `load` with a publisher aimed at them (and
/// the target, for a load that restarts it), drains and tallies.
pub async fn run_audience<F>(
    setup: &Setup,
    target: &mut Target,
    audience: Audience,
    label: &str,
    load: F,
) -> anyhow::Result<LoadOutcome>
where
    F: AsyncFnOnce(Arc<Publisher>, &mut Target) -> Duration,
{
    let recorder = Arc::new(Recorder::new()?);
    let wanted = audience.clients.len();
    let bar = setup
        .progress
        .bar(&format!("{label}: connect"), wanted as u64);
    let fleet = Fleet::connect(
        target,
        audience.clients.clone(),
        setup.connect,
        audience.plan.clone(),
        &recorder,
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    if let Some(first) = fleet.errors.first() {
        eprintln!(
            "{label}: {} of {wanted} connections failed (first: {first})",
            fleet.errors.len()
        );
    }
    anyhow::ensure!(!fleet.users.is_empty(), "{label}: no connection opened");
    let (to, expect) = match &audience.kind {
        AudienceKind::PerUser => (Destination::Users(fleet.users.clone()), Expect::OneReceiver),
        AudienceKind::OneUser => (
            Destination::Users(fleet.users[..1].to_vec()),
            Expect::EveryReceiver,
        ),
        AudienceKind::Room(room) => (Destination::Room(room.clone()), Expect::EveryReceiver),
    };
    if expect == Expect::EveryReceiver {
        recorder.set_fanout(fleet.users.len() as u64);
    }
    let publisher = Arc::new(Publisher::new(target, to, Arc::clone(&recorder))?);
    let live = setup.progress.live(label, &recorder);
    let publish_start = recorder.now_us() as f64 / 1e6;
    let cpu_before = (target.cpu_secs(), cpu_secs(std::process::id()));
    let publish_time = load(publisher, target).await;
    drain(&recorder, setup.drain).await;
    let cpu_after = (target.cpu_secs(), cpu_secs(std::process::id()));
    let busy_secs = recorder.now_us() as f64 / 1e6 - publish_start;
    let cores = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map(|(b, a)| (a - b) / busy_secs.max(1e-3))
    };
    live.finish();
    let connected_users = fleet.users.clone();
    let connected = fleet.users.len();
    let connect_errors = fleet.errors.len();
    let records = fleet.close().await;
    target.check_alive()?;
    let tally = recorder.tally(&records, expect);
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
        connected: connected_users,
        records,
        recorder,
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

/// Runs `phase` once per server of `setup` (each on its own server, see [`on_fresh_server`]),
/// Belfry first; returns the results in that order. A phase that fails on Belfry fails the
/// scenario; one that fails on a peer (it could not finish in time, say) is reported on stderr
/// and leaves that peer's figure out, so Belfry's figures are kept.
pub async fn on_each_server<T, F>(
    setup: &Setup,
    planned: Duration,
    mut phase: F,
) -> anyhow::Result<Vec<T>>
where
    F: AsyncFnMut(&TargetSpec, &mut Target) -> anyhow::Result<T>,
{
    let mut results = Vec::with_capacity(setup.servers.len());
    for spec in &setup.servers {
        let result = on_fresh_server(spec, planned, async |target| phase(spec, target).await).await;
        results.extend(peer_may_fail(spec, result)?);
    }
    Ok(results)
}

/// What to do with a phase's result on `spec`: a failure on Belfry fails the scenario; on a
/// peer it is reported on stderr and gives `None`, so the scenario goes on without that figure.
pub fn peer_may_fail<T>(spec: &TargetSpec, result: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if spec.is_peer() => {
            eprintln!("{}: phase failed, no figures: {e:#}", spec.name());
            Ok(None)
        }
        Err(e) => Err(e),
    }
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
