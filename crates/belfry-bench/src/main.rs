//! `belfry-bench`: a load generator for Belfry. It starts the real server (or targets one on
//! loopback), connects authenticated WebSocket or SSE clients, publishes through the backend
//! API, and prints one JSON line per phase and a Markdown table. With `--peer fastapi` every
//! phase runs on the seed-style FastAPI peer too, and a Belfry / peer table follows. Figures in
//! docs/benchmarks.md come from here; `belfry-bench smoke` is the quick check CI runs.

mod clients;
mod dialect;
mod fd_limit;
mod progress;
mod publish;
mod record;
mod report;
mod scenario;
mod server;
mod target;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::clients::{ConnectOptions, Transport};
use crate::dialect::Dialect;
use crate::progress::Progress;
use crate::scenario::{Setup, broadcast, hold, ladder, latency, smoke, soak, storm, throughput};
use crate::target::{TargetSpec, parse_setting};

/// Load generator for Belfry.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args)]
struct Global {
    /// The `belfry` binary to start (one fresh server per phase, on a free loopback port).
    #[arg(long, global = true, default_value = "target/release/belfry")]
    server_bin: PathBuf,
    /// A server setting for started servers, `section.key=value` (TOML value); repeatable.
    #[arg(long = "set", global = true, value_parser = parse_setting)]
    settings: Vec<(String, toml::Value)>,
    /// Use this running server instead of starting one (loopback only), e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, global = true, requires_all = ["api_key", "jwt_secret"])]
    url: Option<String>,
    /// Backend API key of the --url server.
    #[arg(
        long,
        global = true,
        env = "BELFRY_BENCH_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// HS256 user-token secret of the --url server.
    #[arg(
        long,
        global = true,
        env = "BELFRY_BENCH_JWT_SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// PID of the --url server, for memory figures.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Run every phase on this peer too, right after Belfry, and compare.
    #[arg(long, global = true, value_enum)]
    peer: Option<PeerKind>,
    /// The peer's script (installs its virtualenv, runs it).
    #[arg(long, global = true, default_value = "bench/peer.sh")]
    peer_script: PathBuf,
    /// An environment variable for the peer, `NAME=value` (e.g. PEER_SQLITE_JOURNAL=wal);
    /// repeatable.
    #[arg(long = "peer-env", global = true, value_parser = parse_env)]
    peer_env: Vec<(String, String)>,
    /// Live transport of the clients.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Ws)]
    transport: Transport,
    /// WebSocket handshakes in flight at once.
    #[arg(long, global = true, default_value_t = 64)]
    connect_concurrency: usize,
    /// Loopback source addresses (127.0.0.1…) to spread client sockets over; 0: one per 20k.
    #[arg(long, global = true, default_value_t = 0)]
    source_addrs: usize,
    /// Longest wait, in seconds, for acknowledged notifications to arrive after publishing.
    #[arg(long, global = true, default_value_t = 5.0)]
    drain_secs: f64,
    /// Do not draw progress bars.
    #[arg(long, global = true)]
    no_progress: bool,
}

/// A peer to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PeerKind {
    /// The seed-style FastAPI server in bench/peers/fastapi.
    Fastapi,
}

#[derive(Subcommand)]
enum Scenario {
    /// Maximum sustained stored-and-delivered rate: closed-loop publishers, single then batch
    /// requests, for each SQLite synchronous mode.
    Throughput {
        /// Connected users (one connection each).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Seconds of publishing per phase.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Concurrent publishers for single-notification requests (0: no single phase).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Notifications per batch request (0 or 1: no batch phase).
        #[arg(long, default_value_t = 100)]
        batch: u64,
        /// Concurrent publishers for batch requests (0: no batch phase).
        #[arg(long, default_value_t = 8)]
        batch_concurrency: usize,
        /// `store.sqlite_synchronous` modes to compare, comma-separated (started servers only).
        #[arg(long, value_delimiter = ',', default_value = "full,normal")]
        synchronous: Vec<String>,
    },
    /// Publish → receive latency at fixed rates (open loop), and loss.
    Latency {
        /// Connected users (one connection each).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Notifications per second, comma-separated for several phases.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        rate: Vec<f64>,
        /// Seconds of publishing per rate.
        #[arg(long, default_value_t = 15.0)]
        duration: f64,
        /// Unanswered publish requests allowed at once.
        #[arg(long, default_value_t = 512)]
        max_in_flight: usize,
        /// A send starting more than this many milliseconds behind schedule counts as late.
        #[arg(long, default_value_t = 5.0)]
        late_ms: f64,
    },
    /// The maximum sustainable rate at a p99 limit: latency phases at rising rates until one
    /// fails (p99 over the limit, any loss or failure, or under 95% of the rate acknowledged).
    Ladder {
        /// Connected users (one connection each).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// The first rate, per second.
        #[arg(long, default_value_t = 100.0)]
        start: f64,
        /// Each rung's rate is the previous one's times this.
        #[arg(long, default_value_t = 1.5)]
        factor: f64,
        /// No rung above this rate.
        #[arg(long, default_value_t = 100_000.0)]
        max_rate: f64,
        /// The p99 publish → receive a rung must stay within, in milliseconds.
        #[arg(long, default_value_t = 100.0)]
        p99_ms: f64,
        /// Seconds of publishing per rung.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// How many times a failed rung is tried again before the climb stops.
        #[arg(long, default_value_t = 1)]
        retries: usize,
        /// Unanswered publish requests allowed at once.
        #[arg(long, default_value_t = 512)]
        max_in_flight: usize,
    },
    /// Many connections receive every event: one user with N connections (stored
    /// notifications) or N users in one room (room messages); frames delivered per second.
    Broadcast {
        /// What the connections listen to.
        #[arg(long, value_enum, default_value_t = broadcast::Mode::User)]
        mode: broadcast::Mode,
        /// Connections, comma-separated for several phases.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        connections: Vec<usize>,
        /// Events per second (each goes to every connection).
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds of publishing per phase.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Unanswered publish requests allowed at once.
        #[arg(long, default_value_t = 512)]
        max_in_flight: usize,
    },
    /// Reconnect storm: restart the server under N connected clients while publishing; time
    /// until all resumed with everything they missed; lost and duplicated (must be 0).
    Storm {
        /// Connected clients, one user each.
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Notifications per second.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// Seconds after publishing starts when the restart begins.
        #[arg(long, default_value_t = 5.0)]
        restart_at: f64,
        /// Longest wait, in seconds after publishing ends, for every client to have everything.
        #[arg(long, default_value_t = 30.0)]
        settle: f64,
        /// Unanswered publish requests allowed at once.
        #[arg(long, default_value_t = 512)]
        max_in_flight: usize,
    },
    /// Idle authenticated connections: time to connect, server memory per connection.
    Hold {
        /// Connections, comma-separated for several phases.
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        connections: Vec<usize>,
        /// Seconds to hold them open once connected.
        #[arg(long, default_value_t = 5.0)]
        hold_secs: f64,
    },
    /// Every scenario for ~2 s with tiny numbers on one server; exits non-zero on any loss,
    /// duplicate, reorder, failure or dropped connection (for CI).
    Smoke,
    /// Connect/publish/disconnect churn for a bounded time; exits non-zero when the server's
    /// RSS grew past the bound, connections or descriptors were left behind, or anything was
    /// lost.
    Soak(soak::Args),
}

fn secs(value: f64, name: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("--{name} must be >= 0"))
}

/// Parses `NAME=value`.
fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=value")),
    }
}

fn setup(global: &Global) -> anyhow::Result<Setup> {
    let belfry = match &global.url {
        Some(url) => TargetSpec::External {
            url: url.clone(),
            api_key: global.api_key.clone().context("--url needs --api-key")?,
            jwt_secret: global
                .jwt_secret
                .clone()
                .context("--url needs --jwt-secret")?,
            pid: global.server_pid,
            dialect: Dialect::Belfry,
        },
        None => TargetSpec::Belfry {
            bin: global.server_bin.clone(),
            settings: global.settings.clone(),
        },
    };
    let mut servers = vec![belfry];
    if let Some(PeerKind::Fastapi) = global.peer {
        servers.push(TargetSpec::Peer {
            script: global.peer_script.clone(),
            env: global.peer_env.clone(),
        });
    }
    Ok(Setup {
        servers,
        connect: ConnectOptions {
            concurrency: global.connect_concurrency,
            source_addrs: global.source_addrs,
            transport: global.transport,
        },
        drain: secs(global.drain_secs, "drain-secs")?,
        progress: Progress {
            enabled: !global.no_progress,
        },
    })
}

/// The most connections any phase of `scenario` opens.
fn connections_needed(scenario: &Scenario) -> usize {
    match scenario {
        Scenario::Throughput { users, .. }
        | Scenario::Latency { users, .. }
        | Scenario::Ladder { users, .. } => *users,
        Scenario::Storm { clients, .. } => *clients,
        Scenario::Hold { connections, .. } | Scenario::Broadcast { connections, .. } => {
            connections.iter().copied().max().unwrap_or(0)
        }
        Scenario::Smoke => 1000,
        Scenario::Soak(args) => args.users,
    }
}

/// Installs the peer's virtualenv (idempotent) with its script.
async fn install_peer(script: &std::path::Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(script)
        .arg("install")
        .status()
        .await
        .with_context(|| format!("cannot run {} install", script.display()))?;
    anyhow::ensure!(
        status.success(),
        "{} install failed ({status})",
        script.display()
    );
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let setup = setup(&cli.global)?;
    if cli.global.peer.is_some() {
        install_peer(&cli.global.peer_script).await?;
    }
    // Client sockets, the publisher's pool and, for a started server (which inherits this
    // limit), its side of every connection.
    let want = connections_needed(&cli.scenario) as u64 + 4096;
    let limit = fd_limit::raise(want)?;
    if limit < want {
        eprintln!("warning: open-file limit is {limit}, wanted {want}; connections may fail");
    }
    match cli.scenario {
        Scenario::Throughput {
            users,
            duration,
            concurrency,
            batch,
            batch_concurrency,
            synchronous,
        } => {
            let params = throughput::Params {
                users,
                duration: secs(duration, "duration")?,
                concurrency,
                batch,
                batch_concurrency,
                synchronous,
            };
            report_rows(&throughput::run(&setup, &params).await?)
        }
        Scenario::Latency {
            users,
            rate,
            duration,
            max_in_flight,
            late_ms,
        } => {
            anyhow::ensure!(
                rate.iter().all(|r| *r > 0.0),
                "--rate values must be positive"
            );
            let params = latency::Params {
                users,
                rates: rate,
                duration: secs(duration, "duration")?,
                max_in_flight,
                late_after: secs(late_ms / 1000.0, "late-ms")?,
            };
            report_rows(&latency::run(&setup, &params).await?)
        }
        Scenario::Ladder {
            users,
            start,
            factor,
            max_rate,
            p99_ms,
            duration,
            retries,
            max_in_flight,
        } => {
            let params = ladder::Params {
                rung: latency::Params {
                    users,
                    rates: Vec::new(),
                    duration: secs(duration, "duration")?,
                    max_in_flight,
                    late_after: Duration::from_millis(5),
                },
                start,
                factor,
                max_rate,
                p99_ms,
                retries,
            };
            let (rungs, summaries) = ladder::run(&setup, &params).await?;
            println!();
            report::emit(&rungs)?;
            report_rows(&summaries)
        }
        Scenario::Broadcast {
            mode,
            connections,
            rate,
            duration,
            max_in_flight,
        } => {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
            let params = broadcast::Params {
                connections,
                rate,
                duration: secs(duration, "duration")?,
                mode,
                max_in_flight,
            };
            report_rows(&broadcast::run(&setup, &params).await?)
        }
        Scenario::Storm {
            clients,
            rate,
            duration,
            restart_at,
            settle,
            max_in_flight,
        } => {
            anyhow::ensure!(rate > 0.0, "--rate must be positive");
            anyhow::ensure!(
                restart_at < duration,
                "--restart-at must come before the end of --duration"
            );
            let params = storm::Params {
                clients,
                rate,
                duration: secs(duration, "duration")?,
                restart_at: secs(restart_at, "restart-at")?,
                max_in_flight,
                settle: secs(settle, "settle")?,
            };
            report_rows(&storm::run(&setup, &params).await?)
        }
        Scenario::Hold {
            connections,
            hold_secs,
        } => {
            let params = hold::Params {
                connections,
                hold: secs(hold_secs, "hold-secs")?,
            };
            report_rows(&hold::run(&setup, &params).await?)
        }
        Scenario::Soak(args) => soak::main(&setup, &args).await,
        Scenario::Smoke => {
            let problems = smoke::run(&setup).await?;
            if problems.is_empty() {
                eprintln!("smoke: all phases clean");
                Ok(ExitCode::SUCCESS)
            } else {
                for problem in &problems {
                    eprintln!("smoke: {problem}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn report_rows<R: report::Row>(rows: &[R]) -> anyhow::Result<ExitCode> {
    println!();
    report::emit(rows)?;
    if rows.iter().any(|r| !r.is_clean()) {
        eprintln!(
            "warning: some phases lost, duplicated or reordered notifications, or had failed \
             requests or connections (see the JSON lines)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // On a signal the run is dropped, which kills a started server (its handle kills on drop)
    // and removes its temporary directory.
    let outcome = tokio::select! {
        outcome = run(cli) => outcome,
        signal = interrupted() => signal.and(Err(anyhow::anyhow!("interrupted"))),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("belfry-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
