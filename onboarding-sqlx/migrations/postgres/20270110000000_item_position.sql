-- The position an item id holds (its last four bytes; `batch_item_id`'s
-- inverse): the submission statement takes an upserted organization's item
-- from its `latest_item` and needs no join back to its input row to know
-- the item's position (the join was a merge join with two sorts, ~1 ms of
-- a 1000-row submission). Inlined by the planner (one expression).
CREATE FUNCTION batch_item_position(item uuid) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (get_byte(uuid_send(item), 12)::bigint << 24) | (get_byte(uuid_send(item), 13) << 16)
        | (get_byte(uuid_send(item), 14) << 8) | get_byte(uuid_send(item), 15) $$;
