//! [`Cache`] cases: one per `# Behavior` bullet (and per method).
//!
//! Keys are random, so the cache may be shared by every case and by other
//! tests.

use std::time::{Duration, Instant};

use crate::cache::Cache;
use crate::testing::fixtures;
use crate::testing::TestBackend;

/// A TTL no case outlives.
const LONG: Duration = Duration::from_secs(600);

/// How long a case waits for a 1 s TTL to pass.
const DEADLINE: Duration = Duration::from_secs(5);

/// Reads `key`, expecting no error.
async fn get(cache: &dyn Cache, key: &str) -> Option<Vec<u8>> {
    cache.get(key).await.expect("cache get failed")
}

/// Polls `key` until it reads as `None`, up to [`DEADLINE`]; returns whether it did.
async fn expires(cache: &dyn Cache, key: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if get(cache, key).await.is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A key never set reads as `None`.
pub async fn get_missing_key_is_none(backend: TestBackend) {
    let key = fixtures::cache_key("missing");
    assert_eq!(get(&*backend.cache, &key).await, None);
}

/// A key set reads as its value (any bytes, also empty).
pub async fn set_then_get_returns_value(backend: TestBackend) {
    let cache = &*backend.cache;
    let values: [&[u8]; 3] = [b"hello", &[0, 159, 146, 150, 255], b""];
    for value in values {
        let key = fixtures::cache_key("value");
        cache
            .set(&key, value, LONG)
            .await
            .expect("cache set failed");
        assert_eq!(get(cache, &key).await.as_deref(), Some(value));
        cache.delete(&[key]).await.expect("cache delete failed");
    }
}

/// A key past its TTL reads as `None`.
pub async fn set_value_expires_after_ttl(backend: TestBackend) {
    let cache = &*backend.cache;
    let key = fixtures::cache_key("ttl");
    cache
        .set(&key, b"short-lived", Duration::from_secs(1))
        .await
        .expect("cache set failed");
    assert!(
        expires(cache, &key).await,
        "a key with a 1 s TTL still reads after {DEADLINE:?}"
    );
}

/// A later `set` of the same key replaces the value and the TTL.
pub async fn set_replaces_value_and_ttl(backend: TestBackend) {
    let cache = &*backend.cache;
    let key = fixtures::cache_key("replaced");
    let witness = fixtures::cache_key("witness");
    let one = Duration::from_secs(1);

    // Short TTL replaced by a long one: the key outlives its first TTL.
    cache
        .set(&key, b"first", one)
        .await
        .expect("cache set failed");
    cache
        .set(&witness, b"witness", one)
        .await
        .expect("cache set failed");
    cache
        .set(&key, b"second", LONG)
        .await
        .expect("cache set failed");
    assert_eq!(get(cache, &key).await.as_deref(), Some(&b"second"[..]));
    assert!(
        expires(cache, &witness).await,
        "the witness key did not expire"
    );
    assert_eq!(
        get(cache, &key).await.as_deref(),
        Some(&b"second"[..]),
        "a later set with a longer TTL did not replace the first TTL"
    );

    // Long TTL replaced by a short one: the key expires.
    cache
        .set(&key, b"third", one)
        .await
        .expect("cache set failed");
    assert_eq!(get(cache, &key).await.as_deref(), Some(&b"third"[..]));
    assert!(
        expires(cache, &key).await,
        "a later set with a 1 s TTL did not replace the long TTL"
    );
}

/// `delete` removes keys; unknown keys are ignored.
pub async fn delete_removes_keys_and_ignores_unknown(backend: TestBackend) {
    let cache = &*backend.cache;
    let a = fixtures::cache_key("a");
    let b = fixtures::cache_key("b");
    let kept = fixtures::cache_key("kept");
    for key in [&a, &b, &kept] {
        cache
            .set(key, b"value", LONG)
            .await
            .expect("cache set failed");
    }
    let unknown = fixtures::cache_key("unknown");
    cache
        .delete(&[a.clone(), b.clone(), unknown])
        .await
        .expect("cache delete with an unknown key failed");
    assert_eq!(get(cache, &a).await, None);
    assert_eq!(get(cache, &b).await, None);
    assert_eq!(get(cache, &kept).await.as_deref(), Some(&b"value"[..]));
    cache
        .delete(&[])
        .await
        .expect("cache delete of no keys failed");
    cache
        .delete(std::slice::from_ref(&kept))
        .await
        .expect("cache delete failed");
    assert_eq!(get(cache, &kept).await, None);
}

/// `ping` answers when the backend is up.
pub async fn cache_ping_answers(backend: TestBackend) {
    backend
        .cache
        .ping()
        .await
        .expect("ping of a running cache failed");
}
