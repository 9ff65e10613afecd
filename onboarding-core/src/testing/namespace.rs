//! One namespace per test: a name no other test (or run) uses, and a guard
//! that removes what the test made under it when the test ends.
//!
//! Names carry their creation time, so that a later run can remove what a
//! crashed run left behind ([`is_stale`]); nothing is ever flushed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The start of every name [`unique_name`] makes: what stale-namespace
/// clean-ups look for.
pub const PREFIX: &str = "onb_test_";

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `onb_test_<unix seconds>_<12 random hex digits>[_<label>]`: a name for a
/// database, key prefix or queue prefix that no other test uses.
///
/// The label (say, the scenario) is lower-cased and everything but ASCII
/// letters and digits becomes `_`, so the name is a valid database name on
/// every engine.
pub fn unique_name(label: &str) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let mut name = format!("{PREFIX}{}_{}", unix_seconds(), &random[..12]);
    if !label.is_empty() {
        name.push('_');
        name.extend(label.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        }));
    }
    name
}

/// Whether `name` was made by [`unique_name`] more than `older_than` ago:
/// left behind by a run that did not clean up (it crashed or was killed).
pub fn is_stale(name: &str, older_than: Duration) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
        .is_some_and(|made| made.saturating_add(older_than.as_secs()) < unix_seconds())
}

type Task = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs an async clean-up when dropped: at the end of the test, also when it
/// panics.
///
/// The clean-up runs to completion on a thread and runtime of its own, so
/// the guard may be dropped inside or outside a tokio runtime, and after the
/// test's runtime (with the connections it owned) is gone. Errors inside the
/// clean-up should be ignored by it: a failing clean-up must not turn a
/// passing test into a failing one.
pub struct Cleanup {
    task: Mutex<Option<Task>>,
}

impl Cleanup {
    /// A guard that runs `cleanup` when dropped.
    pub fn new<F, Fut>(cleanup: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let task: Task = Box::new(move || Box::pin(cleanup()));
        Self {
            task: Mutex::new(Some(task)),
        }
    }
}

impl Cleanup {
    /// Drops the guard without running the clean-up: what it would remove
    /// stays (for inspection; a later run removes it once it is stale).
    pub fn disarm(self) {
        let mut this = self;
        let _ = this.take();
    }

    fn take(&mut self) -> Option<Task> {
        match self.task.get_mut() {
            Ok(task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleanup").finish_non_exhaustive()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(task) = self.take() else {
            return;
        };
        let thread = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(task());
            }
        });
        // A panic inside the clean-up stays on its thread: dropping may
        // happen while the test unwinds, where a second panic aborts.
        let _ = thread.join();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn names_are_unique_valid_and_age() {
        let a = unique_name("Scenario-1");
        let b = unique_name("Scenario-1");
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.ends_with("_scenario_1"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert!(!is_stale(&a, Duration::from_secs(3600)));
        assert!(is_stale("onb_test_1000_abc", Duration::from_secs(3600)));
        assert!(!is_stale("production", Duration::ZERO));
    }

    #[tokio::test]
    async fn cleanup_runs_when_dropped_inside_a_runtime() {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let guard = Cleanup::new(move || async move {
            tokio::task::yield_now().await;
            flag.store(true, Ordering::SeqCst);
        });
        drop(guard);
        assert!(ran.load(Ordering::SeqCst));
    }
}
