//! **hold**: N idle authenticated connections (one user each). How long connecting them all
//! takes, and what they cost the server in resident memory (`VmRSS` from /proc before and
//! after). One phase (and one fresh server) per connection count and server.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::{Audience, Setup, on_each_server};
use crate::clients::Fleet;
use crate::record::Recorder;
use crate::report::{Better, Row, count, rate};
use crate::server::rss_kib;
use crate::target::{Target, TargetSpec};

/// Time given to the server to settle before and after connecting, so RSS is not read in the
/// middle of a burst of allocations.
const SETTLE: Duration = Duration::from_millis(1000);

/// Parameters of the hold scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connection counts to measure.
    pub connections: Vec<usize>,
    /// How long the connections are held idle after they are all open.
    pub hold: Duration,
}

/// One phase's result.
#[derive(Debug, Serialize)]
pub struct HoldRow {
    scenario: &'static str,
    server: &'static str,
    target: String,
    transport: &'static str,
    connections: usize,
    opened: usize,
    failed: usize,
    /// Connections that ended on their own while held.
    dropped: u64,
    connect_s: f64,
    connects_per_s: f64,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    kib_per_connection: Option<f64>,
    bench_rss_kib: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    first_errors: Vec<String>,
}

impl Row for HoldRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        let mib =
            |kib: Option<u64>| kib.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
        vec![
            ("server", self.server.to_owned()),
            ("transport", self.transport.to_owned()),
            ("connections", count(self.connections as u64)),
            ("opened", count(self.opened as u64)),
            ("failed", count(self.failed as u64)),
            ("dropped", count(self.dropped)),
            ("connect s", format!("{:.2}", self.connect_s)),
            ("connects/s", rate(self.connects_per_s)),
            ("server RSS before MiB", mib(self.rss_before_kib)),
            ("server RSS after MiB", mib(self.rss_after_kib)),
            (
                "server KiB/conn",
                self.kib_per_connection
                    .map_or("?".into(), |k| format!("{k:.1}")),
            ),
            ("bench RSS MiB", mib(self.bench_rss_kib)),
        ]
    }

    /// True when every connection opened and stayed open.
    fn is_clean(&self) -> bool {
        self.failed == 0 && self.dropped == 0 && self.opened == self.connections
    }

    fn server(&self) -> &str {
        self.server
    }

    fn phase(&self) -> String {
        format!("hold {} {}", count(self.connections as u64), self.transport)
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        vec![
            ("server KiB/conn", self.kib_per_connection, Better::Lower),
            ("connects/s", Some(self.connects_per_s), Better::Higher),
        ]
    }
}

/// Runs one phase per connection count, each on a fresh server.
pub async fn run(setup: &Setup, params: &Params) -> anyhow::Result<Vec<HoldRow>> {
    let mut rows = Vec::new();
    for &n in &params.connections {
        let found = on_each_server(setup, params.hold, async |spec, target| {
            phase(setup, spec, target, n, params.hold).await
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

/// Opens `n` connections to a running server, holds them for `hold`, and measures.
pub async fn phase(
    setup: &Setup,
    spec: &TargetSpec,
    target: &mut Target,
    n: usize,
    hold: Duration,
) -> anyhow::Result<HoldRow> {
    tokio::time::sleep(SETTLE).await;
    let before = target.rss_kib();
    let recorder = Arc::new(Recorder::new()?);
    let audience = Audience::per_user(n);
    let bar = setup
        .progress
        .bar(&format!("hold {}: connect", spec.name()), n as u64);
    let fleet = Fleet::connect(
        target,
        audience.clients,
        setup.connect,
        audience.plan,
        &recorder,
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    tokio::time::sleep(SETTLE).await;
    let after = target.rss_kib();
    tokio::time::sleep(hold).await;
    let dropped = recorder.disconnects.load(Ordering::Relaxed);
    let opened = fleet.users.len();
    let failed = fleet.errors.len();
    let first_errors: Vec<String> = fleet.errors.iter().take(3).cloned().collect();
    let connect_s = fleet.connect_time.as_secs_f64();
    let bench_rss_kib = rss_kib(std::process::id());
    fleet.close().await;
    target.check_alive()?;
    let kib_per_connection = match (before, after) {
        (Some(b), Some(a)) if opened > 0 => Some(a.saturating_sub(b) as f64 / opened as f64),
        _ => None,
    };
    Ok(HoldRow {
        scenario: "hold",
        server: spec.name(),
        target: spec.describe(),
        transport: setup.connect.transport.name(),
        connections: n,
        opened,
        failed,
        dropped,
        connect_s,
        connects_per_s: if connect_s > 0.0 {
            opened as f64 / connect_s
        } else {
            0.0
        },
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_connection,
        bench_rss_kib,
        first_errors,
    })
}
