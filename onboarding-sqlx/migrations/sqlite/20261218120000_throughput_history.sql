-- A tenant's finished items by finish time (GET /api/v1/throughput: one
-- GROUP BY over the last hour), without reading its other items.
CREATE INDEX batch_items_tenant_finished ON batch_items (tenant, finished_at, status)
    WHERE finished_at IS NOT NULL;
