"""The SQL a user pastes once into a Supabase project's SQL editor (``python -m dashboard supabase-sql``):
the Postgres store's own migrations (one source: ``pg_schema``), then what only Supabase has. Row level
security lets a user's own token read only their traces (the API itself uses the service role, which
bypasses it); the outbox, tickets and migrations tables are closed to the public roles; the sequencer
and the event window's functions may be called by the service role only; and the outbox joins the
Realtime publication, so a server process learns of new events from one Realtime channel.
"""

from __future__ import annotations

from .pg_schema import migration_sql

SUPABASE_ONLY = """
-- Supabase: a user's own token (role authenticated) reads only that user's traces.
ALTER TABLE llm_traces ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS "traces: users read their own" ON llm_traces;
CREATE POLICY "traces: users read their own" ON llm_traces FOR SELECT TO authenticated
    USING (user_id::text = auth.uid()::text);

-- The API's own tables: no access for anon or authenticated (the service role bypasses RLS).
ALTER TABLE traces_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE traces_spent_tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE traces_schema_migrations ENABLE ROW LEVEL SECURITY;
REVOKE EXECUTE ON FUNCTION traces_sequence_events(integer), traces_event_bounds(), traces_prune(bigint, double precision),
    traces_events_after(bigint, bigint, integer, bigint, text, text, text) FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION traces_sequence_events(integer), traces_event_bounds(), traces_prune(bigint, double precision),
    traces_events_after(bigint, bigint, integer, bigint, text, text, text) TO service_role;

-- Realtime: the outbox's changes wake the API's one channel per process.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime')
       AND NOT EXISTS (SELECT 1 FROM pg_publication_tables
                       WHERE pubname = 'supabase_realtime' AND schemaname = 'public' AND tablename = 'traces_outbox') THEN
        ALTER PUBLICATION supabase_realtime ADD TABLE traces_outbox;
    END IF;
END $$;
"""


def supabase_sql() -> str:
    return ("-- Live LLM traces: paste once into your Supabase project's SQL editor and run it (safe to run again).\n\n"
            + migration_sql() + SUPABASE_ONLY)
