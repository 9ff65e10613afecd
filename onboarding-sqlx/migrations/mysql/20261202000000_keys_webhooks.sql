-- Tenants and API keys (only SHA-256 hashes of keys are stored). Binary
-- collation: tenant ids, prefixes and event ids compare exactly.
CREATE TABLE tenants (
    id         VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE api_keys (
    id         BINARY(16)    NOT NULL PRIMARY KEY,
    tenant     VARCHAR(64)   NOT NULL,
    prefix     VARCHAR(32)   NOT NULL,
    key_hash   VARBINARY(32) NOT NULL,
    label      VARCHAR(400)  NULL,
    created_at DATETIME(6)   NOT NULL,
    revoked_at DATETIME(6)   NULL,
    UNIQUE KEY api_keys_prefix (prefix),
    UNIQUE KEY api_keys_hash (key_hash),
    KEY api_keys_tenant (tenant, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Webhook endpoints per tenant, with their signing secrets.
CREATE TABLE webhook_endpoints (
    id                    BINARY(16)  NOT NULL PRIMARY KEY,
    tenant                VARCHAR(64) NOT NULL,
    url                   TEXT        NOT NULL,
    events                TEXT        NOT NULL,
    secret                TEXT        NOT NULL,
    previous_secret       TEXT        NULL,
    previous_secret_until DATETIME(6) NULL,
    created_at            DATETIME(6) NOT NULL,
    updated_at            DATETIME(6) NOT NULL,
    KEY webhook_endpoints_tenant (tenant, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The outbox: one delivery per endpoint and event, and every attempt.
CREATE TABLE webhook_deliveries (
    id               BINARY(16)   NOT NULL PRIMARY KEY,
    tenant           VARCHAR(64)  NOT NULL,
    endpoint_id      BINARY(16)   NOT NULL,
    webhook_id       VARCHAR(200) NOT NULL,
    event            VARCHAR(64)  NOT NULL,
    batch_id         BINARY(16)   NULL,
    url              TEXT         NOT NULL,
    body             MEDIUMTEXT   NOT NULL,
    status           VARCHAR(16)  NOT NULL,
    attempts         BIGINT       NOT NULL,
    round_start      BIGINT       NOT NULL,
    next_attempt_at  DATETIME(6)  NULL,
    lease_token      BINARY(16)   NULL,
    last_status_code BIGINT       NULL,
    last_error       TEXT         NULL,
    last_latency_ms  BIGINT       NULL,
    created_at       DATETIME(6)  NOT NULL,
    updated_at       DATETIME(6)  NOT NULL,
    UNIQUE KEY webhook_deliveries_event (endpoint_id, webhook_id),
    KEY webhook_deliveries_due (status, next_attempt_at),
    KEY webhook_deliveries_tenant (tenant, created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhook_attempts (
    delivery_id BINARY(16)  NOT NULL,
    attempt     BIGINT      NOT NULL,
    started_at  DATETIME(6) NOT NULL,
    latency_ms  BIGINT      NOT NULL,
    status_code BIGINT      NULL,
    error       TEXT        NULL,
    delivered   BOOLEAN     NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
