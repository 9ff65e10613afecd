//! In-memory backends (in progress).
