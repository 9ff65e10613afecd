-- The W3C traceparent of the request that created the batch: the worker's
-- processing spans continue its trace (NULL when traces are not exported).
-- A nullable column appended last: an instant ALTER on MariaDB.
ALTER TABLE batches ADD COLUMN trace_parent VARCHAR(255) NULL;
