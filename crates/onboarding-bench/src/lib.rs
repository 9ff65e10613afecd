//! Benchmarks of bulk-onboarding; the code is in `benches/` (see
//! `BENCHMARKS.md` at the repository root). This crate is not published:
//! it keeps the benchmark-only dependencies (criterion, apalis and its
//! sqlx 0.9, the database drivers for the raw floors) out of the library's
//! and the examples' builds, and `cargo bench` at the repository root runs
//! it because it is a default workspace member.
