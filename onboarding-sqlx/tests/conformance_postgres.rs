//! The core conformance suite (repository, queue, guarantees with real
//! workers), then the key store, webhook store and delivery log cases, on
//! postgres: each case gets its own fresh database.
#![allow(clippy::unwrap_used)]

mod common;

async fn setup() -> onboarding_core::testing::TestBackend {
    common::postgres().await.into_test_backend()
}

onboarding_core::conformance_tests!(setup);

async fn key_store() -> onboarding_core::testing::keys::KeyBackend {
    common::postgres().await.keep().key_store()
}

onboarding_core::key_store_conformance_tests!(key_store);

async fn webhooks() -> onboarding_core::testing::webhooks::WebhookBackend {
    let backend = common::postgres().await.keep();
    onboarding_core::testing::webhooks::WebhookBackend {
        endpoints: backend.webhook_store(),
        deliveries: backend.delivery_log(),
    }
}

onboarding_core::webhook_conformance_tests!(webhooks);
