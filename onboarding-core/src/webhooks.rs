//! Webhooks per tenant, kept where every process sees them: the endpoints a
//! tenant registers ([`WebhookStore`]) and the outbox of deliveries with
//! every attempt ([`DeliveryLog`]).
//!
//! The HTTP layer (onboarding-http's `webhook` module) signs and sends; this
//! module holds what is the same for every backend: the records, the
//! contract of the stores, and the retry schedule.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use std::fmt;

use uuid::Uuid;

use crate::model::{after, uuid_id, BatchId, LeaseToken, TenantId, Timestamp};

uuid_id!(
    /// Identifies a tenant's webhook endpoint.
    EndpointId
);
uuid_id!(
    /// Identifies one delivery: one event for one endpoint.
    DeliveryId
);

/// The event types an endpoint can subscribe to (`ping` is sent on request only).
pub const EVENT_TYPES: [&str; 5] = [
    "batch.completed",
    "organization.created",
    "organization.updated",
    "organization.processed",
    "organization.failed",
];

/// The event type of a test ping.
pub const PING: &str = "ping";

/// A tenant's webhook endpoint with its signing secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WebhookEndpoint {
    /// Its id.
    pub id: EndpointId,
    /// Its owner.
    pub tenant: TenantId,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types it receives (from [`EVENT_TYPES`]).
    pub events: Vec<String>,
    /// The current signing secret.
    pub secret: String,
    /// The secret before the last rotation, still signing until
    /// `previous_secret_until`.
    pub previous_secret: Option<String>,
    /// End of the rotation's overlap window.
    pub previous_secret_until: Option<Timestamp>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WebhookEndpoint {
    /// A new endpoint with a fresh secret (`whsec_` + 43 random characters).
    pub fn new(tenant: TenantId, url: String, events: Vec<String>, at: Timestamp) -> Self {
        Self {
            id: EndpointId::new(),
            tenant,
            url,
            events,
            secret: new_secret(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: at,
            updated_at: at,
        }
    }

    /// Whether it receives events of `event_type` (every endpoint gets pings).
    pub fn wants(&self, event_type: &str) -> bool {
        event_type == PING || self.events.iter().any(|e| e == event_type)
    }

    /// The secrets that sign a delivery sent at `now`: the current one, and
    /// the previous one while its overlap window lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if now < until {
                secrets.push(previous);
            }
        }
        secrets
    }

    /// The endpoint after a secret rotation at `at`: a fresh current secret,
    /// and the old one signing beside it for `overlap`.
    pub fn rotated(&self, at: Timestamp, overlap: Duration) -> Self {
        Self {
            secret: new_secret(),
            previous_secret: Some(self.secret.clone()),
            previous_secret_until: Some(after(at, overlap)),
            updated_at: at,
            ..self.clone()
        }
    }
}

/// A fresh signing secret: `whsec_` and 43 random characters (256 bits).
pub fn new_secret() -> String {
    format!("whsec_{}", crate::keys::random_token(43))
}

/// Checks a list of event types: known, not empty; duplicates removed.
pub fn check_events(events: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&event.as_str()) {
            return Err(Error::invalid(vec![crate::error::FieldError::new(
                format!("/events/{i}"),
                "event_unknown",
                format!(
                    "unknown event type {event:?}; known: {}",
                    EVENT_TYPES.join(", ")
                ),
            )]));
        }
        if !out.contains(event) {
            out.push(event.clone());
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(vec![crate::error::FieldError::new(
            "/events",
            "events_empty",
            "name at least one event type",
        )]));
    }
    Ok(out)
}

/// Tenants' webhook endpoints.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Stores an endpoint: a new one, or a new version of one (by id).
    ///
    /// # Behavior
    /// - A saved endpoint reads back equal through [`endpoint`](Self::endpoint)
    ///   and [`endpoints`](Self::endpoints).
    /// - Saving again with the same id replaces it.
    /// - Saving an id that belongs to another tenant is a `Conflict` and changes nothing.
    async fn save_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<()>;

    /// A tenant's endpoints, oldest first.
    ///
    /// # Behavior
    /// - Only the tenant's own endpoints are listed.
    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>>;

    /// One endpoint of a tenant.
    ///
    /// # Behavior
    /// - An unknown id, or another tenant's, answers `None`.
    async fn endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<Option<WebhookEndpoint>>;

    /// Deletes an endpoint (its deliveries stay listed).
    ///
    /// # Behavior
    /// - Answers whether it existed for this tenant; another tenant's is left alone.
    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool>;
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    /// An attempt was answered 2xx.
    Delivered,
    /// Every attempt failed; a replay starts a new round.
    Failed,
}

impl DeliveryStatus {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// The status a stored name stands for.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A delivery to add to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NewDelivery {
    /// Its id.
    pub id: DeliveryId,
    /// The endpoint's owner.
    pub tenant: TenantId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event's stable id (`Webhook-Id`): one delivery per endpoint and event.
    pub webhook_id: String,
    /// The event type.
    pub event: String,
    /// The batch it is about, if any.
    pub batch_id: Option<BatchId>,
    /// The endpoint's URL when the event happened.
    pub url: String,
    /// The JSON body sent with every attempt.
    pub body: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the first attempt is due.
    pub next_attempt_at: Timestamp,
    /// Claimed at once by the caller (a ping sent right away), until `next_attempt_at`.
    pub lease: Option<LeaseToken>,
}

impl NewDelivery {
    /// A delivery of `event` to `endpoint`, due at `at`.
    pub fn new(
        endpoint: &WebhookEndpoint,
        webhook_id: String,
        event: &str,
        batch_id: Option<BatchId>,
        body: String,
        at: Timestamp,
    ) -> Self {
        Self {
            id: DeliveryId::new(),
            tenant: endpoint.tenant.clone(),
            endpoint_id: endpoint.id,
            webhook_id,
            event: event.to_owned(),
            batch_id,
            url: endpoint.url.clone(),
            body,
            created_at: at,
            next_attempt_at: at,
            lease: None,
        }
    }

    /// Claims it at once until `until` (see [`lease`](Self::lease)).
    pub fn claimed(mut self, lease: LeaseToken, until: Timestamp) -> Self {
        self.lease = Some(lease);
        self.next_attempt_at = until;
        self
    }
}

/// A delivery as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Its id.
    pub id: DeliveryId,
    /// The endpoint's owner.
    pub tenant: TenantId,
    /// The endpoint.
    pub endpoint_id: EndpointId,
    /// The event's stable id (`Webhook-Id`).
    pub webhook_id: String,
    /// The event type.
    pub event: String,
    /// The batch it is about, if any.
    pub batch_id: Option<BatchId>,
    /// The endpoint's URL when the event happened.
    pub url: String,
    /// The JSON body.
    pub body: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made in all.
    pub attempts: u32,
    /// Attempts made before the latest replay (the retry schedule counts from there).
    pub round_start: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// The last attempt's HTTP status, when the endpoint answered.
    pub last_status_code: Option<u16>,
    /// The last attempt's error, when it failed.
    pub last_error: Option<String>,
    /// How long the last attempt took, in milliseconds.
    pub last_latency_ms: Option<u32>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A delivery claimed for one attempt: only the holder of `lease` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimedDelivery {
    /// The delivery as it was when claimed.
    pub record: DeliveryRecord,
    /// The fencing token of this attempt.
    pub lease: LeaseToken,
}

impl ClaimedDelivery {
    /// A claim of `record` under `lease`.
    pub fn new(record: DeliveryRecord, lease: LeaseToken) -> Self {
        Self { record, lease }
    }
}

/// One attempt, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// 1-based, over the delivery's whole life (replays continue the count).
    pub attempt: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// How long it took, in milliseconds.
    pub latency_ms: u32,
    /// The endpoint's HTTP status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Whether it was answered 2xx.
    pub delivered: bool,
}

/// An attempt's outcome and what follows, recorded by the lease holder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptResult {
    /// The claim's fencing token.
    pub lease: LeaseToken,
    /// The attempt.
    pub attempt: AttemptRecord,
    /// The delivery's status afterwards.
    pub status: DeliveryStatus,
    /// The next attempt, when `status` is pending.
    pub next_attempt_at: Option<Timestamp>,
    /// When it was recorded.
    pub at: Timestamp,
}

impl AttemptResult {
    /// The result of `attempt` under `lease`, with what follows by `schedule`.
    pub fn new(
        claimed: &ClaimedDelivery,
        attempt: AttemptRecord,
        schedule: &RetrySchedule,
        at: Timestamp,
    ) -> Self {
        let (status, next_attempt_at) = if attempt.delivered {
            (DeliveryStatus::Delivered, None)
        } else {
            let in_round = claimed
                .record
                .attempts
                .saturating_sub(claimed.record.round_start)
                .saturating_add(1);
            match schedule.after_failure(in_round) {
                Some(wait) => (DeliveryStatus::Pending, Some(after(at, wait))),
                None => (DeliveryStatus::Failed, None),
            }
        };
        Self {
            lease: claimed.lease,
            attempt,
            status,
            next_attempt_at,
            at,
        }
    }
}

/// When failed attempts are tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetrySchedule {
    /// Attempts per round (first one included; default 6).
    pub max_attempts: u32,
    /// Wait after the first failure, doubled after each (default 5 s).
    pub first_delay: Duration,
    /// Longest wait (default 10 min).
    pub max_delay: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            first_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(600),
        }
    }
}

impl RetrySchedule {
    /// `max_attempts` per round, the first retry after `first_delay`.
    pub fn new(max_attempts: u32, first_delay: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            first_delay,
            ..Self::default()
        }
    }

    /// The wait after the `n`-th failed attempt of a round (1-based), or
    /// `None` when the round is over.
    pub fn after_failure(&self, n: u32) -> Option<Duration> {
        if n >= self.max_attempts {
            return None;
        }
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        Some(self.first_delay.saturating_mul(factor).min(self.max_delay))
    }
}

/// Which deliveries a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryQuery {
    /// Only this endpoint's.
    pub endpoint_id: Option<EndpointId>,
    /// Only this batch's.
    pub batch_id: Option<BatchId>,
    /// At most this many (at least 1).
    pub limit: u32,
}

impl DeliveryQuery {
    /// The newest `limit` deliveries.
    pub fn latest(limit: u32) -> Self {
        Self {
            limit: limit.max(1),
            ..Self::default()
        }
    }

    /// Only this endpoint's.
    pub fn of_endpoint(mut self, id: EndpointId) -> Self {
        self.endpoint_id = Some(id);
        self
    }

    /// Only this batch's.
    pub fn of_batch(mut self, id: BatchId) -> Self {
        self.batch_id = Some(id);
        self
    }
}

/// The outbox of webhook deliveries and their attempts. Any process may
/// claim a due delivery; the claim's lease token fences the attempt, so one
/// process makes each attempt.
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    /// Adds deliveries, pending.
    ///
    /// # Behavior
    /// - Each new delivery is listed, pending, with no attempt; the answer
    ///   counts those added.
    /// - A delivery of a `webhook_id` already logged for the same endpoint is
    ///   left out (an event published twice is delivered once).
    /// - A delivery added with a lease is not claimed by
    ///   [`claim_due`](Self::claim_due) before its `next_attempt_at`.
    async fn add_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64>;

    /// Claims up to `limit` pending deliveries due at `now`, oldest due
    /// first, each until `lease_until`.
    ///
    /// # Behavior
    /// - A claimed delivery is not claimed again before `lease_until`, by
    ///   any caller; concurrent callers never claim the same one.
    /// - Deliveries not yet due, delivered or failed are left out.
    /// - A claim whose lease passed is claimed again (the holder died).
    async fn claim_due(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>>;

    /// Claims one delivery of a tenant for an attempt now (a replay),
    /// whatever its status, and starts a new round of retries.
    ///
    /// # Behavior
    /// - The claimed record has `round_start = attempts`.
    /// - An unknown id, or another tenant's, answers `None`.
    /// - A delivery whose claim is live is a `Conflict`.
    async fn claim_delivery(
        &self,
        tenant: &TenantId,
        id: DeliveryId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ClaimedDelivery>>;

    /// Records an attempt of a claimed delivery and what follows.
    ///
    /// # Behavior
    /// - With the current lease: the attempt is listed by
    ///   [`attempts`](Self::attempts), the delivery takes the new status,
    ///   `next_attempt_at` and last attempt's fields, `attempts + 1`, and
    ///   the claim ends; answers `true`.
    /// - With a lease that is not the current one (the claim passed to
    ///   another caller): nothing changes; answers `false`.
    async fn record_attempt(&self, result: &AttemptResult) -> Result<bool>;

    /// A tenant's deliveries, newest first.
    ///
    /// # Behavior
    /// - Only the tenant's own, filtered by endpoint and batch, at most `limit`.
    async fn deliveries(
        &self,
        tenant: &TenantId,
        query: &DeliveryQuery,
    ) -> Result<Vec<DeliveryRecord>>;

    /// One delivery of a tenant with its attempts, in order.
    ///
    /// # Behavior
    /// - An unknown id, or another tenant's, answers `None`.
    async fn delivery(
        &self,
        tenant: &TenantId,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>>;

    /// Deletes finished deliveries (delivered or failed) that last changed
    /// before `before`, with their attempts: the log's retention.
    ///
    /// # Behavior
    /// - Those deliveries are gone with their attempts; pending ones, and
    ///   finished ones changed later, stay. The answer counts the deleted.
    async fn prune(&self, before: Timestamp) -> Result<u64>;
}

/// `Conflict` for a replay of a delivery being attempted.
pub fn delivery_in_flight(id: DeliveryId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("delivery {id} is being attempted right now; try again in a moment"),
    )
}

/// `Conflict` for an endpoint id of another tenant.
pub fn endpoint_conflict(id: EndpointId) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("endpoint {id} belongs to another tenant"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::now;

    #[test]
    fn schedule_doubles_then_stops() {
        let s = RetrySchedule::new(4, Duration::from_secs(1));
        assert_eq!(s.after_failure(1), Some(Duration::from_secs(1)));
        assert_eq!(s.after_failure(2), Some(Duration::from_secs(2)));
        assert_eq!(s.after_failure(3), Some(Duration::from_secs(4)));
        assert_eq!(s.after_failure(4), None);
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_overlap() {
        let t = now();
        let e = WebhookEndpoint::new(
            TenantId::parse("acme").unwrap(),
            "https://example.com/h".into(),
            vec!["batch.completed".into()],
            t,
        );
        let r = e.rotated(t, Duration::from_secs(60));
        assert_ne!(r.secret, e.secret);
        assert_eq!(
            r.signing_secrets(t),
            vec![r.secret.as_str(), e.secret.as_str()]
        );
        let later = after(t, Duration::from_secs(61));
        assert_eq!(r.signing_secrets(later), vec![r.secret.as_str()]);
        assert!(!format!("{r:?}").contains(&r.secret));
        assert!(check_events(&["nope".into()]).is_err());
        assert!(check_events(&[]).is_err());
    }
}
