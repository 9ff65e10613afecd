-- File imports (CSV / NDJSON): an upload is staged here in chunks while its
-- body arrives, then turned into one batch in one transaction.
-- `imports`: one row per upload, its state and counters (progress while uploading).
CREATE TABLE imports (
    batch_id        uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    idempotency_key text,
    state           text        NOT NULL,
    rows_received   bigint      NOT NULL DEFAULT 0,
    rows_stored     bigint      NOT NULL DEFAULT 0,
    rows_rejected   bigint      NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL
);
-- One upload per key while it arrives (a retry in progress answers 409).
CREATE UNIQUE INDEX imports_receiving_key ON imports (tenant, idempotency_key) WHERE state = 'receiving';

-- The valid rows: kept after the batch is stored (line and external_id of each item).
CREATE TABLE import_rows (
    batch_id      uuid   NOT NULL,
    line_no       bigint NOT NULL,
    name          text   NOT NULL,
    domain        text   NOT NULL,
    contact_email text   NOT NULL,
    external_id   text,
    PRIMARY KEY (batch_id, line_no)
);
-- A domain twice in one file: the later row is refused.
CREATE UNIQUE INDEX import_rows_domain ON import_rows (batch_id, domain);

-- The refused rows, one row per problem (results with status=rejected).
CREATE TABLE import_rejections (
    batch_id    uuid    NOT NULL,
    line_no     bigint  NOT NULL,
    seq         integer NOT NULL,
    column_name text,
    code        text    NOT NULL,
    detail      text    NOT NULL,
    field_value text,
    external_id text,
    PRIMARY KEY (batch_id, line_no, seq)
);
