//! Focused repository and queue cases on sqlite.
#![allow(clippy::unwrap_used)]

mod common;

all_engine_cases!(common::sqlite);
