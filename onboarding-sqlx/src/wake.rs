//! Polling with an in-process wake-up: a `dequeue` that finds nothing waits
//! for the next poll tick or for an enqueue through the same backend.

use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Wakes waiting consumers of one queue handle.
#[derive(Debug, Default)]
pub(crate) struct Waker {
    notify: Notify,
}

impl Waker {
    /// Wakes every waiter.
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Runs `take` until it returns something or `wait` has passed, sleeping
    /// `interval` (or until woken) between tries.
    pub(crate) async fn poll<T, F, Fut>(
        &self,
        wait: Duration,
        interval: Duration,
        mut take: F,
    ) -> onboarding_core::Result<Vec<T>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = onboarding_core::Result<Vec<T>>>,
    {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = take().await?;
            if !got.is_empty() {
                return Ok(got);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(got);
            }
            let until = (now + interval).min(deadline);
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}
