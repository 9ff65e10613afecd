-- An import is answered once its rows are staged, then its batch is made
-- after the answer: `sealed_at` marks an upload whose body has arrived
-- (no longer the request's to discard; any process finishes it) and
-- `sealed` keeps the options of the batch to make (JSON); NULL for older uploads.
ALTER TABLE imports ADD COLUMN sealed_at TEXT;
ALTER TABLE imports ADD COLUMN sealed TEXT;
