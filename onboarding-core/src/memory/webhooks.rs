//! `MemoryWebhooks`: endpoints and the delivery log in process memory.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{LeaseToken, TenantId, Timestamp};
use crate::webhooks::{
    delivery_in_flight, endpoint_conflict, AttemptRecord, AttemptResult, ClaimedDelivery,
    DeliveryId, DeliveryLog, DeliveryQuery, DeliveryRecord, DeliveryStatus, EndpointId,
    NewDelivery, WebhookEndpoint, WebhookStore,
};

#[derive(Debug)]
struct Entry {
    record: DeliveryRecord,
    lease: Option<LeaseToken>,
    attempts: Vec<AttemptRecord>,
}

#[derive(Debug, Default)]
struct State {
    endpoints: Vec<WebhookEndpoint>,
    /// Deliveries in the order they were added.
    deliveries: Vec<Entry>,
    index: HashMap<DeliveryId, usize>,
}

impl State {
    fn entry(&mut self, tenant: &TenantId, id: DeliveryId) -> Option<&mut Entry> {
        let i = *self.index.get(&id)?;
        self.deliveries
            .get_mut(i)
            .filter(|e| &e.record.tenant == tenant)
    }
}

/// An in-process [`WebhookStore`] and [`DeliveryLog`]: right for one
/// process (nothing survives it).
#[derive(Debug, Default)]
pub struct MemoryWebhooks {
    state: Mutex<State>,
}

impl MemoryWebhooks {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is made whole under the lock.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhooks {
    async fn save_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        let mut state = self.state();
        match state.endpoints.iter_mut().find(|e| e.id == endpoint.id) {
            Some(e) if e.tenant != endpoint.tenant => Err(endpoint_conflict(endpoint.id)),
            Some(e) => {
                *e = endpoint.clone();
                Ok(())
            }
            None => {
                state.endpoints.push(endpoint.clone());
                Ok(())
            }
        }
    }

    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>> {
        Ok(self
            .state()
            .endpoints
            .iter()
            .filter(|e| &e.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<Option<WebhookEndpoint>> {
        Ok(self
            .state()
            .endpoints
            .iter()
            .find(|e| e.id == id && &e.tenant == tenant)
            .cloned())
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool> {
        let mut state = self.state();
        let before = state.endpoints.len();
        state
            .endpoints
            .retain(|e| !(e.id == id && &e.tenant == tenant));
        Ok(state.endpoints.len() < before)
    }
}

fn record_of(d: &NewDelivery) -> DeliveryRecord {
    DeliveryRecord {
        id: d.id,
        tenant: d.tenant.clone(),
        endpoint_id: d.endpoint_id,
        webhook_id: d.webhook_id.clone(),
        event: d.event.clone(),
        batch_id: d.batch_id,
        url: d.url.clone(),
        body: d.body.clone(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        round_start: 0,
        next_attempt_at: Some(d.next_attempt_at),
        last_status_code: None,
        last_error: None,
        last_latency_ms: None,
        created_at: d.created_at,
        updated_at: d.created_at,
    }
}

fn claim(entry: &mut Entry, now: Timestamp, lease_until: Timestamp) -> ClaimedDelivery {
    let lease = LeaseToken::new();
    entry.lease = Some(lease);
    entry.record.next_attempt_at = Some(lease_until);
    entry.record.updated_at = now;
    ClaimedDelivery::new(entry.record.clone(), lease)
}

#[async_trait]
impl DeliveryLog for MemoryWebhooks {
    async fn add_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64> {
        let mut state = self.state();
        let mut added = 0;
        for d in deliveries {
            let duplicate = state.deliveries.iter().any(|e| {
                e.record.endpoint_id == d.endpoint_id && e.record.webhook_id == d.webhook_id
            }) || state.index.contains_key(&d.id);
            if duplicate {
                continue;
            }
            let i = state.deliveries.len();
            state.deliveries.push(Entry {
                record: record_of(d),
                lease: d.lease,
                attempts: Vec::new(),
            });
            state.index.insert(d.id, i);
            added += 1;
        }
        Ok(added)
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>> {
        let mut state = self.state();
        let mut due: Vec<usize> = state
            .deliveries
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.record.status == DeliveryStatus::Pending
                    && e.record.next_attempt_at.is_some_and(|at| at <= now)
            })
            .map(|(i, _)| i)
            .collect();
        due.sort_by_key(|i| state.deliveries[*i].record.next_attempt_at);
        due.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(due
            .into_iter()
            .map(|i| claim(&mut state.deliveries[i], now, lease_until))
            .collect())
    }

    async fn claim_delivery(
        &self,
        tenant: &TenantId,
        id: DeliveryId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ClaimedDelivery>> {
        let mut state = self.state();
        let Some(entry) = state.entry(tenant, id) else {
            return Ok(None);
        };
        let live = entry.lease.is_some()
            && entry.record.status == DeliveryStatus::Pending
            && entry.record.next_attempt_at.is_some_and(|at| at > now);
        if live {
            return Err(delivery_in_flight(id));
        }
        entry.record.status = DeliveryStatus::Pending;
        entry.record.round_start = entry.record.attempts;
        Ok(Some(claim(entry, now, lease_until)))
    }

    async fn record_attempt(&self, result: &AttemptResult) -> Result<bool> {
        let mut state = self.state();
        let Some(&i) = state.index.get(&result.attempt.delivery_id) else {
            return Ok(false);
        };
        let entry = &mut state.deliveries[i];
        if entry.lease != Some(result.lease) {
            return Ok(false);
        }
        let r = &mut entry.record;
        r.status = result.status;
        r.attempts += 1;
        r.next_attempt_at = result.next_attempt_at;
        r.last_status_code = result.attempt.status_code;
        r.last_error = result.attempt.error.clone();
        r.last_latency_ms = Some(result.attempt.latency_ms);
        r.updated_at = result.at;
        entry.lease = None;
        entry.attempts.push(result.attempt.clone());
        Ok(true)
    }

    async fn deliveries(
        &self,
        tenant: &TenantId,
        query: &DeliveryQuery,
    ) -> Result<Vec<DeliveryRecord>> {
        let limit = usize::try_from(query.limit.max(1)).unwrap_or(usize::MAX);
        Ok(self
            .state()
            .deliveries
            .iter()
            .rev()
            .map(|e| &e.record)
            .filter(|r| {
                &r.tenant == tenant
                    && query.endpoint_id.is_none_or(|id| id == r.endpoint_id)
                    && query.batch_id.is_none_or(|id| Some(id) == r.batch_id)
            })
            .take(limit)
            .cloned()
            .collect())
    }

    async fn delivery(
        &self,
        tenant: &TenantId,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        Ok(self
            .state()
            .entry(tenant, id)
            .map(|e| (e.record.clone(), e.attempts.clone())))
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        let mut state = self.state();
        let count = state.deliveries.len();
        state.deliveries.retain(|e| {
            e.record.status == DeliveryStatus::Pending || e.record.updated_at >= before
        });
        let deleted = count - state.deliveries.len();
        let index = state
            .deliveries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.record.id, i))
            .collect();
        state.index = index;
        Ok(u64::try_from(deleted).unwrap_or(u64::MAX))
    }
}
