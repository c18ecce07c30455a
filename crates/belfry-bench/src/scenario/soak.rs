//! **soak**: connect / publish / disconnect churn on one server for a bounded time. Each round
//! connects a fresh set of users, sends each of them notifications, waits for every delivery,
//! closes the connections and waits for the server's `belfry_connections` gauge to return to 0.
//! The server's resident memory and open file descriptors are read after a warm-up round and at
//! the end: the run fails when memory grew by more than the stated bound, when descriptors or
//! connections were left behind, or when anything was lost, duplicated or reordered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::{Setup, drain, on_fresh_server, user_prefix};
use crate::clients::{Fleet, Plan};
use crate::publish::{Destination, Publisher};
use crate::record::{Expect, Recorder, Tally};
use crate::report::{Better, Row, count};
use crate::target::Target;

/// Longest wait for the server's connection gauge to reach 0 after a round's clients closed.
const GAUGE_DEADLINE: Duration = Duration::from_secs(10);
/// Time given to the server to settle before memory is read.
const SETTLE: Duration = Duration::from_millis(1000);
/// Descriptors the server may hold beyond its count after warm-up (a pooled database
/// connection, a log file) without it being a leak.
const FD_SLACK: i64 = 8;

/// Parameters of the soak scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// How long to churn (after the warm-up round).
    pub duration: Duration,
    /// Users (one connection each) per round.
    pub users: usize,
    /// Notifications each user gets per round.
    pub per_user: u64,
    /// Largest allowed growth of the server's RSS from after warm-up to the end, in KiB.
    pub max_growth_kib: u64,
}

/// The run's result.
#[derive(Debug, Serialize)]
pub struct SoakRow {
    scenario: &'static str,
    server: String,
    secs: f64,
    rounds: u64,
    connections: u64,
    connect_errors: u64,
    acked: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    failed_requests: u64,
    dropped: u64,
    /// The gauge after the last round (must be 0).
    connections_at_end: f64,
    rss_start_kib: Option<u64>,
    rss_mid_kib: Option<u64>,
    rss_end_kib: Option<u64>,
    max_growth_kib: u64,
    fds_start: Option<i64>,
    fds_end: Option<i64>,
}

impl SoakRow {
    fn growth_kib(&self) -> Option<i64> {
        Some(self.rss_end_kib? as i64 - self.rss_start_kib? as i64)
    }

    /// What makes this run fail, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                problems.push(what);
            }
        };
        check(
            self.connect_errors > 0,
            format!("{} connections failed", self.connect_errors),
        );
        check(self.lost > 0, format!("{} notifications lost", self.lost));
        check(
            self.duplicated > 0,
            format!("{} notifications duplicated", self.duplicated),
        );
        check(
            self.reordered > 0,
            format!("{} notifications reordered", self.reordered),
        );
        check(
            self.failed_requests > 0,
            format!("{} publish requests failed", self.failed_requests),
        );
        check(
            self.dropped > 0,
            format!("{} connections dropped by the server", self.dropped),
        );
        check(
            self.connections_at_end != 0.0,
            format!(
                "belfry_connections is {} after every client left",
                self.connections_at_end
            ),
        );
        match self.growth_kib() {
            Some(growth) => check(
                growth > self.max_growth_kib as i64,
                format!(
                    "server RSS grew by {growth} KiB, over the bound of {} KiB",
                    self.max_growth_kib
                ),
            ),
            None => check(true, "server RSS could not be read".into()),
        }
        if let (Some(start), Some(end)) = (self.fds_start, self.fds_end) {
            check(
                end > start + FD_SLACK,
                format!("server file descriptors went from {start} to {end}"),
            );
        }
        problems
    }
}

impl Row for SoakRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        let mib =
            |kib: Option<u64>| kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
        let fds = |n: Option<i64>| n.map_or("?".into(), |n| n.to_string());
        vec![
            ("secs", format!("{:.0}", self.secs)),
            ("rounds", count(self.rounds)),
            ("connections", count(self.connections)),
            ("delivered", count(self.delivered)),
            ("lost", count(self.lost)),
            ("dup", count(self.duplicated)),
            ("conns at end", format!("{}", self.connections_at_end)),
            ("RSS start MiB", mib(self.rss_start_kib)),
            ("RSS mid MiB", mib(self.rss_mid_kib)),
            ("RSS end MiB", mib(self.rss_end_kib)),
            (
                "bound MiB",
                format!("{:.1}", self.max_growth_kib as f64 / 1024.0),
            ),
            ("fds start", fds(self.fds_start)),
            ("fds end", fds(self.fds_end)),
        ]
    }

    fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }

    fn server(&self) -> &str {
        "belfry"
    }

    fn phase(&self) -> String {
        "soak".to_owned()
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
        vec![("RSS end MiB", mib(self.rss_end_kib), Better::Lower)]
    }
}

/// The `soak` command's options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Seconds of churn after the warm-up round.
    #[arg(long, default_value_t = 120.0)]
    pub duration: f64,
    /// Users (one connection each) per round.
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Notifications per user per round.
    #[arg(long, default_value_t = 5)]
    pub per_user: u64,
    /// Largest allowed growth of the server's RSS over the run (after the warm-up round), in
    /// MiB. An idle connection costs the server ~11 KiB, so a leak of a tenth of one per
    /// connection passes this within a few minutes of churn.
    #[arg(long, default_value_t = 16.0)]
    pub max_rss_growth_mib: f64,
}

/// Runs the `soak` command: prints the row, then each problem; non-zero exit on any.
pub async fn main(setup: &Setup, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let params = Params {
        duration: Duration::try_from_secs_f64(args.duration).context("--duration must be >= 0")?,
        users: args.users,
        per_user: args.per_user,
        max_growth_kib: (args.max_rss_growth_mib * 1024.0).max(0.0) as u64,
    };
    let row = run(setup, &params).await?;
    println!();
    crate::report::emit(std::slice::from_ref(&row))?;
    let problems = row.problems();
    for problem in &problems {
        eprintln!("soak: {problem}");
    }
    if problems.is_empty() {
        eprintln!("soak: clean");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::FAILURE)
    }
}

/// Runs the soak on one fresh server.
pub async fn run(setup: &Setup, params: &Params) -> anyhow::Result<SoakRow> {
    let spec = setup.servers.first().context("soak: no server to run on")?;
    on_fresh_server(spec, params.duration, async |target| {
        churn(setup, target, params).await
    })
    .await
}

async fn churn(setup: &Setup, target: &mut Target, params: &Params) -> anyhow::Result<SoakRow> {
    let client = reqwest::Client::new();
    let mut total = Totals::default();
    let mut connections = 0u64;
    let mut connect_errors = 0u64;
    // Warm-up: pools, caches and the allocator's first arenas are not a leak.
    round(setup, target, params, &client).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_start = target.rss_kib();
    let fds_start = target.pid().and_then(fd_count);
    let started = Instant::now();
    let mut rounds = 0u64;
    let mut rss_mid = None;
    let bar = setup
        .progress
        .bar("soak: rounds", params.duration.as_secs().max(1));
    while started.elapsed() < params.duration {
        let (tally, opened, errors) = round(setup, target, params, &client).await?;
        total.add(&tally);
        connections += opened;
        connect_errors += errors;
        rounds += 1;
        if rss_mid.is_none() && started.elapsed() >= params.duration / 2 {
            rss_mid = target.rss_kib();
        }
        bar.set_position(started.elapsed().as_secs());
        target.check_alive()?;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let connections_at_end = live_connections(&client, target).await?;
    Ok(SoakRow {
        scenario: "soak",
        server: setup
            .servers
            .first()
            .map(|spec| spec.describe())
            .unwrap_or_default(),
        secs,
        rounds,
        connections,
        connect_errors,
        acked: total.acked,
        delivered: total.delivered,
        lost: total.lost,
        duplicated: total.duplicated,
        reordered: total.reordered,
        failed_requests: total.failed,
        dropped: total.disconnects,
        connections_at_end,
        rss_start_kib: rss_start,
        rss_mid_kib: rss_mid,
        rss_end_kib: target.rss_kib(),
        max_growth_kib: params.max_growth_kib,
        fds_start,
        fds_end: target.pid().and_then(fd_count),
    })
}

/// The rounds' tallies, added up.
#[derive(Debug, Default)]
struct Totals {
    acked: u64,
    failed: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    disconnects: u64,
}

impl Totals {
    fn add(&mut self, round: &Tally) {
        self.acked += round.acked;
        self.failed += round.failed;
        self.delivered += round.delivered;
        self.lost += round.lost;
        self.duplicated += round.duplicated;
        self.reordered += round.reordered;
        self.disconnects += round.disconnects;
    }
}

/// One round: connect, publish `per_user` batches (one notification per user each), drain,
/// disconnect, and wait for the server to count no connection. Returns the tally, the
/// connections opened and those that failed.
async fn round(
    setup: &Setup,
    target: &Target,
    params: &Params,
    client: &reqwest::Client,
) -> anyhow::Result<(Tally, u64, u64)> {
    let recorder = Arc::new(Recorder::new()?);
    let prefix = user_prefix();
    let names = (0..params.users).map(|i| format!("{prefix}{i}")).collect();
    let hidden = indicatif::ProgressBar::hidden();
    let fleet = Fleet::connect(
        target,
        names,
        setup.connect,
        Plan::default(),
        &recorder,
        &hidden,
    )
    .await?;
    let opened = fleet.users.len() as u64;
    let errors = fleet.errors.len() as u64;
    anyhow::ensure!(opened > 0, "soak: no connection opened");
    let publisher = Publisher::new(
        target,
        Destination::Users(fleet.users.clone()),
        Arc::clone(&recorder),
    )?;
    for _ in 0..params.per_user {
        let first = recorder.next_seqs(opened);
        publisher.send(first, opened, recorder.now_us(), true).await;
    }
    drain(&recorder, setup.drain).await;
    let seen = fleet.close().await;
    let tally = recorder.tally(&seen, Expect::OneReceiver);
    let deadline = Instant::now() + GAUGE_DEADLINE;
    loop {
        let live = live_connections(client, target).await?;
        if live == 0.0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "soak: belfry_connections still {live} {GAUGE_DEADLINE:?} after the clients closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((tally, opened, errors))
}

/// The server's `belfry_connections` gauge.
async fn live_connections(client: &reqwest::Client, target: &Target) -> anyhow::Result<f64> {
    let text = client
        .get(format!("{}/metrics", target.base))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix("belfry_connections "))
        .and_then(|v| v.trim().parse().ok())
        .context("no belfry_connections in /metrics")
}

/// Open file descriptors of a process (Linux).
fn fd_count(pid: u32) -> Option<i64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as i64)
}
