//! What the benchmarks share (not benchmarks themselves): backends on fresh
//! namespaces, the workloads, and the report beside criterion's output.
//! Each benchmark is a file beside `src/`, named in `Cargo.toml`.

pub mod backends;
pub mod http;
pub mod report;
pub mod workload;
