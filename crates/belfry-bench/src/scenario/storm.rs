//! **storm**: a reconnect storm. N clients (one user each) are connected and notifications are
//! published at a fixed rate (open loop); meanwhile the bench restarts the server it started
//! (SIGTERM, wait for the exit, start it again on the same port with the same database). Every
//! client reconnects on its own with jittered backoff (50 ms doubling to 500 ms): Belfry's with
//! `since` = the last `seq` it saw, the peer's followed by an HTTP fetch of what it missed.
//!
//! Measured from the SIGTERM: when the server was back, when the last client had its new
//! `hello`, and when every client had also received every notification it *missed* (those
//! acknowledged before its new `hello` that had not arrived before its connection dropped).
//! Lost (acknowledged, never received) and duplicated must both be 0. Publishes refused while
//! the server is down are failed requests, not losses: nothing was acknowledged.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use super::{Audience, AudienceKind, LoadOutcome, Setup, on_each_server, run_audience};
use crate::clients::{Plan, Record};
use crate::record::Tally;
use crate::report::{Better, Row, count, ms, rate};
use crate::server::Restarted;
use crate::target::{Target, TargetSpec};

/// Parameters of the storm scenario.
#[derive(Debug, Clone)]
pub struct Params {
    /// Connected clients, one user each.
    pub clients: usize,
    /// Notifications per second, before, during and after the restart.
    pub rate: f64,
    /// Publishing time.
    pub duration: Duration,
    /// When the restart begins, after publishing started.
    pub restart_at: Duration,
    /// Unanswered publish requests allowed at once.
    pub max_in_flight: usize,
    /// Longest wait, after publishing ends, for every client to have everything.
    pub settle: Duration,
}

/// One phase's result.
#[derive(Debug, Serialize)]
pub struct StormRow {
    scenario: &'static str,
    server: &'static str,
    target: String,
    transport: &'static str,
    clients: usize,
    connect_errors: usize,
    rate: f64,
    duration_s: f64,
    /// SIGTERM → the old process exited.
    stop_s: Option<f64>,
    /// SIGTERM → the new process answered its readiness probe.
    back_s: Option<f64>,
    /// SIGTERM → the last client's new `hello`.
    reconnected_s: Option<f64>,
    /// SIGTERM → every client reconnected and received every notification it missed.
    resumed_s: Option<f64>,
    /// Clients that had no new `hello` by the end.
    unresumed: usize,
    /// Notifications that arrived through a resume (after their client's connection dropped,
    /// acknowledged before its new `hello`).
    missed: u64,
    /// Failed reconnect attempts (retried).
    reconnect_attempts: u64,
    /// The peer's catch-up fetches that failed.
    catch_up_failures: u64,
    /// Failed reconnect attempts by reason (the first words of the error).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    reconnect_errors: std::collections::BTreeMap<String, u64>,
    #[serde(flatten)]
    tally: Tally,
}

impl Row for StormRow {
    fn cells(&self) -> Vec<(&'static str, String)> {
        let secs = |v: Option<f64>| v.map_or("?".into(), |s| format!("{s:.2}"));
        vec![
            ("server", self.server.to_owned()),
            ("transport", self.transport.to_owned()),
            ("clients", count(self.clients as u64)),
            ("rate/s", rate(self.rate)),
            ("stopped s", secs(self.stop_s)),
            ("back s", secs(self.back_s)),
            ("all reconnected s", secs(self.reconnected_s)),
            ("all resumed s", secs(self.resumed_s)),
            ("unresumed", count(self.unresumed as u64)),
            ("acked", count(self.tally.acked)),
            ("refused while down", count(self.tally.failed)),
            ("missed, then resumed", count(self.missed)),
            ("lost", count(self.tally.lost)),
            ("dup", count(self.tally.duplicated)),
            ("reordered", count(self.tally.reordered)),
            ("e2e p99 ms", ms(self.tally.e2e_ms.p99)),
        ]
    }

    fn is_clean(&self) -> bool {
        self.connect_errors == 0
            && self.unresumed == 0
            && self.resumed_s.is_some()
            && self.tally.lost == 0
            && self.tally.duplicated == 0
            && self.tally.reordered == 0
    }

    fn server(&self) -> &str {
        self.server
    }

    fn phase(&self) -> String {
        format!(
            "storm {} clients {}/s {}",
            count(self.clients as u64),
            rate(self.rate),
            self.transport
        )
    }

    fn headline(&self) -> Vec<(&'static str, Option<f64>, Better)> {
        vec![
            ("all resumed s", self.resumed_s, Better::Lower),
            ("all reconnected s", self.reconnected_s, Better::Lower),
        ]
    }
}

impl StormRow {
    /// The counts.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// Runs one storm per server, each on a fresh server.
pub async fn run(setup: &Setup, params: &Params) -> anyhow::Result<Vec<StormRow>> {
    for spec in &setup.servers {
        anyhow::ensure!(
            spec.is_spawned(),
            "the storm restarts the server, so the bench must start it (no --url)"
        );
    }
    let planned = params.duration + params.settle;
    let rows = on_each_server(setup, planned, async |spec, target| {
        phase(setup, spec, target, params).await
    })
    .await?;
    for row in &rows {
        eprintln!(
            "{}",
            crate::report::markdown(std::slice::from_ref(row)).trim()
        );
    }
    Ok(rows)
}

/// One storm on a running server (which it restarts).
pub async fn phase(
    setup: &Setup,
    spec: &TargetSpec,
    target: &mut Target,
    params: &Params,
) -> anyhow::Result<StormRow> {
    let mut audience = Audience::per_user(params.clients);
    audience.kind = AudienceKind::PerUser;
    audience.plan = Plan {
        reconnect: true,
        timed: true,
        ..Plan::default()
    };
    let (rate, duration, in_flight) = (params.rate, params.duration, params.max_in_flight);
    let (restart_at, settle) = (params.restart_at, params.settle);
    let mut restarted: Option<anyhow::Result<Restarted>> = None;
    let outcome = run_audience(
        setup,
        target,
        audience,
        &format!("{} storm", spec.name()),
        async |publisher, target| {
            let started = tokio::time::Instant::now();
            let load = {
                let publisher = std::sync::Arc::clone(&publisher);
                tokio::spawn(async move {
                    publisher
                        .open_loop(rate, duration, in_flight, Duration::from_millis(5))
                        .await
                })
            };
            tokio::time::sleep_until(started + restart_at).await;
            restarted = Some(target.restart().await);
            let took = load.await.unwrap_or(duration);
            // Wait for the resumes to finish before the common drain.
            let until = tokio::time::Instant::now() + settle;
            while publisher.recorder().outstanding() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            took
        },
    )
    .await?;
    let restarted = restarted.ok_or_else(|| anyhow::anyhow!("the restart did not happen"))??;
    Ok(row(setup, spec, params, &restarted, outcome))
}

/// The resume figures of one storm.
#[derive(Debug, Default, PartialEq)]
struct Resume {
    reconnected_us: Option<u64>,
    resumed_us: Option<u64>,
    unresumed: usize,
    missed: u64,
}

/// Works out, from what each client saw, when all had reconnected and all had what they
/// missed. `ack_times[s]` is when notification `s` was acknowledged; `owners[s % len]` is its
/// user; `began` is the SIGTERM, all in µs on the recorder's clock.
fn resume(records: &[Record], owners: &[String], ack_times: &[Option<u64>], began: u64) -> Resume {
    let mut owned: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    if !owners.is_empty() {
        for (s, at) in ack_times.iter().enumerate() {
            if let Some(at) = at {
                owned
                    .entry(owners[s % owners.len()].as_str())
                    .or_default()
                    .push((s as u64, *at));
            }
        }
    }
    let mut out = Resume::default();
    let mut last_hello = 0;
    let mut last_resume = 0;
    for record in records {
        let Some(&hello) = record.hellos.iter().find(|&&h| h >= began) else {
            out.unresumed += 1;
            continue;
        };
        let dropped = record
            .closes
            .iter()
            .copied()
            .find(|&c| c >= began)
            .unwrap_or(began);
        let arrived: HashMap<u64, u64> = record
            .values
            .iter()
            .copied()
            .zip(record.times.iter().copied())
            .collect();
        let mut resumed = hello;
        for &(s, acked_at) in owned.get(record.user.as_str()).into_iter().flatten() {
            if acked_at > hello {
                continue;
            }
            // Missing entirely: lost, which the tally counts.
            if let Some(&at) = arrived.get(&s)
                && at > dropped
            {
                out.missed += 1;
                resumed = resumed.max(at);
            }
        }
        last_hello = last_hello.max(hello);
        last_resume = last_resume.max(resumed);
    }
    if out.unresumed == 0 && !records.is_empty() {
        out.reconnected_us = Some(last_hello.saturating_sub(began));
        out.resumed_us = Some(last_resume.saturating_sub(began));
    }
    out
}

fn row(
    setup: &Setup,
    spec: &TargetSpec,
    params: &Params,
    restarted: &Restarted,
    outcome: LoadOutcome,
) -> StormRow {
    let recorder = &outcome.recorder;
    let began = recorder.us_at(restarted.began);
    let figures = resume(
        &outcome.records,
        &outcome.connected,
        &recorder.ack_times(),
        began,
    );
    let secs = |us: u64| us as f64 / 1e6;
    StormRow {
        scenario: "storm",
        server: spec.name(),
        target: spec.describe(),
        transport: setup.connect.transport.name(),
        clients: outcome.users,
        connect_errors: outcome.connect_errors,
        rate: params.rate,
        duration_s: params.duration.as_secs_f64(),
        stop_s: Some(
            restarted
                .exited
                .duration_since(restarted.began)
                .as_secs_f64(),
        ),
        back_s: Some(
            restarted
                .ready
                .duration_since(restarted.began)
                .as_secs_f64(),
        ),
        reconnected_s: figures.reconnected_us.map(secs),
        resumed_s: figures.resumed_us.map(secs),
        unresumed: figures.unresumed,
        missed: figures.missed,
        reconnect_attempts: recorder
            .reconnect_attempts
            .load(std::sync::atomic::Ordering::Relaxed),
        catch_up_failures: recorder
            .catch_up_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        reconnect_errors: recorder.reconnect_errors(),
        tally: outcome.tally,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, values: &[(u64, u64)], hellos: &[u64], closes: &[u64]) -> Record {
        Record {
            user: user.into(),
            values: values.iter().map(|v| v.0).collect(),
            times: values.iter().map(|v| v.1).collect(),
            hellos: hellos.to_vec(),
            closes: closes.to_vec(),
        }
    }

    #[test]
    fn a_resume_ends_when_the_last_missed_notification_arrived() {
        let owners = vec!["a".to_owned(), "b".to_owned()];
        // s = 0, 2 belong to a; s = 1, 3 to b. The restart begins at 100.
        let acks = vec![Some(50), Some(60), Some(110), Some(300)];
        let records = vec![
            // a: got 0 live; dropped at 105; back at 200; 2 arrived by resume at 210.
            record("a", &[(0, 55), (2, 210)], &[10, 200], &[105]),
            // b: got 1 live; back at 150; 3 (acked after its hello) arrived live at 301.
            record("b", &[(1, 65), (3, 301)], &[10, 150], &[104]),
        ];
        let figures = resume(&records, &owners, &acks, 100);
        assert_eq!(
            figures,
            Resume {
                reconnected_us: Some(100),
                resumed_us: Some(110),
                unresumed: 0,
                missed: 1,
            }
        );
    }

    #[test]
    fn a_client_without_a_new_hello_is_unresumed() {
        let owners = vec!["a".to_owned()];
        let records = vec![record("a", &[], &[10], &[105])];
        let figures = resume(&records, &owners, &[Some(50)], 100);
        assert_eq!(figures.unresumed, 1);
        assert_eq!(figures.resumed_us, None);
    }
}
