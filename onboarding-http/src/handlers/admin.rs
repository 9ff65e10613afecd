//! The operator's routes (`Authorization: Bearer <ADMIN_TOKEN>`): tenants
//! and their API keys. Without an admin token configured they answer 404.
//! A key is shown once, when created or rotated; listings show its prefix
//! and label only.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use onboarding_core::keys::{
    check_label, ApiKeyInfo, KeySelector, KeyStore, NewApiKey, TenantRecord,
};
use onboarding_core::model::{now, TenantId};
use onboarding_core::{Error, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::Admin;
use crate::extract::json_object;
use crate::handlers::query;
use crate::problem::Problem;
use crate::responses::{Create, ListingOf, Lookup};

/// A tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TenantView {
    /// Its id.
    pub(crate) id: String,
    /// When it was registered.
    pub(crate) created_at: DateTime<Utc>,
}

impl From<&TenantRecord> for TenantView {
    fn from(t: &TenantRecord) -> Self {
        Self {
            id: t.id.to_string(),
            created_at: t.created_at,
        }
    }
}

/// `GET /api/v1/admin/tenants`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct TenantsPage {
    /// By id.
    pub(crate) tenants: Vec<TenantView>,
}

/// An API key as listed: prefix and label, never the key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct KeyView {
    /// Its id.
    pub(crate) id: uuid::Uuid,
    /// The tenant it authenticates as.
    pub(crate) tenant: String,
    /// Its first characters (`obk_…`).
    pub(crate) prefix: String,
    /// What the operator called it.
    pub(crate) label: Option<String>,
    /// When it was created.
    pub(crate) created_at: DateTime<Utc>,
    /// When it was revoked.
    pub(crate) revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyInfo> for KeyView {
    fn from(k: &ApiKeyInfo) -> Self {
        Self {
            id: k.id.0,
            tenant: k.tenant.to_string(),
            prefix: k.prefix.clone(),
            label: k.label.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new key: the only time the key itself is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct NewKeyView {
    /// What is listed about it.
    #[serde(flatten)]
    pub(crate) info: KeyView,
    /// The key: send it as `Authorization: Bearer <key>`. Not shown again.
    pub(crate) key: String,
}

impl NewKeyView {
    /// A key just made (created or rotated), with what is listed about it.
    fn new(key: String, info: &ApiKeyInfo) -> Self {
        Self {
            info: info.into(),
            key,
        }
    }
}

/// `GET /api/v1/admin/keys`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct KeysPage {
    /// Oldest first, revoked ones included.
    pub(crate) keys: Vec<KeyView>,
}

/// `POST /api/v1/admin/tenants` body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
pub(crate) struct NewTenant {
    /// 1-64 ASCII letters, digits, `-`, `_` or `.`.
    id: String,
}

/// `POST /api/v1/admin/tenants/{tenant}/keys` body (optional).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
pub(crate) struct NewKey {
    /// What to call the key (at most 100 characters).
    label: Option<String>,
}

fn store(state: &AppState) -> Result<&dyn KeyStore, Problem> {
    state
        .inner
        .auth
        .store()
        .map(|s| s as &dyn KeyStore)
        .ok_or_else(|| Problem::not_found("this server keeps no API keys in a database"))
}

fn invalid(pointer: &str, code: &str, detail: impl Into<String>) -> Error {
    Error::invalid(vec![FieldError::new(pointer, code, detail)])
}

fn tenant_from(raw: &str, pointer: &str) -> Result<TenantId, Error> {
    TenantId::parse(raw).map_err(|e| invalid(pointer, "tenant_invalid", e.message()))
}

/// Register a tenant
#[utoipa::path(
    post, path = "/api/v1/admin/tenants", operation_id = "admin_create_tenant", tag = "admin", request_body = NewTenant,
    responses((status = 201, description = "Registered", body = TenantView), Create),
)]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TenantView>), Problem> {
    let store = store(&state)?;
    let value = json_object(&headers, body, state.config().body_limit, false)?;
    let raw = value.get("id").and_then(Value::as_str).unwrap_or_default();
    let tenant = tenant_from(raw, "/id").map_err(|e| state.problem(&e))?;
    let record = state.run(store.create_tenant(&tenant, now())).await?;
    tracing::info!(%tenant, "tenant registered");
    Ok((StatusCode::CREATED, Json((&record).into())))
}

/// Every tenant
#[utoipa::path(
    get, path = "/api/v1/admin/tenants", operation_id = "admin_tenants", tag = "admin",
    responses((status = 200, description = "Tenants", body = TenantsPage), Lookup),
)]
pub(crate) async fn tenants(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<TenantsPage>, Problem> {
    let list = state.run(store(&state)?.tenants()).await?;
    Ok(Json(TenantsPage {
        tenants: list.iter().map(TenantView::from).collect(),
    }))
}

/// Create an API key for a tenant (registered if new); the key is shown once
#[utoipa::path(
    post, path = "/api/v1/admin/tenants/{tenant}/keys", operation_id = "admin_create_key", tag = "admin",
    params(("tenant" = String, Path, description = "The tenant id")),
    request_body(content = Option<NewKey>, description = "Optional: a label"),
    responses((status = 201, description = "The key (shown once)", body = NewKeyView), Create),
)]
pub(crate) async fn create_key(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<NewKeyView>), Problem> {
    let store = store(&state)?;
    let raw = path.map(|Path(p)| p).unwrap_or_default();
    let tenant = tenant_from(&raw, "/tenant").map_err(|e| state.problem(&e))?;
    let value = json_object(&headers, body, state.config().body_limit, true)?;
    let label = match value.get("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(state.problem(&invalid(
                "/label",
                "label_invalid",
                "label must be a string",
            )))
        }
    };
    let label = check_label(label).map_err(|e| state.problem(&e))?;
    let (key, record) = NewApiKey::generate(tenant, label, now());
    let info = state.run(store.create_key(&record)).await?;
    tracing::info!(tenant = %info.tenant, prefix = %info.prefix, "API key created");
    Ok((StatusCode::CREATED, Json(NewKeyView::new(key, &info))))
}

/// Query parameters of the key listing.
#[derive(Debug, Deserialize)]
pub(crate) struct KeysParams {
    tenant: Option<String>,
}

/// API keys (prefix and label only), of one tenant or all
#[utoipa::path(
    get, path = "/api/v1/admin/keys", operation_id = "admin_keys", tag = "admin",
    params(("tenant" = Option<String>, Query, description = "Only this tenant's keys")),
    responses((status = 200, description = "Keys", body = KeysPage), ListingOf),
)]
pub(crate) async fn keys(
    State(state): State<AppState>,
    _: Admin,
    params: Result<Query<KeysParams>, QueryRejection>,
) -> Result<Json<KeysPage>, Problem> {
    let store = store(&state)?;
    let params = query(params)?;
    let tenant = match params.tenant.as_deref().filter(|t| !t.is_empty()) {
        Some(raw) => Some(
            TenantId::parse(raw)
                .map_err(|e| Problem::invalid_parameter("tenant", "tenant_invalid", e.message()))?,
        ),
        None => None,
    };
    let list = state.run(store.keys(tenant.as_ref())).await?;
    Ok(Json(KeysPage {
        keys: list.iter().map(KeyView::from).collect(),
    }))
}

fn selector(path: Result<Path<String>, PathRejection>) -> KeySelector {
    KeySelector::parse(&path.map(|Path(p)| p).unwrap_or_default())
}

/// Revoke an API key (by id or prefix): refused on every server within a second
#[utoipa::path(
    post, path = "/api/v1/admin/keys/{key}/revoke", operation_id = "admin_revoke", tag = "admin",
    params(("key" = String, Path, description = "The key's id or prefix")),
    responses((status = 200, description = "The revoked key", body = KeyView), Lookup),
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<KeyView>, Problem> {
    let store = store(&state)?;
    let revoked = state
        .run(store.revoke_key(None, &selector(path), now()))
        .await?
        .ok_or_else(|| Problem::not_found("no such API key"))?;
    tracing::info!(tenant = %revoked.tenant, prefix = %revoked.prefix, "API key revoked");
    Ok(Json((&revoked).into()))
}

/// Replace a live API key by a new one (the old one is revoked); the new key is shown once
#[utoipa::path(
    post, path = "/api/v1/admin/keys/{key}/rotate", operation_id = "admin_rotate", tag = "admin",
    params(("key" = String, Path, description = "The key's id or prefix")),
    responses((status = 201, description = "The new key (shown once)", body = NewKeyView), Lookup),
)]
pub(crate) async fn rotate(
    State(state): State<AppState>,
    _: Admin,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<NewKeyView>), Problem> {
    let store = store(&state)?;
    let selector = selector(path);
    let not_found = || Problem::not_found("no such live API key");
    let current = state
        .run(store.keys(None))
        .await?
        .into_iter()
        .find(|k| match &selector {
            KeySelector::Id(id) => &k.id == id,
            KeySelector::Prefix(p) => &k.prefix == p,
        })
        .ok_or_else(not_found)?;
    let (key, replacement) =
        NewApiKey::generate(current.tenant.clone(), current.label.clone(), now());
    let info = state
        .run(store.rotate_key(current.id, &replacement, now()))
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(tenant = %info.tenant, old = %current.prefix, new = %info.prefix, "API key rotated");
    Ok((StatusCode::CREATED, Json(NewKeyView::new(key, &info))))
}
