//! The stores on MySQL / MariaDB (10.6+).

super::engine!(sqlx::MySql, begin: None::<&str>,
    skip_locked: " FOR UPDATE SKIP LOCKED",
    ignore: ("INSERT IGNORE INTO", ""));
