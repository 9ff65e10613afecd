-- The W3C traceparent of the request that created the batch: the worker's
-- processing spans continue its trace (NULL when traces are not exported).
-- A nullable column without a default: no table rewrite.
ALTER TABLE batches ADD COLUMN trace_parent TEXT;
