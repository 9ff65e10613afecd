-- Listing a tenant's batches newest first (GET /api/v1/batches).
CREATE INDEX batches_tenant_id ON batches (tenant, id);
