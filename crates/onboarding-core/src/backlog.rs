//! The backlog reading behind [`IngestConfig::max_backlog`]: the queue's
//! depth, read by one request at a time and reused for a short interval,
//! so that a burst of submissions costs one queue round trip, not one each.
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

    fn fresh(&self, refresh: Duration) -> Option<Reading> {
        let last = *self.last();
        last.filter(|r| r.at.elapsed() < refresh)
    }

    /// Jobs waiting in `queue` (ready + delayed), from a reading at most
    /// `refresh` old, or `None` when the queue could not be read.
    ///
    /// One caller at a time reads the queue. While it does, the others use
    /// the previous reading when there is one (they don't wait), and wait
    /// for the reading in flight when there is none yet.
    pub(crate) async fn waiting(&self, queue: &dyn JobQueue, refresh: Duration) -> Option<u64> {
        if let Some(reading) = self.fresh(refresh) {
            return reading.waiting;
        }
        let stale = *self.last();
        let _reader = match (self.refreshing.try_lock(), stale) {
            (Ok(guard), _) => guard,
            (Err(_), Some(stale)) => return stale.waiting,
            (Err(_), None) => self.refreshing.lock().await,
        };
        // A reading may have landed while this caller waited for the lock.
        if let Some(reading) = self.fresh(refresh) {
            return reading.waiting;
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
        });
        waiting
    }
}
