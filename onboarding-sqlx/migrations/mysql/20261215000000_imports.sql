-- File imports (CSV / NDJSON): an upload is staged here in chunks while its
-- body arrives, then turned into one batch in one transaction.
CREATE TABLE imports (
    batch_id        BINARY(16)   NOT NULL PRIMARY KEY,
    -- Compared exactly (tenant ids and keys are case sensitive).
    tenant          VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    state           VARCHAR(16)  NOT NULL,
    rows_received   BIGINT       NOT NULL DEFAULT 0,
    rows_stored     BIGINT       NOT NULL DEFAULT 0,
    rows_rejected   BIGINT       NOT NULL DEFAULT 0,
    started_at      DATETIME(6)  NOT NULL,
    -- No partial indexes here: the key only while receiving, unique.
    receiving_key   VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin AS (CASE WHEN state = 'receiving' THEN idempotency_key END) PERSISTENT,
    UNIQUE KEY imports_receiving_key (tenant, receiving_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE import_rows (
    batch_id      BINARY(16)   NOT NULL,
    line_no       BIGINT       NOT NULL,
    name          VARCHAR(255) NOT NULL,
    domain        VARCHAR(255) NOT NULL,
    contact_email VARCHAR(320) NOT NULL,
    external_id   VARCHAR(255) NULL,
    PRIMARY KEY (batch_id, line_no),
    UNIQUE KEY import_rows_domain (batch_id, domain)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE import_rejections (
    batch_id    BINARY(16)   NOT NULL,
    line_no     BIGINT       NOT NULL,
    seq         INT          NOT NULL,
    column_name VARCHAR(64)  NULL,
    code        VARCHAR(64)  NOT NULL,
    detail      TEXT         NOT NULL,
    field_value TEXT         NULL,
    external_id VARCHAR(255) NULL,
    PRIMARY KEY (batch_id, line_no, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
