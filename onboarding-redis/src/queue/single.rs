//! The queue on one Redis server: every operation is one script call that
//! moves entries between the global group and the tenant groups atomically.

use std::collections::HashMap;
use std::time::Duration;

use redis::Pipeline;

use onboarding_core::{Job, QueueDepth, Receipt, Result};

use super::keys::{by_tenant, due_ms, encode, Keys};
use super::scripts::{run_pipeline, run_pipeline_or, ACTIVATE, DEPTH, ENQUEUE, FORGET_IDLE, TAKE};
use super::{forget_deliveries, Taken, ENQUEUE_CHUNK, MOVE_LIMIT};
use crate::connect::Conn;
use crate::error::from_redis;

/// A tenant's entries of one enqueue: the ready ones, and the delayed ones
/// with their due time (ms).
type TenantEntries<'a> = (&'a str, Vec<String>, Vec<(i64, String)>);

/// All jobs in one round trip, grouped by tenant per `ENQUEUE_CHUNK` jobs.
///
/// A chunk of ready jobs only (a submission) is one plain `RPUSH` per tenant
/// and an `activate.lua` call that puts the tenant in the rotation: the
/// entries never pass through Lua. A chunk with delayed jobs is one
/// `enqueue.lua` call. The pipeline is not a transaction: a consumer
/// serving the tenant already may take the entries before the activation,
/// which is harmless (activating a tenant with an empty lane is too).
pub(super) async fn enqueue(conn: &mut Conn, keys: &Keys, jobs: &[Job]) -> Result<()> {
    let chunks = jobs
        .chunks(ENQUEUE_CHUNK)
        .map(by_tenant_ready)
        .collect::<Result<Vec<_>>>()?;
    // When the scripts were missing, the pushes ran: only the script calls
    // go again.
    run_pipeline_or(
        conn,
        &enqueue_pipeline(keys, &chunks, true),
        || enqueue_pipeline(keys, &chunks, false),
        &[&ENQUEUE, &ACTIVATE],
        "enqueue",
    )
    .await?;
    Ok(())
}

/// The commands of [`enqueue`] for `chunks` (each grouped by tenant), the
/// plain pushes only `with_pushes`.
fn enqueue_pipeline(keys: &Keys, chunks: &[Vec<TenantEntries<'_>>], with_pushes: bool) -> Pipeline {
    let mut pipe = redis::pipe();
    for tenants in chunks {
        if tenants.iter().all(|(_, _, delayed)| delayed.is_empty()) {
            for (tenant, ready, _) in tenants {
                if with_pushes {
                    let [lane, ..] = keys.tenant(tenant);
                    pipe.cmd("RPUSH").arg(lane).arg(ready);
                }
                pipe.cmd("EVALSHA")
                    .arg(ACTIVATE.get_hash())
                    .arg(keys.global().len())
                    .arg(&keys.global()[..])
                    .arg(*tenant)
                    .arg(ready.len());
            }
            continue;
        }
        pipe.cmd("EVALSHA")
            .arg(ENQUEUE.get_hash())
            .arg(keys.global().len())
            .arg(&keys.global()[..])
            .arg(keys.tenant_head());
        for (tenant, ready, delayed) in tenants {
            pipe.arg(*tenant).arg(ready.len()).arg(delayed.len());
            for entry in ready {
                pipe.arg(entry);
            }
            for (due, entry) in delayed {
                pipe.arg(*due).arg(entry);
            }
        }
    }
    pipe
}

/// `jobs` by tenant, in the order of each tenant's first job (a submission
/// has one), each tenant's ready entries apart from its delayed ones.
fn by_tenant_ready(jobs: &[Job]) -> Result<Vec<TenantEntries<'_>>> {
    let mut tenants: Vec<TenantEntries<'_>> = Vec::new();
    let mut places: HashMap<&str, usize> = HashMap::new();
    for job in jobs {
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
    Ok(tenants)
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
    run_pipeline(conn, &pipe, &[&FORGET_IDLE], "ack").await?;
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
