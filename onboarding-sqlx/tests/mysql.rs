//! Focused repository and queue cases on mysql.
#![allow(clippy::unwrap_used)]

mod common;

all_engine_cases!(common::mysql);
