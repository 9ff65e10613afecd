//! Focused repository and queue cases on postgres.
#![allow(clippy::unwrap_used)]

mod common;

all_engine_cases!(common::postgres);
