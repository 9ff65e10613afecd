//! The reliability suite: the real `examples/server` and `examples/worker`
//! processes against real PostgreSQL, Redis and RabbitMQ servers, with
//! faults, load and bad input. `RELIABILITY.md` lists the scenarios with
//! their commands and the counts observed; `scripts/reliability/run.sh`
//! runs them with their report lines shown.
//!
//! Server addresses come from `ONBOARDING_TEST_POSTGRES_URL`,
//! `ONBOARDING_TEST_REDIS_URL` and `ONBOARDING_TEST_AMQP_URL` (loopback by
//! default). Every scenario takes [`harness::serial`]: they assert
//! throughput and latency, which two at once on two cores would distort.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

mod harness;

mod faults;
mod http;
mod load;
mod operator;
mod privacy;
mod shared_state;
mod slow_clients;
mod workers;
