//! The harness of the reliability suite: runs `examples/server.rs` and
//! `examples/worker.rs` as real processes against real PostgreSQL, Redis
//! and RabbitMQ servers, and counts outcomes.
//!
//! - [`binaries`] builds the examples once (a no-op when fresh) and finds them;
//! - [`Proc`] is a child process killed on drop (a failing test leaves nothing behind);
//! - [`Recorder`] is the processor endpoint (`PROCESSOR_URL`): every call is a
//!   side effect recorded with its item, attempt and time, so "exactly once"
//!   is counted, not assumed; a per-scenario behavior answers 2xx/5xx/4xx with a delay;
//! - [`Pg`] is a fresh PostgreSQL database per scenario (dropped when the scenario ends);
//! - [`Deployment`] is one scenario's deployment: database, queue prefix, recorder, server, workers;
//! - [`Proxy`] is a TCP proxy that can be cut, to make a backend unreachable.
//!
//! Server addresses come from the adapters' `testing` modules
//! (`ONBOARDING_TEST_POSTGRES_URL`, `ONBOARDING_TEST_REDIS_URL`,
//! `ONBOARDING_TEST_AMQP_URL`, loopback by default). Every scenario is a
//! module beside this one; `RELIABILITY.md` lists them with their
//! commands and observed counts.

use std::sync::Mutex;

pub(crate) use onboarding_amqp::testing::url as amqp_url;
pub(crate) use onboarding_redis::testing::url as redis_url;

/// Whether the full counts run (`RELIABILITY_FULL=1`); CI runs smaller ones.
pub(crate) fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1" || v == "true")
}

/// `ci` normally, `full` with `RELIABILITY_FULL=1`.
pub(crate) fn count(ci: usize, full_count: usize) -> usize {
    if full() {
        full_count
    } else {
        ci
    }
}

/// A short random id.
pub(crate) fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Heavy scenarios of one test binary run one at a time (timings are
/// asserted; two cores).
pub(crate) async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

mod binaries;
mod processes;
mod proxy;
mod recorder;
mod report;
mod services;
mod stack;

pub(crate) use binaries::*;
pub(crate) use processes::*;
pub(crate) use proxy::*;
pub(crate) use recorder::*;
pub(crate) use report::*;
pub(crate) use services::*;
pub(crate) use stack::*;
