-- The dequeue finds each tenant's oldest ready jobs through this index (a
-- skip scan over the tenants, then a range scan per tenant) instead of
-- ranking every ready job under the write lock. It replaces the index on
-- `available_at` alone, which nothing reads any more: one index less to
-- maintain on every enqueue, dequeue and ack.
CREATE INDEX jobs_tenant_available ON jobs (tenant, available_at);
DROP INDEX jobs_available;
