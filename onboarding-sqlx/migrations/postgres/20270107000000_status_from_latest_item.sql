-- An organization's status is its latest submission's item's status: the
-- finish of an item no longer writes the organization (measured: that
-- update was ~3/4 of the finish statement's time in a drain, most of it
-- non-HOT updates and full-page images of organization pages,
-- BENCHMARKS.md). A submission that makes an organization pending again
-- points `latest_item` at its new item; reads go through
-- `organization_states`, which takes the status from that item (an item
-- being processed shows as `pending`, as the organization did before).
-- `status` keeps the state of rows whose latest item is gone (pruned:
-- the prune writes it first) or that were last written before this
-- migration (NULL `latest_item`).
ALTER TABLE organizations ADD COLUMN latest_item UUID;

-- Work accepted before this migration: its finish no longer writes the
-- organization, so each organization with a pending or processing item
-- points at its newest one (the rest keep the status they have).
UPDATE organizations o SET latest_item = i.id
FROM (
    SELECT DISTINCT ON (tenant, domain) id, tenant, domain FROM batch_items
    WHERE status IN ('pending', 'processing')
    ORDER BY tenant, domain, created_at DESC, position DESC
) i
WHERE o.tenant = i.tenant AND o.domain = i.domain;

CREATE VIEW organization_states AS
SELECT o.id, o.tenant, o.name, o.domain, o.contact_email,
    COALESCE(CASE i.status WHEN 'processing' THEN 'pending' ELSE i.status END, o.status) AS status,
    o.version, o.created_at, o.updated_at, o.deleted_at, o.written_by, o.written_at, o.latest_item
FROM organizations o
LEFT JOIN batch_items i ON i.id = o.latest_item;
