-- Organizations as a resource: every version of an organization's data.
--
-- One row per write of name / contact email (created, updated, restored
-- after a soft delete), inserted by the same statement as the upsert, for
-- the rows it changed only. Keyed by (organization, version): one index
-- entry per version, and a tenant's organization reads its history with one
-- range scan. No foreign key to batches: a pruned batch leaves its versions.
--
-- History starts now: each existing row gets one version, its current data
-- with no batch (the batch that wrote it is not known), written at its
-- `updated_at`. Soft-deleted rows keep theirs too (a restore continues it).
CREATE TABLE organization_versions (
    organization_id BLOB    NOT NULL,
    version         INTEGER NOT NULL,
    name            TEXT    NOT NULL,
    contact_email   TEXT    NOT NULL,
    batch_id        BLOB,
    created_at      TEXT    NOT NULL,
    PRIMARY KEY (organization_id, version)
);

INSERT INTO organization_versions (organization_id, version, name, contact_email, batch_id, created_at)
SELECT id, version, name, contact_email, NULL, updated_at FROM organizations;
