//! What one phase counted: publishes sent, acknowledged and failed; deliveries, duplicates and
//! reorders seen by the clients; latencies in HDR histograms. The final tally decides which
//! acknowledged notifications were never delivered (lost).
//!
//! Every published notification carries a bench-wide unique sequence `s` and its send time `t`
//! (microseconds since the recorder's epoch) in its `data`, so a client can time it and the
//! tally can match deliveries to acknowledgements.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::clients::Record;

/// Highest latency the histograms hold, in microseconds (one hour); larger values saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Shared counters of one phase. Cheap to update from many tasks.
pub struct Recorder {
    epoch: Instant,
    next_seq: AtomicU64,
    /// Publish requests started.
    pub requests: AtomicU64,
    /// Notifications (one per recipient) in requests started.
    pub sent: AtomicU64,
    /// Notifications in requests answered 201.
    pub acked: AtomicU64,
    /// Notifications in requests that failed (non-201 or transport error).
    pub failed: AtomicU64,
    /// Open-loop sends that started later than their schedule allowed.
    pub late: AtomicU64,
    /// Open-loop sends abandoned unsent: the phase ran out of time before their turn came
    /// (the server answered too slowly for the schedule).
    pub unsent: AtomicU64,
    /// Notification frames received, first sight on their connection.
    pub delivered: AtomicU64,
    /// Notification frames whose id this connection had already seen.
    pub duplicates: AtomicU64,
    /// Notification frames whose `seq` was not above the connection's previous one.
    pub reordered: AtomicU64,
    /// Connections that ended before the bench closed them.
    pub disconnects: AtomicU64,
    /// Connections that ended and were opened again (clients that reconnect).
    pub reconnects: AtomicU64,
    /// Reconnect attempts that failed (and were retried).
    pub reconnect_attempts: AtomicU64,
    /// Catch-up fetches that failed (the peer's clients after a reconnect).
    pub catch_up_failures: AtomicU64,
    /// Deliveries expected per acknowledged notification (1, or the connections of a broadcast).
    fanout: AtomicU64,
    last_delivery_us: AtomicU64,
    e2e: Mutex<Histogram<u64>>,
    ack: Mutex<Histogram<u64>>,
    /// Acknowledged `(first, n, when)`: notifications `first..first + n`, at µs `when`.
    acked_ranges: Mutex<Vec<(u64, u64, u64)>>,
    failures: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
    reconnect_errors: Mutex<BTreeMap<String, u64>>,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String, n: u64) {
    *lock(map).entry(key).or_default() += n;
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            epoch: Instant::now(),
            next_seq: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            late: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            reconnect_attempts: AtomicU64::new(0),
            catch_up_failures: AtomicU64::new(0),
            fanout: AtomicU64::new(1),
            last_delivery_us: AtomicU64::new(0),
            e2e: Mutex::new(histogram()?),
            ack: Mutex::new(histogram()?),
            acked_ranges: Mutex::new(Vec::new()),
            failures: Mutex::new(BTreeMap::new()),
            closes: Mutex::new(BTreeMap::new()),
            reconnect_errors: Mutex::new(BTreeMap::new()),
        })
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.us_at(Instant::now())
    }

    /// Microseconds from the epoch to `at`.
    pub fn us_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Reserves `n` consecutive sequence numbers; returns the first.
    pub fn next_seqs(&self, n: u64) -> u64 {
        self.next_seq.fetch_add(n, Ordering::Relaxed)
    }

    /// A request for `n` notifications starts.
    pub fn start_request(&self, n: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Every acknowledged notification is expected on `n` connections (a broadcast), not one.
    pub fn set_fanout(&self, n: u64) {
        self.fanout.store(n.max(1), Ordering::Relaxed);
    }

    /// The server acknowledged notifications `first..first + n`, `took` after the request began.
    pub fn ack(&self, first: u64, n: u64, took: Duration) {
        self.acked.fetch_add(n, Ordering::Relaxed);
        let now = self.now_us();
        lock(&self.acked_ranges).push((first, n, now));
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        lock(&self.ack).saturating_record(us);
    }

    /// A request for `n` notifications failed for `reason`.
    pub fn fail(&self, n: u64, reason: String) {
        self.failed.fetch_add(n, Ordering::Relaxed);
        bump(&self.failures, reason, 1);
    }

    /// A notification arrived for the first time on a connection, at `now` (µs).
    pub fn deliver_at(&self, now: u64) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
    }

    /// Publish → receive latencies, in µs (readers hand them over in batches, so that the
    /// shared histogram is locked once per batch).
    pub fn record_latencies(&self, samples: &[u64]) {
        if samples.is_empty() {
            return;
        }
        let mut e2e = lock(&self.e2e);
        for &us in samples {
            e2e.saturating_record(us);
        }
    }

    /// A reconnect attempt failed for `why` (it is retried).
    pub fn reconnect_failed(&self, why: String) {
        self.reconnect_attempts.fetch_add(1, Ordering::Relaxed);
        // The first words say what failed; the rest names ports and addresses.
        let kind: String = why.chars().take(48).collect();
        bump(&self.reconnect_errors, kind, 1);
    }

    /// Failed reconnect attempts by reason.
    pub fn reconnect_errors(&self) -> BTreeMap<String, u64> {
        lock(&self.reconnect_errors).clone()
    }

    /// A connection ended on its own; `why` is a close code or an error kind.
    pub fn disconnect(&self, why: String) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        bump(&self.closes, why, 1);
    }

    /// Acknowledged deliveries not yet made (never negative).
    pub fn outstanding(&self) -> u64 {
        let expected = self
            .acked
            .load(Ordering::Relaxed)
            .saturating_mul(self.fanout.load(Ordering::Relaxed));
        expected.saturating_sub(self.delivered.load(Ordering::Relaxed))
    }

    /// When each `s` issued so far was acknowledged (µs since the epoch); `None`: never.
    pub fn ack_times(&self) -> Vec<Option<u64>> {
        let issued = usize::try_from(self.next_seq.load(Ordering::Relaxed)).unwrap_or(0);
        let mut at = vec![None; issued];
        for &(first, n, when) in lock(&self.acked_ranges).iter() {
            for s in first..first.saturating_add(n) {
                if let Some(slot) = usize::try_from(s).ok().and_then(|i| at.get_mut(i)) {
                    *slot = Some(when);
                }
            }
        }
        at
    }

    /// Matches deliveries (the `s` values each client saw) against acknowledgements. With
    /// [`Expect::OneReceiver`] a notification counts as delivered when some client saw it
    /// (each user has one connection); with [`Expect::EveryReceiver`] every client must see
    /// every acknowledged one, and each miss counts as one lost delivery.
    pub fn tally(&self, records: &[Record], expect: Expect) -> Tally {
        let acked: Vec<bool> = self.ack_times().iter().map(Option::is_some).collect();
        let issued = acked.len();
        let mut lost = 0;
        let mut unexpected = 0;
        let mut delivered = vec![false; issued];
        for record in records {
            let mut mine = match expect {
                Expect::EveryReceiver => Some(vec![false; issued]),
                Expect::OneReceiver => None,
            };
            for &s in &record.values {
                match usize::try_from(s).ok().filter(|i| *i < issued) {
                    Some(i) => {
                        delivered[i] = true;
                        if let Some(mine) = &mut mine {
                            mine[i] = true;
                        }
                    }
                    None => unexpected += 1,
                }
            }
            if let Some(mine) = mine {
                lost += acked.iter().zip(&mine).filter(|(a, d)| **a && !**d).count() as u64;
            }
        }
        if expect == Expect::OneReceiver {
            lost = acked
                .iter()
                .zip(&delivered)
                .filter(|(a, d)| **a && !**d)
                .count() as u64;
        }
        // Delivered although the request was not acknowledged (it timed out after storing).
        unexpected += acked
            .iter()
            .zip(&delivered)
            .filter(|(a, d)| !**a && **d)
            .count() as u64;
        Tally {
            requests: self.requests.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            unsent: self.unsent.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            lost,
            duplicated: self.duplicates.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            unexpected,
            disconnects: self.disconnects.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            last_delivery_secs: self.last_delivery_us.load(Ordering::Relaxed) as f64 / 1e6,
            e2e_ms: Summary::of(&lock(&self.e2e)),
            ack_ms: Summary::of(&lock(&self.ack)),
            failures: lock(&self.failures).clone(),
            closes: lock(&self.closes).clone(),
        }
    }
}

/// Who must receive an acknowledged notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Its recipient's one connection.
    OneReceiver,
    /// Every connection of the phase (a broadcast).
    EveryReceiver,
}

/// The counts of one phase, after the drain.
#[derive(Debug, Clone, Serialize)]
pub struct Tally {
    /// Publish requests started.
    pub requests: u64,
    /// Notifications in those requests.
    pub sent: u64,
    /// Notifications acknowledged with 201.
    pub acked: u64,
    /// Notifications in failed requests.
    pub failed: u64,
    /// Open-loop sends that started late.
    pub late: u64,
    /// Open-loop sends abandoned unsent at the phase's cutoff.
    pub unsent: u64,
    /// Notifications received (first sight per connection).
    pub delivered: u64,
    /// Acknowledged but never received by the end of the drain.
    pub lost: u64,
    /// Received twice on one connection.
    pub duplicated: u64,
    /// Received with a `seq` not above the previous one on that connection.
    pub reordered: u64,
    /// Received but never acknowledged.
    pub unexpected: u64,
    /// Connections that ended before the bench closed them.
    pub disconnects: u64,
    /// Connections that ended and were opened again (clients that reconnect).
    pub reconnects: u64,
    /// When the last delivery happened, seconds since the recorder's epoch.
    #[serde(skip)]
    pub last_delivery_secs: f64,
    /// Publish → receive latency.
    pub e2e_ms: Summary,
    /// Request → 201 latency.
    pub ack_ms: Summary,
    /// Failed requests by reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, u64>,
    /// Unrequested disconnects by close code or error.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub closes: BTreeMap<String, u64>,
}

impl Tally {
    /// True when nothing was lost, duplicated, reordered, failed, left unsent or disconnected.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.unsent == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.failed == 0
            && self.disconnects == 0
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean: h.mean().round() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(values: &[u64]) -> Record {
        Record {
            values: values.to_vec(),
            ..Record::default()
        }
    }

    #[test]
    fn in_a_broadcast_every_client_must_see_every_acknowledged_notification() {
        let rec = Recorder::new().unwrap();
        rec.set_fanout(2);
        let first = rec.next_seqs(3);
        rec.ack(first, 3, Duration::from_millis(1));
        assert_eq!(rec.outstanding(), 6);
        let tally = rec.tally(
            &[record(&[0, 1, 2]), record(&[0, 2])],
            Expect::EveryReceiver,
        );
        assert_eq!(tally.lost, 1);
        assert_eq!(tally.unexpected, 0);
    }

    #[test]
    fn lost_counts_acknowledged_notifications_nobody_received() {
        let rec = Recorder::new().unwrap();
        let first = rec.next_seqs(4);
        rec.ack(first, 3, Duration::from_millis(1));
        rec.fail(1, "HTTP 503".into());
        for _ in 0..2 {
            rec.deliver_at(1);
        }
        let tally = rec.tally(&[record(&[0]), record(&[2])], Expect::OneReceiver);
        assert_eq!(tally.acked, 3);
        assert_eq!(tally.lost, 1, "s=1 was acknowledged but never delivered");
        assert_eq!(tally.unexpected, 0);
        assert_eq!(tally.failures["HTTP 503"], 1);
        assert!(!tally.is_clean());
    }

    #[test]
    fn a_delivery_of_an_unacknowledged_notification_is_unexpected_not_lost() {
        let rec = Recorder::new().unwrap();
        let first = rec.next_seqs(2);
        rec.ack(first, 1, Duration::from_millis(1));
        let tally = rec.tally(&[record(&[0, 1])], Expect::OneReceiver);
        assert_eq!(tally.lost, 0);
        assert_eq!(tally.unexpected, 1);
    }

    #[test]
    fn summaries_are_in_milliseconds() {
        let rec = Recorder::new().unwrap();
        rec.ack(0, 1, Duration::from_micros(2500));
        let tally = rec.tally(&[], Expect::OneReceiver);
        assert!((tally.ack_ms.p50 - 2.5).abs() < 0.01, "{:?}", tally.ack_ms);
    }
}
