-- An upload's conflict policy and mode, so that its status can be shown
-- while the body still arrives (before its batch row exists). Nullable
-- columns without a default: no table rewrite; NULL for older uploads.
ALTER TABLE imports ADD COLUMN policy TEXT;
ALTER TABLE imports ADD COLUMN mode TEXT;

-- The ids of a staged row's organization (if it is new) and item, made by
-- the server while the body arrives and `COPY`ed with the row: the finish
-- then moves rows set-based without generating ids in SQL, which costs
-- more than the inserts around it. NULL for rows staged before.
ALTER TABLE import_rows ADD COLUMN organization_id uuid;
ALTER TABLE import_rows ADD COLUMN item_id uuid;
