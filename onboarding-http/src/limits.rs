//! The per-tenant request rate: one allowance per tenant (however many
//! keys it has), kept in a shared [`RateLimiter`] (Redis) when one is
//! configured, so that N servers allow the rate once, not N times; else in
//! this process (`governor`). When the shared store fails, this process's
//! own limiter answers until it is back.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use onboarding_core::limits::{Admit, LocalRateLimiter, Rate, RateLimiter};
use onboarding_core::model::TenantId;

use crate::problem::Problem;

/// The tenants' rate limit (none: every request passes).
pub(crate) struct TenantLimits {
    shared: Option<Arc<dyn RateLimiter>>,
    local: Option<LocalRateLimiter>,
}

impl TenantLimits {
    pub(crate) fn new(rate: Option<Rate>, shared: Option<Arc<dyn RateLimiter>>) -> Self {
        Self {
            shared: rate.and(shared),
            local: rate.map(LocalRateLimiter::new),
        }
    }

    /// Takes one request of `tenant`'s allowance, or answers 429.
    pub(crate) async fn check(&self, tenant: &TenantId) -> Result<(), Problem> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let admit = match &self.shared {
            Some(shared) => match shared.check(tenant.as_str()).await {
                Ok(admit) => admit,
                Err(error) => {
                    tracing::warn!(%error, "the shared rate limiter failed; limiting in this process");
                    local.check_now(tenant.as_str())
                }
            },
            None => local.check_now(tenant.as_str()),
        };
        match admit {
            Admit::Allowed => Ok(()),
            Admit::Limited(wait) => Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                "this tenant sent more requests than its rate limit allows",
            )
            .with_retry_after(wait.max(Duration::from_millis(1)))),
        }
    }
}
