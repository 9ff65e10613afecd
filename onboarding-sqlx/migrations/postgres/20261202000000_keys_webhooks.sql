-- Tenants and API keys (only SHA-256 hashes of keys are stored).
CREATE TABLE tenants (
    id         text        PRIMARY KEY,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id         uuid        PRIMARY KEY,
    tenant     text        NOT NULL,
    prefix     text        NOT NULL,
    key_hash   bytea       NOT NULL,
    label      text,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (key_hash);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Webhook endpoints per tenant, with their signing secrets.
CREATE TABLE webhook_endpoints (
    id                    uuid        PRIMARY KEY,
    tenant                text        NOT NULL,
    url                   text        NOT NULL,
    events                text        NOT NULL,
    secret                text        NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant, created_at);

-- The outbox: one delivery per endpoint and event, and every attempt.
CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    tenant           text        NOT NULL,
    endpoint_id      uuid        NOT NULL,
    webhook_id       text        NOT NULL,
    event            text        NOT NULL,
    batch_id         uuid,
    url              text        NOT NULL,
    body             text        NOT NULL,
    status           text        NOT NULL,
    attempts         bigint      NOT NULL,
    round_start      bigint      NOT NULL,
    next_attempt_at  timestamptz,
    lease_token      uuid,
    last_status_code bigint,
    last_error       text,
    last_latency_ms  bigint,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (endpoint_id, webhook_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, created_at);

CREATE TABLE webhook_attempts (
    delivery_id uuid        NOT NULL,
    attempt     bigint      NOT NULL,
    started_at  timestamptz NOT NULL,
    latency_ms  bigint      NOT NULL,
    status_code bigint,
    error       text,
    delivered   boolean     NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
