-- Organizations: one row per normalized domain. Only `domain` is indexed, so
-- status changes stay HOT updates.
CREATE TABLE organizations (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL,
    domain        text        NOT NULL,
    contact_email text        NOT NULL,
    status        text        NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
) WITH (fillfactor = 80);
CREATE UNIQUE INDEX organizations_domain ON organizations (domain);

CREATE TABLE batches (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    idempotency_key text,
    request_hash    text        NOT NULL,
    total           bigint      NOT NULL,
    policy          text        NOT NULL,
    mode            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz,
    cancelled_at    timestamptz,
    announced_at    timestamptz
);
CREATE UNIQUE INDEX batches_idempotency ON batches (tenant, idempotency_key);
CREATE INDEX batches_open ON batches (created_at) WHERE completed_at IS NULL;
CREATE INDEX batches_unannounced ON batches (completed_at) WHERE announced_at IS NULL;
CREATE INDEX batches_completed ON batches (completed_at);

-- Items: the unit of work. `lease_until` is not indexed so heartbeats are HOT
-- updates; fillfactor 50 leaves room on each page for them.
CREATE TABLE batch_items (
    id              uuid        PRIMARY KEY,
    batch_id        uuid        NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    tenant          text        NOT NULL,
    position        bigint      NOT NULL,
    organization_id uuid        NOT NULL REFERENCES organizations (id),
    domain          text        NOT NULL,
    status          text        NOT NULL,
    change_kind     text        NOT NULL,
    attempts        bigint      NOT NULL DEFAULT 0,
    available_at    timestamptz NOT NULL,
    lease_until     timestamptz,
    lease_token     uuid,
    sweep_at        timestamptz NOT NULL,
    errors          text        NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz
) WITH (fillfactor = 50);
CREATE UNIQUE INDEX batch_items_position ON batch_items (batch_id, position);
CREATE INDEX batch_items_sweep_pending ON batch_items (sweep_at) WHERE status = 'pending';
CREATE INDEX batch_items_processing ON batch_items (sweep_at) WHERE status = 'processing';

-- The SQL job queue: a job is ready when available_at <= now; a delivery
-- moves available_at to now + visibility timeout.
CREATE TABLE jobs (
    id           bigserial   PRIMARY KEY,
    item_id      uuid        NOT NULL,
    tenant       text        NOT NULL,
    available_at timestamptz NOT NULL,
    leased_until timestamptz,
    not_before   timestamptz
);
CREATE INDEX jobs_available ON jobs (available_at);
