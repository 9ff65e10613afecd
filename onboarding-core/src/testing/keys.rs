//! [`KeyStore`] cases: one per `# Behavior` bullet.
//!
//! Every case works in its own random tenants, so the store may be shared
//! by every case and by other tests.

use crate::error::ErrorKind;
use crate::keys::{hash_key, KeySelector, KeyStore, NewApiKey};
use crate::model::{now, TenantId};
use crate::testing::{fixtures, TestBackend};

async fn new_key(store: &dyn KeyStore, tenant: &TenantId, label: &str) -> (String, NewApiKey) {
    let (key, record) = NewApiKey::generate(tenant.clone(), Some(label.to_owned()), now());
    store.create_key(&record).await.expect("create_key failed");
    (key, record)
}

/// A new tenant is listed with its creation time.
pub async fn create_tenant_lists_it(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let at = now();
    let record = store
        .create_tenant(&tenant, at)
        .await
        .expect("create_tenant");
    assert_eq!((record.id.clone(), record.created_at), (tenant.clone(), at));
    let listed = store.tenants().await.expect("tenants");
    assert!(listed.contains(&record), "the new tenant is listed");
}

/// A tenant registered twice is a `Conflict`, its record unchanged.
pub async fn create_tenant_twice_is_conflict(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let first = store
        .create_tenant(&tenant, now())
        .await
        .expect("create_tenant");
    let again = store
        .create_tenant(&tenant, fixtures::time_in_past(1990))
        .await
        .expect_err("a second registration must fail");
    assert_eq!(again.kind(), ErrorKind::Conflict);
    let listed = store.tenants().await.expect("tenants");
    let found: Vec<_> = listed.iter().filter(|t| t.id == tenant).collect();
    assert_eq!(found, vec![&first]);
}

/// A key's tenant is registered with it.
pub async fn create_key_registers_its_tenant(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    new_key(&*store, &tenant, "first").await;
    let listed = store.tenants().await.expect("tenants");
    assert!(listed.iter().any(|t| t.id == tenant));
    // A second key for the same tenant is fine.
    new_key(&*store, &tenant, "second").await;
}

/// A stored key is found by its hash and listed without it.
pub async fn create_key_is_found_and_listed(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let (key, record) = new_key(&*store, &tenant, "ci").await;
    let found = store.find_key(&hash_key(&key)).await.expect("find_key");
    assert_eq!(found, Some(record.info()));
    let listed = store.keys(Some(&tenant)).await.expect("keys");
    assert_eq!(listed, vec![record.info()]);
    assert_eq!(listed[0].label.as_deref(), Some("ci"));
}

/// A prefix or id already stored is a `Conflict`; nothing is stored.
pub async fn create_key_with_taken_prefix_or_id_is_conflict(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let (_, first) = new_key(&*store, &tenant, "first").await;
    let (other_key, mut same_prefix) = NewApiKey::generate(tenant.clone(), None, now());
    same_prefix.prefix = first.prefix.clone();
    let e = store
        .create_key(&same_prefix)
        .await
        .expect_err("taken prefix");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let (third_key, mut same_id) = NewApiKey::generate(tenant.clone(), None, now());
    same_id.id = first.id;
    let e = store.create_key(&same_id).await.expect_err("taken id");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    for key in [other_key, third_key] {
        assert_eq!(
            store.find_key(&hash_key(&key)).await.expect("find_key"),
            None
        );
    }
    assert_eq!(store.keys(Some(&tenant)).await.expect("keys").len(), 1);
}

/// With a tenant, only its keys are listed; without, every tenant's.
pub async fn keys_lists_one_tenant_or_all(backend: TestBackend) {
    let store = backend.keys;
    let (a, b) = (fixtures::tenant(), fixtures::tenant());
    let (_, ka1) = new_key(&*store, &a, "a1").await;
    let (_, ka2) = new_key(&*store, &a, "a2").await;
    let (_, kb) = new_key(&*store, &b, "b").await;
    let of_a = store.keys(Some(&a)).await.expect("keys");
    assert_eq!(of_a, vec![ka1.info(), ka2.info()], "oldest first, only a's");
    let all = store.keys(None).await.expect("keys");
    for k in [&ka1, &ka2, &kb] {
        assert!(all.contains(&k.info()), "every tenant's keys are listed");
    }
}

/// An unknown hash and a revoked key's hash both answer `None`.
pub async fn find_key_of_unknown_or_revoked_is_none(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    assert_eq!(
        store
            .find_key(&hash_key("obk_never_stored"))
            .await
            .expect("find_key"),
        None
    );
    let (key, record) = new_key(&*store, &tenant, "soon revoked").await;
    store
        .revoke_key(None, &KeySelector::Id(record.id), now())
        .await
        .expect("revoke_key");
    assert_eq!(
        store.find_key(&hash_key(&key)).await.expect("find_key"),
        None
    );
}

/// A revoked key (by id or prefix) is no longer found and is listed revoked.
pub async fn revoke_key_by_id_or_prefix(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let (k1, r1) = new_key(&*store, &tenant, "by id").await;
    let (k2, r2) = new_key(&*store, &tenant, "by prefix").await;
    let at = now();
    let revoked = store
        .revoke_key(Some(&tenant), &KeySelector::Id(r1.id), at)
        .await
        .expect("revoke_key")
        .expect("the key exists");
    assert_eq!((revoked.id, revoked.revoked_at), (r1.id, Some(at)));
    let revoked = store
        .revoke_key(None, &KeySelector::Prefix(r2.prefix.clone()), at)
        .await
        .expect("revoke_key")
        .expect("the key exists");
    assert_eq!(revoked.id, r2.id);
    for key in [k1, k2] {
        assert_eq!(
            store.find_key(&hash_key(&key)).await.expect("find_key"),
            None
        );
    }
    let listed = store.keys(Some(&tenant)).await.expect("keys");
    assert!(
        listed.iter().all(|k| k.revoked_at == Some(at)),
        "{listed:?}"
    );
}

/// Revoking a revoked key changes nothing and answers its first `revoked_at`.
pub async fn revoke_key_twice_keeps_the_first_time(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let (_, record) = new_key(&*store, &tenant, "twice").await;
    let first = now();
    store
        .revoke_key(None, &KeySelector::Id(record.id), first)
        .await
        .expect("revoke_key");
    let again = store
        .revoke_key(
            None,
            &KeySelector::Id(record.id),
            fixtures::time_in_past(1995),
        )
        .await
        .expect("revoke_key")
        .expect("the key exists");
    assert_eq!(again.revoked_at, Some(first));
}

/// An unknown key, or another tenant's, answers `None` (and stays live).
pub async fn revoke_key_of_unknown_or_foreign_is_none(backend: TestBackend) {
    let store = backend.keys;
    let (owner, other) = (fixtures::tenant(), fixtures::tenant());
    let (key, record) = new_key(&*store, &owner, "mine").await;
    let unknown = store
        .revoke_key(None, &KeySelector::Prefix("obk_000000000000".into()), now())
        .await
        .expect("revoke_key");
    assert_eq!(unknown, None);
    let foreign = store
        .revoke_key(Some(&other), &KeySelector::Id(record.id), now())
        .await
        .expect("revoke_key");
    assert_eq!(foreign, None);
    assert!(store
        .find_key(&hash_key(&key))
        .await
        .expect("find_key")
        .is_some());
}

/// A rotation revokes the old key and stores the replacement.
pub async fn rotate_key_replaces_the_key(backend: TestBackend) {
    let store = backend.keys;
    let tenant = fixtures::tenant();
    let (old_key, old) = new_key(&*store, &tenant, "rotating").await;
    let (new_key_text, replacement) = NewApiKey::generate(tenant.clone(), old.label.clone(), now());
    let at = now();
    let rotated = store
        .rotate_key(old.id, &replacement, at)
        .await
        .expect("rotate_key");
    assert_eq!(rotated, Some(replacement.info()));
    assert_eq!(
        store.find_key(&hash_key(&old_key)).await.expect("find"),
        None
    );
    assert_eq!(
        store
            .find_key(&hash_key(&new_key_text))
            .await
            .expect("find"),
        Some(replacement.info())
    );
    let listed = store.keys(Some(&tenant)).await.expect("keys");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].revoked_at, Some(at));
}

/// An unknown or revoked old key, or a replacement for another tenant,
/// answers `None` and changes nothing.
pub async fn rotate_key_of_unknown_revoked_or_foreign_is_none(backend: TestBackend) {
    let store = backend.keys;
    let (tenant, other) = (fixtures::tenant(), fixtures::tenant());
    let (key, live) = new_key(&*store, &tenant, "live").await;
    let (_, revoked) = new_key(&*store, &tenant, "revoked").await;
    store
        .revoke_key(None, &KeySelector::Id(revoked.id), now())
        .await
        .expect("revoke_key");
    let (_, unknown) = NewApiKey::generate(tenant.clone(), None, now());
    let cases = [
        (unknown.id, NewApiKey::generate(tenant.clone(), None, now())),
        (revoked.id, NewApiKey::generate(tenant.clone(), None, now())),
        (live.id, NewApiKey::generate(other.clone(), None, now())),
    ];
    for (old, (new_key_text, replacement)) in cases {
        let answer = store
            .rotate_key(old, &replacement, now())
            .await
            .expect("rotate_key");
        assert_eq!(answer, None);
        assert_eq!(
            store
                .find_key(&hash_key(&new_key_text))
                .await
                .expect("find"),
            None
        );
    }
    assert!(store
        .find_key(&hash_key(&key))
        .await
        .expect("find")
        .is_some());
    assert!(store.keys(Some(&other)).await.expect("keys").is_empty());
}

/// The store answers.
pub async fn key_store_ping_answers(backend: TestBackend) {
    let store = backend.keys;
    store.ping().await.expect("ping");
}
