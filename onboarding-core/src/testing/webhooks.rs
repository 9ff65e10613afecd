//! [`WebhookStore`] and [`DeliveryLog`] cases: one per `# Behavior` bullet.
//!
//! Cases work in their own random tenants. `claim_due` acts on every
//! tenant, so the cases that call it hold a lock of this module, work in
//! the 1970s (other cases' deliveries are due now, never claimed there),
//! and record an attempt for every delivery they claim (a claim left by an
//! interrupted run is finished by the next one).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::ErrorKind;
use crate::model::{after, now, BatchId, LeaseToken, TenantId, Timestamp};
use crate::testing::{fixtures, TestBackend};
use crate::webhooks::{
    AttemptRecord, AttemptResult, ClaimedDelivery, DeliveryId, DeliveryLog, DeliveryQuery,
    DeliveryRecord, DeliveryStatus, EndpointId, NewDelivery, RetrySchedule, WebhookEndpoint,
};

static CLAIMS: Mutex<()> = Mutex::const_new(());

/// The `now` of claim cases: every delivery due before it is claimed.
fn claim_time() -> Timestamp {
    Utc.with_ymd_and_hms(1978, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
}

/// Held by the cases that call `claim_due`.
async fn claims() -> MutexGuard<'static, ()> {
    CLAIMS.lock().await
}

fn endpoint(tenant: &TenantId) -> WebhookEndpoint {
    WebhookEndpoint::new(
        tenant.clone(),
        format!("https://{}/hooks", fixtures::domain()),
        vec!["batch.completed".into()],
        now(),
    )
}

fn delivery(endpoint: &WebhookEndpoint, due: Timestamp) -> NewDelivery {
    let mut d = NewDelivery::new(
        endpoint,
        format!("whk_{}", uuid::Uuid::new_v4().simple()),
        "batch.completed",
        Some(BatchId::new()),
        r#"{"type":"batch.completed"}"#.to_owned(),
        due,
    );
    d.created_at = due;
    d
}

fn attempt(claimed: &ClaimedDelivery, delivered: bool, at: Timestamp) -> AttemptResult {
    let record = AttemptRecord {
        delivery_id: claimed.record.id,
        attempt: claimed.record.attempts + 1,
        started_at: at,
        latency_ms: 12,
        status_code: Some(if delivered { 204 } else { 503 }),
        error: (!delivered).then(|| "the endpoint answered 503".to_owned()),
        delivered,
    };
    AttemptResult::new(
        claimed,
        record,
        &RetrySchedule::new(3, Duration::from_secs(10)),
        at,
    )
}

/// Adds one delivery to the log.
async fn add_one(log: &dyn DeliveryLog, d: &NewDelivery) {
    log.add_deliveries(std::slice::from_ref(d))
        .await
        .expect("add");
}

/// Claims delivery `id` for a replay at `at`, with a 30 s lease.
async fn claim_now(
    log: &dyn DeliveryLog,
    tenant: &TenantId,
    id: DeliveryId,
    at: Timestamp,
) -> ClaimedDelivery {
    log.claim_delivery(tenant, id, at, after(at, Duration::from_secs(30)))
        .await
        .expect("claim")
        .expect("exists")
}

/// Delivery `id` as shown to its tenant, with its attempts.
async fn shown(
    log: &dyn DeliveryLog,
    tenant: &TenantId,
    id: DeliveryId,
) -> (DeliveryRecord, Vec<AttemptRecord>) {
    log.delivery(tenant, id)
        .await
        .expect("delivery")
        .expect("exists")
}

/// Claims everything due at `at` and records a delivered attempt for what
/// is not in `keep`; returns the claims of `tenant`.
async fn claim_all(
    log: &dyn DeliveryLog,
    tenant: &TenantId,
    at: Timestamp,
    lease_until: Timestamp,
) -> Vec<ClaimedDelivery> {
    let claimed = log
        .claim_due(at, 1000, lease_until)
        .await
        .expect("claim_due");
    let mut mine = Vec::new();
    for c in claimed {
        if &c.record.tenant == tenant {
            mine.push(c);
        } else {
            // Left by an interrupted earlier run: finish it.
            log.record_attempt(&attempt(&c, true, at))
                .await
                .expect("record_attempt");
        }
    }
    mine
}

async fn finish_all(log: &dyn DeliveryLog, claimed: &[ClaimedDelivery], at: Timestamp) {
    for c in claimed {
        log.record_attempt(&attempt(c, true, at))
            .await
            .expect("record_attempt");
    }
}

fn ids(claimed: &[ClaimedDelivery]) -> HashSet<DeliveryId> {
    claimed.iter().map(|c| c.record.id).collect()
}

/// A saved endpoint reads back equal.
pub async fn save_endpoint_reads_back(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    backend.endpoints.save_endpoint(&e).await.expect("save");
    let read = backend
        .endpoints
        .endpoint(&tenant, e.id)
        .await
        .expect("endpoint");
    assert_eq!(read, Some(e.clone()));
    assert_eq!(
        backend
            .endpoints
            .endpoints(&tenant)
            .await
            .expect("endpoints"),
        vec![e]
    );
}

/// Saving again with the same id replaces it.
pub async fn save_endpoint_again_replaces_it(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    backend.endpoints.save_endpoint(&e).await.expect("save");
    let mut changed = e.rotated(now(), Duration::from_secs(3600));
    changed.url = format!("https://{}/v2", fixtures::domain());
    changed.events = vec!["batch.completed".into(), "organization.failed".into()];
    backend
        .endpoints
        .save_endpoint(&changed)
        .await
        .expect("save");
    let listed = backend
        .endpoints
        .endpoints(&tenant)
        .await
        .expect("endpoints");
    assert_eq!(listed, vec![changed]);
}

/// Saving another tenant's id is a `Conflict` and changes nothing.
pub async fn save_endpoint_of_another_tenant_is_conflict(backend: TestBackend) {
    let (owner, intruder) = (fixtures::tenant(), fixtures::tenant());
    let e = endpoint(&owner);
    backend.endpoints.save_endpoint(&e).await.expect("save");
    let mut stolen = e.clone();
    stolen.tenant = intruder.clone();
    stolen.url = "https://attacker.example.com/".into();
    let err = backend
        .endpoints
        .save_endpoint(&stolen)
        .await
        .expect_err("another tenant's id");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        backend
            .endpoints
            .endpoint(&owner, e.id)
            .await
            .expect("endpoint"),
        Some(e)
    );
    assert!(backend
        .endpoints
        .endpoints(&intruder)
        .await
        .expect("endpoints")
        .is_empty());
}

/// Only the tenant's own endpoints are listed, oldest first.
pub async fn endpoints_lists_only_the_tenants_own(backend: TestBackend) {
    let (a, b) = (fixtures::tenant(), fixtures::tenant());
    let (a1, a2, b1) = (endpoint(&a), endpoint(&a), endpoint(&b));
    for e in [&a1, &a2, &b1] {
        backend.endpoints.save_endpoint(e).await.expect("save");
    }
    assert_eq!(
        backend.endpoints.endpoints(&a).await.expect("endpoints"),
        vec![a1, a2]
    );
    assert_eq!(
        backend.endpoints.endpoints(&b).await.expect("endpoints"),
        vec![b1]
    );
}

/// An unknown id, or another tenant's, answers `None`.
pub async fn endpoint_of_unknown_or_foreign_is_none(backend: TestBackend) {
    let (owner, other) = (fixtures::tenant(), fixtures::tenant());
    let e = endpoint(&owner);
    backend.endpoints.save_endpoint(&e).await.expect("save");
    assert_eq!(
        backend
            .endpoints
            .endpoint(&other, e.id)
            .await
            .expect("endpoint"),
        None
    );
    assert_eq!(
        backend
            .endpoints
            .endpoint(&owner, EndpointId::new())
            .await
            .expect("endpoint"),
        None
    );
}

/// Deleting answers whether it existed for this tenant; another tenant's stays.
pub async fn delete_endpoint_only_deletes_the_tenants_own(backend: TestBackend) {
    let (owner, other) = (fixtures::tenant(), fixtures::tenant());
    let e = endpoint(&owner);
    backend.endpoints.save_endpoint(&e).await.expect("save");
    assert!(!backend
        .endpoints
        .delete_endpoint(&other, e.id)
        .await
        .expect("delete"));
    assert!(backend
        .endpoints
        .endpoint(&owner, e.id)
        .await
        .expect("endpoint")
        .is_some());
    assert!(backend
        .endpoints
        .delete_endpoint(&owner, e.id)
        .await
        .expect("delete"));
    assert!(!backend
        .endpoints
        .delete_endpoint(&owner, e.id)
        .await
        .expect("delete"));
    assert!(backend
        .endpoints
        .endpoints(&owner)
        .await
        .expect("endpoints")
        .is_empty());
}

/// New deliveries are listed pending with no attempt; the answer counts them.
pub async fn add_deliveries_lists_them_pending(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let at = now();
    let (d1, d2) = (
        delivery(&e, at),
        delivery(&e, after(at, Duration::from_millis(1))),
    );
    let added = backend
        .deliveries
        .add_deliveries(&[d1.clone(), d2.clone()])
        .await
        .expect("add");
    assert_eq!(added, 2);
    let listed = backend
        .deliveries
        .deliveries(&tenant, &DeliveryQuery::latest(10))
        .await
        .expect("deliveries");
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![d2.id, d1.id],
        "newest first"
    );
    let r = &listed[1];
    assert_eq!(
        (
            r.status,
            r.attempts,
            r.next_attempt_at,
            r.body.as_str(),
            r.batch_id
        ),
        (
            DeliveryStatus::Pending,
            0,
            Some(at),
            d1.body.as_str(),
            d1.batch_id
        )
    );
    assert_eq!(
        (r.webhook_id.as_str(), r.event.as_str(), r.url.as_str()),
        (d1.webhook_id.as_str(), "batch.completed", e.url.as_str())
    );
}

/// A `webhook_id` already logged for the same endpoint is left out.
pub async fn add_deliveries_skips_an_event_already_logged(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let (e1, e2) = (endpoint(&tenant), endpoint(&tenant));
    let first = delivery(&e1, now());
    let mut again = delivery(&e1, now());
    again.webhook_id = first.webhook_id.clone();
    let mut other_endpoint = delivery(&e2, now());
    other_endpoint.webhook_id = first.webhook_id.clone();
    assert_eq!(
        backend
            .deliveries
            .add_deliveries(&[first])
            .await
            .expect("add"),
        1
    );
    let added = backend
        .deliveries
        .add_deliveries(&[again, other_endpoint])
        .await
        .expect("add");
    assert_eq!(
        added, 1,
        "the same event for another endpoint is a delivery of its own"
    );
    let listed = backend
        .deliveries
        .deliveries(&tenant, &DeliveryQuery::latest(10))
        .await
        .expect("deliveries");
    assert_eq!(listed.len(), 2);
}

/// A delivery added with a lease is not claimed before its `next_attempt_at`.
pub async fn add_deliveries_with_a_lease_is_not_claimed_before_it_ends(backend: TestBackend) {
    let _claims = claims().await;
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let created = fixtures::time_in_past(1972);
    let until = after(claim_time(), Duration::from_secs(60));
    let d = delivery(&e, created).claimed(LeaseToken::new(), until);
    add_one(&*backend.deliveries, &d).await;
    let early = claim_all(&*backend.deliveries, &tenant, claim_time(), until).await;
    assert!(
        early.is_empty(),
        "claimed while the first lease lasts: {early:?}"
    );
    let later = after(until, Duration::from_secs(1));
    let taken = claim_all(
        &*backend.deliveries,
        &tenant,
        later,
        after(later, Duration::from_secs(30)),
    )
    .await;
    assert_eq!(ids(&taken), HashSet::from([d.id]));
    finish_all(&*backend.deliveries, &taken, later).await;
}

/// A claimed delivery is not claimed again before its lease ends.
pub async fn claim_due_claims_each_delivery_once(backend: TestBackend) {
    let _claims = claims().await;
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let ds: Vec<NewDelivery> = (0..3)
        .map(|_| delivery(&e, fixtures::time_in_past(1972)))
        .collect();
    backend.deliveries.add_deliveries(&ds).await.expect("add");
    let until = after(claim_time(), Duration::from_secs(60));
    let first = claim_all(&*backend.deliveries, &tenant, claim_time(), until).await;
    assert_eq!(ids(&first), ds.iter().map(|d| d.id).collect::<HashSet<_>>());
    assert!(first
        .iter()
        .all(|c| c.record.status == DeliveryStatus::Pending));
    let again = claim_all(&*backend.deliveries, &tenant, claim_time(), until).await;
    assert!(again.is_empty(), "claimed twice: {again:?}");
    finish_all(&*backend.deliveries, &first, claim_time()).await;
}

/// Deliveries not yet due, delivered or failed are left out.
pub async fn claim_due_leaves_out_undue_and_finished_deliveries(backend: TestBackend) {
    let _claims = claims().await;
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let at = claim_time();
    let lease = after(at, Duration::from_secs(30));
    let (to_deliver, to_fail) = (
        delivery(&e, fixtures::time_in_past(1972)),
        delivery(&e, fixtures::time_in_past(1972)),
    );
    let undue = delivery(&e, after(at, Duration::from_secs(3600)));
    backend
        .deliveries
        .add_deliveries(&[to_deliver.clone(), to_fail.clone(), undue])
        .await
        .expect("add");
    let claimed = claim_all(&*backend.deliveries, &tenant, at, lease).await;
    assert_eq!(ids(&claimed), HashSet::from([to_deliver.id, to_fail.id]));
    for c in &claimed {
        let delivered = c.record.id == to_deliver.id;
        let mut result = attempt(c, delivered, at);
        if !delivered {
            result.status = DeliveryStatus::Failed;
            result.next_attempt_at = None;
        }
        assert!(backend
            .deliveries
            .record_attempt(&result)
            .await
            .expect("record"));
    }
    let later = after(at, Duration::from_secs(600));
    let again = claim_all(
        &*backend.deliveries,
        &tenant,
        later,
        after(later, Duration::from_secs(30)),
    )
    .await;
    assert!(
        again.is_empty(),
        "finished or undue deliveries were claimed: {again:?}"
    );
}

/// Concurrent callers never claim the same delivery.
pub async fn claim_due_is_exclusive_under_concurrency(backend: TestBackend) {
    let _claims = claims().await;
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let ds: Vec<NewDelivery> = (0..40)
        .map(|_| delivery(&e, fixtures::time_in_past(1972)))
        .collect();
    backend.deliveries.add_deliveries(&ds).await.expect("add");
    let until = after(claim_time(), Duration::from_secs(60));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let log = backend.deliveries.clone();
            tokio::spawn(async move { log.claim_due(claim_time(), 15, until).await })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.expect("task").expect("claim_due"));
    }
    let unique = ids(&seen);
    assert_eq!(unique.len(), seen.len(), "a delivery was claimed twice");
    finish_all(&*backend.deliveries, &seen, claim_time()).await;
    let rest = claim_all(&*backend.deliveries, &tenant, claim_time(), until).await;
    finish_all(&*backend.deliveries, &rest, claim_time()).await;
    let mine: HashSet<DeliveryId> = seen
        .iter()
        .filter(|c| c.record.tenant == tenant)
        .map(|c| c.record.id)
        .chain(rest.iter().map(|c| c.record.id))
        .collect();
    assert_eq!(mine, ds.iter().map(|d| d.id).collect::<HashSet<_>>());
}

/// A claim whose lease passed is claimed again; the old lease is fenced off.
pub async fn claim_due_takes_over_expired_claims(backend: TestBackend) {
    let _claims = claims().await;
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let d = delivery(&e, fixtures::time_in_past(1972));
    add_one(&*backend.deliveries, &d).await;
    let at = claim_time();
    let first = claim_all(
        &*backend.deliveries,
        &tenant,
        at,
        after(at, Duration::from_secs(10)),
    )
    .await;
    assert_eq!(ids(&first), HashSet::from([d.id]));
    let later = after(at, Duration::from_secs(20));
    let second = claim_all(
        &*backend.deliveries,
        &tenant,
        later,
        after(later, Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        ids(&second),
        HashSet::from([d.id]),
        "the expired claim was not taken over"
    );
    assert_ne!(first[0].lease, second[0].lease);
    let stale = attempt(&first[0], true, later);
    assert!(
        !backend
            .deliveries
            .record_attempt(&stale)
            .await
            .expect("record"),
        "the old lease still writes"
    );
    assert!(backend
        .deliveries
        .record_attempt(&attempt(&second[0], true, later))
        .await
        .expect("record"));
}

/// A replay claims the delivery whatever its status and starts a new round.
pub async fn claim_delivery_starts_a_new_round(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let d = delivery(&e, now());
    add_one(&*backend.deliveries, &d).await;
    let at = now();
    let lease = after(at, Duration::from_secs(30));
    let first = backend
        .deliveries
        .claim_delivery(&tenant, d.id, at, lease)
        .await
        .expect("claim_delivery")
        .expect("the delivery exists");
    let mut failed = attempt(&first, false, at);
    failed.status = DeliveryStatus::Failed;
    failed.next_attempt_at = None;
    assert!(backend
        .deliveries
        .record_attempt(&failed)
        .await
        .expect("record"));
    let replay = backend
        .deliveries
        .claim_delivery(&tenant, d.id, at, lease)
        .await
        .expect("claim_delivery")
        .expect("the delivery exists");
    assert_eq!(
        (
            replay.record.status,
            replay.record.attempts,
            replay.record.round_start
        ),
        (DeliveryStatus::Pending, 1, 1)
    );
    assert!(backend
        .deliveries
        .record_attempt(&attempt(&replay, true, at))
        .await
        .expect("record"));
}

/// An unknown id, or another tenant's, answers `None`.
pub async fn claim_delivery_of_unknown_or_foreign_is_none(backend: TestBackend) {
    let (owner, other) = (fixtures::tenant(), fixtures::tenant());
    let d = delivery(&endpoint(&owner), now());
    add_one(&*backend.deliveries, &d).await;
    let (at, lease) = (now(), after(now(), Duration::from_secs(30)));
    for (tenant, id) in [(&other, d.id), (&owner, DeliveryId::new())] {
        let answer = backend
            .deliveries
            .claim_delivery(tenant, id, at, lease)
            .await
            .expect("claim");
        assert_eq!(answer, None);
    }
}

/// A delivery whose claim is live is a `Conflict`.
pub async fn claim_delivery_of_a_live_claim_is_conflict(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let d = delivery(&endpoint(&tenant), now());
    add_one(&*backend.deliveries, &d).await;
    let at = now();
    let lease = after(at, Duration::from_secs(30));
    let held = backend
        .deliveries
        .claim_delivery(&tenant, d.id, at, lease)
        .await
        .expect("claim");
    assert!(held.is_some());
    let err = backend
        .deliveries
        .claim_delivery(&tenant, d.id, at, lease)
        .await
        .expect_err("a live claim");
    assert_eq!(err.kind(), ErrorKind::Conflict);
}

/// With the current lease the attempt is recorded and the delivery updated.
pub async fn record_attempt_with_the_current_lease_updates_the_delivery(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let d = delivery(&endpoint(&tenant), now());
    add_one(&*backend.deliveries, &d).await;
    let at = now();
    let claimed = claim_now(&*backend.deliveries, &tenant, d.id, at).await;
    let failed = attempt(&claimed, false, at);
    assert_eq!(
        failed.status,
        DeliveryStatus::Pending,
        "retried after a first failure"
    );
    assert!(backend
        .deliveries
        .record_attempt(&failed)
        .await
        .expect("record"));
    let (record, attempts) = shown(&*backend.deliveries, &tenant, d.id).await;
    assert_eq!(
        (
            record.status,
            record.attempts,
            record.next_attempt_at,
            record.last_status_code,
            record.last_latency_ms
        ),
        (
            DeliveryStatus::Pending,
            1,
            failed.next_attempt_at,
            Some(503),
            Some(12)
        )
    );
    assert_eq!(
        record.last_error.as_deref(),
        Some("the endpoint answered 503")
    );
    assert_eq!(attempts, vec![failed.attempt.clone()]);
    // The claim ended: a replay may claim it now.
    let replay = claim_now(&*backend.deliveries, &tenant, d.id, at).await;
    let ok = attempt(&replay, true, at);
    assert!(backend
        .deliveries
        .record_attempt(&ok)
        .await
        .expect("record"));
    let (record, attempts) = shown(&*backend.deliveries, &tenant, d.id).await;
    assert_eq!(
        (record.status, record.attempts, record.next_attempt_at),
        (DeliveryStatus::Delivered, 2, None)
    );
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

/// With a lease that is not the current one nothing changes.
pub async fn record_attempt_with_a_stale_lease_changes_nothing(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let d = delivery(&endpoint(&tenant), now());
    add_one(&*backend.deliveries, &d).await;
    let at = now();
    let mut claimed = claim_now(&*backend.deliveries, &tenant, d.id, at).await;
    claimed.lease = LeaseToken::new();
    assert!(!backend
        .deliveries
        .record_attempt(&attempt(&claimed, true, at))
        .await
        .expect("record"));
    let (record, attempts) = shown(&*backend.deliveries, &tenant, d.id).await;
    assert_eq!(
        (record.status, record.attempts),
        (DeliveryStatus::Pending, 0)
    );
    assert!(attempts.is_empty());
}

/// Listings show only the tenant's own, filtered, at most `limit`.
pub async fn deliveries_filters_by_tenant_endpoint_batch_and_limit(backend: TestBackend) {
    let (tenant, other) = (fixtures::tenant(), fixtures::tenant());
    let (e1, e2, foreign) = (endpoint(&tenant), endpoint(&tenant), endpoint(&other));
    let at = now();
    let ds: Vec<NewDelivery> = [&e1, &e1, &e2, &foreign]
        .iter()
        .enumerate()
        .map(|(i, e)| delivery(e, after(at, Duration::from_millis(i as u64))))
        .collect();
    backend.deliveries.add_deliveries(&ds).await.expect("add");
    let log = &backend.deliveries;
    let all = log
        .deliveries(&tenant, &DeliveryQuery::latest(100))
        .await
        .expect("deliveries");
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ds[2].id, ds[1].id, ds[0].id]
    );
    let of_e1 = log
        .deliveries(&tenant, &DeliveryQuery::latest(100).of_endpoint(e1.id))
        .await
        .expect("deliveries");
    assert_eq!(of_e1.len(), 2);
    let batch = ds[1].batch_id.expect("a batch");
    let of_batch = log
        .deliveries(&tenant, &DeliveryQuery::latest(100).of_batch(batch))
        .await
        .expect("deliveries");
    assert_eq!(
        of_batch.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ds[1].id]
    );
    let limited = log
        .deliveries(&tenant, &DeliveryQuery::latest(1))
        .await
        .expect("deliveries");
    assert_eq!(
        limited.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ds[2].id]
    );
    let foreign_batch = ds[3].batch_id.expect("a batch");
    let none = log
        .deliveries(&tenant, &DeliveryQuery::latest(100).of_batch(foreign_batch))
        .await
        .expect("deliveries");
    assert!(none.is_empty());
}

/// An unknown id, or another tenant's, answers `None`.
pub async fn delivery_of_unknown_or_foreign_is_none(backend: TestBackend) {
    let (owner, other) = (fixtures::tenant(), fixtures::tenant());
    let d = delivery(&endpoint(&owner), now());
    add_one(&*backend.deliveries, &d).await;
    let asked = [
        (&owner, d.id, true),
        (&other, d.id, false),
        (&owner, DeliveryId::new(), false),
    ];
    for (tenant, id, found) in asked {
        let answer = backend
            .deliveries
            .delivery(tenant, id)
            .await
            .expect("delivery");
        assert_eq!(
            answer.is_some(),
            found,
            "delivery {id:?} asked by {tenant:?}"
        );
    }
}

/// Finished deliveries changed before the cut-off are deleted with their
/// attempts; pending and later ones stay.
pub async fn prune_deletes_only_finished_deliveries_changed_before(backend: TestBackend) {
    let tenant = fixtures::tenant();
    let e = endpoint(&tenant);
    let past = fixtures::time_in_past(1985);
    let ds: Vec<NewDelivery> = (0..3).map(|_| delivery(&e, past)).collect();
    let recent = delivery(&e, now());
    let mut all = ds.clone();
    all.push(recent.clone());
    backend.deliveries.add_deliveries(&all).await.expect("add");
    let lease = |at| after(at, Duration::from_secs(30));
    for (d, delivered) in [(&ds[0], true), (&ds[1], false), (&recent, true)] {
        let at = if d.id == recent.id { now() } else { past };
        let claimed = backend
            .deliveries
            .claim_delivery(&tenant, d.id, at, lease(at))
            .await
            .expect("claim")
            .expect("exists");
        let mut result = attempt(&claimed, delivered, at);
        if !delivered {
            result.status = DeliveryStatus::Failed;
            result.next_attempt_at = None;
        }
        assert!(backend
            .deliveries
            .record_attempt(&result)
            .await
            .expect("record"));
    }
    let cut_off = fixtures::time_in_past(1995);
    let deleted = backend.deliveries.prune(cut_off).await.expect("prune");
    assert!(deleted >= 2, "deleted {deleted}");
    let log = &backend.deliveries;
    for gone in [&ds[0], &ds[1]] {
        assert!(log
            .delivery(&tenant, gone.id)
            .await
            .expect("delivery")
            .is_none());
    }
    for kept in [&ds[2], &recent] {
        let (_, attempts) = log
            .delivery(&tenant, kept.id)
            .await
            .expect("delivery")
            .expect("kept");
        assert_eq!(attempts.len(), usize::from(kept.id == recent.id));
    }
}
