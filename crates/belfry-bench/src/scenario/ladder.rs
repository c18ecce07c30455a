//! **ladder**: the maximum sustainable rate of each server. Latency phases (open loop, single
//! requests, one fresh server each) at rising rates, `start`, `start × factor`, …, until a rung
//! fails: p99 publish → receive above the limit, anything lost or failed, or fewer than 95 % of
//! the offered rate acknowledged per second. A failed rung is tried again `retries` times (a
//! shared machine has bad moments) before the climb stops. A server's figure is the highest
//! rung it passed.
//! With a peer the servers climb in turns (Belfry's rung, then the peer's), so both ladders
//! see the same machine; the one that fails first stops climbing.

use std::time::Duration;

use serde::Serialize;

use super::latency::{self, LatencyRow};
use super::{Setup, on_fresh_server};
use crate::report::{Better, Row, count, ms, rate};

/// Share of the offered rate that must be acknowledged per second for a rung to pass.
const SUSTAINED: f64 = 0.95;

/// Parameters of the ladder.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connected users and the phase shape of each rung.
    pub rung: latency::Params,
    /// The first rate, per second.
    pub start: f64,
    /// Each rung's rate is the previous one's times this.
    pub factor: f64,
    /// No rung above this rate.
    pub max_rate: f64,
    /// The p99 a rung must stay within, in milliseconds.
    pub p99_ms: f64,
    /// How many times a failed rung is tried again.
    pub retries: usize,
}

/// One server's result.
#[derive(Debug, Serialize)]
pub struct LadderRow {
    scenario: &'static str,
    server: &'static str,
    target: String,
    users: usize,
    p99_limit_ms: f64,
    /// The highest rate passed, per second (0: not even the first).
    max_rate: f64,
    /// The p99 at that rate.
    p99_at_max_ms: Option<f64>,
    /// The first rate that failed, if one did.
    failed_rate: Option<f64>,
    /// Why it failed.
    failed_because: Option<String>,
    rungs: usize,
}

impl Row for LadderRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        vec![
            ("server", self.server.to_owned()),
            ("users", count(self.users as u64)),
            ("p99 limit ms", ms(self.p99_limit_ms)),
            ("max sustainable rate/s", rate(self.max_rate)),
            ("p99 there ms", self.p99_at_max_ms.map_or("?".into(), ms)),
            (
                "next rung",
                self.failed_rate
                    .map_or("(not reached)".into(), |r| format!("{}/s", rate(r))),
            ),
            (
                "failed because",
                self.failed_because.clone().unwrap_or_else(|| "—".into()),
            ),
        ]
    }

    fn is_clean(&self) -> bool {
        true
    }

    fn server(&self) -> &str {
        self.server
    }

    fn phase(&self) -> String {
        format!(
            "ladder {} users p99 ≤ {} ms",
            count(self.users as u64),
            ms(self.p99_limit_ms)
        )
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        vec![(
            "max sustainable rate/s",
            Some(self.max_rate),
            Better::Higher,
        )]
    }
}

/// Why a rung failed, or `None` when it passed.
fn verdict(row: &LatencyRow, p99_ms: f64) -> Option<String> {
    let tally = row.tally();
    if tally.lost > 0 {
        return Some(format!("{} lost", tally.lost));
    }
    if tally.failed > 0 {
        return Some(format!("{} failed requests", tally.failed));
    }
    if tally.e2e_ms.p99 > p99_ms {
        return Some(format!("p99 {} ms", ms(tally.e2e_ms.p99)));
    }
    if row.acked_per_s() < SUSTAINED * row.rate() {
        return Some(format!("acked only {}/s", rate(row.acked_per_s())));
    }
    None
}

struct Climb {
    rate: f64,
    best: Option<(f64, f64)>,
    failed: Option<(f64, String)>,
    rungs: usize,
    retried: usize,
}

/// Climbs every server's ladder; returns every rung and one summary per server.
pub async fn run(
    setup: &Setup,
    params: &Params,
) -> anyhow::Result<(Vec<LatencyRow>, Vec<LadderRow>)> {
    anyhow::ensure!(params.start > 0.0, "--start must be positive");
    anyhow::ensure!(params.factor > 1.0, "--factor must be above 1");
    let mut climbs: Vec<Climb> = setup
        .servers
        .iter()
        .map(|_| Climb {
            rate: params.start,
            best: None,
            failed: None,
            rungs: 0,
            retried: 0,
        })
        .collect();
    let mut rungs = Vec::new();
    let planned: Duration = params.rung.duration;
    loop {
        let mut climbed = false;
        for (spec, climb) in setup.servers.iter().zip(climbs.iter_mut()) {
            if climb.failed.is_some() || climb.rate > params.max_rate {
                continue;
            }
            climbed = true;
            let rate = climb.rate;
            let row = on_fresh_server(spec, planned, async |target| {
                let outcome = latency::phase(setup, spec, target, &params.rung, rate).await?;
                Ok(latency::row(setup, spec, &params.rung, rate, outcome))
            })
            .await?;
            eprintln!(
                "{}",
                crate::report::markdown(std::slice::from_ref(&row)).trim()
            );
            climb.rungs += 1;
            match verdict(&row, params.p99_ms) {
                None => {
                    climb.best = Some((rate, row.tally().e2e_ms.p99));
                    climb.rate = (rate * params.factor).round();
                    climb.retried = 0;
                }
                Some(_) if climb.retried < params.retries => climb.retried += 1,
                Some(why) => climb.failed = Some((rate, why)),
            }
            rungs.push(row);
        }
        if !climbed {
            break;
        }
    }
    let summaries = setup
        .servers
        .iter()
        .zip(climbs)
        .map(|(spec, climb)| LadderRow {
            scenario: "ladder",
            server: spec.name(),
            target: spec.describe(),
            users: params.rung.users,
            p99_limit_ms: params.p99_ms,
            max_rate: climb.best.map_or(0.0, |b| b.0),
            p99_at_max_ms: climb.best.map(|b| b.1),
            failed_rate: climb.failed.as_ref().map(|f| f.0),
            failed_because: climb.failed.map(|f| f.1),
            rungs: climb.rungs,
        })
        .collect();
    Ok((rungs, summaries))
}
