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

-- Item rows are written in the submission's transaction together with their
-- batch and organization, so the foreign keys only cost a trigger per row
-- at insert; pruning deletes the items of a batch explicitly.
ALTER TABLE batch_items DROP CONSTRAINT batch_items_batch_id_fkey;
ALTER TABLE batch_items DROP CONSTRAINT batch_items_organization_id_fkey;
