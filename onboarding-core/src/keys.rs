//! Tenants and API keys: the [`KeyStore`] trait, key generation and
//! hashing, and [`CachedKeyStore`], the per-process lookup cache that keeps
//! a revoked key working for at most [`KEY_CACHE_TTL`] on any process.
//!
//! A key is `obk_<12 hex digits>_<43 characters>`: the first part is its
//! *prefix*, unique, shown in listings and accepted by `revoke`; the whole
//! key carries 256 random bits and is stored only as its SHA-256 hash (a
//! salt adds nothing to a hash of a high-entropy secret). A lookup hashes the
//! presented key, finds the row by that hash and compares the hashes again in
//! constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use std::fmt;

use uuid::Uuid;

use crate::model::{uuid_id, TenantId, Timestamp};

uuid_id!(
    /// Identifies one API key.
    KeyId
);

/// The SHA-256 of an API key: what is stored and looked up.
pub type KeyHash = [u8; 32];

/// How long [`CachedKeyStore`] reuses an answer (found or not): the most a
/// created or revoked key lags behind the database on any process.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// SHA-256 of a key.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// Compares two hashes in constant time.
pub fn same_hash(a: &KeyHash, b: &KeyHash) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]))
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random characters of `[A-Za-z0-9]` (about 5.95 bits each).
pub fn random_token(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from(KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())]))
        .collect()
}

/// A tenant of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TenantRecord {
    /// The tenant.
    pub id: TenantId,
    /// When it was registered.
    pub created_at: Timestamp,
}

impl TenantRecord {
    /// A record.
    pub fn new(id: TenantId, created_at: Timestamp) -> Self {
        Self { id, created_at }
    }
}

/// An API key as listed: never the key nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The key's id.
    pub id: KeyId,
    /// The tenant it authenticates as.
    pub tenant: TenantId,
    /// Its first characters (`obk_<12 hex digits>`), unique.
    pub prefix: String,
    /// What the operator called it.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was revoked (a revoked key authenticates nobody).
    pub revoked_at: Option<Timestamp>,
}

/// A key to store: its hash and what is listed about it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewApiKey {
    /// The key's id.
    pub id: KeyId,
    /// The tenant it authenticates as.
    pub tenant: TenantId,
    /// Its unique prefix.
    pub prefix: String,
    /// SHA-256 of the whole key.
    pub hash: KeyHash,
    /// What the operator called it.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("prefix", &self.prefix)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl NewApiKey {
    /// A fresh random key for `tenant`: the key itself (show it once) and
    /// what to store.
    pub fn generate(tenant: TenantId, label: Option<String>, at: Timestamp) -> (String, Self) {
        let prefix = format!("obk_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let key = format!("{prefix}_{}", random_token(43));
        let record = Self {
            id: KeyId::new(),
            tenant,
            prefix,
            hash: hash_key(&key),
            label,
            created_at: at,
        };
        (key, record)
    }

    /// What a listing shows of it once stored.
    pub fn info(&self) -> ApiKeyInfo {
        ApiKeyInfo {
            id: self.id,
            tenant: self.tenant.clone(),
            prefix: self.prefix.clone(),
            label: self.label.clone(),
            created_at: self.created_at,
            revoked_at: None,
        }
    }
}

/// How an operator names a key: by id or by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The key's id.
    Id(KeyId),
    /// The key's prefix (`obk_…`).
    Prefix(String),
}

impl KeySelector {
    /// A UUID is an id, anything else a prefix.
    pub fn parse(value: &str) -> Self {
        let value = value.trim();
        match value.parse::<KeyId>() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Prefix(value.to_owned()),
        }
    }
}

/// Tenants and their API keys, shared by every process of a deployment.
///
/// Implementations: `memory::MemoryKeyStore`, and onboarding-sqlx's store on
/// PostgreSQL, MySQL/MariaDB and SQLite.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Registers a tenant.
    ///
    /// # Behavior
    /// - A new tenant is listed by [`tenants`](Self::tenants) with `at` as its creation time.
    /// - A tenant already registered is a `Conflict`, and its record is unchanged.
    async fn create_tenant(&self, tenant: &TenantId, at: Timestamp) -> Result<TenantRecord>;

    /// Every registered tenant, by id.
    ///
    /// # Behavior
    /// - Tenants registered by [`create_key`](Self::create_key) are listed too.
    async fn tenants(&self) -> Result<Vec<TenantRecord>>;

    /// Stores a key (its hash), registering its tenant when it is new.
    ///
    /// # Behavior
    /// - The key is found by [`find_key`](Self::find_key) with its hash, and
    ///   listed by [`keys`](Self::keys) without its hash.
    /// - A prefix or id already stored is a `Conflict`; nothing is stored.
    async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyInfo>;

    /// Keys, oldest first, revoked ones included, of one tenant or of all.
    ///
    /// # Behavior
    /// - With a tenant, only that tenant's keys are listed.
    async fn keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyInfo>>;

    /// The key with this hash, unless it is revoked.
    ///
    /// # Behavior
    /// - An unknown hash and a revoked key's hash both answer `None`.
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyInfo>>;

    /// Revokes a key by id or prefix; with a tenant, only among its keys.
    ///
    /// # Behavior
    /// - The key is no longer found by [`find_key`](Self::find_key) and is
    ///   listed with `revoked_at = at`; the answer is the revoked key.
    /// - Revoking a revoked key changes nothing and answers it with its
    ///   first `revoked_at`.
    /// - An unknown key, or another tenant's, answers `None`.
    async fn revoke_key(
        &self,
        tenant: Option<&TenantId>,
        key: &KeySelector,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>>;

    /// Replaces a live key: revokes `old` and stores `replacement` (for the
    /// same tenant) in one step.
    ///
    /// # Behavior
    /// - Afterwards the old hash is not found and the new one is; the answer
    ///   is the replacement.
    /// - An unknown or revoked `old`, or a replacement for another tenant,
    ///   answers `None` and changes nothing.
    async fn rotate_key(
        &self,
        old: KeyId,
        replacement: &NewApiKey,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<()>;
}

/// Answers per hash, with when each was fetched.
type Answers = HashMap<KeyHash, (Instant, Option<ApiKeyInfo>)>;

/// A [`KeyStore`] whose [`find_key`](KeyStore::find_key) answers (found or
/// not) are reused for at most `ttl` (default [`KEY_CACHE_TTL`]), so each
/// process asks the database about a key at most once a second, and a key
/// created or revoked anywhere is seen everywhere within that second.
/// Revocations and rotations made through this instance take effect here at
/// once. At most `max_entries` answers are kept (random keys sent by a
/// client cannot grow it without bound).
pub struct CachedKeyStore {
    inner: Arc<dyn KeyStore>,
    ttl: Duration,
    max_entries: usize,
    answers: Mutex<Answers>,
}

impl std::fmt::Debug for CachedKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKeyStore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl CachedKeyStore {
    /// Caches `inner`'s lookups for [`KEY_CACHE_TTL`], up to 10,000 answers.
    pub fn new(inner: Arc<dyn KeyStore>) -> Self {
        Self::with_ttl(inner, KEY_CACHE_TTL)
    }

    /// Caches for `ttl` (at most [`KEY_CACHE_TTL`]: longer would break the
    /// one-second promise).
    pub fn with_ttl(inner: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl: ttl.min(KEY_CACHE_TTL),
            max_entries: 10_000,
            answers: Mutex::new(HashMap::new()),
        }
    }

    fn answers(&self) -> MutexGuard<'_, Answers> {
        // Entries are written whole: a poisoned map is still consistent.
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_all(&self) {
        self.answers().clear();
    }
}

#[async_trait]
impl KeyStore for CachedKeyStore {
    async fn create_tenant(&self, tenant: &TenantId, at: Timestamp) -> Result<TenantRecord> {
        self.inner.create_tenant(tenant, at).await
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.inner.tenants().await
    }

    async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyInfo> {
        let created = self.inner.create_key(key).await?;
        self.answers().remove(&key.hash);
        Ok(created)
    }

    async fn keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyInfo>> {
        self.inner.keys(tenant).await
    }

    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyInfo>> {
        if let Some((at, answer)) = self.answers().get(hash) {
            if at.elapsed() < self.ttl {
                return Ok(answer.clone());
            }
        }
        let answer = self.inner.find_key(hash).await?;
        let mut answers = self.answers();
        if answers.len() >= self.max_entries {
            answers.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if answers.len() >= self.max_entries {
                answers.clear();
            }
        }
        answers.insert(*hash, (Instant::now(), answer.clone()));
        Ok(answer)
    }

    async fn revoke_key(
        &self,
        tenant: Option<&TenantId>,
        key: &KeySelector,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>> {
        let revoked = self.inner.revoke_key(tenant, key, at).await?;
        // Answers are keyed by hash, which a revocation does not name.
        self.forget_all();
        Ok(revoked)
    }

    async fn rotate_key(
        &self,
        old: KeyId,
        replacement: &NewApiKey,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>> {
        let rotated = self.inner.rotate_key(old, replacement, at).await?;
        self.forget_all();
        Ok(rotated)
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

/// Checks an operator-given label: at most 100 visible characters.
pub fn check_label(label: Option<&str>) -> Result<Option<String>> {
    let Some(label) = label.map(str::trim).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(Error::invalid(vec![crate::error::FieldError::new(
            "/label",
            "label_invalid",
            "the label must be at most 100 characters without control characters",
        )]));
    }
    Ok(Some(label.to_owned()))
}

/// `Conflict` for a key whose id or prefix is taken.
pub fn key_conflict() -> Error {
    Error::new(
        ErrorKind::Conflict,
        "an API key with this id or prefix already exists",
    )
}

/// `Conflict` for a tenant already registered.
pub fn tenant_conflict(tenant: &TenantId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("tenant {tenant} already exists"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_hashed_and_hidden() {
        let tenant = TenantId::parse("acme").unwrap();
        let (a, ra) = NewApiKey::generate(tenant.clone(), None, crate::model::now());
        let (b, _) = NewApiKey::generate(tenant, None, crate::model::now());
        assert_ne!(a, b);
        assert!(a.starts_with(&ra.prefix) && ra.prefix.len() == 16 && a.len() == 16 + 1 + 43);
        assert!(same_hash(&ra.hash, &hash_key(&a)));
        assert!(!same_hash(&ra.hash, &hash_key(&b)));
        assert!(!format!("{ra:?}").contains(&a[17..]));
        assert_eq!(
            KeySelector::parse(&ra.id.to_string()),
            KeySelector::Id(ra.id)
        );
        assert_eq!(
            KeySelector::parse(" obk_x "),
            KeySelector::Prefix("obk_x".into())
        );
    }
}
