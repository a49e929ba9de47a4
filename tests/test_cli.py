"""``python -m dashboard``: what a user types, and what they read when it goes wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import jwt

from .support import TEST_SECRET


def run(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dashboard", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_token_prints_a_jwt_for_the_user_that_the_api_accepts(tmp_path):
    result = run("token", "--user", "alice", "--ttl", "120", cwd=tmp_path, env={"TRACES_JWT_SECRET": TEST_SECRET})
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), TEST_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 120


def test_an_unknown_database_url_is_a_one_line_error_before_anything_starts(tmp_path):
    result = run("api", "--db", "mysql://db/traces", "--port", "0", cwd=tmp_path, env={"TRACES_JWT_SECRET": TEST_SECRET})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: TRACES_DB_URL 'mysql' is not supported; use one of: sqlite://…, postgresql://…, postgres://…, supabase"
        " (for example sqlite:///path/to/traces.db)"]


def test_supabase_mode_without_its_project_says_which_settings_are_missing(tmp_path):
    result = run("api", "--db", "supabase", "--port", "0", cwd=tmp_path,
                 env={"TRACES_JWT_SECRET": TEST_SECRET, "SUPABASE_URL": "", "SUPABASE_KEY": ""})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: TRACES_DB_URL=supabase needs SUPABASE_URL (https://<project>.supabase.co) and SUPABASE_KEY"
        " (the project's service-role key)"]


def test_a_non_positive_ttl_is_refused_by_the_parser(tmp_path):
    result = run("token", "--user", "alice", "--ttl", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "must be greater than 0" in result.stderr
