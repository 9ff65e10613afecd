-- A tenant's finished items counted per second (GET /api/v1/throughput)
-- instead of an index on `batch_items (tenant, finished_at)`. That index
-- made every finish a non-HOT update: the finish sets `finished_at`, so
-- each finished item wrote a new heap tuple plus three index entries
-- (primary key, position, this index) instead of one heap tuple (measured
-- with pg_stat_statements: the finish was 57 % of the database's time in a
-- drain, BENCHMARKS.md). The statements that move items into or out of
-- `completed` / `failed` keep these counts in the same statement.
--
-- `shard`: concurrent finishes of one tenant in the same second add to
-- different rows (the backend's pid modulo 8), so flushes do not queue on
-- one row lock; a read sums the shards.
CREATE TABLE throughput_seconds (
    tenant    TEXT NOT NULL,
    second    BIGINT NOT NULL,
    shard     SMALLINT NOT NULL,
    completed BIGINT NOT NULL,
    failed    BIGINT NOT NULL,
    PRIMARY KEY (tenant, second, shard)
) WITH (fillfactor = 70);

INSERT INTO throughput_seconds (tenant, second, shard, completed, failed)
SELECT tenant, floor(extract(epoch FROM finished_at))::bigint, 0,
    count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
FROM batch_items
WHERE finished_at IS NOT NULL AND status IN ('completed', 'failed')
GROUP BY 1, 2;

DROP INDEX batch_items_tenant_finished;
