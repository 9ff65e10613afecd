#![doc = include_str!("../README.md")]

mod config;
mod error;
mod local;
mod queue;
mod session;
mod topology;

pub use config::{AmqpConfig, QueueType};
pub use queue::AmqpQueue;
