-- Where the current version of an organization is kept in its own row
-- (`written_by`, `written_at`; PostgreSQL writes versions copy-on-write).
-- This engine keeps writing every version, so they stay NULL here and the
-- current version is read from organization_versions.
ALTER TABLE organizations ADD COLUMN written_by BLOB;
ALTER TABLE organizations ADD COLUMN written_at TEXT;
