-- The organizations' key, (tenant, domain), compares bytewise (collation
-- "C"). Both are ASCII by construction (a tenant id is checked; a domain
-- is normalized: lowercase, IDN as punycode), so bytewise order is the
-- order the database's collation gave them; but a comparison no longer
-- goes through the locale (strcoll) for every key of the primary key's
-- B-tree. Measured: 5-10 % of a 1000-row upsert under C.UTF-8, more under
-- a language locale such as en_US.UTF-8 (BENCHMARKS.md, session 11). It is
-- also the order the other engines list organizations in (byte order).
--
-- The primary key is rebuilt (the table is not rewritten).
DROP VIEW organization_states;
ALTER TABLE organizations
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN domain TYPE text COLLATE "C";
CREATE VIEW organization_states AS
SELECT o.id, o.tenant, o.name, o.domain, o.contact_email,
    COALESCE(CASE i.status WHEN 'processing' THEN 'pending' ELSE i.status END, o.status) AS status,
    o.version, o.created_at, o.updated_at, o.deleted_at, o.written_by, o.written_at, o.latest_item
FROM organizations o
LEFT JOIN batch_items i ON i.id = o.latest_item;
