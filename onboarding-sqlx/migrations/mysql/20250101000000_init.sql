CREATE TABLE organizations (
    id            BINARY(16)   NOT NULL PRIMARY KEY,
    name          VARCHAR(255) NOT NULL,
    domain        VARCHAR(255) NOT NULL,
    contact_email VARCHAR(320) NOT NULL,
    status        VARCHAR(16)  NOT NULL,
    version       BIGINT       NOT NULL,
    created_at    DATETIME(6)  NOT NULL,
    updated_at    DATETIME(6)  NOT NULL,
    deleted_at    DATETIME(6)  NULL,
    UNIQUE KEY organizations_domain (domain)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE batches (
    id              BINARY(16)   NOT NULL PRIMARY KEY,
    tenant          VARCHAR(64)  NOT NULL,
    idempotency_key VARCHAR(255) NULL,
    request_hash    CHAR(64)     NOT NULL,
    total           BIGINT       NOT NULL,
    policy          VARCHAR(16)  NOT NULL,
    mode            VARCHAR(16)  NOT NULL,
    created_at      DATETIME(6)  NOT NULL,
    completed_at    DATETIME(6)  NULL,
    cancelled_at    DATETIME(6)  NULL,
    announced_at    DATETIME(6)  NULL,
    UNIQUE KEY batches_idempotency (tenant, idempotency_key),
    KEY batches_completed (completed_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE batch_items (
    id              BINARY(16)   NOT NULL PRIMARY KEY,
    batch_id        BINARY(16)   NOT NULL,
    tenant          VARCHAR(64)  NOT NULL,
    position        BIGINT       NOT NULL,
    organization_id BINARY(16)   NOT NULL,
    domain          VARCHAR(255) NOT NULL,
    status          VARCHAR(16)  NOT NULL,
    change_kind     VARCHAR(16)  NOT NULL,
    attempts        BIGINT       NOT NULL DEFAULT 0,
    available_at    DATETIME(6)  NOT NULL,
    lease_until     DATETIME(6)  NULL,
    lease_token     BINARY(16)   NULL,
    sweep_at        DATETIME(6)  NOT NULL,
    errors          LONGTEXT     NOT NULL,
    created_at      DATETIME(6)  NOT NULL,
    updated_at      DATETIME(6)  NOT NULL,
    finished_at     DATETIME(6)  NULL,
    UNIQUE KEY batch_items_position (batch_id, position),
    KEY batch_items_sweep (status, sweep_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE jobs (
    id           BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    item_id      BINARY(16)  NOT NULL,
    tenant       VARCHAR(64) NOT NULL,
    available_at DATETIME(6) NOT NULL,
    leased_until DATETIME(6) NULL,
    not_before   DATETIME(6) NULL,
    KEY jobs_available (available_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
