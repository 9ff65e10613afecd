-- An upload's conflict policy and mode, so that its status can be shown
-- while the body still arrives (before its batch row exists); NULL for
-- older uploads.
ALTER TABLE imports ADD COLUMN policy TEXT;
ALTER TABLE imports ADD COLUMN mode TEXT;
