//! The `Cache` trait: a best-effort key-value cache with expiry.
//!
//! The cache is never the truth: callers treat any error as a miss.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// A byte-oriented cache with per-key expiry.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Reads a key.
    ///
    /// # Behavior
    /// - A key never set, deleted, or past its TTL reads as `None`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Writes a key that expires after `ttl`.
    ///
    /// # Behavior
    /// - A later `set` of the same key replaces the value and the TTL.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()>;

    /// Deletes keys; unknown keys are ignored.
    async fn delete(&self, keys: &[String]) -> Result<()>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;
}
