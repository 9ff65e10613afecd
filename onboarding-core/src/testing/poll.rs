//! Waiting for an outcome with a deadline, instead of sleeping a fixed time.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] checks.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// What a check of [`eventually`] answers: `Some` / `Ok` when the outcome is
/// there (with the value to return), `None` / `Err` while it is not (an
/// `Err` says what the check saw, for the failure message).
pub trait Progress {
    /// What [`eventually`] returns once the outcome is there.
    type Value;

    /// `Ok(value)` when done; `Err(what was seen, if anything)` otherwise.
    fn into_progress(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Progress for Option<T> {
    type Value = T;

    fn into_progress(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Progress for Result<T, E> {
    type Value = T;

    fn into_progress(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:?}")))
    }
}

/// Calls `check` every [`POLL_EVERY`] until it answers `Some` / `Ok`, and
/// returns that value.
///
/// # Panics
///
/// When `within` passes first, naming `what` and the last `Err` seen.
pub async fn eventually<F, Fut>(
    what: &str,
    within: Duration,
    check: F,
) -> <Fut::Output as Progress>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Progress,
{
    eventually_every(what, within, POLL_EVERY, check).await
}

/// [`eventually`] checking every `every`: for checks that cost the system
/// under test something (counting a large table).
///
/// # Panics
///
/// When `within` passes first, naming `what` and the last `Err` seen.
pub async fn eventually_every<F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: F,
) -> <Fut::Output as Progress>::Value
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Progress,
{
    let deadline = Instant::now() + within;
    loop {
        let seen = match check().await.into_progress() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            match seen {
                Some(seen) => {
                    panic!("timed out after {within:?} waiting for {what}; last seen: {seen}")
                }
                None => panic!("timed out after {within:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_value() {
        let mut n = 0;
        let got = eventually("n to reach 3", Duration::from_secs(1), || {
            n += 1;
            let n = n;
            async move { (n == 3).then_some(n * 10) }
        })
        .await;
        assert_eq!(got, 30);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "waiting for never; last seen: \"still 1\"")]
    async fn fails_after_the_deadline_with_the_last_error() {
        eventually("never", Duration::from_millis(100), || async {
            Err::<(), _>("still 1")
        })
        .await;
    }
}
