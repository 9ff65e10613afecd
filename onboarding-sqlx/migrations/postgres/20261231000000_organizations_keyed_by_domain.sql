-- Organizations keyed by what every write looks them up by: (tenant, domain).
--
-- Every statement that reads or writes an organization finds it by its
-- tenant and normalized domain (the upsert's conflict target, the reads of
-- the resource; items carry both and join on them). The surrogate `id`
-- stays a column (it is the organization's id in the API, in events and in
-- `organization_versions`), but nothing looks it up any more, so its unique
-- index went: an inserted organization writes one index entry instead of
-- two (BENCHMARKS.md, "Storing one 1000-organization submission").
--
-- The unique index on (tenant, domain) becomes the primary key as it is (no
-- rebuild); every row keeps its id and data.
ALTER TABLE organizations DROP CONSTRAINT organizations_pkey;
ALTER TABLE organizations ADD CONSTRAINT organizations_pkey PRIMARY KEY USING INDEX organizations_tenant_domain;
