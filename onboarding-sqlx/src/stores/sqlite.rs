//! The stores on SQLite: one writer at a time, so a write transaction
//! begins with `BEGIN IMMEDIATE` (the write lock first) and locks no rows.

super::engine!(sqlx::Sqlite, begin: Some("BEGIN IMMEDIATE"),
    skip_locked: "",
    ignore: ("INSERT INTO", " ON CONFLICT DO NOTHING"));
