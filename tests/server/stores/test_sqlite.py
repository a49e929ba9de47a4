"""What only the SQLite store has: files written by an earlier version, upgraded in place on open."""

from __future__ import annotations

import sqlite3

import pytest

from dashboard.server.stores import StoreOptions, open_backend

pytestmark = pytest.mark.parametrize("store", ["sqlite"])

VERSION_0 = """
CREATE TABLE traces (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
                     model TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX traces_by_user ON traces (user_id, seq);
INSERT INTO traces (id, user_id, model, status, created_at, body) VALUES
    ('shared', 'bob', 'gpt-4o', 'success', '2025-01-01T00:00:00.000000Z', '{"id": "shared", "user_id": "bob"}');
"""


async def test_a_file_with_one_id_namespace_is_upgraded_keeping_its_rows_and_each_user_gets_their_own(db_url):
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.executescript(VERSION_0)
    backend = open_backend(db_url, StoreOptions())
    await backend.open()
    try:
        assert await backend.traces.get_trace("bob", "shared") == {"id": "shared", "user_id": "bob"}
        record = {"id": "shared", "user_id": "alice", "model": None, "status": "running",
                  "created_at": "2025-01-02T00:00:00.000000Z", "updated_at": "2025-01-02T00:00:00.000000Z"}
        await backend.traces.insert_traces([record])  # the id bob has is free for alice
        assert (await backend.traces.get_trace("alice", "shared"))["user_id"] == "alice"
    finally:
        await backend.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM traces").fetchone() == (2,)
