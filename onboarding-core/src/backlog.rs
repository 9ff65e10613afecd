//! The backlog check behind [`IngestConfig::max_backlog`]: the queue's
//! depth, read by one request at a time and reused for a short interval,
//! so that a burst of submissions costs one queue round trip, not one each;
//! what this service admits in between is added to the reading, so a burst
//! cannot overshoot the limit by a whole interval's worth.
//!
//! [`IngestConfig::max_backlog`]: crate::IngestConfig::max_backlog

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::queue::JobQueue;

/// Longest wait for one depth reading; a slower queue counts as unreadable
/// (and so refuses nothing) until the next reading.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    /// Ready + delayed jobs; `None` when the queue did not answer.
    waiting: Option<u64>,
    /// Organizations this service admitted since the reading.
    admitted: u64,
}

/// The answer of [`Backlog::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Counted in; store it.
    Admitted,
    /// Over the limit: `waiting` organizations are queued or admitted.
    Refused { waiting: u64 },
    /// The depth could not be read: nothing is refused on it.
    Unknown,
}

/// The last backlog reading and the single-flight lock of the next one.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    last: Mutex<Option<Reading>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Backlog {
    fn last(&self) -> MutexGuard<'_, Option<Reading>> {
        // A `Reading` is written whole: a poisoned lock still holds a valid one.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_fresh(&self, refresh: Duration) -> bool {
        self.last().is_some_and(|r| r.at.elapsed() < refresh)
    }

    /// Admits `incoming` organizations when the queue's backlog (ready +
    /// delayed jobs, from a reading at most `refresh` old) plus what was
    /// admitted since that reading plus `incoming` stays within `max`, or
    /// when nothing waits at all.
    pub(crate) async fn admit(
        &self,
        queue: &dyn JobQueue,
        refresh: Duration,
        incoming: u64,
        max: u64,
    ) -> Admission {
        self.refresh(queue, refresh).await;
        let mut last = self.last();
        let Some(reading) = last.as_mut() else {
            return Admission::Unknown;
        };
        let Some(queued) = reading.waiting else {
            return Admission::Unknown;
        };
        let waiting = queued.saturating_add(reading.admitted);
        if waiting > 0 && waiting.saturating_add(incoming) > max {
            Admission::Refused { waiting }
        } else {
            reading.admitted = reading.admitted.saturating_add(incoming);
            Admission::Admitted
        }
    }

    /// Makes sure a reading at most `refresh` old is there.
    ///
    /// One caller at a time reads the queue. While it does, the others use
    /// the previous reading when there is one (they don't wait), and wait
    /// for the reading in flight when there is none yet.
    async fn refresh(&self, queue: &dyn JobQueue, refresh: Duration) {
        if self.is_fresh(refresh) {
            return;
        }
        let has_reading = self.last().is_some();
        let _reader = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) if has_reading => return,
            Err(_) => self.refreshing.lock().await,
        };
        // A reading may have landed while this caller waited for the lock.
        if self.is_fresh(refresh) {
            return;
        }
        let waiting = match tokio::time::timeout(READ_TIMEOUT, queue.depth()).await {
            Ok(Ok(depth)) => Some(depth.ready.saturating_add(depth.delayed)),
            Ok(Err(error)) => {
                tracing::warn!(%error,
                    "cannot read the queue depth; submissions are not refused on the backlog until it answers");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?READ_TIMEOUT,
                    "the queue depth did not come in time; submissions are not refused on the backlog until it answers");
                None
            }
        };
        *self.last() = Some(Reading {
            at: Instant::now(),
            waiting,
            admitted: 0,
        });
    }
}
