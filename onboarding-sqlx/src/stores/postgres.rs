//! The stores on PostgreSQL.

super::engine!(sqlx::Postgres, begin: None::<&str>,
    skip_locked: " FOR UPDATE SKIP LOCKED",
    ignore: ("INSERT INTO", " ON CONFLICT DO NOTHING"));
