//! `MemoryCache`: a map with expiry times.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::cache::Cache;
use crate::error::{Error, Result};

/// Value and expiry per key.
type Entries = HashMap<String, (Vec<u8>, Instant)>;

/// An in-process cache; expired entries are dropped when read and swept when
/// the map grows past `max_entries`.
#[derive(Debug)]
pub struct MemoryCache {
    entries: Mutex<Entries>,
    max_entries: usize,
}

impl MemoryCache {
    /// A cache that holds at most `max_entries` live entries (the oldest-expiring go first).
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Entries>> {
        self.entries
            .lock()
            .map_err(|_| Error::internal("memory cache lock poisoned by a panic"))
    }
}

impl Default for MemoryCache {
    /// Up to 100,000 entries.
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut map = self.lock()?;
        match map.get(key) {
            Some((value, expires)) if *expires > Instant::now() => Ok(Some(value.clone())),
            Some(_) => {
                map.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let mut map = self.lock()?;
        let now = Instant::now();
        if map.len() >= self.max_entries && !map.contains_key(key) {
            map.retain(|_, (_, expires)| *expires > now);
            if map.len() >= self.max_entries {
                if let Some(first) = map
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&first);
                }
            }
        }
        map.insert(key.to_owned(), (value.to_vec(), now + ttl));
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        let mut map = self.lock()?;
        for key in keys {
            map.remove(key);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        self.lock().map(|_| ())
    }
}
