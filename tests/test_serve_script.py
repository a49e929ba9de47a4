"""``./serve.sh``: the API, the demo and the dashboard start, stop together, and no credential is printed.

The real script, with real processes, on free ports and a scratch data directory (``TRACES_DATA_DIR``),
so the repository's ``data/`` is never touched. Every process of a run carries that directory in its
environment, which is how the checks below find them, children of children included.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from .postgres import postgres_bin
from .support import ROOT, free_port, poll_until

pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the run's processes through /proc"),
    pytest.mark.timeout(240),
]

STARTED = "Ctrl-C stops them all."
START_SECONDS = 120   # the dashboard's imports are slow on a busy machine; the script waits for it too
STOP_SECONDS = 40     # the demo finishes its open calls (up to 5 s) and each stage has a 10 s SIGKILL deadline


def default_ctrl_c() -> None:
    """SIGINT as a terminal gives it: a shell started with SIGINT ignored (as a background job of a script,
    which a CI runner may make of the suite) cannot trap it, and could not show what Ctrl-C does."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ServeRun:
    """One ``./serve.sh`` in a session of its own, its console in a file."""

    def __init__(self, tmp_path: Path, *args: str, data_dir: Path | None = None) -> None:
        self.api_port = free_port()
        self.dashboard_port = free_port()
        while self.dashboard_port in (self.api_port, self.api_port + 1):
            self.dashboard_port = free_port()
        self.data_dir = data_dir or tmp_path / "data"
        self.console_path = tmp_path / "serve.out"
        self.marker = f"TRACES_DATA_DIR={self.data_dir}".encode()
        env = {key: value for key, value in os.environ.items() if not key.startswith("TRACES_")}
        env.update(TRACES_API_PORT=str(self.api_port), TRACES_DASHBOARD_PORT=str(self.dashboard_port),
                   TRACES_DATA_DIR=str(self.data_dir), TRACES_PG_PORT=str(free_port()), PYTHONUNBUFFERED="1")
        with open(self.console_path, "wb") as console:
            self.process = subprocess.Popen([str(ROOT / "serve.sh"), *args], stdin=subprocess.DEVNULL, stdout=console,
                                            stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                            preexec_fn=default_ctrl_c)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def console(self) -> str:
        return self.console_path.read_text(errors="replace")

    def processes(self) -> dict[int, str]:
        """Every live process of this run (the script, what it started, and what those started): pid → command line."""
        found: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:          # gone meanwhile, or not ours to read
                continue
            if self.marker in environ.split(b"\0"):
                found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        return found

    def component(self, needle: str) -> int:
        matches = [pid for pid, cmdline in self.processes().items() if needle in cmdline and pid != self.process.pid]
        assert len(matches) == 1, f"{needle!r}: {self.processes()}"
        return matches[0]

    def answers(self, url: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve.sh exited with {self.process.returncode}:\n{self.console()}")
        try:
            with httpx.Client(trust_env=False, timeout=2) as client:
                return client.get(url).status_code == 200
        except httpx.TransportError:
            return False

    def wait_started(self) -> None:
        poll_until(lambda: self.answers(self.api_url + "/healthz"), START_SECONDS, "the API's /healthz")
        poll_until(lambda: self.answers(self.dashboard_url + "/liveness"), START_SECONDS, "the dashboard's /liveness")
        poll_until(lambda: STARTED in self.console() or self.process.poll() is not None, START_SECONDS,
                   "serve.sh to print its URLs")
        assert STARTED in self.console(), self.console()

    def wait_exit(self) -> int:
        try:
            return self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve.sh still running {STOP_SECONDS} s later:\n{self.console()}") from None

    def cleanup(self) -> None:
        """Whatever happened: nothing of this run survives the test."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def serve(tmp_path: Path):
    run = ServeRun(tmp_path)
    try:
        run.wait_started()
        yield run
    finally:
        run.cleanup()


def assert_started_without_showing_a_token(run: ServeRun) -> dict[str, int]:
    """All three running, both URLs answering, the token in a private file and nowhere on the console."""
    pids = {name: run.component(needle) for name, needle in
            [("api", "-m dashboard api"), ("demo", "-m dashboard demo"), ("dashboard", "-m panel serve")]}
    console = run.console()
    assert "eyJ" not in console, console
    token_file = run.data_dir / "demo.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f'-H "Authorization: Bearer $(cat {token_file})" {run.api_url}/api/analytics/traces/stream' in console
    with httpx.Client(trust_env=False, timeout=5) as client:
        answer = client.get(run.api_url + "/api/analytics/traces?limit=1",
                            headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
    assert answer.status_code == 200, answer.text
    assert (run.data_dir / "traces.db").exists(), "the store should follow TRACES_DATA_DIR"
    return pids


def test_serve_starts_all_three_prints_no_token_and_ctrl_c_stops_them_all(serve: ServeRun):
    assert_started_without_showing_a_token(serve)

    began = time.monotonic()
    os.killpg(serve.process.pid, signal.SIGINT)
    code = serve.wait_exit()

    assert code == -signal.SIGINT, serve.console()   # stopped everything, then ended by the Ctrl-C, as shells expect
    assert "stopping…" in serve.console()
    assert serve.processes() == {}
    print(f"Ctrl-C to exit: {time.monotonic() - began:.1f} s")


def test_when_the_api_dies_serve_stops_the_demo_and_the_dashboard_and_says_so(serve: ServeRun):
    pids = assert_started_without_showing_a_token(serve)

    began = time.monotonic()
    os.kill(pids["api"], signal.SIGKILL)
    code = serve.wait_exit()

    console = serve.console()
    assert code == 1, console
    assert re.search(r"^serve\.sh: the API ended \(killed by SIGKILL\); its output is above\.", console, re.M), console
    assert "Killed" not in console.replace("killed by SIGKILL", ""), console   # no job-control noise from bash
    assert serve.processes() == {}
    print(f"API killed to serve.sh exit: {time.monotonic() - began:.1f} s")


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed (./serve.sh test installs it as root)")
def test_serve_postgres_runs_it_all_on_a_local_postgresql_across_two_api_processes(tmp_path: Path):
    data_dir = Path(tempfile.mkdtemp(prefix="serve-postgres-"))  # not under pytest's private tmp: the postgres user reads it
    data_dir.chmod(0o755)
    run = ServeRun(tmp_path, "postgres", data_dir=data_dir)
    try:
        run.wait_started()
        assert "On PostgreSQL (postgresql://" in run.console()
        token = (run.data_dir / "demo.token").read_text().strip()
        second = f"http://127.0.0.1:{run.api_port + 1}"
        with httpx.Client(trust_env=False, timeout=5, headers={"Authorization": f"Bearer {token}"}) as client:
            assert client.get(second + "/healthz").json()["store"] == "postgres"
            written = client.post(second + "/api/traces", json={"name": "through-the-second-node"}).json()
            assert client.get(f"{run.api_url}/api/analytics/traces/{written['id']}").status_code == 200
        os.killpg(run.process.pid, signal.SIGINT)
        assert run.wait_exit() == -signal.SIGINT, run.console()
        assert run.processes() == {}  # PostgreSQL too
    finally:
        run.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
