//! The recovery runbook (`OPERATIONS.md`) carried out against real engines:
//! the scripts of `scripts/ops/` back up live deployments, the backups are
//! restored into new deployments that serve every batch, and a queue that
//! loses all its data loses no work (the sweeper refills it).
//!
//! PostgreSQL runs as clusters of the test's own (`PostgresCluster`: a
//! primary with WAL archiving, and servers started from its backups);
//! SQLite in files; Redis under a key prefix of the shared server.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use onboarding::model::{BatchId, BatchStatus, TenantId};
use onboarding::repository::OrgRepository;
use onboarding::{
    BackendUrls, Backends, IngestConfig, OnboardingService, SubmitOptions, Worker, WorkerConfig,
};
use onboarding_core::testing::eventually;
use onboarding_core::testing::guarantees::ScriptedProcessor;
use onboarding_core::testing::namespace::{unique_name, Cleanup};
use onboarding_sqlx::testing::{PostgresCluster, TestDatabase};
use onboarding_sqlx::Engine;

const ORGANIZATIONS_PER_BATCH: usize = 20;

/// Runs `scripts/ops/<name> args…`, prints and returns its output.
fn run_script(name: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts/ops")
        .join(name);
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("$ scripts/ops/{name} {}\n{text}", args.join(" "));
    assert!(out.status.success(), "{name} failed: {text}");
    text
}

fn tenant() -> TenantId {
    TenantId::parse("recovery").unwrap()
}

/// Submits `batches` batches of fresh organizations; their ids.
async fn submit(service: &OnboardingService, batches: usize) -> Vec<BatchId> {
    let mut ids = Vec::new();
    for _ in 0..batches {
        let body = onboarding_core::testing::requests::request_json(
            &uuid::Uuid::new_v4().simple().to_string()[..12],
            0..ORGANIZATIONS_PER_BATCH,
        );
        let accepted = service
            .submit_json(&tenant(), &body, SubmitOptions::default())
            .await
            .unwrap();
        ids.push(accepted.batch_id);
    }
    ids
}

async fn status(repository: &dyn OrgRepository, batch: BatchId) -> Option<BatchStatus> {
    repository.batch_status(&tenant(), batch).await.unwrap()
}

/// A worker that finishes restored work fast: short leases, a sweep every 200 ms.
fn quick_worker(backends: Backends) -> onboarding::WorkerHandle {
    let config = WorkerConfig::default()
        .with_lease(Duration::from_secs(2))
        .with_sweep(Duration::from_millis(200), Duration::from_secs(1))
        .with_poll_wait(Duration::from_millis(50));
    Worker::new(backends, ScriptedProcessor::new(), config).start()
}

/// Waits until every listed batch is finished with all its items completed.
async fn until_all_completed(repository: &dyn OrgRepository, batches: &[BatchId]) {
    until_all_completed_within(repository, batches, Duration::from_secs(120)).await;
}

fn sqlite_file(url: &str) -> PathBuf {
    let path = url.trim_start_matches("sqlite://");
    PathBuf::from(path.split('?').next().unwrap())
}

/// A file path for a restored database, removed (with `-wal`, `-shm`) when the guard drops.
fn scratch_file(label: &str) -> (PathBuf, Cleanup) {
    let path = std::env::temp_dir().join(format!("{}.db", unique_name(label)));
    let remove = path.clone();
    let cleanup = Cleanup::new(move || async move {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", remove.display()));
        }
    });
    (path, cleanup)
}

/// SQLite: `VACUUM INTO` while a worker writes, then a new deployment on the
/// copy keeps every batch and finishes the work that was open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_online_backup_restores_every_batch_into_a_new_deployment() {
    let database = TestDatabase::create(Engine::Sqlite).await;
    let live = BackendUrls::new(database.url(), "database", "memory")
        .connect()
        .await
        .unwrap();
    // Open items of the backup are swept 2 s after submission, not 60 s.
    let service = OnboardingService::new(
        live.clone(),
        IngestConfig::default().with_stale_after(Duration::from_secs(2)),
    );
    let batches = submit(&service, 5).await;
    let worker = quick_worker(live.clone());
    // Online: the worker is claiming and finishing items during the copy.
    let (backup, _remove_backup) = scratch_file("sqlite_backup");
    let source = sqlite_file(database.url());
    let (source_arg, backup_arg) = (source.display().to_string(), backup.display().to_string());
    let output = tokio::task::spawn_blocking(move || {
        run_script("sqlite-backup.sh", &[&source_arg, &backup_arg])
    })
    .await
    .unwrap();
    assert!(output.contains("integrity: ok"), "{output}");
    assert!(
        output.contains(&format!("batches: {}", batches.len())),
        "{output}"
    );
    worker.shutdown().await;

    let restored = BackendUrls::new(
        format!("sqlite://{}?mode=rw", backup.display()),
        "database",
        "memory",
    )
    .connect()
    .await
    .unwrap();
    for &batch in &batches {
        let s = status(&*restored.repository, batch).await;
        assert_eq!(
            s.map(|s| s.counts.total() as usize),
            Some(ORGANIZATIONS_PER_BATCH),
            "batch {batch} restored whole"
        );
    }
    let worker = quick_worker(restored.clone());
    until_all_completed(&*restored.repository, &batches).await;
    worker.shutdown().await;
}

/// PostgreSQL: `pg_basebackup` of a live primary; a server started from the
/// backup alone serves what was committed before it, and one restored from
/// the backup plus the archived WAL also what was committed after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_base_backup_and_archived_wal_restore_every_batch() {
    let primary = tokio::task::spawn_blocking(PostgresCluster::start_primary)
        .await
        .unwrap();
    let admin = primary.create_database("onboarding").await;
    let live = BackendUrls::new(primary.url("onboarding"), "database", "memory")
        .connect()
        .await
        .unwrap();
    // Open items of the backup are swept 2 s after submission, not 60 s.
    let service = OnboardingService::new(
        live.clone(),
        IngestConfig::default().with_stale_after(Duration::from_secs(2)),
    );
    let before = submit(&service, 3).await;

    let backup_dir = RemoveDir(PostgresCluster::new_dir().unwrap());
    let conninfo = format!("host=127.0.0.1 port={} user=postgres", primary.port());
    let target = backup_dir.0.join("base").display().to_string();
    let output = tokio::task::spawn_blocking({
        let target = target.clone();
        move || run_script("pg-base-backup.sh", &[&conninfo, &target])
    })
    .await
    .unwrap();
    assert!(output.contains("backup successfully verified"), "{output}");

    // Written after the backup: only the archived WAL has them.
    let after = submit(&service, 2).await;
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&admin)
        .await
        .unwrap();
    eventually(
        "the WAL segment to be archived",
        Duration::from_secs(30),
        || {
            let (admin, segment) = (admin.clone(), segment.clone());
            async move {
                let last: Option<String> =
                    sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
                        .fetch_one(&admin)
                        .await
                        .ok()?;
                last.filter(|last| *last >= segment)
            }
        },
    )
    .await;

    // 1. The base backup alone, copied into a new data directory.
    let base_only = PostgresCluster::new_dir().unwrap();
    let status_ok = Command::new("cp")
        .arg("-a")
        .arg(&target)
        .arg(base_only.join("data"))
        .status()
        .unwrap();
    assert!(status_ok.success());
    let from_base = tokio::task::spawn_blocking(move || PostgresCluster::start_from(base_only, ""))
        .await
        .unwrap();
    let restored = BackendUrls::new(from_base.url("onboarding"), "database", "memory")
        .connect()
        .await
        .unwrap();
    for &batch in &before {
        assert_eq!(
            status(&*restored.repository, batch).await,
            status(&*live.repository, batch).await,
            "batch {batch} as it was"
        );
    }
    for &batch in &after {
        assert_eq!(status(&*restored.repository, batch).await, None);
    }

    // 2. The base backup + the archive (scripts/ops/pg-restore.sh).
    let point_in_time = PostgresCluster::new_dir().unwrap();
    let data = point_in_time.join("data").display().to_string();
    let archive = primary.archive_dir().display().to_string();
    tokio::task::spawn_blocking({
        let (target, archive, data) = (target.clone(), archive.clone(), data.clone());
        move || run_script("pg-restore.sh", &[&target, &archive, &data])
    })
    .await
    .unwrap();
    let from_archive =
        tokio::task::spawn_blocking(move || PostgresCluster::start_from(point_in_time, ""))
            .await
            .unwrap();
    let pool = sqlx::PgPool::connect(&from_archive.url("onboarding"))
        .await
        .unwrap();
    eventually(
        "recovery to end (promoted)",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
                (!in_recovery).then_some(())
            }
        },
    )
    .await;
    pool.close().await;
    let restored = BackendUrls::new(from_archive.url("onboarding"), "database", "memory")
        .connect()
        .await
        .unwrap();
    for &batch in before.iter().chain(&after) {
        assert_eq!(
            status(&*restored.repository, batch).await,
            status(&*live.repository, batch).await,
            "batch {batch} as it was"
        );
    }
    // The restored deployment does the open work.
    let worker = quick_worker(restored.clone());
    let all: Vec<BatchId> = before.iter().chain(&after).copied().collect();
    until_all_completed(&*restored.repository, &all).await;
    worker.shutdown().await;
    admin.close().await;
}

/// A directory made by `PostgresCluster::new_dir` that holds no server,
/// removed when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Redis loses every key (FLUSH, a restart without persistence) after the
/// submissions: with the default settings every item still reaches a
/// terminal state, refilled by the sweeper once the items' `sweep_at`
/// passes (the service's `stale_after`, 60 s) at its next run (every 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_losing_every_key_loses_no_work() {
    let database = TestDatabase::create(Engine::Postgres).await;
    let prefix = onboarding_redis::testing::TestPrefix::create().await;
    let urls = BackendUrls::new(database.url(), onboarding_redis::testing::url(), "memory")
        .with_prefix(Some(prefix.prefix().to_owned()));
    let backends = urls.connect().await.unwrap();
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let batches = submit(&service, 3).await;
    let submitted = Instant::now();
    let deleted = prefix.delete_keys().await;
    assert!(deleted > 0, "the jobs were in Redis");
    let processor = ScriptedProcessor::new();
    let worker = Worker::new(backends.clone(), processor.clone(), WorkerConfig::default()).start();
    until_all_completed_within(&*backends.repository, &batches, Duration::from_secs(180)).await;
    let refilled_after = submitted.elapsed();
    worker.shutdown().await;
    for &batch in &batches {
        for item in
            onboarding_core::testing::fixtures::all_items(&*backends.repository, &tenant(), batch)
                .await
        {
            assert_eq!(item.attempts, 1, "processed once: {}", item.domain.as_str());
        }
    }
    println!(
        "report redis-keys-lost: keys_deleted={deleted} items={} all_completed_after_ms={} (defaults: stale_after 60 s, sweep every 5 s)",
        batches.len() * ORGANIZATIONS_PER_BATCH,
        refilled_after.as_millis()
    );
}

/// [`until_all_completed`] waiting up to `within`.
async fn until_all_completed_within(
    repository: &dyn OrgRepository,
    batches: &[BatchId],
    within: Duration,
) {
    eventually("every batch to finish", within, || async {
        for &batch in batches {
            let s = status(repository, batch).await.ok_or("missing batch")?;
            if !s.is_finished() || s.counts.completed as usize != ORGANIZATIONS_PER_BATCH {
                return Err("open batch");
            }
        }
        Ok(())
    })
    .await;
}
