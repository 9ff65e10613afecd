-- File imports (CSV / NDJSON): an upload is staged here in chunks while its
-- body arrives, then turned into one batch in one transaction.
CREATE TABLE imports (
    batch_id        BLOB    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    idempotency_key TEXT,
    state           TEXT    NOT NULL,
    rows_received   INTEGER NOT NULL DEFAULT 0,
    rows_stored     INTEGER NOT NULL DEFAULT 0,
    rows_rejected   INTEGER NOT NULL DEFAULT 0,
    started_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX imports_receiving_key ON imports (tenant, idempotency_key) WHERE state = 'receiving';

CREATE TABLE import_rows (
    batch_id      BLOB    NOT NULL,
    line_no       INTEGER NOT NULL,
    name          TEXT    NOT NULL,
    domain        TEXT    NOT NULL,
    contact_email TEXT    NOT NULL,
    external_id   TEXT,
    PRIMARY KEY (batch_id, line_no)
);
CREATE UNIQUE INDEX import_rows_domain ON import_rows (batch_id, domain);

CREATE TABLE import_rejections (
    batch_id    BLOB    NOT NULL,
    line_no     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    column_name TEXT,
    code        TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    field_value TEXT,
    external_id TEXT,
    PRIMARY KEY (batch_id, line_no, seq)
);
