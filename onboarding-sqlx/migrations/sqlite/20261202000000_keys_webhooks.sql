-- Tenants and API keys (only SHA-256 hashes of keys are stored).
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    id         BLOB PRIMARY KEY,
    tenant     TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    key_hash   BLOB NOT NULL,
    label      TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Webhook endpoints per tenant, with their signing secrets.
CREATE TABLE webhook_endpoints (
    id                    BLOB PRIMARY KEY,
    tenant                TEXT NOT NULL,
    url                   TEXT NOT NULL,
    events                TEXT NOT NULL,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant, created_at);

-- The outbox: one delivery per endpoint and event, and every attempt.
CREATE TABLE webhook_deliveries (
    id               BLOB    PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    endpoint_id      BLOB    NOT NULL,
    webhook_id       TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    batch_id         BLOB,
    url              TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    round_start      INTEGER NOT NULL,
    next_attempt_at  TEXT,
    lease_token      BLOB,
    last_status_code INTEGER,
    last_error       TEXT,
    last_latency_ms  INTEGER,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (endpoint_id, webhook_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, created_at);

CREATE TABLE webhook_attempts (
    delivery_id BLOB    NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  TEXT    NOT NULL,
    latency_ms  INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    delivered   BOOLEAN NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
