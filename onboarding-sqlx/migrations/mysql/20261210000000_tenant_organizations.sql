-- Tenant names and idempotency keys compare exactly (binary collation), as
-- they do on PostgreSQL and SQLite: `Key` and `key` are two keys, `Acme` and
-- `acme` two tenants.
ALTER TABLE batches
    MODIFY tenant VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY idempotency_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE batch_items MODIFY tenant VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE jobs MODIFY tenant VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;

-- Organizations belong to a tenant: one row per (tenant, normalized domain).
--
-- Until now one row per domain was shared by every tenant that submitted it.
-- Each existing row becomes the row of every tenant whose batch items point
-- at it: the first tenant (by id) keeps the row, every other tenant gets a
-- copy with the same data, status and version, and its items are moved to
-- the copy. A row no item points at any more (its batches were pruned) is
-- kept under the empty tenant, which no API key can have.
ALTER TABLE organizations
    ADD COLUMN tenant VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT '',
    DROP INDEX organizations_domain;

CREATE TEMPORARY TABLE organization_owners (
    organization_id BINARY(16) NOT NULL,
    tenant VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
);
INSERT INTO organization_owners SELECT DISTINCT organization_id, tenant FROM batch_items;

UPDATE organizations o
JOIN (SELECT organization_id, MIN(tenant) AS tenant FROM organization_owners GROUP BY organization_id) k
    ON o.id = k.organization_id
SET o.tenant = k.tenant;

CREATE TEMPORARY TABLE organization_copies (
    new_id BINARY(16) NOT NULL,
    old_id BINARY(16) NOT NULL,
    tenant VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
);
INSERT INTO organization_copies
SELECT UNHEX(REPLACE(UUID(), '-', '')), r.organization_id, r.tenant
FROM organization_owners r JOIN organizations o ON o.id = r.organization_id
WHERE o.tenant <> r.tenant;

INSERT INTO organizations (id, tenant, name, domain, contact_email, status, version, created_at, updated_at, deleted_at)
SELECT c.new_id, c.tenant, o.name, o.domain, o.contact_email, o.status, o.version, o.created_at, o.updated_at, o.deleted_at
FROM organization_copies c JOIN organizations o ON o.id = c.old_id;

UPDATE batch_items i
JOIN organization_copies c ON c.old_id = i.organization_id AND c.tenant = i.tenant
SET i.organization_id = c.new_id;

DROP TEMPORARY TABLE organization_owners;
DROP TEMPORARY TABLE organization_copies;
ALTER TABLE organizations ADD UNIQUE KEY organizations_tenant_domain (tenant, domain);
