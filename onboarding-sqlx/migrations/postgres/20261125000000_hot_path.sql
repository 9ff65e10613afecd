-- Hot-path tuning (see BENCHMARKS.md, "No-op worker throughput").
--
-- The queue is a wake-up call, not the truth (DESIGN §2.2-2.3): the sweeper
-- re-enqueues every pending item without a live message. So the jobs table
-- need not survive a PostgreSQL crash, and skipping its WAL makes each
-- enqueue, delivery and ack cheaper. A crash empties it; the sweeper refills it.
ALTER TABLE jobs SET UNLOGGED;
-- Dequeues walk each tenant's jobs in id order: one index per (tenant, id),
-- found with a skip scan. `available_at` is not indexed, so a delivery
-- (which moves it) is a HOT update.
DROP INDEX jobs_available;
CREATE INDEX jobs_tenant ON jobs (tenant, id);
-- Acked jobs leave dead index entries at the head of each tenant's range,
-- which every dequeue walks over until VACUUM removes them: vacuum this
-- table as soon as a few thousand have piled up (not at 20 % of the table),
-- without the cost-based pauses.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0
);

-- Item rows are written in the submission's transaction together with their
-- batch and organization, so the foreign keys only cost a trigger per row
-- at insert; pruning deletes the items of a batch explicitly.
ALTER TABLE batch_items DROP CONSTRAINT batch_items_batch_id_fkey;
ALTER TABLE batch_items DROP CONSTRAINT batch_items_organization_id_fkey;

-- The sweeper finds lost work batch by batch (open batches, least recently
-- swept first, through `batches_sweep`), scanning each batch's items through
-- `(batch_id, position)`. So no index of `batch_items` reads `status`,
-- `lease_until`, `sweep_at` or `finished_at`, and claims, heartbeats and
-- finishes are HOT updates (no index entries written); each inserted item
-- writes two index entries instead of four.
DROP INDEX batch_items_sweep_pending;
DROP INDEX batch_items_processing;
ALTER TABLE batches ADD COLUMN swept_at timestamptz;
CREATE INDEX batches_sweep ON batches (swept_at NULLS FIRST, created_at) WHERE completed_at IS NULL;
