-- Organizations belong to a tenant: one row per (tenant, normalized domain).
--
-- Until now one row per domain was shared by every tenant that submitted it.
-- Each existing row becomes the row of every tenant whose batch items point
-- at it: the first tenant (by id) keeps the row, every other tenant gets a
-- copy with the same data, status and version, and its items are moved to
-- the copy. A row no item points at any more (its batches were pruned) is
-- kept under the empty tenant, which no API key can have.
ALTER TABLE organizations ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
DROP INDEX organizations_domain;

CREATE TEMPORARY TABLE organization_owners AS
    SELECT DISTINCT organization_id, tenant FROM batch_items;

UPDATE organizations SET tenant = (
    SELECT MIN(r.tenant) FROM organization_owners r WHERE r.organization_id = organizations.id)
WHERE id IN (SELECT organization_id FROM organization_owners);

CREATE TEMPORARY TABLE organization_copies AS
    SELECT randomblob(16) AS new_id, r.organization_id AS old_id, r.tenant AS tenant
    FROM organization_owners r JOIN organizations o ON o.id = r.organization_id
    WHERE o.tenant <> r.tenant;

INSERT INTO organizations (id, tenant, name, domain, contact_email, status, version, created_at, updated_at, deleted_at)
SELECT c.new_id, c.tenant, o.name, o.domain, o.contact_email, o.status, o.version, o.created_at, o.updated_at, o.deleted_at
FROM organization_copies c JOIN organizations o ON o.id = c.old_id;

UPDATE batch_items SET organization_id = (
    SELECT c.new_id FROM organization_copies c
    WHERE c.old_id = batch_items.organization_id AND c.tenant = batch_items.tenant)
WHERE EXISTS (SELECT 1 FROM organization_copies c
    WHERE c.old_id = batch_items.organization_id AND c.tenant = batch_items.tenant);

DROP TABLE organization_owners;
DROP TABLE organization_copies;
CREATE UNIQUE INDEX organizations_tenant_domain ON organizations (tenant, domain);
