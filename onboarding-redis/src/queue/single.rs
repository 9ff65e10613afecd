//! The queue on one Redis server: every operation is one script call that
//! moves entries between the global group and the tenant groups atomically.

use std::collections::HashMap;
use std::time::Duration;

use onboarding_core::{Job, QueueDepth, Receipt, Result};

use super::keys::{by_tenant, due_ms, encode, Keys};
use super::scripts::{run_pipeline, DEPTH, ENQUEUE, FORGET_IDLE, TAKE};
use super::{forget_deliveries, Taken, ENQUEUE_CHUNK, MOVE_LIMIT};
use crate::connect::Conn;
use crate::error::from_redis;

/// A tenant's entries of one enqueue: the ready ones, and the delayed ones
/// with their due time (ms).
type TenantEntries<'a> = (&'a str, Vec<String>, Vec<(i64, String)>);

/// All jobs in one round trip (one script call per `ENQUEUE_CHUNK` jobs),
/// grouped by tenant, ready ones apart from delayed ones (`enqueue.lua`).
pub(super) async fn enqueue(conn: &mut Conn, keys: &Keys, jobs: &[Job]) -> Result<()> {
    let mut pipe = redis::pipe();
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        pipe.cmd("EVALSHA")
            .arg(ENQUEUE.get_hash())
            .arg(keys.global().len())
            .arg(&keys.global()[..])
            .arg(keys.tenant_head());
        // Tenants in their first job's order; a submission has one.
        let mut tenants: Vec<TenantEntries<'_>> = Vec::new();
        let mut places: HashMap<&str, usize> = HashMap::new();
        for job in chunk {
            let tenant = job.tenant.as_str();
            let at = *places.entry(tenant).or_insert_with(|| {
                tenants.push((tenant, Vec::new(), Vec::new()));
                tenants.len() - 1
            });
            let Some((_, ready, delayed)) = tenants.get_mut(at) else {
                continue;
            };
            match due_ms(job) {
                0 => ready.push(encode(job)?),
                due => delayed.push((due, encode(job)?)),
            }
        }
        for (tenant, ready, delayed) in &tenants {
            pipe.arg(*tenant).arg(ready.len()).arg(delayed.len());
            for entry in ready {
                pipe.arg(entry);
            }
            for (due, entry) in delayed {
                pipe.arg(*due).arg(entry);
            }
        }
    }
    run_pipeline(conn, &pipe, &ENQUEUE, "enqueue").await?;
    Ok(())
}

/// Moves due entries, then takes up to `max` round-robin across tenants.
pub(super) async fn take(
    conn: &mut Conn,
    keys: &Keys,
    max: usize,
    visibility_ms: u64,
    nonce: &str,
) -> Result<Taken> {
    let (wake, flat): (i64, Vec<String>) = TAKE
        .prepare_invoke()
        .key(&keys.global()[..])
        .arg(keys.tenant_head())
        .arg(MOVE_LIMIT)
        .arg(max)
        .arg(visibility_ms)
        .arg(nonce)
        .invoke_async(conn)
        .await
        .map_err(|e| from_redis("dequeue", e))?;
    Ok(Taken {
        entries: pairs(flat),
        wake: u64::try_from(wake).ok().map(Duration::from_millis),
        again: false,
    })
}

pub(super) async fn depth(conn: &mut Conn, keys: &Keys) -> Result<QueueDepth> {
    let (ready, delayed, in_flight): (u64, u64, u64) = DEPTH
        .prepare_invoke()
        .key(&keys.global()[..])
        .arg(keys.tenant_head())
        .invoke_async(conn)
        .await
        .map_err(|e| from_redis("depth", e))?;
    Ok(QueueDepth {
        ready,
        delayed,
        in_flight,
    })
}

/// Forgets the deliveries in one round trip: `ZREM` + `HDEL` per tenant
/// group, then one script call that drops the timers of tenants left with
/// nothing delayed or in flight.
pub(super) async fn ack(conn: &mut Conn, keys: &Keys, receipts: &[Receipt]) -> Result<()> {
    let mut pipe = redis::pipe();
    let by_tenant = by_tenant(receipts);
    for (tenant, ids) in &by_tenant {
        forget_deliveries(&mut pipe, keys, tenant, ids);
    }
    if by_tenant.is_empty() {
        return Ok(());
    }
    pipe.cmd("EVALSHA")
        .arg(FORGET_IDLE.get_hash())
        .arg(keys.global().len())
        .arg(&keys.global()[..])
        .arg(keys.tenant_head())
        .arg(by_tenant.keys().collect::<Vec<_>>())
        .ignore();
    run_pipeline(conn, &pipe, &FORGET_IDLE, "ack").await?;
    Ok(())
}

/// `[a, b, c, d]` → `[(a, b), (c, d)]`.
pub(super) fn pairs(flat: Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(a), Some(b)) = (items.next(), items.next()) {
        out.push((a, b));
    }
    out
}
