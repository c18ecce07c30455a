//! What one client saw, checked as frames arrive: each notification's `s` at most once, the
//! order key only increasing, latency from the send time in the payload.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use crate::dialect::{Frame, Payload};
use crate::record::Recorder;

/// Latency samples a reader collects before it hands them to the shared histogram.
const SAMPLE_BATCH: usize = 64;

/// What one client saw over all its connections.
#[derive(Debug, Default)]
pub struct Record {
    /// The client's user.
    pub user: String,
    /// The `s` of every notification or message received, first sight only, in arrival order.
    pub values: Vec<u64>,
    /// With `timed`: when each of `values` arrived (µs since the recorder's epoch).
    pub times: Vec<u64>,
    /// When each connection's `hello` arrived.
    pub hellos: Vec<u64>,
    /// When each connection ended on its own.
    pub closes: Vec<u64>,
}

/// The running state of one client.
pub struct Seen {
    keys: HashSet<u64>,
    /// The highest order key seen (Belfry's `seq`, the peer's id).
    pub last_seq: i64,
    timed: bool,
    values: Vec<u64>,
    times: Vec<u64>,
    /// When each connection's `hello` arrived.
    pub hellos: Vec<u64>,
    /// When each connection ended on its own.
    pub closes: Vec<u64>,
    samples: Vec<u64>,
}

impl Seen {
    /// An empty record; `timed` keeps arrival times.
    pub fn new(timed: bool) -> Self {
        Self {
            keys: HashSet::new(),
            last_seq: 0,
            timed,
            values: Vec::new(),
            times: Vec::new(),
            hellos: Vec::new(),
            closes: Vec::new(),
            samples: Vec::with_capacity(SAMPLE_BATCH),
        }
    }

    /// Takes one frame into account.
    pub fn frame(&mut self, frame: Frame, recorder: &Recorder) {
        let (payload, seq) = match frame {
            Frame::Notification { seq, payload, .. } => (payload, Some(seq)),
            Frame::Message(payload) => (payload, None),
            _ => return,
        };
        let Payload { s: Some(s), t } = payload else {
            return;
        };
        if !self.keys.insert(s) {
            recorder.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(seq) = seq {
            if seq <= self.last_seq {
                recorder.reordered.fetch_add(1, Ordering::Relaxed);
            }
            self.last_seq = self.last_seq.max(seq);
        }
        let now = recorder.now_us();
        self.values.push(s);
        if self.timed {
            self.times.push(now);
        }
        recorder.deliver_at(now);
        if let Some(sent) = t {
            self.samples.push(now.saturating_sub(sent).max(1));
            if self.samples.len() >= SAMPLE_BATCH {
                self.flush(recorder);
            }
        }
    }

    /// Hands the collected latency samples to the recorder.
    pub fn flush(&mut self, recorder: &Recorder) {
        recorder.record_latencies(&self.samples);
        self.samples.clear();
    }

    /// The record, for the tally.
    pub fn into_record(self, user: String) -> Record {
        Record {
            user,
            values: self.values,
            times: self.times,
            hellos: self.hellos,
            closes: self.closes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(id: u128, seq: i64, s: u64) -> Frame {
        Frame::Notification {
            id,
            seq,
            payload: Payload {
                s: Some(s),
                t: Some(0),
            },
        }
    }

    #[test]
    fn a_repeated_value_is_a_duplicate_and_a_lower_seq_a_reorder() {
        let recorder = Recorder::new().unwrap();
        let mut seen = Seen::new(false);
        seen.frame(notification(1, 2, 10), &recorder);
        seen.frame(notification(1, 2, 10), &recorder);
        seen.frame(notification(2, 1, 11), &recorder);
        seen.frame(Frame::Other, &recorder);
        seen.flush(&recorder);
        assert_eq!(recorder.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(recorder.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(recorder.reordered.load(Ordering::Relaxed), 1);
        let record = seen.into_record("u".into());
        assert_eq!(record.values, vec![10, 11]);
        assert!(record.times.is_empty());
    }

    #[test]
    fn timed_records_keep_arrival_times() {
        let recorder = Recorder::new().unwrap();
        let mut seen = Seen::new(true);
        seen.frame(
            Frame::Message(Payload {
                s: Some(3),
                t: None,
            }),
            &recorder,
        );
        let record = seen.into_record("u".into());
        assert_eq!(record.values, vec![3]);
        assert_eq!(record.times.len(), 1);
    }
}
