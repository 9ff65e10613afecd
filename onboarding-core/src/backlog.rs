//! The backlog check behind [`IngestConfig::max_backlog`]: the queue's
//! depth, read by one request at a time and reused for a short interval,
//! so that a burst of submissions costs one queue round trip, not one each.
//! The reading and what was admitted since live in a [`BacklogLedger`]:
//! in process memory for one server, in Redis for several, so that what
//! any server admits counts against the limit for all of them.
//!
//! [`IngestConfig::max_backlog`]: crate::IngestConfig::max_backlog

use std::time::Duration;

use crate::limits::{Admission, BacklogLedger};
use crate::queue::JobQueue;

/// Longest wait for one depth reading; a slower queue counts as unreadable
/// (and so refuses nothing) until the next reading.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The single-flight lock of this process's next reading.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    refreshing: tokio::sync::Mutex<()>,
}

impl Backlog {
    /// Admits `incoming` organizations when the queue's backlog (ready +
    /// delayed jobs, from a reading at most `refresh` old) plus what was
    /// admitted since that reading plus `incoming` stays within `max`, or
    /// when nothing waits at all.
    ///
    /// One caller of this process at a time reads the queue. While it does,
    /// the others decide on the previous reading when there is one (they
    /// don't wait), and wait for the reading in flight when there is none.
    /// A ledger that cannot be reached refuses nothing.
    pub(crate) async fn admit(
        &self,
        ledger: &dyn BacklogLedger,
        queue: &dyn JobQueue,
        refresh: Duration,
        incoming: u64,
        max: u64,
    ) -> Admission {
        let first = match ledger.admit(incoming, max, refresh).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, "cannot reach the backlog ledger; the submission is not refused on the backlog");
                return Admission::Unknown;
            }
        };
        if let Some(answer) = first.filter(|a| a.fresh) {
            return answer.admission;
        }
        let _reader = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => match first {
                Some(stale) => return stale.admission,
                None => self.refreshing.lock().await,
            },
        };
        // A reading may have landed while this caller waited for the lock.
        let again = ledger.admit(incoming, max, refresh).await.ok().flatten();
        if let Some(answer) = again.filter(|a| a.fresh) {
            return answer.admission;
        }
        let waiting = read_depth(queue).await;
        if let Err(error) = ledger.record(waiting).await {
            tracing::warn!(%error, "cannot record the backlog reading");
            return Admission::Unknown;
        }
        match ledger.admit(incoming, max, refresh).await {
            Ok(Some(answer)) => answer.admission,
            Ok(None) | Err(_) => Admission::Unknown,
        }
    }
}

/// Ready + delayed jobs; `None` when the queue does not answer in time.
async fn read_depth(queue: &dyn JobQueue) -> Option<u64> {
    match tokio::time::timeout(READ_TIMEOUT, queue.depth()).await {
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
    }
}
