-- The current version of an organization is its own row: `written_by` (the
-- batch that wrote it) and `written_at` complete what a version holds, so a
-- submission writes a version row only for the state an update replaces
-- (copy-on-write), not one per organization it writes. NULL for rows
-- written before: their current version is in organization_versions.
ALTER TABLE organizations ADD COLUMN written_by uuid;
ALTER TABLE organizations ADD COLUMN written_at timestamptz;
