//! Webhook endpoints and the delivery outbox (compiled once per engine):
//! `webhook_endpoints`, `webhook_deliveries`, `webhook_attempts`. A claim
//! locks due rows (`FOR UPDATE SKIP LOCKED`; SQLite's write lock) and gives
//! them a lease token; an attempt is recorded only with that token.

use async_trait::async_trait;
use onboarding_core::model::{BatchId, LeaseToken, TenantId, Timestamp};
use onboarding_core::webhooks::{
    delivery_in_flight, endpoint_conflict, AttemptRecord, AttemptResult, ClaimedDelivery,
    DeliveryId, DeliveryLog, DeliveryQuery, DeliveryRecord, DeliveryStatus, EndpointId,
    NewDelivery, WebhookEndpoint, WebhookStore,
};
use onboarding_core::{Error, Result};
use sqlx::{Pool, QueryBuilder, Row};
use uuid::Uuid;

use super::{dialect, Db};
use crate::error::DbResultExt;
use crate::stores::{columns, count, required_text, text};

type DbRow = <Db as sqlx::Database>::Row;

/// Endpoints and deliveries of this engine.
pub(crate) struct SqlWebhooks {
    pool: Pool<Db>,
}

impl SqlWebhooks {
    pub(crate) fn new(pool: Pool<Db>) -> Self {
        Self { pool }
    }
}

fn endpoint_of(row: &DbRow) -> Result<WebhookEndpoint> {
    let tenant = required_text(row, "tenant")?;
    let events = required_text(row, "events")?;
    let mut endpoint = WebhookEndpoint::new(
        TenantId::parse(tenant)?,
        required_text(row, "url")?,
        events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        row.try_get("created_at").db()?,
    );
    endpoint.id = EndpointId(row.try_get::<Uuid, _>("id").db()?);
    endpoint.secret = required_text(row, "secret")?;
    endpoint.previous_secret = text(row, "previous_secret")?;
    endpoint.previous_secret_until = row.try_get("previous_secret_until").db()?;
    endpoint.updated_at = row.try_get("updated_at").db()?;
    Ok(endpoint)
}

fn delivery_of(row: &DbRow) -> Result<DeliveryRecord> {
    let tenant = required_text(row, "tenant")?;
    let status = required_text(row, "status")?;
    let code: Option<i64> = row.try_get("last_status_code").db()?;
    let latency: Option<i64> = row.try_get("last_latency_ms").db()?;
    Ok(DeliveryRecord {
        id: DeliveryId(row.try_get::<Uuid, _>("id").db()?),
        tenant: TenantId::parse(tenant)?,
        endpoint_id: EndpointId(row.try_get::<Uuid, _>("endpoint_id").db()?),
        webhook_id: required_text(row, "webhook_id")?,
        event: required_text(row, "event")?,
        batch_id: row.try_get::<Option<Uuid>, _>("batch_id").db()?.map(BatchId),
        url: required_text(row, "url")?,
        body: required_text(row, "body")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| Error::internal(format!("unknown delivery status {status:?}")))?,
        attempts: count(row.try_get("attempts").db()?),
        round_start: count(row.try_get("round_start").db()?),
        next_attempt_at: row.try_get("next_attempt_at").db()?,
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error: text(row, "last_error")?,
        last_latency_ms: latency.map(count),
        created_at: row.try_get("created_at").db()?,
        updated_at: row.try_get("updated_at").db()?,
    })
}

fn attempt_of(row: &DbRow) -> Result<AttemptRecord> {
    let code: Option<i64> = row.try_get("status_code").db()?;
    Ok(AttemptRecord {
        delivery_id: DeliveryId(row.try_get::<Uuid, _>("delivery_id").db()?),
        attempt: count(row.try_get("attempt").db()?),
        started_at: row.try_get("started_at").db()?,
        latency_ms: count(row.try_get("latency_ms").db()?),
        status_code: code.and_then(|c| u16::try_from(c).ok()),
        error: text(row, "error")?,
        delivered: row.try_get("delivered").db()?,
    })
}

fn select_deliveries<'a>(tail: &str) -> QueryBuilder<'a, Db> {
    QueryBuilder::new(format!(
        "SELECT {} FROM webhook_deliveries WHERE {tail}",
        columns::DELIVERY
    ))
}

/// Gives the deliveries `ids` a lease and reads them back, inside `tx`.
async fn lease(
    tx: &mut sqlx::Transaction<'static, Db>,
    ids: &[Uuid],
    now: Timestamp,
    lease_until: Timestamp,
    replay: bool,
) -> Result<Vec<ClaimedDelivery>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let token = LeaseToken::new();
    let mut qb = QueryBuilder::<Db>::new("UPDATE webhook_deliveries SET lease_token = ");
    qb.push_bind(token.0)
        .push(", next_attempt_at = ")
        .push_bind(lease_until)
        .push(", updated_at = ")
        .push_bind(now);
    if replay {
        qb.push(", status = 'pending', round_start = attempts");
    }
    qb.push(" WHERE id IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    qb.push(")");
    qb.build().execute(&mut **tx).await.db()?;
    let mut qb = select_deliveries("id IN (");
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    qb.push(") ORDER BY next_attempt_at, id");
    let rows = qb.build().fetch_all(&mut **tx).await.db()?;
    rows.iter()
        .map(|row| Ok(ClaimedDelivery::new(delivery_of(row)?, token)))
        .collect()
}

#[async_trait]
impl WebhookStore for SqlWebhooks {
    async fn save_endpoint(&self, e: &WebhookEndpoint) -> Result<()> {
        let mut tx = dialect::begin(&self.pool).await?;
        let mut qb = QueryBuilder::<Db>::new("SELECT tenant FROM webhook_endpoints WHERE id = ");
        qb.push_bind(e.id.0).push(dialect::FOR_UPDATE);
        let owner = match qb.build().fetch_optional(&mut *tx).await.db()? {
            Some(row) => Some(required_text(&row, "tenant")?),
            None => None,
        };
        let events = e.events.join(",");
        let mut qb = match owner {
            Some(owner) if owner != e.tenant.as_str() => return Err(endpoint_conflict(e.id)),
            Some(_) => {
                let mut qb = QueryBuilder::<Db>::new("UPDATE webhook_endpoints SET url = ");
                qb.push_bind(e.url.as_str())
                    .push(", events = ")
                    .push_bind(events)
                    .push(", secret = ")
                    .push_bind(e.secret.as_str())
                    .push(", previous_secret = ")
                    .push_bind(e.previous_secret.as_deref())
                    .push(", previous_secret_until = ")
                    .push_bind(e.previous_secret_until)
                    .push(", created_at = ")
                    .push_bind(e.created_at)
                    .push(", updated_at = ")
                    .push_bind(e.updated_at)
                    .push(" WHERE id = ")
                    .push_bind(e.id.0);
                qb
            }
            None => {
                let mut qb = QueryBuilder::<Db>::new(format!(
                    "INSERT INTO webhook_endpoints ({}) VALUES (",
                    columns::ENDPOINT
                ));
                let mut values = qb.separated(", ");
                values
                    .push_bind(e.id.0)
                    .push_bind(e.tenant.as_str())
                    .push_bind(e.url.as_str())
                    .push_bind(events)
                    .push_bind(e.secret.as_str())
                    .push_bind(e.previous_secret.as_deref())
                    .push_bind(e.previous_secret_until)
                    .push_bind(e.created_at)
                    .push_bind(e.updated_at);
                qb.push(")");
                qb
            }
        };
        qb.build().execute(&mut *tx).await.db()?;
        tx.commit().await.db()
    }

    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>> {
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM webhook_endpoints WHERE tenant = ",
            columns::ENDPOINT
        ));
        qb.push_bind(tenant.as_str())
            .push(" ORDER BY created_at, id");
        let rows = qb.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(endpoint_of).collect()
    }

    async fn endpoint(
        &self,
        tenant: &TenantId,
        id: EndpointId,
    ) -> Result<Option<WebhookEndpoint>> {
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM webhook_endpoints WHERE id = ",
            columns::ENDPOINT
        ));
        qb.push_bind(id.0)
            .push(" AND tenant = ")
            .push_bind(tenant.as_str());
        let row = qb.build().fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(endpoint_of).transpose()
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: EndpointId) -> Result<bool> {
        let mut qb = QueryBuilder::<Db>::new("DELETE FROM webhook_endpoints WHERE id = ");
        qb.push_bind(id.0)
            .push(" AND tenant = ")
            .push_bind(tenant.as_str());
        let done = qb.build().execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl DeliveryLog for SqlWebhooks {
    async fn add_deliveries(&self, deliveries: &[NewDelivery]) -> Result<u64> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let (insert, ignore) = dialect::INSERT_IGNORE;
        let mut added = 0;
        let mut tx = dialect::begin(&self.pool).await?;
        // 18 parameters a row: well within every engine's limit per 100 rows.
        for chunk in deliveries.chunks(100) {
            let mut qb = QueryBuilder::<Db>::new(format!(
                "{insert} webhook_deliveries ({}, lease_token) ",
                columns::DELIVERY
            ));
            qb.push_values(chunk, |mut row, d| {
                row.push_bind(d.id.0)
                    .push_bind(d.tenant.as_str().to_owned())
                    .push_bind(d.endpoint_id.0)
                    .push_bind(d.webhook_id.clone())
                    .push_bind(d.event.clone())
                    .push_bind(d.batch_id.map(|b| b.0))
                    .push_bind(d.url.clone())
                    .push_bind(d.body.clone())
                    .push_bind(DeliveryStatus::Pending.as_str())
                    .push_bind(0i64)
                    .push_bind(0i64)
                    .push_bind(d.next_attempt_at)
                    .push_bind(None::<i64>)
                    .push_bind(None::<String>)
                    .push_bind(None::<i64>)
                    .push_bind(d.created_at)
                    .push_bind(d.created_at)
                    .push_bind(d.lease.map(|l| l.0));
            });
            qb.push(ignore);
            added += qb.build().execute(&mut *tx).await.db()?.rows_affected();
        }
        tx.commit().await.db()?;
        Ok(added)
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<ClaimedDelivery>> {
        let mut tx = dialect::begin(&self.pool).await?;
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ",
        );
        qb.push_bind(now)
            .push(" ORDER BY next_attempt_at LIMIT ")
            .push_bind(i64::from(limit.max(1)))
            .push(dialect::SKIP_LOCKED);
        let rows = qb.build().fetch_all(&mut *tx).await.db()?;
        let ids: Vec<Uuid> = rows
            .iter()
            .map(|row| row.try_get::<Uuid, _>("id"))
            .collect::<Result<_, _>>()
            .db()?;
        let claimed = lease(&mut tx, &ids, now, lease_until, false).await?;
        tx.commit().await.db()?;
        Ok(claimed)
    }

    async fn claim_delivery(
        &self,
        tenant: &TenantId,
        id: DeliveryId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<ClaimedDelivery>> {
        let mut tx = dialect::begin(&self.pool).await?;
        let mut qb = QueryBuilder::<Db>::new(
            "SELECT status, next_attempt_at, lease_token FROM webhook_deliveries WHERE id = ",
        );
        qb.push_bind(id.0)
            .push(" AND tenant = ")
            .push_bind(tenant.as_str())
            .push(dialect::FOR_UPDATE);
        let Some(row) = qb.build().fetch_optional(&mut *tx).await.db()? else {
            return Ok(None);
        };
        let status = required_text(&row, "status")?;
        let due: Option<Timestamp> = row.try_get("next_attempt_at").db()?;
        let token: Option<Uuid> = row.try_get("lease_token").db()?;
        if status == "pending" && token.is_some() && due.is_some_and(|at| at > now) {
            return Err(delivery_in_flight(id));
        }
        let mut claimed = lease(&mut tx, &[id.0], now, lease_until, true).await?;
        tx.commit().await.db()?;
        Ok(claimed.pop())
    }

    async fn record_attempt(&self, result: &AttemptResult) -> Result<bool> {
        let a = &result.attempt;
        let mut tx = dialect::begin(&self.pool).await?;
        let mut qb = QueryBuilder::<Db>::new("UPDATE webhook_deliveries SET status = ");
        qb.push_bind(result.status.as_str())
            .push(", attempts = attempts + 1, lease_token = NULL, next_attempt_at = ")
            .push_bind(result.next_attempt_at)
            .push(", last_status_code = ")
            .push_bind(a.status_code.map(i64::from))
            .push(", last_error = ")
            .push_bind(a.error.as_deref())
            .push(", last_latency_ms = ")
            .push_bind(i64::from(a.latency_ms))
            .push(", updated_at = ")
            .push_bind(result.at)
            .push(" WHERE id = ")
            .push_bind(a.delivery_id.0)
            .push(" AND lease_token = ")
            .push_bind(result.lease.0);
        if qb.build().execute(&mut *tx).await.db()?.rows_affected() == 0 {
            return Ok(false);
        }
        let mut qb = QueryBuilder::<Db>::new(format!(
            "INSERT INTO webhook_attempts ({}) VALUES (",
            columns::ATTEMPT
        ));
        let mut values = qb.separated(", ");
        values
            .push_bind(a.delivery_id.0)
            .push_bind(i64::from(a.attempt))
            .push_bind(a.started_at)
            .push_bind(i64::from(a.latency_ms))
            .push_bind(a.status_code.map(i64::from))
            .push_bind(a.error.as_deref())
            .push_bind(a.delivered);
        qb.push(")");
        qb.build().execute(&mut *tx).await.db()?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn deliveries(
        &self,
        tenant: &TenantId,
        query: &DeliveryQuery,
    ) -> Result<Vec<DeliveryRecord>> {
        let mut qb = select_deliveries("tenant = ");
        qb.push_bind(tenant.as_str());
        if let Some(endpoint) = query.endpoint_id {
            qb.push(" AND endpoint_id = ").push_bind(endpoint.0);
        }
        if let Some(batch) = query.batch_id {
            qb.push(" AND batch_id = ").push_bind(batch.0);
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(query.limit.max(1)));
        let rows = qb.build().fetch_all(&self.pool).await.db()?;
        rows.iter().map(delivery_of).collect()
    }

    async fn delivery(
        &self,
        tenant: &TenantId,
        id: DeliveryId,
    ) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        let mut qb = select_deliveries("id = ");
        qb.push_bind(id.0)
            .push(" AND tenant = ")
            .push_bind(tenant.as_str());
        let Some(row) = qb.build().fetch_optional(&self.pool).await.db()? else {
            return Ok(None);
        };
        let record = delivery_of(&row)?;
        let mut qb = QueryBuilder::<Db>::new(format!(
            "SELECT {} FROM webhook_attempts WHERE delivery_id = ",
            columns::ATTEMPT
        ));
        qb.push_bind(id.0).push(" ORDER BY attempt");
        let rows = qb.build().fetch_all(&self.pool).await.db()?;
        let attempts = rows.iter().map(attempt_of).collect::<Result<_>>()?;
        Ok(Some((record, attempts)))
    }

    async fn prune(&self, before: Timestamp) -> Result<u64> {
        const FINISHED: &str = "status IN ('delivered', 'failed') AND updated_at < ";
        let mut tx = dialect::begin(&self.pool).await?;
        let mut qb = QueryBuilder::<Db>::new(format!(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE {FINISHED}"
        ));
        qb.push_bind(before).push(")");
        qb.build().execute(&mut *tx).await.db()?;
        let mut qb =
            QueryBuilder::<Db>::new(format!("DELETE FROM webhook_deliveries WHERE {FINISHED}"));
        qb.push_bind(before);
        let deleted = qb.build().execute(&mut *tx).await.db()?.rows_affected();
        tx.commit().await.db()?;
        Ok(deleted)
    }
}
