//! **smoke**: every scenario for about two seconds with tiny numbers, on one server, failing
//! when anything was lost, duplicated, reordered, refused or dropped. Meant for CI: it checks
//! that the bench and the server still work together, not how fast they are.

use std::time::Duration;

use super::{Setup, hold, latency, on_fresh_server, throughput};
use crate::report::{Row, emit};

/// Publishing time of each load phase.
const PHASE: Duration = Duration::from_secs(2);
/// Users connected during the load phases.
const USERS: usize = 50;
/// Idle connections of the hold phase.
const HOLD_CONNECTIONS: usize = 200;

/// Runs the smoke phases; returns the problems found (empty: all clean).
pub async fn run(setup: &Setup) -> anyhow::Result<Vec<String>> {
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
    let planned = PHASE * 3 + Duration::from_secs(1);
    let (loads, latencies, holds) = on_fresh_server(&setup.spec, planned, async |target| {
        let mut loads = Vec::new();
        for (batch, concurrency) in [(1, 4), (20, 2)] {
            let outcome =
                throughput::phase(setup, target, &throughput_params, batch, concurrency).await?;
            loads.push(throughput::row(
                &setup.spec,
                None,
                &throughput_params,
                batch,
                concurrency,
                outcome,
            ));
        }
        let outcome = latency::phase(setup, target, &latency_params, 200.0).await?;
        let latencies = vec![latency::row(&setup.spec, &latency_params, 200.0, outcome)];
        let holds =
            vec![hold::phase(setup, target, HOLD_CONNECTIONS, Duration::from_secs(1)).await?];
        Ok((loads, latencies, holds))
    })
    .await?;
    emit(&loads)?;
    emit(&latencies)?;
    emit(&holds)?;

    let mut problems = Vec::new();
    let tallies = loads
        .iter()
        .map(|r| ("throughput", r.tally()))
        .chain(latencies.iter().map(|r| ("latency", r.tally())));
    for (name, tally) in tallies {
        if !tally.is_clean() || tally.acked == 0 || tally.delivered != tally.acked {
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
    }
    for row in &holds {
        if !row.is_clean() {
            problems.push(format!("hold: {}", serde_json::to_string(row)?));
        }
    }
    Ok(problems)
}
