//! Request validation (in progress).
