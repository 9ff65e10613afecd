#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod config;
mod connect;
mod error;
mod limits;
mod queue;

pub use cache::RedisCache;
pub use config::RedisConfig;
pub use limits::{RedisLedger, RedisRateLimiter};
pub use queue::RedisQueue;
