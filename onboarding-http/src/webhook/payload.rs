//! What a webhook says: per event, its type, its stable id (`Webhook-Id`,
//! the same for every attempt and replay) and its JSON body.

use chrono::Utc;
use onboarding_core::model::{BatchCounts, BatchId, TenantId, Timestamp};
use onboarding_core::Event;
use serde_json::{json, Value};

/// One event, ready to deliver to every endpoint that wants it.
pub(crate) struct Message {
    pub(crate) event: &'static str,
    pub(crate) webhook_id: String,
    pub(crate) tenant: TenantId,
    pub(crate) batch_id: Option<BatchId>,
    pub(crate) body: String,
}

fn body(webhook_id: &str, event: &str, data: Value) -> String {
    json!({
        "id": webhook_id,
        "type": event,
        "created_at": Utc::now(),
        "data": data,
    })
    .to_string()
}

fn counts_json(counts: &BatchCounts) -> Value {
    json!({
        "total": counts.total(),
        "counts": {
            "completed": counts.completed,
            "failed": counts.failed,
            "cancelled": counts.cancelled,
        },
        "changes": {
            "created": counts.created,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "skipped": counts.skipped,
        },
    })
}

/// The webhook's stable id for one completion of one batch.
fn completion_id(batch: BatchId, completed_at: Timestamp) -> String {
    format!(
        "whk_{}_{}",
        batch.0.simple(),
        completed_at.timestamp_micros()
    )
}

/// The message of an event.
pub(crate) fn message(event: &Event) -> Option<Message> {
    let (name, webhook_id, tenant, batch, mut data) = match event {
        Event::BatchCompleted {
            tenant,
            batch_id,
            counts,
            completed_at,
        } => {
            let mut data = counts_json(counts);
            data["completed_at"] = json!(completed_at);
            (
                "batch.completed",
                completion_id(*batch_id, *completed_at),
                tenant,
                *batch_id,
                data,
            )
        }
        Event::OrganizationCreated {
            tenant,
            batch_id,
            organization_id,
            domain,
        }
        | Event::OrganizationUpdated {
            tenant,
            batch_id,
            organization_id,
            domain,
        } => {
            let name = if matches!(event, Event::OrganizationCreated { .. }) {
                "organization.created"
            } else {
                "organization.updated"
            };
            let id = format!(
                "whk_{}_{}_{name}",
                batch_id.0.simple(),
                organization_id.0.simple()
            );
            let data = json!({"organization_id": organization_id, "domain": domain});
            (name, id, tenant, *batch_id, data)
        }
        Event::OrganizationProcessed {
            tenant,
            batch_id,
            item_id,
            organization_id,
            domain,
        } => {
            let id = format!("whk_{}_processed", item_id.0.simple());
            let data =
                json!({"item_id": item_id, "organization_id": organization_id, "domain": domain});
            ("organization.processed", id, tenant, *batch_id, data)
        }
        Event::OrganizationFailed {
            tenant,
            batch_id,
            item_id,
            organization_id,
            domain,
            error,
        } => {
            let id = format!("whk_{}_failed", item_id.0.simple());
            let data = json!({"item_id": item_id, "organization_id": organization_id, "domain": domain, "error": error});
            ("organization.failed", id, tenant, *batch_id, data)
        }
        _ => return None,
    };
    data["batch_id"] = json!(batch);
    data["tenant"] = json!(tenant);
    Some(Message {
        event: name,
        body: body(&webhook_id, name, data),
        webhook_id,
        tenant: tenant.clone(),
        batch_id: Some(batch),
    })
}

/// A test ping for `tenant`.
pub(crate) fn ping(tenant: &TenantId) -> Message {
    let webhook_id = format!("whk_ping_{}", uuid::Uuid::now_v7().simple());
    Message {
        event: onboarding_core::webhooks::PING,
        body: body(&webhook_id, "ping", json!({"tenant": tenant})),
        webhook_id,
        tenant: tenant.clone(),
        batch_id: None,
    }
}
