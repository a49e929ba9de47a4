"""The PostgreSQL schema, as versioned migrations: one source for the Postgres store (applied at start,
under an advisory lock, so several processes starting at once apply each migration once) and for the SQL
printed for a Supabase project (``python -m dashboard supabase-sql``).

``llm_traces`` holds the traces, as the audited app's table does; a table that exists already (a
Supabase project's, ``id`` and ``user_id`` declared ``uuid``) is adopted: missing columns are added,
no row is rewritten. Every INSERT and UPDATE on it, by the API or by anything else (supabase-js,
PostgREST, psql), is put in the outbox ``traces_outbox`` by a trigger, with the trace as JSON.

Stream ids come from a *sequencer*: after commit, ``traces_sequence_events()`` numbers the outbox rows
not numbered yet, one sequencer at a time (an advisory lock). Ids are handed out only to committed
events and become visible in order, so a reader that takes every id above the last one it saw never
skips an event that committed late; a rolled-back transaction leaves no hole, and a long open
transaction holds back only its own events. One NOTIFY per statement wakes the sequencers (no
payload: a wake-up, never the row), and one per numbered batch wakes the readers with the newest id.
"""

from __future__ import annotations

# Advisory lock keys (two int4 keys: a namespace of ours, and which lock).
LOCK_NAMESPACE = 0x74726163  # "trac"
MIGRATION_LOCK = 1
SEQUENCER_LOCK = 2

OUTBOX_CHANNEL = "traces_outbox"  # a statement wrote traces: sequence the new events
EVENTS_CHANNEL = "traces_events"  # events were numbered, up to the id in the payload

TRACE_COLUMNS = """
    ADD COLUMN IF NOT EXISTS name text,
    ADD COLUMN IF NOT EXISTS model text,
    ADD COLUMN IF NOT EXISTS provider text,
    ADD COLUMN IF NOT EXISTS status text,
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    ADD COLUMN IF NOT EXISTS ended_at timestamptz,
    ADD COLUMN IF NOT EXISTS latency_ms double precision,
    ADD COLUMN IF NOT EXISTS input_tokens bigint,
    ADD COLUMN IF NOT EXISTS output_tokens bigint,
    ADD COLUMN IF NOT EXISTS total_tokens bigint,
    ADD COLUMN IF NOT EXISTS cost_usd double precision,
    ADD COLUMN IF NOT EXISTS input jsonb,
    ADD COLUMN IF NOT EXISTS output jsonb,
    ADD COLUMN IF NOT EXISTS error text,
    ADD COLUMN IF NOT EXISTS metadata jsonb,
    ADD COLUMN IF NOT EXISTS created_at timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz
"""

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "llm_traces, adopted if it exists; its outbox, the sequencer and spent tickets", f"""
CREATE TABLE IF NOT EXISTS llm_traces (
    id text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id text NOT NULL
);
ALTER TABLE llm_traces {TRACE_COLUMNS};
ALTER TABLE llm_traces ALTER COLUMN status SET DEFAULT 'pending',
                       ALTER COLUMN metadata SET DEFAULT '{{}}'::jsonb,
                       ALTER COLUMN created_at SET DEFAULT now(),
                       ALTER COLUMN updated_at SET DEFAULT now();
CREATE INDEX IF NOT EXISTS llm_traces_by_user_newest ON llm_traces (user_id, created_at DESC, id DESC);

-- A time as the API writes it: UTC, microseconds always, a Z (strings sort as times do).
CREATE OR REPLACE FUNCTION traces_iso(t timestamptz) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- A row as the API and the stream send it, whatever the column types of an adopted table.
CREATE OR REPLACE FUNCTION traces_row_json(r llm_traces) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id::text, 'user_id', r.user_id::text, 'name', r.name, 'model', r.model,
        'provider', r.provider, 'status', coalesce(r.status, 'pending'),
        'started_at', traces_iso(r.started_at), 'ended_at', traces_iso(r.ended_at),
        'latency_ms', r.latency_ms, 'input_tokens', r.input_tokens, 'output_tokens', r.output_tokens,
        'total_tokens', r.total_tokens, 'cost_usd', r.cost_usd, 'input', to_jsonb(r.input),
        'output', to_jsonb(r.output), 'error', r.error,
        'metadata', CASE WHEN jsonb_typeof(to_jsonb(r.metadata)) = 'object' THEN to_jsonb(r.metadata) ELSE '{{}}'::jsonb END,
        'created_at', traces_iso(coalesce(r.created_at, r.updated_at, now())),
        'updated_at', traces_iso(coalesce(r.updated_at, r.created_at, now())))
$$;

-- Every change moves updated_at forward, also when a direct writer does not set it (the API's
-- compare-and-set on updated_at must see every change).
CREATE OR REPLACE FUNCTION traces_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.created_at := coalesce(NEW.created_at, now());
        NEW.updated_at := coalesce(NEW.updated_at, NEW.created_at);
    ELSIF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := greatest(clock_timestamp(), OLD.updated_at + interval '1 microsecond');
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS traces_touch ON llm_traces;
CREATE TRIGGER traces_touch BEFORE INSERT OR UPDATE ON llm_traces FOR EACH ROW EXECUTE FUNCTION traces_touch();

CREATE TABLE IF NOT EXISTS traces_outbox (
    id         bigserial PRIMARY KEY,  -- the order events were written in
    seq        bigint UNIQUE,          -- the stream id, given by the sequencer after commit
    kind       text NOT NULL,
    user_id    text NOT NULL,
    trace_id   text NOT NULL,
    model      text,
    status     text NOT NULL,
    body       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS traces_outbox_unnumbered ON traces_outbox (id) WHERE seq IS NULL;
CREATE INDEX IF NOT EXISTS traces_outbox_by_user ON traces_outbox (user_id, seq);
CREATE SEQUENCE IF NOT EXISTS traces_stream_seq;

CREATE OR REPLACE FUNCTION traces_to_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    body jsonb := traces_row_json(NEW);
BEGIN
    INSERT INTO traces_outbox (kind, user_id, trace_id, model, status, body)
    VALUES (CASE TG_OP WHEN 'INSERT' THEN 'trace' ELSE 'trace_update' END, body->>'user_id', body->>'id',
            body->>'model', body->>'status', body);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS traces_to_outbox ON llm_traces;
CREATE TRIGGER traces_to_outbox AFTER INSERT OR UPDATE ON llm_traces FOR EACH ROW EXECUTE FUNCTION traces_to_outbox();

CREATE OR REPLACE FUNCTION traces_wake_sequencer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS traces_wake_sequencer ON llm_traces;
CREATE TRIGGER traces_wake_sequencer AFTER INSERT OR UPDATE ON llm_traces
    FOR EACH STATEMENT EXECUTE FUNCTION traces_wake_sequencer();

-- Number the committed events not numbered yet, in the order they were written; one sequencer at a
-- time, so the ids of one batch are all visible before the next batch takes any. Returns the newest id.
CREATE OR REPLACE FUNCTION traces_sequence_events(max_events integer DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    numbered integer;
    newest bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM traces_outbox WHERE seq IS NULL) THEN  -- nothing to do: no lock taken
        RETURN coalesce((SELECT max(seq) FROM traces_outbox), 0);
    END IF;
    PERFORM pg_advisory_xact_lock({LOCK_NAMESPACE}, {SEQUENCER_LOCK});
    UPDATE traces_outbox o SET seq = n.seq
      FROM (SELECT p.id, nextval('traces_stream_seq') AS seq
              FROM (SELECT id FROM traces_outbox WHERE seq IS NULL ORDER BY id LIMIT max_events) p
             ORDER BY p.id) n
     WHERE o.id = n.id;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    SELECT max(seq) INTO newest FROM traces_outbox;
    IF numbered > 0 THEN
        PERFORM pg_notify('{EVENTS_CHANNEL}', newest::text);
    END IF;
    RETURN coalesce(newest, 0);
END $$;

CREATE TABLE IF NOT EXISTS traces_spent_tickets (
    id         text PRIMARY KEY,
    expires_at double precision NOT NULL
);
"""),
    (2, "the outbox is written as its owner: writers under row level security (Supabase's roles) may not", """
ALTER FUNCTION traces_to_outbox() SECURITY DEFINER SET search_path = public, pg_temp;
ALTER FUNCTION traces_wake_sequencer() SECURITY DEFINER SET search_path = public, pg_temp;
"""),
    (3, "the event window's bounds and its pruning as functions: the same SQL over a connection or PostgREST", """
-- floor: a stream may resume from any id at or above it; watermark: the newest numbered id.
CREATE OR REPLACE FUNCTION traces_event_bounds() RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('floor', coalesce(min(seq) - 1, max(seq), 0), 'watermark', coalesce(max(seq), 0))
      FROM traces_outbox
$$;

-- Forget events outside the replay window (older than both the last keep_events events and the last
-- keep_seconds seconds), and tickets that have expired.
CREATE OR REPLACE FUNCTION traces_prune(keep_events bigint, keep_seconds double precision) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM traces_outbox
     WHERE seq <= (SELECT coalesce(max(seq), 0) FROM traces_outbox) - keep_events
       AND created_at < now() - make_interval(secs => keep_seconds);
    DELETE FROM traces_spent_tickets WHERE expires_at < extract(epoch FROM now());
$$;
"""),
    (4, "events read in pages bounded in bytes as well as in count, over a connection or PostgREST", """
-- The events after after_seq up to upto_seq (one user's, model's, status's when given), in order: at most
-- max_events, and no more once the bodies reach max_bytes (counted in characters, as the API counts them;
-- the event that crosses it included, so a page always holds at least one). A reader of large traces
-- never holds more than one such page.
CREATE OR REPLACE FUNCTION traces_events_after(after_seq bigint, upto_seq bigint, max_events integer,
        max_bytes bigint, for_user text DEFAULT NULL, for_model text DEFAULT NULL, for_status text DEFAULT NULL)
RETURNS TABLE (seq bigint, kind text, user_id text, model text, status text, body text)
LANGUAGE sql STABLE AS $$
    SELECT page.seq, page.kind, page.user_id, page.model, page.status, page.body FROM (
        SELECT rows.*, sum(char_length(rows.body)) OVER (ORDER BY rows.seq) AS running FROM (
            SELECT o.seq, o.kind, o.user_id, o.model, o.status, o.body::text AS body
              FROM traces_outbox o
             WHERE o.seq > after_seq AND o.seq <= upto_seq
               AND (for_user IS NULL OR o.user_id = for_user)
               AND (for_model IS NULL OR o.model = for_model)
               AND (for_status IS NULL OR o.status = for_status)
             ORDER BY o.seq LIMIT max_events) rows
    ) page
     WHERE page.running - char_length(page.body) < max_bytes
     ORDER BY page.seq
$$;
"""),
    (5, "trace ids are unique per user: nobody learns of, or is blocked by, another user's ids", """
-- The table this API created keyed traces by id alone. Its key becomes (user_id, id). A table that was
-- adopted keeps its own key (a Supabase project's uuid ids, perhaps referenced by other tables): its
-- owner may make the same change.
DO $$
DECLARE
    key_name text;
    key_columns text[];
BEGIN
    SELECT c.conname, array_agg(a.attname::text ORDER BY k.ord) INTO key_name, key_columns
      FROM pg_constraint c
      CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
     WHERE c.conrelid = 'llm_traces'::regclass AND c.contype = 'p'
     GROUP BY c.conname;
    IF key_columns = ARRAY['id']
       AND (SELECT atttypid = 'text'::regtype FROM pg_attribute
             WHERE attrelid = 'llm_traces'::regclass AND attname = 'id')
       AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = 'llm_traces'::regclass) THEN
        EXECUTE format('ALTER TABLE llm_traces DROP CONSTRAINT %I', key_name);
        ALTER TABLE llm_traces ADD PRIMARY KEY (user_id, id);
    END IF;
END $$;
"""),
]


MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS traces_schema_migrations (
    version integer PRIMARY KEY, title text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""


def migration_sql() -> str:
    """Every migration, in order, as one script that records what it applied (so an API started later on
    the same database with a ``postgresql://`` URL finds it done)."""
    parts = [MIGRATIONS_TABLE + ";"]
    for version, title, script in MIGRATIONS:
        parts.append(f"-- migration {version}: {title}\n{script.strip()}\n"
                     f"INSERT INTO traces_schema_migrations (version, title) VALUES ({version}, $title${title}$title$)\n"
                     "    ON CONFLICT (version) DO NOTHING;")
    return "\n\n".join(parts) + "\n"
