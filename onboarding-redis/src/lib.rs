#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod config;
mod connect;
mod error;
mod limits;
mod queue;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use cache::RedisCache;
pub use config::RedisConfig;
pub use limits::{RedisLedger, RedisRateLimiter};
pub use queue::RedisQueue;
