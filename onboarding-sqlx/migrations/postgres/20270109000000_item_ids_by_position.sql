-- An item's id is its batch's id with the last four bytes replaced by its
-- position (`ItemId::in_batch`). A batch's items are then one range of the
-- primary key, in position order, and the second index on
-- `(batch_id, position)` goes: a stored item writes one index entry instead
-- of two (measured inside the server: the insert of 1000 items 4.9-5.2 ms
-- with both indexes, 2.8-3.7 ms with the primary key alone; BENCHMARKS.md).
-- Every statement that read a batch's items through that index reads the
-- range `batch_item_first(batch) .. batch_item_last(batch)` instead.

-- The id of the item at `pos` of `batch` (a `pos` outside 0 ..= 2^32 - 1, which
-- no item has, is taken as the nearest end of the range). Plain SQL, so the
-- planner inlines it and evaluates it once per batch, as an index bound.
CREATE FUNCTION batch_item_id(batch uuid, pos bigint) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT encode(substring(uuid_send(batch) FROM 1 FOR 12)
        || decode(lpad(to_hex(greatest(0, least(pos, 4294967295))), 8, '0'), 'hex'), 'hex')::uuid $$;
CREATE FUNCTION batch_item_first(batch uuid) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT batch_item_id(batch, 0) $$;
CREATE FUNCTION batch_item_last(batch uuid) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT batch_item_id(batch, 4294967295) $$;

-- Items stored before this migration have random ids: they get theirs, and
-- whatever names them by id follows. A message of Redis or RabbitMQ that
-- still carries an old id finds no item (acked and dropped); the sweeper
-- sends the pending item again, and a lease taken under the old id expires
-- and is claimed again (the queue is a wake-up call; DESIGN.md §2).
UPDATE organizations o SET latest_item = batch_item_id(i.batch_id, i.position)
FROM batch_items i
WHERE i.id = o.latest_item AND i.id <> batch_item_id(i.batch_id, i.position);
UPDATE jobs j SET item_id = batch_item_id(i.batch_id, i.position)
FROM batch_items i
WHERE i.id = j.item_id AND i.id <> batch_item_id(i.batch_id, i.position);
-- Rows of an upload still being received: their items are made at the finish.
UPDATE import_rows SET item_id = batch_item_id(batch_id, line_no)
WHERE item_id IS NOT NULL;
UPDATE batch_items SET id = batch_item_id(batch_id, position)
WHERE id <> batch_item_id(batch_id, position);

DROP INDEX batch_items_position;
