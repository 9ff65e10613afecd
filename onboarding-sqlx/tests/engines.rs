//! What only SQL shows, on every engine: the rows a trait call leaves
//! behind, and statements split by the engine's bind-parameter limit. The
//! behavior every backend shares is the conformance suite's
//! (`conformance.rs`). Each test gets a fresh database, dropped at its end.
#![allow(clippy::unwrap_used)]

use onboarding_core::model::{now, BatchId, Change, ConflictPolicy};
use onboarding_core::testing::fixtures::{self, secs};
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::{Engine, SqlBackend};
use sqlx::Connection;

/// A PostgreSQL connection of its own to `backend`'s database.
async fn pg_connection(backend: &SqlBackend) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(backend.url().expose())
        .await
        .unwrap()
}

/// Rows of `batch_items` left for `batch`, read with a connection of its own
/// (what no trait method can show: orphaned rows).
async fn item_rows(backend: &SqlBackend, batch: BatchId) -> i64 {
    let url = backend.url().expose();
    let sql = "SELECT COUNT(*) FROM batch_items WHERE batch_id = ";
    match backend.engine() {
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(&format!("{sql}$1"))
                .bind(batch.0)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        Engine::MySql => {
            let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
            sqlx::query_scalar(&format!("{sql}?"))
                .bind(batch.0)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
        _ => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(&format!("{sql}?"))
                .bind(batch.0)
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }
}

/// Pruning a batch deletes its items too (PostgreSQL has no foreign key to
/// cascade: the adapter deletes them itself).
async fn pruning_leaves_no_item_rows(backend: SqlBackend) {
    let repo = &*backend.repository();
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 4, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    fixtures::process(repo, &fixtures::ids(&items), t0).await;
    assert_eq!(
        repo.complete_batches(&[batch.id], t0).await.unwrap().len(),
        1
    );
    assert_eq!(item_rows(&backend, batch.id).await, 4);
    assert!(repo.prune(t0 + secs(1), 100).await.unwrap() >= 1);
    assert!(repo
        .batch_status(&tenant, batch.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(item_rows(&backend, batch.id).await, 0, "no item rows left");
}

/// Submissions larger than one statement's bind parameters allow are split
/// (chunk sizes below and above the engine's limit), upserts included.
async fn large_submission_is_chunked(backend: SqlBackend) {
    const N: usize = 2_500;
    let repo = &*backend.repository();
    let tenant = fixtures::tenant();
    let mut first = fixtures::submission(&tenant, N, ConflictPolicy::Update);
    first.chunk_size = 700;
    let (_, items) = fixtures::store(repo, &first).await;
    assert_eq!(items.len(), N);
    // The same domains again, every other one renamed, in one chunk as
    // large as the whole request.
    let organizations = fixtures::organizations_of(&first)
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if i % 2 == 0 {
                fixtures::renamed(o)
            } else {
                o.clone()
            }
        })
        .collect();
    let mut second = fixtures::submission_at(&tenant, organizations, ConflictPolicy::Update, now());
    second.chunk_size = 5_000;
    let (batch, items) = fixtures::store(repo, &second).await;
    let updated = items.iter().filter(|i| i.change == Change::Updated).count();
    assert_eq!(updated, N / 2);
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(
        (status.counts.updated, status.counts.unchanged),
        (1_250, 1_250)
    );
    assert_eq!(fixtures::all_items(repo, &tenant, batch.id).await.len(), N);
    fixtures::cancel_quietly(repo, &tenant, &[first.batch_id, batch.id]).await;
}

/// One `#[tokio::test]` per case above on `$engine`, in module `$name`.
macro_rules! engine_tests {
    ($name:ident, $engine:expr) => {
        mod $name {
            use super::*;

            async fn run<F: std::future::Future<Output = ()>>(case: fn(SqlBackend) -> F) {
                let db = TestDatabase::create($engine).await;
                let backend = db.connect(TestDatabase::options()).await;
                case(backend.clone()).await;
                backend.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pruning_leaves_no_item_rows() {
                run(super::pruning_leaves_no_item_rows).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn large_submission_is_chunked() {
                run(super::large_submission_is_chunked).await;
            }
        }
    };
}

engine_tests!(postgres, Engine::Postgres);
engine_tests!(mysql, Engine::MySql);
engine_tests!(sqlite, Engine::Sqlite);

/// PostgreSQL's queue refreshes the planner's statistics of `jobs` after a
/// burst of enqueues: without them a dequeue behind a deep backlog is
/// planned as a scan and sort of every job of the tenant (`PgQueue`'s
/// `Statistics`). Counted by `pg_stat_user_tables.analyze_count`, which
/// only an explicit `ANALYZE` moves (autovacuum has its own counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue_analyzes_jobs_after_a_burst() {
    use onboarding_core::model::ItemId;
    use onboarding_core::Job;

    let db = TestDatabase::create(Engine::Postgres).await;
    let backend = db.connect(TestDatabase::options()).await;
    let queue = backend.queue();
    let analyzed = || async {
        let mut c = pg_connection(&backend).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'jobs'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        n
    };
    let before = analyzed().await;
    let tenant = fixtures::tenant();
    let jobs: Vec<Job> = (0..1_000)
        .map(|_| Job {
            item_id: ItemId::new(),
            tenant: tenant.clone(),
            not_before: None,
        })
        .collect();
    for _ in 0..9 {
        queue.enqueue(&jobs).await.unwrap();
    }
    assert_eq!(analyzed().await, before, "9,000 jobs: not yet");
    queue.enqueue(&jobs).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // The statistics collector reports with a delay: poll.
        if analyzed().await > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ANALYZE of jobs within 20 s of the 10,000th enqueued job"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    backend.close().await;
}

/// PostgreSQL counts finished items per (tenant, second) in
/// `throughput_seconds`; a prune takes its items' counts away and deletes
/// the counters it emptied, so the table does not keep a row per second
/// of history forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_prune_deletes_the_counters_it_empties() {
    let db = TestDatabase::create(Engine::Postgres).await;
    let backend = db.connect(TestDatabase::options()).await;
    let repo = backend.repository();
    let tenant = fixtures::tenant();
    let t = fixtures::time_in_past(2010);
    let open = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    fixtures::store(&*repo, &open).await;
    // Skipped on arrival at `t`: completed, counted at `t`.
    let skip = fixtures::submission_at(
        &tenant,
        fixtures::organizations_of(&open),
        ConflictPolicy::Skip,
        t,
    );
    fixtures::store(&*repo, &skip).await;
    let counters = || async {
        let mut c = pg_connection(&backend).await;
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT second, completed FROM throughput_seconds WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_all(&mut c)
                .await
                .unwrap();
        rows
    };
    assert_eq!(
        counters().await,
        vec![(t.timestamp(), 3)],
        "counted at arrival"
    );
    // Counted on a shard no connection's prune lands on (shards are a
    // backend's pid modulo 8): the prune's removal goes to another row, as
    // it does whenever the prune runs on another connection than the count.
    let mut c = pg_connection(&backend).await;
    sqlx::query("UPDATE throughput_seconds SET shard = 100 WHERE tenant = $1")
        .bind(tenant.as_str())
        .execute(&mut c)
        .await
        .unwrap();
    assert_eq!(repo.prune(t + secs(1), 1000).await.unwrap(), 1);
    assert_eq!(
        counters().await,
        vec![],
        "the emptied counter is gone, with the shard that emptied it"
    );
    backend.close().await;
}

/// A re-drive on PostgreSQL, where an organization's status is its latest
/// item's: an organization whose latest item is gone (pruned, or last
/// written before `latest_item` existed, as here) follows the re-driven
/// item, so its status ends `completed` when that item completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_redrive_of_an_unlinked_organization_follows_its_item() {
    use onboarding_core::model::ItemStatus;
    use onboarding_core::repository::Resolution;

    let db = TestDatabase::create(Engine::Postgres).await;
    let backend = db.connect(TestDatabase::options()).await;
    let repo = backend.repository();
    let tenant = fixtures::tenant();
    let s = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let (batch, items) = fixtures::store(&*repo, &s).await;
    let ids = fixtures::ids(&items);
    let claimed = fixtures::claim(&*repo, &ids, now()).await;
    let failure = Resolution::Failed {
        error: "crm_down: no answer".into(),
        permanent: true,
    };
    fixtures::finish(&*repo, &fixtures::leases(&claimed), failure, now()).await;
    // The row as the migration leaves one whose work had all finished.
    let mut c = pg_connection(&backend).await;
    sqlx::query("UPDATE organizations SET latest_item = NULL, status = 'failed' WHERE tenant = $1")
        .bind(tenant.as_str())
        .execute(&mut c)
        .await
        .unwrap();
    let domain = &s.organizations[0].1.domain;
    let redriven = repo
        .retry_items(&tenant, batch.id, &ids, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redriven.len(), 1);
    fixtures::process(&*repo, &ids, now()).await;
    let org = fixtures::stored_organization(&*repo, &tenant, domain).await;
    assert_eq!(
        org.status,
        ItemStatus::Completed,
        "the re-driven item decides"
    );
    backend.close().await;
}
