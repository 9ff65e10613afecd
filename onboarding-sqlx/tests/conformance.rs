//! The core conformance suite (repository, queue, the guarantees with real
//! workers, the key store, the webhook store and delivery log) on every
//! engine: each case gets a fresh database, dropped
//! when the case ends. The cache is the in-memory one (this crate has none).

use onboarding_core::testing::TestBackend;
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::Engine;

mod postgres {
    use super::*;

    async fn setup() -> TestBackend {
        TestDatabase::test_backend(Engine::Postgres).await
    }

    onboarding_core::conformance_tests!(
        setup,
        [repository, queue, guarantees, imports, keys, webhooks]
    );
}

mod mysql {
    use super::*;

    async fn setup() -> TestBackend {
        TestDatabase::test_backend(Engine::MySql).await
    }

    onboarding_core::conformance_tests!(
        setup,
        [repository, queue, guarantees, imports, keys, webhooks]
    );
}

mod sqlite {
    use super::*;

    async fn setup() -> TestBackend {
        TestDatabase::test_backend(Engine::Sqlite).await
    }

    onboarding_core::conformance_tests!(
        setup,
        [repository, queue, guarantees, imports, keys, webhooks]
    );
}
