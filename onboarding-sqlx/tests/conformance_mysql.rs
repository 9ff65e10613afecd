//! The core conformance suite (repository, queue, guarantees with real
//! workers) on mysql: each case gets its own fresh database.
#![allow(clippy::unwrap_used)]

mod common;

async fn setup() -> onboarding_core::testing::TestBackend {
    common::mysql().await.into_test_backend()
}

onboarding_core::conformance_tests!(setup);
