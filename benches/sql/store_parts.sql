-- What each part of a 1000-organization submission costs inside PostgreSQL (no round trip, no commit),
-- against the floor's UNNEST upsert into a plain 3-column table. Apply the migrations of
-- onboarding-sqlx/migrations/postgres to an empty database, then this file, then e.g.
--   SELECT floor_bench(40), bench(true, 40), bench(false, 40), bench(false, 40, false);
-- (milliseconds per statement: full, without the versions insert, the organizations upsert alone).
CREATE OR REPLACE FUNCTION bench(with_versions bool, rounds int, with_items bool DEFAULT true) RETURNS float AS $$
DECLARE
  orgs uuid[]; names text[]; domains text[]; emails text[]; items uuid[]; pos bigint[];
  t0 timestamptz; total float := 0; b uuid; sql text;
BEGIN
  sql := 'WITH input AS (SELECT * FROM UNNEST($3,$4,$5,$6,$7,$8) AS u(org,name,domain,email,item,position)),
  up AS (INSERT INTO organizations AS o (id, tenant, name, domain, contact_email, status, version, created_at, updated_at)
    SELECT org, $2, name, domain, email, ''pending'', 1, now(), now() FROM input
    ON CONFLICT (tenant, domain) DO UPDATE SET name = EXCLUDED.name, contact_email = EXCLUDED.contact_email, version = o.version + 1
    WHERE (o.name, o.contact_email) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.contact_email)
    RETURNING o.id, o.domain, o.version, o.name, o.contact_email, (o.xmax = 0) AS inserted)'
  || CASE WHEN with_versions THEN ', versions AS (INSERT INTO organization_versions (organization_id, version, name, contact_email, batch_id, created_at) SELECT id, version, name, contact_email, $1, now() FROM up)' ELSE '' END ||
  CASE WHEN with_items THEN ', items AS (INSERT INTO batch_items (id, batch_id, tenant, position, organization_id, domain, status, change_kind, attempts, available_at, sweep_at, errors, created_at, updated_at)
    SELECT i.item, $1, $2, i.position, up.id, i.domain, ''pending'', ''created'', 0, now(), now(), ''[]'', now(), now() FROM input i JOIN up ON up.domain = i.domain ORDER BY position)' ELSE '' END || ' SELECT count(*) FROM up';
  FOR r IN 1..rounds LOOP
    b := gen_random_uuid();
    SELECT array_agg(gen_random_uuid()), array_agg('Org ' || g), array_agg('d' || md5(random()::text) || '.com'), array_agg('a@x' || g || '.com'), array_agg(gen_random_uuid()), array_agg(g::bigint)
      INTO orgs, names, domains, emails, items, pos FROM generate_series(1,1000) g;
    t0 := clock_timestamp();
    EXECUTE sql USING b, 'bench', orgs, names, domains, emails, items, pos;
    total := total + extract(epoch from clock_timestamp() - t0);
  END LOOP;
  RETURN total / rounds * 1000;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION floor_bench(rounds int) RETURNS float AS $$
DECLARE names text[]; domains text[]; emails text[]; t0 timestamptz; total float := 0;
BEGIN
  FOR r IN 1..rounds LOOP
    SELECT array_agg('Org ' || g), array_agg('d' || md5(random()::text) || '.com'), array_agg('a@x' || g || '.com') INTO names, domains, emails FROM generate_series(1,1000) g;
    t0 := clock_timestamp();
    INSERT INTO fl SELECT * FROM UNNEST(names, domains, emails) AS u(name, domain, email) ON CONFLICT (domain) DO UPDATE SET name = EXCLUDED.name;
    total := total + extract(epoch from clock_timestamp() - t0);
  END LOOP;
  RETURN total / rounds * 1000;
END $$ LANGUAGE plpgsql;
CREATE TABLE IF NOT EXISTS fl (name text, domain text PRIMARY KEY, contact_email text);
