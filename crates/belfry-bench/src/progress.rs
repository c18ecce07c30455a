//! Progress on stderr while a phase runs (indicatif draws only on a terminal, so CI logs stay
//! clean), and a live line of the counters.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::record::Recorder;

/// Whether progress is drawn at all.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Draw bars (false: hidden).
    pub enabled: bool,
}

impl Progress {
    fn target(self) -> ProgressDrawTarget {
        if self.enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A bar counting to `len`.
    pub fn bar(self, prefix: &str, len: u64) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), self.target());
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(prefix.to_owned());
        bar
    }

    /// A spinner whose message shows the recorder's counters, refreshed until the returned
    /// handle is aborted (see [`Live::finish`]).
    pub fn live(self, prefix: &str, recorder: &Arc<Recorder>) -> Live {
        let bar = ProgressBar::with_draw_target(None, self.target());
        let style = ProgressStyle::with_template("{prefix:>12} {spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(prefix.to_owned());
        let shown = bar.clone();
        let recorder = Arc::clone(recorder);
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            let mut previous = 0;
            loop {
                tick.tick().await;
                let acked = recorder.acked.load(Ordering::Relaxed);
                let per_s = acked.saturating_sub(previous) * 4;
                previous = acked;
                shown.set_message(format!(
                    "sent {} acked {} ({}/s) delivered {} failed {} late {} dup {}",
                    recorder.sent.load(Ordering::Relaxed),
                    acked,
                    per_s,
                    recorder.delivered.load(Ordering::Relaxed),
                    recorder.failed.load(Ordering::Relaxed),
                    recorder.late.load(Ordering::Relaxed),
                    recorder.duplicates.load(Ordering::Relaxed),
                ));
                shown.tick();
            }
        });
        Live { bar, ticker }
    }
}

/// A live counter line.
pub struct Live {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Live {
    /// Stops refreshing and clears the line.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
