-- An item keeps only its last 10 failed attempts (a retry loop must not grow
-- a row without end); the total is counted here. Existing histories are
-- counted as they stand; the next failure trims them.
ALTER TABLE batch_items ADD COLUMN error_count INTEGER NOT NULL DEFAULT 0;
UPDATE batch_items SET error_count = json_array_length(errors) WHERE errors <> '[]';
