//! **smoke**: every scenario for a second or two with tiny numbers, on one server (the first of
//! the setup), failing when anything was lost, duplicated, reordered, refused or dropped. Meant
//! for CI: it checks that the bench and the server still work together, not how fast they are.
//! The storm comes last but one, because it restarts the server; hold comes last.

use std::time::Duration;

use super::{Setup, broadcast, hold, latency, on_fresh_server, storm, throughput};
use crate::clients::Transport;
use crate::record::Tally;
use crate::report::{Row, emit};

/// Publishing time of each load phase.
const PHASE: Duration = Duration::from_millis(1500);
/// Users connected during the load phases.
const USERS: usize = 50;
/// Connections of each broadcast phase.
const BROADCAST_CONNECTIONS: usize = 20;
/// Idle connections of the hold phase.
const HOLD_CONNECTIONS: usize = 200;

/// Runs the smoke phases; returns the problems found (empty: all clean).
pub async fn run(setup: &Setup) -> anyhow::Result<Vec<String>> {
    let spec = setup
        .servers
        .first()
        .ok_or_else(|| anyhow::anyhow!("no server"))?
        .clone();
    let throughput_params = throughput::Params {
        users: USERS,
        duration: PHASE,
        concurrency: 4,
        batch: 20,
        batch_concurrency: 2,
        synchronous: Vec::new(),
    };
    let latency_params = latency::Params {
        users: USERS,
        rates: vec![200.0],
        duration: PHASE,
        max_in_flight: 64,
        late_after: Duration::from_millis(50),
    };
    let broadcast_params = |mode| broadcast::Params {
        connections: vec![BROADCAST_CONNECTIONS],
        rate: 50.0,
        duration: Duration::from_secs(1),
        mode,
        max_in_flight: 64,
    };
    let storm_params = storm::Params {
        clients: USERS,
        rate: 200.0,
        duration: Duration::from_millis(2500),
        restart_at: Duration::from_millis(700),
        max_in_flight: 64,
        settle: Duration::from_secs(10),
    };
    let sse = Setup {
        connect: crate::clients::ConnectOptions {
            transport: Transport::Sse,
            ..setup.connect
        },
        ..setup.clone()
    };
    let planned = Duration::from_secs(30);
    let (loads, latencies, broadcasts, storms, holds) =
        on_fresh_server(&spec, planned, async |target| {
            let mut loads = Vec::new();
            for (batch, concurrency) in [(1, 4), (20, 2)] {
                let outcome =
                    throughput::phase(setup, &spec, target, &throughput_params, batch, concurrency)
                        .await?;
                loads.push(throughput::row(
                    setup,
                    &spec,
                    None,
                    &throughput_params,
                    batch,
                    concurrency,
                    outcome,
                ));
            }
            let mut latencies = Vec::new();
            for setup in [setup, &sse] {
                let outcome = latency::phase(setup, &spec, target, &latency_params, 200.0).await?;
                latencies.push(latency::row(setup, &spec, &latency_params, 200.0, outcome));
            }
            let mut broadcasts = Vec::new();
            for mode in [broadcast::Mode::User, broadcast::Mode::Room] {
                let params = broadcast_params(mode);
                let outcome =
                    broadcast::phase(setup, &spec, target, &params, BROADCAST_CONNECTIONS).await?;
                broadcasts.push(broadcast::row(
                    setup,
                    &spec,
                    &params,
                    BROADCAST_CONNECTIONS,
                    outcome,
                ));
            }
            let storms = vec![storm::phase(setup, &spec, target, &storm_params).await?];
            let holds = vec![
                hold::phase(
                    setup,
                    &spec,
                    target,
                    HOLD_CONNECTIONS,
                    Duration::from_millis(500),
                )
                .await?,
            ];
            Ok((loads, latencies, broadcasts, storms, holds))
        })
        .await?;
    emit(&loads)?;
    emit(&latencies)?;
    emit(&broadcasts)?;
    emit(&storms)?;
    emit(&holds)?;

    let mut problems = Vec::new();
    let mut check = |name: &str, tally: &Tally, fanout: u64| {
        if !tally.is_clean() || tally.acked == 0 || tally.delivered != tally.acked * fanout {
            problems.push(format!(
                "{name}: acked {} delivered {} lost {} duplicated {} reordered {} failed {} \
                 disconnects {} {:?} {:?}",
                tally.acked,
                tally.delivered,
                tally.lost,
                tally.duplicated,
                tally.reordered,
                tally.failed,
                tally.disconnects,
                tally.failures,
                tally.closes,
            ));
        }
    };
    for row in &loads {
        check("throughput", row.tally(), 1);
    }
    for row in &latencies {
        check("latency", row.tally(), 1);
    }
    for row in &broadcasts {
        check("broadcast", row.tally(), BROADCAST_CONNECTIONS as u64);
    }
    for row in &storms {
        if !row.is_clean() || row.tally().acked == 0 {
            problems.push(format!("storm: {}", serde_json::to_string(row)?));
        }
    }
    for row in &holds {
        if !row.is_clean() {
            problems.push(format!("hold: {}", serde_json::to_string(row)?));
        }
    }
    Ok(problems)
}
