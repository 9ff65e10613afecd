//! The queue on Redis Cluster: no script touches two hash slots. A call
//! runs the tenant scripts on the tenants' groups (in parallel, each on its
//! own node), then reports their states to the global group, whose
//! rotation and timers follow the newest state of each tenant (the tenant
//! group's `seq` orders the reports).
//!
//! Between the two steps the global group may lag behind a tenant group;
//! the order of the steps keeps that harmless: entries are pushed before
//! their tenant is announced, a tenant about to hand out entries gets a
//! timer at their deadline before it does, and a state is only replaced by
//! a newer one. A process that dies between the steps leaves at worst a
//! tenant without its rotation entry or timer until the next report for
//! that tenant (any enqueue or take of it) — or the sweeper enqueues the
//! item again.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use onboarding_core::{Job, QueueDepth, Receipt, Result};

use super::keys::{by_tenant, due_ms, encode, Keys};
use super::scripts::{GLOBAL_PICK, GLOBAL_REPORT, TENANT_COUNT, TENANT_PUSH, TENANT_TAKE};
use super::single::pairs;
use super::{forget_deliveries, Taken, ENQUEUE_CHUNK, MOVE_LIMIT};
use crate::connect::Conn;
use crate::error::from_redis;

/// Most tenants with a due timer served by one take.
const DUE_TENANTS: usize = 32;
/// A due timer whose tenant's state is never reported fires again after this.
const DUE_RETRY_MS: u64 = 1000;

/// The state of one tenant group after a tenant script.
struct Report {
    tenant: String,
    seq: i64,
    lane_len: i64,
    next_at: i64,
}

/// Applies the reports to the global group; answers the ms until the next
/// timer (if any) and how many tenants are in the rotation.
async fn report(
    conn: &mut Conn,
    keys: &Keys,
    ready: usize,
    took_nothing: bool,
    reports: &[Report],
) -> Result<(i64, u64)> {
    let mut inv = GLOBAL_REPORT.prepare_invoke();
    inv.key(&keys.global()[..])
        .arg(ready)
        .arg(if took_nothing { "1" } else { "0" });
    for r in reports {
        inv.arg(&r.tenant).arg(r.seq).arg(r.lane_len).arg(r.next_at);
    }
    inv.invoke_async(conn)
        .await
        .map_err(|e| from_redis("reporting to the rotation", e))
}

/// Pushes each tenant's jobs to its group (in parallel), then announces
/// the tenants in the global group.
pub(super) async fn enqueue(conn: &Conn, keys: &Keys, jobs: &[Job]) -> Result<()> {
    let mut by_tenant: HashMap<&str, Vec<&Job>> = HashMap::new();
    for job in jobs {
        by_tenant.entry(job.tenant.as_str()).or_default().push(job);
    }
    let mut calls = Vec::new();
    for (tenant, jobs) in &by_tenant {
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let mut inv = TENANT_PUSH.prepare_invoke();
            inv.key(&keys.tenant(tenant)[..]);
            for job in chunk {
                inv.arg(due_ms(job)).arg(encode(job)?);
            }
            let mut conn = conn.clone();
            calls.push(async move {
                let answer: redis::RedisResult<(i64, i64, i64, i64)> =
                    inv.invoke_async(&mut conn).await;
                answer.map(|(seq, ready, lane_len, next_at)| {
                    let state = Report {
                        tenant: (*tenant).to_owned(),
                        seq,
                        lane_len,
                        next_at,
                    };
                    (state, ready)
                })
            });
        }
    }
    let mut reports = Vec::new();
    let mut ready = 0;
    let mut failed = None;
    for answer in join_all(calls).await {
        match answer {
            Ok((state, n)) => {
                ready += usize::try_from(n).unwrap_or(0);
                reports.push(state);
            }
            Err(e) => failed = Some(e),
        }
    }
    // Announce what did get in, even if some tenant's push failed.
    let announced = report(&mut conn.clone(), keys, ready, false, &reports).await;
    if let Some(e) = failed {
        return Err(from_redis("enqueue", e));
    }
    announced.map(|_| ())
}

/// Picks tenants in the global group, takes from their groups in
/// parallel, then reports their states.
pub(super) async fn take(
    conn: &Conn,
    keys: &Keys,
    max: usize,
    visibility_ms: u64,
    nonce: &str,
) -> Result<Taken> {
    let (wake, share, heads, due): (i64, usize, Vec<String>, Vec<String>) = GLOBAL_PICK
        .prepare_invoke()
        .key(&keys.global()[..])
        .arg(max)
        .arg(visibility_ms)
        .arg(DUE_TENANTS)
        .arg(DUE_RETRY_MS)
        .invoke_async(&mut conn.clone())
        .await
        .map_err(|e| from_redis("dequeue (picking tenants)", e))?;
    if heads.is_empty() && due.is_empty() {
        return Ok(Taken {
            entries: Vec::new(),
            wake: u64::try_from(wake).ok().map(Duration::from_millis),
            again: false,
        });
    }
    let head_set: HashSet<&str> = heads.iter().map(String::as_str).collect();
    let tenants = heads.iter().map(|t| (t, share)).chain(
        due.iter()
            .filter(|t| !head_set.contains(t.as_str()))
            .map(|t| (t, 0)),
    );
    let calls = tenants.map(|(tenant, n)| {
        let mut inv = TENANT_TAKE.prepare_invoke();
        inv.key(&keys.tenant(tenant)[..])
            .arg(MOVE_LIMIT)
            .arg(n)
            .arg(visibility_ms)
            .arg(format!("{tenant} {nonce}:"));
        let mut conn = conn.clone();
        async move {
            let answer: redis::RedisResult<(i64, i64, i64, Vec<String>)> =
                inv.invoke_async(&mut conn).await;
            answer.map(|(seq, lane_len, next_at, flat)| {
                let state = Report {
                    tenant: tenant.clone(),
                    seq,
                    lane_len,
                    next_at,
                };
                (state, pairs(flat))
            })
        }
    });
    let mut reports = Vec::new();
    let mut per_tenant = Vec::new();
    let mut failed = None;
    for answer in join_all(calls).await {
        match answer {
            Ok((state, taken)) => {
                reports.push(state);
                per_tenant.push(taken);
            }
            Err(e) => failed = Some(e),
        }
    }
    let entries = interleave(per_tenant);
    let reported = report(&mut conn.clone(), keys, 0, entries.is_empty(), &reports).await;
    if entries.is_empty() {
        if let Some(e) = failed {
            return Err(from_redis("dequeue", e));
        }
        let (wake, queued) = reported?;
        return Ok(Taken {
            entries,
            wake: u64::try_from(wake).ok().map(Duration::from_millis),
            again: queued > 0,
        });
    }
    if let Err(e) = reported {
        // The entries are in flight with a timer at their deadline (set
        // when picking): hand them out; the next report fixes the rest.
        tracing::warn!(error = %e, "dequeue: reporting to the rotation failed");
    }
    Ok(Taken {
        entries,
        wake: None,
        again: false,
    })
}

/// One of each tenant's entries in turn, each tenant's in their order.
fn interleave(per_tenant: Vec<Vec<(String, String)>>) -> Vec<(String, String)> {
    let total = per_tenant.iter().map(Vec::len).sum();
    let mut lanes: Vec<_> = per_tenant.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        for lane in &mut lanes {
            if let Some(pair) = lane.next() {
                out.push(pair);
            }
        }
    }
    out
}

/// Counts every tenant with something queued, each in its own group.
pub(super) async fn depth(conn: &Conn, keys: &Keys) -> Result<QueueDepth> {
    let (rotation, timers): (Vec<String>, Vec<String>) = redis::pipe()
        .cmd("ZRANGE")
        .arg(keys.rotation())
        .arg(0)
        .arg(-1)
        .cmd("ZRANGE")
        .arg(keys.timers())
        .arg(0)
        .arg(-1)
        .query_async(&mut conn.clone())
        .await
        .map_err(|e| from_redis("depth", e))?;
    let tenants: HashSet<String> = rotation.into_iter().chain(timers).collect();
    let counts = join_all(tenants.iter().map(|tenant| {
        let mut inv = TENANT_COUNT.prepare_invoke();
        inv.key(&keys.tenant(tenant)[..]);
        let mut conn = conn.clone();
        async move { inv.invoke_async::<(u64, u64, u64)>(&mut conn).await }
    }))
    .await;
    let mut depth = QueueDepth::default();
    for count in counts {
        let (ready, delayed, in_flight) = count.map_err(|e| from_redis("depth", e))?;
        depth.ready += ready;
        depth.delayed += delayed;
        depth.in_flight += in_flight;
    }
    Ok(depth)
}

/// Forgets the deliveries: per tenant group, `ZREM` + `HDEL` in one round
/// trip, all groups in parallel. A timer left behind fires once and goes.
pub(super) async fn ack(conn: &Conn, keys: &Keys, receipts: &[Receipt]) -> Result<()> {
    let calls = by_tenant(receipts).into_iter().map(|(tenant, ids)| {
        let mut pipe = redis::pipe();
        forget_deliveries(&mut pipe, keys, tenant, &ids);
        let mut conn = conn.clone();
        async move { pipe.query_async::<()>(&mut conn).await }
    });
    for answer in join_all(calls).await {
        answer.map_err(|e| from_redis("ack", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;
    use crate::connect::Connector;

    fn p(s: &str) -> (String, String) {
        (s.to_owned(), s.to_owned())
    }

    #[test]
    fn interleave_takes_one_of_each_in_turn() {
        let got = interleave(vec![vec![p("a1"), p("a2"), p("a3")], vec![p("b1")], vec![]]);
        let names: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(names, ["a1", "b1", "a2", "a3"]);
    }

    /// Needs Redis (`ONBOARDING_TEST_REDIS_URL`, default the local one): the
    /// global scripts run on one server as on a cluster node.
    #[tokio::test]
    async fn a_stale_report_never_undoes_a_newer_one() {
        let url = std::env::var("ONBOARDING_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let config =
            RedisConfig::new(url).with_prefix(format!("unit-{}", uuid::Uuid::new_v4().simple()));
        let mut conn = Connector::new(&config)
            .expect("valid URL")
            .connect(&config, Duration::from_secs(5))
            .await
            .expect("Redis must run for this test");
        let keys = Keys::new(&config.prefix);
        let state = |seq, lane_len, next_at| Report {
            tenant: "t".to_owned(),
            seq,
            lane_len,
            next_at,
        };
        let check = |reported: Report| {
            let mut conn = conn.clone();
            let keys = keys.clone();
            async move {
                report(&mut conn, &keys, 0, false, &[reported])
                    .await
                    .expect("report");
                redis::pipe()
                    .cmd("ZSCORE")
                    .arg(keys.rotation())
                    .arg("t")
                    .cmd("ZSCORE")
                    .arg(keys.timers())
                    .arg("t")
                    .query_async::<(Option<f64>, Option<f64>)>(&mut conn)
                    .await
                    .expect("read back")
            }
        };
        let (queued, timer) = check(state(5, 3, -1)).await;
        assert!(queued.is_some() && timer.is_none());
        let (queued, _) = check(state(4, 0, -1)).await;
        assert!(
            queued.is_some(),
            "an older report removed a tenant with ready entries"
        );
        assert_eq!(check(state(6, 0, 1234)).await, (None, Some(1234.0)));
        assert_eq!(
            check(state(5, 0, -1)).await,
            (None, Some(1234.0)),
            "an older report removed a timer"
        );
        assert_eq!(check(state(7, 0, -1)).await, (None, None));
        // Idle: forgotten, so a later (even restarted) counter applies again.
        assert_eq!(check(state(1, 2, -1)).await.0.map(|_| ()), Some(()));
        redis::cmd("DEL")
            .arg(&keys.global()[..])
            .query_async::<()>(&mut conn)
            .await
            .expect("cleanup");
    }
}
