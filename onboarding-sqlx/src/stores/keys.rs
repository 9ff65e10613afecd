//! Tenants and API keys (compiled once per engine): rows of `tenants` and
//! `api_keys`, keys stored as their SHA-256 hash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use onboarding_core::keys::{
    key_conflict, same_hash, tenant_conflict, ApiKeyInfo, KeyHash, KeyId, KeySelector, KeyStore,
    NewApiKey, TenantRecord,
};
use onboarding_core::model::{TenantId, Timestamp};
use onboarding_core::{ErrorKind, Result};
use sqlx::{Pool, QueryBuilder, Row};
use uuid::Uuid;

use super::{dialect, Db};
use crate::error::DbResultExt;
use crate::stores::{columns, required_text, text};

/// The key store of this engine.
pub(crate) struct SqlKeyStore {
    pool: Pool<Db>,
}

impl SqlKeyStore {
    pub(crate) fn new(pool: Pool<Db>) -> Self {
        Self { pool }
    }
}

fn key_of(row: &<Db as sqlx::Database>::Row) -> Result<ApiKeyInfo> {
    let tenant = required_text(row, "tenant")?;
    Ok(ApiKeyInfo {
        id: KeyId(row.try_get::<Uuid, _>("id").db()?),
        tenant: TenantId::parse(tenant)?,
        prefix: required_text(row, "prefix")?,
        label: text(row, "label")?,
        created_at: row.try_get("created_at").db()?,
        revoked_at: row.try_get("revoked_at").db()?,
    })
}

/// Inserts a key (and its tenant when new) inside `tx`.
async fn insert_key(tx: &mut sqlx::Transaction<'static, Db>, key: &NewApiKey) -> Result<()> {
    let (insert, ignore) = dialect::INSERT_IGNORE;
    let mut qb = QueryBuilder::<Db>::new(format!("{insert} tenants (id, created_at) VALUES ("));
    qb.push_bind(key.tenant.as_str())
        .push(", ")
        .push_bind(key.created_at)
        .push(")")
        .push(ignore);
    qb.build().execute(&mut **tx).await.db()?;
    let mut qb = QueryBuilder::<Db>::new(
        "INSERT INTO api_keys (id, tenant, prefix, key_hash, label, created_at) VALUES (",
    );
    let mut values = qb.separated(", ");
    values
        .push_bind(key.id.0)
        .push_bind(key.tenant.as_str())
        .push_bind(key.prefix.as_str())
        .push_bind(key.hash.to_vec())
        .push_bind(key.label.as_deref())
        .push_bind(key.created_at);
    qb.push(")");
    match qb.build().execute(&mut **tx).await.db() {
        Err(e) if e.kind() == ErrorKind::Conflict => Err(key_conflict()),
        other => other.map(|_| ()),
    }
}

/// The key a selector names (within `tenant` when given), locked for update.
async fn select_key(
    tx: &mut sqlx::Transaction<'static, Db>,
    tenant: Option<&TenantId>,
    key: &KeySelector,
) -> Result<Option<ApiKeyInfo>> {
    let mut qb = QueryBuilder::<Db>::new(format!("SELECT {} FROM api_keys WHERE ", columns::KEY));
    match key {
        KeySelector::Id(id) => qb.push("id = ").push_bind(id.0),
        KeySelector::Prefix(prefix) => qb.push("prefix = ").push_bind(prefix.as_str()),
    };
    if let Some(tenant) = tenant {
        qb.push(" AND tenant = ").push_bind(tenant.as_str());
    }
    qb.push(dialect::FOR_UPDATE);
    let row = qb.build().fetch_optional(&mut **tx).await.db()?;
    row.as_ref().map(key_of).transpose()
}

async fn revoke(
    tx: &mut sqlx::Transaction<'static, Db>,
    id: KeyId,
    at: Timestamp,
) -> Result<()> {
    let mut qb = QueryBuilder::<Db>::new("UPDATE api_keys SET revoked_at = ");
    qb.push_bind(at)
        .push(" WHERE id = ")
        .push_bind(id.0)
        .push(" AND revoked_at IS NULL");
    qb.build().execute(&mut **tx).await.db()?;
    Ok(())
}

#[async_trait]
impl KeyStore for SqlKeyStore {
    async fn create_tenant(&self, tenant: &TenantId, at: Timestamp) -> Result<TenantRecord> {
        let mut qb = QueryBuilder::<Db>::new("INSERT INTO tenants (id, created_at) VALUES (");
        qb.push_bind(tenant.as_str())
            .push(", ")
            .push_bind(at)
            .push(")");
        match qb.build().execute(&self.pool).await.db() {
            Ok(_) => Ok(TenantRecord::new(tenant.clone(), at)),
            Err(e) if e.kind() == ErrorKind::Conflict => Err(tenant_conflict(tenant)),
            Err(e) => Err(e),
        }
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>> {
        let rows = sqlx::query("SELECT id, created_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .db()?;
        rows.iter()
            .map(|row| {
                let id = required_text(row, "id")?;
                let at: DateTime<Utc> = row.try_get("created_at").db()?;
                Ok(TenantRecord::new(TenantId::parse(id)?, at))
            })
            .collect()
    }

    async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyInfo> {
        let mut tx = dialect::begin(&self.pool).await?;
        insert_key(&mut tx, key).await?;
        tx.commit().await.db()?;
        Ok(key.info())
    }

    async fn keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyInfo>> {
        let mut qb = QueryBuilder::<Db>::new(format!("SELECT {} FROM api_keys", columns::KEY));
        if let Some(tenant) = tenant {
            qb.push(" WHERE tenant = ").push_bind(tenant.as_str());
        }
        qb.push(" ORDER BY created_at, id");
        let rows = qb.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(key_of).collect()
    }

    async fn find_key(&self, hash: &KeyHash) -> Result<Option<ApiKeyInfo>> {
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {}, key_hash FROM api_keys WHERE revoked_at IS NULL AND key_hash = ",
            columns::KEY
        ));
        qb.push_bind(hash.to_vec());
        let Some(row) = qb.build().fetch_optional(&self.pool).await.db()? else {
            return Ok(None);
        };
        // The index found the row; the comparison that decides is constant-time.
        let stored: Vec<u8> = row.try_get("key_hash").db()?;
        let matches = KeyHash::try_from(stored.as_slice()).is_ok_and(|s| same_hash(&s, hash));
        if matches {
            key_of(&row).map(Some)
        } else {
            Ok(None)
        }
    }

    async fn revoke_key(
        &self,
        tenant: Option<&TenantId>,
        key: &KeySelector,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>> {
        let mut tx = dialect::begin(&self.pool).await?;
        let Some(mut found) = select_key(&mut tx, tenant, key).await? else {
            return Ok(None);
        };
        if found.revoked_at.is_none() {
            revoke(&mut tx, found.id, at).await?;
            found.revoked_at = Some(at);
        }
        tx.commit().await.db()?;
        Ok(Some(found))
    }

    async fn rotate_key(
        &self,
        old: KeyId,
        replacement: &NewApiKey,
        at: Timestamp,
    ) -> Result<Option<ApiKeyInfo>> {
        let mut tx = dialect::begin(&self.pool).await?;
        let Some(current) = select_key(&mut tx, None, &KeySelector::Id(old)).await? else {
            return Ok(None);
        };
        if current.revoked_at.is_some() || current.tenant != replacement.tenant {
            return Ok(None);
        }
        revoke(&mut tx, old, at).await?;
        insert_key(&mut tx, replacement).await?;
        tx.commit().await.db()?;
        Ok(Some(replacement.info()))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }
}
