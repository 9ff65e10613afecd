//! The core conformance suite (repository, queue, guarantees with real
//! workers) on sqlite: each case gets its own fresh database.
#![allow(clippy::unwrap_used)]

mod common;

async fn setup() -> onboarding_core::testing::TestBackend {
    common::sqlite().await.into_test_backend()
}

onboarding_core::conformance_tests!(setup);
