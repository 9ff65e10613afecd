//! `MemoryKeyStore`: tenants and API keys in process memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::Result;
use crate::keys::{
    key_conflict, same_hash, tenant_conflict, ApiKeyInfo, KeyHash, KeyId, KeySelector, KeyStore,
    NewApiKey, TenantRecord,
};
use crate::model::{TenantId, Timestamp};

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<TenantId, TenantRecord>,
    /// Keys in creation order, with their hashes.
    keys: Vec<(KeyHash, ApiKeyInfo)>,
}

/// An in-process [`KeyStore`]: right for one process (nothing survives it).
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    state: Mutex<State>,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is made whole under the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn insert(&mut self, key: &NewApiKey) -> Result<ApiKeyInfo> {
        if self
            .keys
            .iter()
            .any(|(_, k)| k.id == key.id || k.prefix == key.prefix)
        {
            return Err(key_conflict());
        }
        self.tenants
            .entry(key.tenant.clone())
            .or_insert_with(|| TenantRecord::new(key.tenant.clone(), key.created_at));
        let info = key.info();
        self.keys.push((key.hash, info.clone()));
        Ok(info)
    }

    fn position(&self, tenant: Option<&TenantId>, key: &KeySelector) -> Option<usize> {
        self.keys.iter().position(|(_, k)| {
            tenant.is_none_or(|t| &k.tenant == t)
                && match key {
                    KeySelector::Id(id) => &k.id == id,
                    KeySelector::Prefix(prefix) => &k.prefix == prefix,
                }
        })
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn create_tenant(&self, tenant: &TenantId, at: Timestamp) -> Result<TenantRecord> {
        let mut state = self.state();
        if state.tenants.contains_key(tenant) {
            return Err(tenant_conflict(tenant));
        }
        let record = TenantRecord::new(tenant.clone(), at);
        state.tenants.insert(tenant.clone(), record.clone());
        Ok(record)
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>> {
        Ok(self.state().tenants.values().cloned().collect())
    }

    async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyInfo> {
        self.state().insert(key)
    }

    async fn keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyInfo>> {
        Ok(self
            .state()
            .keys
            .iter()
            .filter(|(_, k)| tenant.is_none_or(|t| &k.tenant == t))
            .map(|(_, k)| k.clone())
            .collect())
    }

    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyInfo>> {
        Ok(self
            .state()
            .keys
            .iter()
            .find(|(h, k)| k.revoked_at.is_none() && same_hash(h, hash))
            .map(|(_, k)| k.clone()))
    }

    async fn revoke_key(
        &self,
        tenant: Option<&TenantId>,
        key: &KeySelector,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>> {
        let mut state = self.state();
        let Some(i) = state.position(tenant, key) else {
            return Ok(None);
        };
        let info = &mut state.keys[i].1;
        info.revoked_at.get_or_insert(at);
        Ok(Some(info.clone()))
    }

    async fn rotate_key(
        &self,
        old: KeyId,
        replacement: &NewApiKey,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>> {
        let mut state = self.state();
        let Some(i) = state.position(None, &KeySelector::Id(old)) else {
            return Ok(None);
        };
        let current = &state.keys[i].1;
        if current.revoked_at.is_some() || current.tenant != replacement.tenant {
            return Ok(None);
        }
        let created = state.insert(replacement)?;
        state.keys[i].1.revoked_at = Some(at);
        Ok(Some(created))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
