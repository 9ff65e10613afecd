//! `RedisCache` against a real Redis.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use onboarding_core::{Cache, ErrorKind};
use onboarding_redis::testing::TestPrefix;
use onboarding_redis::{RedisCache, RedisConfig};

#[tokio::test]
async fn set_get_replace_and_delete() {
    let prefix = TestPrefix::create().await;
    let c = prefix.cache().await;
    c.ping().await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None);
    c.set("k", b"\x00binary\xff", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(b"\x00binary\xff".to_vec()));
    c.set("k", b"two", Duration::from_secs(60)).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), Some(b"two".to_vec()));
    // Every key lives under the prefix.
    assert_eq!(
        prefix.keys().await,
        vec![format!("{}:cache:k", prefix.prefix())]
    );

    c.set("other", b"x", Duration::from_secs(60)).await.unwrap();
    c.delete(&["k".to_owned(), "other".to_owned(), "unknown".to_owned()])
        .await
        .unwrap();
    c.delete(&[]).await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), None);
    assert_eq!(c.get("other").await.unwrap(), None);
    assert!(prefix.keys().await.is_empty());
}

#[tokio::test]
async fn entries_expire_and_a_new_set_replaces_the_ttl() {
    let prefix = TestPrefix::create().await;
    let c = prefix.cache().await;
    c.set("short", b"v", Duration::from_millis(150))
        .await
        .unwrap();
    c.set("renewed", b"v", Duration::from_millis(150))
        .await
        .unwrap();
    c.set("renewed", b"w", Duration::from_secs(60))
        .await
        .unwrap();
    c.set("zero", b"v", Duration::ZERO).await.unwrap();
    assert_eq!(c.get("zero").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.get("short").await.unwrap(), None);
    assert_eq!(c.get("renewed").await.unwrap(), Some(b"w".to_vec()));
}

#[tokio::test]
async fn many_keys_are_deleted_in_one_call() {
    let prefix = TestPrefix::create().await;
    let c = prefix.cache().await;
    let names: Vec<String> = (0..2500).map(|i| format!("key-{i}")).collect();
    for name in names.iter().step_by(100) {
        c.set(name, b"v", Duration::from_secs(60)).await.unwrap();
    }
    assert_eq!(prefix.keys().await.len(), 25);
    c.delete(&names).await.unwrap();
    assert!(prefix.keys().await.is_empty());
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_for_every_call() {
    let config =
        RedisConfig::new("redis://127.0.0.1:1").with_connection_timeout(Duration::from_millis(200));
    let err = RedisCache::connect(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let c = RedisCache::connect_lazy(config).unwrap();
    let errors = [
        c.get("k").await.unwrap_err(),
        c.set("k", b"v", Duration::from_secs(1)).await.unwrap_err(),
        c.delete(&["k".to_owned()]).await.unwrap_err(),
        c.ping().await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.is_retryable());
        assert!(std::error::Error::source(&err).is_some());
    }
    assert!(!format!("{c:?}").is_empty());
}
