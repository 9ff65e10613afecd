//! Who is calling: API keys (the bootstrap list from `API_KEYS`, then the
//! database's [`KeyStore`] through a one-second cache), the operator's admin
//! token, and the throttle on failed authentications per client address.
//!
//! An unknown key and a revoked key get the same 401: nothing tells which.
//! After a burst of failures from one address (default 10, then one per 6
//! seconds) every request from it is answered 429 before any key is
//! checked, so guessing cannot go on at full speed. Keys and tokens are
//! never logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use onboarding_core::keys::{hash_key, same_hash, CachedKeyStore, KeyHash, KeyStore};
use onboarding_core::limits::{Admit, LocalRateLimiter, Rate};
use onboarding_core::model::TenantId;

use crate::app::AppState;
use crate::config::ApiKeys;
use crate::problem::Problem;

/// The default throttle of failed authentications per client address:
/// a burst of 10, then one every 6 seconds.
pub const AUTH_FAILURES: Rate = Rate {
    per_second: 1.0 / 6.0,
    burst: 10,
};

/// Addresses kept blocked at most; past it the expired ones are dropped.
const BLOCKED_MAX: usize = 10_000;

/// What decides who a request is.
pub(crate) struct Authenticator {
    bootstrap: ApiKeys,
    store: Option<CachedKeyStore>,
    admin_token: Option<KeyHash>,
    failures: Option<LocalRateLimiter>,
    blocked: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    pub(crate) fn new(
        bootstrap: ApiKeys,
        store: Option<Arc<dyn KeyStore>>,
        admin_token: Option<KeyHash>,
        failures: Option<Rate>,
    ) -> Self {
        Self {
            bootstrap,
            store: store.map(CachedKeyStore::new),
            admin_token,
            failures: failures.map(LocalRateLimiter::new),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// The key store (cached), when keys live in the database.
    pub(crate) fn store(&self) -> Option<&CachedKeyStore> {
        self.store.as_ref()
    }

    fn blocked(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// 429 when `client` is blocked for failing too often.
    fn check_blocked(&self, client: &str) -> Result<(), Problem> {
        let blocked = self.blocked();
        match blocked.get(client) {
            Some(until) if *until > Instant::now() => Err(too_many_failures(
                until.saturating_duration_since(Instant::now()),
            )),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `client`; the answer is `refusal`, or 429 once
    /// the client is past its burst.
    fn failed(&self, client: &str, refusal: Problem) -> Problem {
        let Some(failures) = &self.failures else {
            return refusal;
        };
        match failures.check_now(client) {
            Admit::Allowed => refusal,
            Admit::Limited(wait) => {
                let mut blocked = self.blocked();
                if blocked.len() >= BLOCKED_MAX {
                    let now = Instant::now();
                    blocked.retain(|_, until| *until > now);
                }
                blocked.insert(client.to_owned(), Instant::now() + wait);
                tracing::warn!(client, "authentication failures throttled");
                too_many_failures(wait)
            }
        }
    }

    /// The tenant a presented key belongs to: the bootstrap keys first, then
    /// the database's.
    pub(crate) async fn tenant_of(
        &self,
        key: &str,
    ) -> Result<Option<TenantId>, onboarding_core::Error> {
        if let Some((tenant, _)) = self.bootstrap.authenticate(key) {
            return Ok(Some(tenant));
        }
        match &self.store {
            Some(store) => Ok(store.find_key(&hash_key(key)).await?.map(|k| k.tenant)),
            None => Ok(None),
        }
    }
}

fn too_many_failures(wait: Duration) -> Problem {
    Problem::new(
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
        "too many failed authentications from this address; try again later",
    )
    .with_retry_after(wait.max(Duration::from_secs(1)))
}

/// The client's address, as the listener saw it (`unknown` when the router
/// is served without connect info).
fn client(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |ConnectInfo(a)| a.ip().to_string())
}

/// `Bearer <token>` of the `Authorization` header: `Ok(None)` when there is
/// no header, `Err` when it is not a bearer token.
fn bearer(parts: &Parts) -> Result<Option<&str>, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
                .filter(|t| !t.is_empty())
        })
        .map(Some)
        .ok_or_else(|| {
            Problem::unauthorized("the Authorization header must be: Bearer <key>", true)
        })
}

/// The authenticated tenant of a request (`Authorization: Bearer <key>`),
/// after the tenant passed its rate limit.
pub(crate) struct Tenant(pub(crate) TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let auth = &state.inner.auth;
        let client = client(parts);
        auth.check_blocked(&client)?;
        let token = match bearer(parts) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return Err(Problem::unauthorized(
                    "this endpoint needs an API key: send Authorization: Bearer <key>",
                    false,
                ))
            }
            Err(refusal) => return Err(auth.failed(&client, refusal)),
        };
        let tenant = match auth.tenant_of(token).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => {
                let refusal = Problem::unauthorized("the API key is not valid", true);
                return Err(auth.failed(&client, refusal));
            }
            Err(e) => return Err(state.problem(&e)),
        };
        state.inner.limits.check(&tenant).await?;
        Ok(Self(tenant))
    }
}

/// A request carrying the operator's admin token. Without a configured
/// token the admin routes do not exist (404).
pub(crate) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let auth = &state.inner.auth;
        let Some(expected) = &auth.admin_token else {
            return Err(Problem::not_found("no such route"));
        };
        let client = client(parts);
        auth.check_blocked(&client)?;
        let token =
            match bearer(parts) {
                Ok(Some(token)) => token,
                Ok(None) => return Err(Problem::unauthorized(
                    "admin routes need the admin token: send Authorization: Bearer <ADMIN_TOKEN>",
                    false,
                )),
                Err(refusal) => return Err(auth.failed(&client, refusal)),
            };
        if same_hash(&hash_key(token), expected) {
            Ok(Self)
        } else {
            let refusal = Problem::unauthorized("the admin token is not valid", true);
            Err(auth.failed(&client, refusal))
        }
    }
}
