//! **broadcast**: many connections receive every event. Either one user with N connections
//! (`user`: stored notifications, each delivered to all N; Belfry's per-user connection limit
//! is raised to N) or N users in one room (`room`: backend room messages, nothing stored; the
//! room size limit is raised to N). Open loop at a fixed event rate; frames delivered per
//! second, publish → receive latency of every frame, and lost deliveries (a connection that
//! missed an acknowledged event counts one per event).

use std::time::Duration;

use serde::Serialize;

use super::{
    Audience, AudienceKind, LoadOutcome, Setup, on_fresh_server, peer_may_fail, run_audience,
    user_prefix,
};
use crate::clients::Plan;
use crate::record::Tally;
use crate::report::{Better, Row, cores, count, ms, rate};
use crate::target::{Target, TargetSpec};

/// What every connection listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One user with many connections; stored notifications.
    User,
    /// Many users in one room; room messages (not stored).
    Room,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::User => "user",
            Mode::Room => "room",
        }
    }
}

/// Parameters of the broadcast scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connection counts, one phase each.
    pub connections: Vec<usize>,
    /// Events per second (each goes to every connection).
    pub rate: f64,
    /// Publishing time per phase.
    pub duration: Duration,
    /// What the connections listen to.
    pub mode: Mode,
    /// Unanswered publish requests allowed at once.
    pub max_in_flight: usize,
}

/// One phase's result.
#[derive(Debug, Serialize)]
pub struct BroadcastRow {
    scenario: &'static str,
    server: &'static str,
    target: String,
    transport: &'static str,
    mode: Mode,
    connections: usize,
    connect_errors: usize,
    /// Events per second offered.
    rate: f64,
    duration_s: f64,
    /// Frames delivered per second, from the first send to the last delivery.
    frames_per_s: f64,
    /// Frames that should have been delivered: acknowledged events × connections.
    frames_expected: u64,
    server_cores: Option<f64>,
    bench_cores: Option<f64>,
    #[serde(flatten)]
    tally: Tally,
}

impl Row for BroadcastRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        let e2e = &self.tally.e2e_ms;
        vec![
            ("server", self.server.to_owned()),
            ("mode", self.mode.name().to_owned()),
            ("transport", self.transport.to_owned()),
            ("connections", count(self.connections as u64)),
            ("events/s", rate(self.rate)),
            ("events acked", count(self.tally.acked)),
            ("frames delivered", count(self.tally.delivered)),
            ("frames/s", rate(self.frames_per_s)),
            ("p50 ms", ms(e2e.p50)),
            ("p99 ms", ms(e2e.p99)),
            ("max ms", ms(e2e.max)),
            ("lost", count(self.tally.lost)),
            ("dup", count(self.tally.duplicated)),
            ("failed", count(self.tally.failed)),
            ("closed", count(self.tally.disconnects)),
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
            "broadcast {} {} × {}/s {}",
            self.mode.name(),
            count(self.connections as u64),
            rate(self.rate),
            self.transport
        )
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        vec![
            ("frames/s", Some(self.frames_per_s), Better::Higher),
            ("p99 ms", Some(self.tally.e2e_ms.p99), Better::Lower),
        ]
    }
}

impl BroadcastRow {
    /// The counts.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// Runs one phase per connection count and server, each on a fresh server.
pub async fn run(setup: &Setup, params: &Params) -> anyhow::Result<Vec<BroadcastRow>> {
    let mut rows = Vec::new();
    for &n in &params.connections {
        for server in &setup.servers {
            let spec = sized_for(server, params.mode, n);
            let result = on_fresh_server(&spec, params.duration, async |target| {
                let outcome = phase(setup, &spec, target, params, n).await?;
                Ok(row(setup, &spec, params, n, outcome))
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
    Ok(rows)
}

/// The server's limits raised so that `n` connections fit in one user or room.
fn sized_for(spec: &TargetSpec, mode: Mode, n: usize) -> TargetSpec {
    let n = i64::try_from(n).unwrap_or(i64::MAX).max(1);
    match mode {
        Mode::User => spec.with_setting("ws.max_connections_per_user", n.into()),
        Mode::Room => spec.with_setting("rooms.max_users_per_room", n.into()),
    }
}

/// One broadcast phase on a running server.
pub async fn phase(
    setup: &Setup,
    spec: &TargetSpec,
    target: &mut Target,
    params: &Params,
    n: usize,
) -> anyhow::Result<LoadOutcome> {
    let prefix = user_prefix();
    let audience = match params.mode {
        Mode::User => Audience {
            clients: vec![format!("{prefix}one"); n],
            kind: AudienceKind::OneUser,
            plan: Plan::default(),
        },
        Mode::Room => {
            let room = format!("bench:{}", prefix.trim_end_matches('-'));
            Audience {
                clients: (0..n).map(|i| format!("{prefix}{i}")).collect(),
                kind: AudienceKind::Room(room.clone()),
                plan: Plan {
                    room: Some(room),
                    ..Plan::default()
                },
            }
        }
    };
    let (rate, duration, in_flight) = (params.rate, params.duration, params.max_in_flight);
    // A send this late behind schedule is counted as late (the figure is not a criterion here).
    let late = Duration::from_millis(5);
    run_audience(
        setup,
        target,
        audience,
        &format!("{} broadcast {}", spec.name(), params.mode.name()),
        async |publisher, _target| publisher.open_loop(rate, duration, in_flight, late).await,
    )
    .await
}

/// Shapes a phase's outcome as a row.
pub fn row(
    setup: &Setup,
    spec: &TargetSpec,
    params: &Params,
    n: usize,
    outcome: LoadOutcome,
) -> BroadcastRow {
    BroadcastRow {
        scenario: "broadcast",
        server: spec.name(),
        target: spec.describe(),
        transport: setup.connect.transport.name(),
        mode: params.mode,
        connections: n,
        connect_errors: outcome.connect_errors,
        rate: params.rate,
        duration_s: params.duration.as_secs_f64(),
        frames_per_s: outcome.delivered_per_s,
        frames_expected: outcome.tally.acked.saturating_mul(outcome.users as u64),
        server_cores: outcome.server_cores,
        bench_cores: outcome.bench_cores,
        tally: outcome.tally,
    }
}
