-- An upload's conflict policy and mode, so that its status can be shown
-- while the body still arrives (before its batch row exists). Nullable
-- columns appended last: an instant ALTER on MariaDB; NULL for older uploads.
ALTER TABLE imports ADD COLUMN policy VARCHAR(16) NULL, ADD COLUMN mode VARCHAR(16) NULL;
