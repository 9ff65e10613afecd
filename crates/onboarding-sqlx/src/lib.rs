//! bulk-onboarding: PostgreSQL, MySQL/MariaDB and SQLite repository and SQL job queue (see its issue; not yet built).
//!
//! This crate is a placeholder in the workspace so the facade's feature
//! exists; its implementation lands with its own issue.
