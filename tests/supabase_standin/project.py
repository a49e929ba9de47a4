"""A database that looks like a Supabase project, for the Supabase stand-in and the tests of the printed SQL.

``SUPABASE_LOOK`` is what a Supabase project has before anything of ours (its roles, ``auth.uid()``, the
default grants, the Realtime publication); ``make_project`` applies it, then the SQL a user pastes
(``python -m dashboard supabase-sql``), so the stand-in serves the schema a real project would have.
"""

from __future__ import annotations

import psycopg

from dashboard.server.stores.supabase_sql import supabase_sql

# What a Supabase project has before anything of ours: roles, auth.uid() as Supabase defines it, the
# grants its default privileges give every new table and function, and the Realtime publication.
SUPABASE_LOOK = """
DO $$ BEGIN CREATE ROLE anon NOLOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE authenticated NOLOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE SCHEMA IF NOT EXISTS auth;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid
$$;
GRANT USAGE ON SCHEMA auth, public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
CREATE PUBLICATION supabase_realtime;
"""


def make_project(db_url: str) -> None:
    """Make the (fresh) database at ``db_url`` a Supabase project with our SQL pasted into it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SUPABASE_LOOK)
        conn.execute(supabase_sql())
