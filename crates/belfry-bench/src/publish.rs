//! Publishing through the backend API, the way an application's backend does: one
//! notification for one recipient per request, a batch of them, or a room message (Belfry's
//! `POST /v1/notifications`, `/v1/notifications/batch`, `/v1/rooms/{room}/messages`, or the
//! peer's equivalents; see `dialect`).
//!
//! Two shapes of load:
//! - **open loop** (`open_loop`): a schedule of `rate` sends per second that does not wait for
//!   answers, so a slow server shows up as latency instead of being hidden by a slower client.
//!   Sends run concurrently up to an in-flight limit; a send that starts more than `late_after`
//!   behind its schedule is counted as late, and its latency is still measured from the
//!   scheduled time.
//! - **closed loop** (`closed_loop`): `concurrency` publishers, each sending its next request as
//!   soon as the previous one is answered, to find the maximum sustained rate.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::dialect::Dialect;
use crate::record::Recorder;
use crate::target::Target;

/// Longest one publish request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whom a publisher addresses.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Notifications to these users, round robin (a user may be listed once).
    Users(Vec<String>),
    /// Messages to this room (no storage).
    Room(String),
}

/// Sends notifications to a fixed set of connected users, round robin, or messages to a room.
pub struct Publisher {
    client: reqwest::Client,
    dialect: Dialect,
    single_url: String,
    batch_url: String,
    room_url: Option<String>,
    api_key: String,
    users: Vec<String>,
    recorder: Arc<Recorder>,
}

impl Publisher {
    /// A publisher for `target` that addresses `to` (which must not be an empty list).
    pub fn new(target: &Target, to: Destination, recorder: Arc<Recorder>) -> anyhow::Result<Self> {
        let (users, room_url) = match to {
            Destination::Users(users) => (users, None),
            Destination::Room(room) => (
                Vec::new(),
                Some(format!(
                    "{}{}",
                    target.base,
                    target.dialect.room_path(&room)
                )),
            ),
        };
        anyhow::ensure!(
            !users.is_empty() || room_url.is_some(),
            "no connected users to publish to"
        );
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()?;
        let dialect = target.dialect;
        Ok(Self {
            client,
            dialect,
            single_url: format!("{}{}", target.base, dialect.single_path()),
            batch_url: format!("{}{}", target.base, dialect.batch_path()),
            room_url,
            api_key: target.api_key.clone(),
            users,
            recorder,
        })
    }

    /// The recorder this publisher reports to.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    fn user(&self, s: u64) -> &str {
        let i = usize::try_from(s).unwrap_or(0) % self.users.len().max(1);
        self.users.get(i).map_or("", String::as_str)
    }

    /// One item: notification `s` for its user, sent at `t` (µs since the recorder's epoch).
    fn item(&self, out: &mut String, s: u64, t: u64) {
        self.dialect.item(out, self.user(s), s, t);
    }

    /// Sends notifications `first..first + n` (one request; a batch when `batched`), or room
    /// message `first` to a room, and records the outcome.
    pub async fn send(&self, first: u64, n: u64, t: u64, batched: bool) {
        let mut body = String::with_capacity(96 * usize::try_from(n).unwrap_or(1) + 32);
        let url = if let Some(room_url) = &self.room_url {
            body = self.dialect.room_body(first, t);
            room_url
        } else if batched {
            body.push_str(r#"{"notifications":["#);
            for s in first..first + n {
                if s > first {
                    body.push(',');
                }
                self.item(&mut body, s, t);
            }
            body.push_str("]}");
            &self.batch_url
        } else {
            self.item(&mut body, first, t);
            &self.single_url
        };
        self.recorder.start_request(n);
        let started = Instant::now();
        let answer = self
            .client
            .post(url)
            .bearer_auth(&self.api_key)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match answer {
            Ok(response) => {
                let status = response.status();
                // Read the body to the end so the connection goes back to the pool.
                let read = response.bytes().await;
                match (status.as_u16(), read) {
                    (201 | 202, Ok(_)) => self.recorder.ack(first, n, started.elapsed()),
                    (201 | 202, Err(e)) => self.recorder.fail(n, failure_reason(&e)),
                    (code, _) => self.recorder.fail(n, format!("HTTP {code}")),
                }
            }
            Err(e) => self.recorder.fail(n, failure_reason(&e)),
        }
    }

    /// `concurrency` publishers send requests of `batch` notifications back to back for
    /// `duration` (a batch of 1 uses the single-notification endpoint). Returns how long
    /// publishing took, including the last answers.
    pub async fn closed_loop(
        self: &Arc<Self>,
        concurrency: usize,
        batch: u64,
        duration: Duration,
    ) -> Duration {
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let publisher = Arc::clone(self);
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let first = publisher.recorder.next_seqs(batch);
                    let t = publisher.recorder.now_us();
                    publisher.send(first, batch, t, batch > 1).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        started.elapsed()
    }

    /// Sends `rate` single-notification requests per second for `duration`, on schedule,
    /// with at most `max_in_flight` unanswered. A server too slow for the schedule holds sends
    /// back (they start late); those whose turn has not come by the cutoff ([`open_loop_cutoff`])
    /// are abandoned and counted as unsent, so that a phase's length stays bounded. Returns how
    /// long publishing took, including the last answers.
    pub async fn open_loop(
        self: &Arc<Self>,
        rate: f64,
        duration: Duration,
        max_in_flight: usize,
        late_after: Duration,
    ) -> Duration {
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let slots = Arc::new(Semaphore::new(max_in_flight.max(1)));
        let started = Instant::now();
        let cutoff = started + open_loop_cutoff(duration);
        let mut tasks = JoinSet::new();
        let mut begun = 0;
        while begun < total && Instant::now() < cutoff {
            let scheduled = started + period.mul_f64(begun as f64);
            // Sleeps of under a millisecond are not worth a timer: send what is due now.
            if scheduled > Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(scheduled.into()).await;
            }
            let acquired =
                tokio::time::timeout_at(cutoff.into(), Arc::clone(&slots).acquire_owned()).await;
            let Ok(Ok(slot)) = acquired else {
                break;
            };
            begun += 1;
            if Instant::now().saturating_duration_since(scheduled) > late_after {
                self.recorder.late.fetch_add(1, Ordering::Relaxed);
            }
            let publisher = Arc::clone(self);
            let t = self.recorder.us_at(scheduled);
            tasks.spawn(async move {
                let first = publisher.recorder.next_seqs(1);
                publisher.send(first, 1, t, false).await;
                drop(slot);
            });
            while tasks.try_join_next().is_some() {}
        }
        // What the schedule still held at the cutoff was never sent.
        self.recorder
            .unsent
            .fetch_add(total - begun, Ordering::Relaxed);
        while tasks.join_next().await.is_some() {}
        started.elapsed()
    }
}

/// How long after its start an open-loop schedule of `duration` stops starting sends: twice
/// its length, and at least ten seconds more.
pub fn open_loop_cutoff(duration: Duration) -> Duration {
    duration + duration.max(Duration::from_secs(10))
}

fn failure_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else {
        "transport error".into()
    }
}
