-- Organizations belong to a tenant: one row per (tenant, normalized domain).
--
-- Until now one row per domain was shared by every tenant that submitted it.
-- Each existing row becomes the row of every tenant whose batch items point
-- at it: the first tenant (by id) keeps the row, every other tenant gets a
-- copy with the same data, status and version, and its items are moved to
-- the copy. A row no item points at any more (its batches were pruned) is
-- kept under the empty tenant, which no API key can have.
ALTER TABLE organizations ADD COLUMN tenant text;
DROP INDEX organizations_domain;

CREATE TEMPORARY TABLE organization_owners ON COMMIT DROP AS
    SELECT DISTINCT organization_id, tenant FROM batch_items;

UPDATE organizations o SET tenant = k.tenant
FROM (SELECT organization_id, MIN(tenant) AS tenant FROM organization_owners GROUP BY organization_id) k
WHERE o.id = k.organization_id;

CREATE TEMPORARY TABLE organization_copies ON COMMIT DROP AS
    SELECT gen_random_uuid() AS new_id, r.organization_id AS old_id, r.tenant
    FROM organization_owners r JOIN organizations o ON o.id = r.organization_id
    WHERE o.tenant <> r.tenant;

INSERT INTO organizations (id, tenant, name, domain, contact_email, status, version, created_at, updated_at, deleted_at)
SELECT c.new_id, c.tenant, o.name, o.domain, o.contact_email, o.status, o.version, o.created_at, o.updated_at, o.deleted_at
FROM organization_copies c JOIN organizations o ON o.id = c.old_id;

UPDATE batch_items i SET organization_id = c.new_id
FROM organization_copies c
WHERE i.organization_id = c.old_id AND i.tenant = c.tenant;

UPDATE organizations SET tenant = '' WHERE tenant IS NULL;
ALTER TABLE organizations ALTER COLUMN tenant SET NOT NULL;
CREATE UNIQUE INDEX organizations_tenant_domain ON organizations (tenant, domain);
