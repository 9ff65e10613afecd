-- Timestamps are RFC 3339 text as sqlx writes them (UTC, fixed offset), which sorts by time.
CREATE TABLE organizations (
    id            BLOB    PRIMARY KEY,
    name          TEXT    NOT NULL,
    domain        TEXT    NOT NULL,
    contact_email TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    deleted_at    TEXT
);
CREATE UNIQUE INDEX organizations_domain ON organizations (domain);

CREATE TABLE batches (
    id              BLOB    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    idempotency_key TEXT,
    request_hash    TEXT    NOT NULL,
    total           INTEGER NOT NULL,
    policy          TEXT    NOT NULL,
    mode            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    completed_at    TEXT,
    cancelled_at    TEXT,
    announced_at    TEXT
);
CREATE UNIQUE INDEX batches_idempotency ON batches (tenant, idempotency_key);
CREATE INDEX batches_open ON batches (created_at) WHERE completed_at IS NULL;
CREATE INDEX batches_completed ON batches (completed_at);

CREATE TABLE batch_items (
    id              BLOB    PRIMARY KEY,
    batch_id        BLOB    NOT NULL,
    tenant          TEXT    NOT NULL,
    position        INTEGER NOT NULL,
    organization_id BLOB    NOT NULL,
    domain          TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    change_kind     TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    available_at    TEXT    NOT NULL,
    lease_until     TEXT,
    lease_token     BLOB,
    sweep_at        TEXT    NOT NULL,
    errors          TEXT    NOT NULL DEFAULT '[]',
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    finished_at     TEXT
);
CREATE UNIQUE INDEX batch_items_position ON batch_items (batch_id, position);
CREATE INDEX batch_items_sweep_pending ON batch_items (sweep_at) WHERE status = 'pending';
CREATE INDEX batch_items_processing ON batch_items (sweep_at) WHERE status = 'processing';

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id      BLOB    NOT NULL,
    tenant       TEXT    NOT NULL,
    available_at TEXT    NOT NULL,
    leased_until TEXT,
    not_before   TEXT
);
CREATE INDEX jobs_available ON jobs (available_at);
