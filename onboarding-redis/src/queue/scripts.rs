//! The Lua scripts (each with `lua/common.lua` in front) and how to run a
//! pipeline of them.

use std::sync::LazyLock;

use onboarding_core::Result;
use redis::{Pipeline, Script, ServerErrorKind, Value};

use crate::connect::Conn;
use crate::error::from_redis;

macro_rules! queue_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

// One Redis server: each call does all its work at once.
pub(super) static ENQUEUE: LazyLock<Script> = queue_script!("enqueue.lua");
pub(super) static ACTIVATE: LazyLock<Script> = queue_script!("activate.lua");
pub(super) static TAKE: LazyLock<Script> = queue_script!("take.lua");
pub(super) static DEPTH: LazyLock<Script> = queue_script!("depth.lua");
pub(super) static FORGET_IDLE: LazyLock<Script> = queue_script!("forget_idle.lua");

// Redis Cluster: one key group (hash slot) per call.
pub(super) static TENANT_PUSH: LazyLock<Script> = queue_script!("tenant_push.lua");
pub(super) static TENANT_TAKE: LazyLock<Script> = queue_script!("tenant_take.lua");
pub(super) static TENANT_COUNT: LazyLock<Script> = queue_script!("tenant_count.lua");
pub(super) static GLOBAL_PICK: LazyLock<Script> = queue_script!("global_pick.lua");
pub(super) static GLOBAL_REPORT: LazyLock<Script> = queue_script!("global_report.lua");

fn is_noscript(err: &redis::RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Sends a pipeline of `EVALSHA`s of `scripts` in one round trip. When the
/// server lacks a script (it restarted), no call ran: load them, send again.
pub(super) async fn run_pipeline(
    conn: &mut Conn,
    pipe: &Pipeline,
    scripts: &[&Script],
    what: &str,
) -> Result<Vec<Value>> {
    run_pipeline_or(conn, pipe, || pipe.clone(), scripts, what).await
}

/// [`run_pipeline`] for a pipeline with other commands than `EVALSHA`s of
/// `scripts`: those ran even when the scripts were missing, so the second
/// attempt sends what `scripts_only` builds (the script calls of `pipe`),
/// built only then.
pub(super) async fn run_pipeline_or(
    conn: &mut Conn,
    pipe: &Pipeline,
    scripts_only: impl FnOnce() -> Pipeline,
    scripts: &[&Script],
    what: &str,
) -> Result<Vec<Value>> {
    match pipe.query_async::<Vec<Value>>(conn).await {
        Ok(values) => Ok(values),
        Err(e) if is_noscript(&e) => {
            for script in scripts {
                script
                    .load_async(conn)
                    .await
                    .map_err(|e| from_redis(what, e))?;
            }
            scripts_only()
                .query_async(conn)
                .await
                .map_err(|e| from_redis(what, e))
        }
        Err(e) => Err(from_redis(what, e)),
    }
}
