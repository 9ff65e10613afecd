//! Maps driver errors to the core's [`ErrorKind`]s; the driver error stays the `source`.

use onboarding_core::{Error, ErrorKind};

/// The adapter's own errors, kept as the `source` of a core [`Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqlError {
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whether a database error means "try again" (deadlock, serialization failure, lock timeout, busy).
fn transient_code(code: &str) -> bool {
    matches!(
        code,
        // PostgreSQL: serialization_failure, deadlock_detected, lock_not_available, too many connections
        "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P03"
        // MySQL / MariaDB: deadlock, lock wait timeout, too many connections
        | "1213" | "1205" | "1040"
        // SQLite: BUSY, LOCKED (and their extended codes)
        | "5" | "6" | "261" | "262" | "517" | "773"
    )
}

impl From<SqlError> for Error {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Driver(err) => driver(err),
            SqlError::Migrate(err) => {
                Error::new(ErrorKind::Internal, "database migration failed").with_source(err)
            }
        }
    }
}

/// Converts a driver error into a core error a caller can act on.
pub(crate) fn driver(err: sqlx::Error) -> Error {
    use sqlx::Error as E;
    match &err {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
            Error::unavailable("the database cannot be reached", SqlError::Driver(err))
        }
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            #[cfg(feature = "mysql")]
            let mysql_transient = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|m| matches!(m.number(), 1213 | 1205 | 1040));
            #[cfg(not(feature = "mysql"))]
            let mysql_transient = false;
            if transient_code(&code) || mysql_transient {
                Error::unavailable(
                    "the database refused the operation for now",
                    SqlError::Driver(err),
                )
            } else if db.is_unique_violation() {
                Error::new(ErrorKind::Conflict, "a unique constraint was violated")
                    .with_source(SqlError::Driver(err))
            } else {
                Error::new(ErrorKind::Internal, "the database rejected a statement")
                    .with_source(SqlError::Driver(err))
            }
        }
        _ => Error::new(ErrorKind::Internal, "database driver error")
            .with_source(SqlError::Driver(err)),
    }
}

/// `?`-friendly conversion for driver results.
pub(crate) trait DbResultExt<T> {
    /// Maps the driver error with [`driver`].
    fn db(self) -> onboarding_core::Result<T>;
}

impl<T> DbResultExt<T> for Result<T, sqlx::Error> {
    fn db(self) -> onboarding_core::Result<T> {
        self.map_err(driver)
    }
}

/// Whether `err` is a unique-constraint violation.
#[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Begins a transaction in a task of its own, so that dropping the caller's
/// future cannot interrupt it half-way.
///
/// A `begin` cancelled after the driver counted the transaction but before
/// the caller received it leaves the pooled connection inside a transaction
/// nobody owns; every later `begin` on that connection then fails
/// (`InvalidSavePointStatement`, seen with SQLite's `BEGIN IMMEDIATE` waiting
/// for the write lock). Run to completion, the transaction is handed over,
/// or dropped (rolled back) when nobody waits for it any more.
#[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
pub(crate) async fn begin_detached<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    statement: Option<&'static str>,
) -> onboarding_core::Result<sqlx::Transaction<'static, DB>> {
    let pool = pool.clone();
    let begin = tokio::spawn(async move {
        match statement {
            Some(sql) => pool.begin_with(sql).await,
            None => pool.begin().await,
        }
    });
    match begin.await {
        Ok(tx) => tx.db(),
        Err(e) => Err(onboarding_core::Error::internal(format!(
            "the task beginning a transaction ended abnormally: {e}"
        ))),
    }
}
