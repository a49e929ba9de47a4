"""What ``bench/stream_bench.py`` and ``bench/dashboard_bench.py`` share: servers started on loopback and
read from /proc, the noise meter, percentiles, the machine description and the write-up of the results.

Not a benchmark itself. The scripts are run as files (``.venv/bin/python bench/stream_bench.py``), so this
directory is first on ``sys.path`` and they import it as ``common``. Where the two scripts did a thing in
slightly different ways, the difference is a parameter here, so each still measures and writes exactly what
it did before.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOST = "127.0.0.1"
NOISY_PERCENT = 25.0  # other processes using more than this share of one core make a measurement "noisy"
UNITS = "every number's unit is the end of its name: _ms, _s, _kb, _mb, _per_s, _count, _percent_of_one_core"


# ---------------------------------------------------------------------------------------------------
# Small helpers


def free_port() -> int:
    """A port nobody listens on now, so a run never collides with a developer's own servers."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile, linear between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def r(value: float | None, digits: int = 1) -> float | None:
    """Rounded for the results, None (a measurement that could not be made) passed through."""
    return None if value is None else round(value, digits)


def realistic_trace(name: str, model: str, latency_ms: float, metadata: dict[str, Any]) -> dict[str, Any]:
    """A trace of a realistic size (about 0.7 KB stored): both benchmarks post the same text, so their costs compare."""
    return {
        "name": name,
        "model": model,
        "provider": "openai",
        "status": "success",
        "latency_ms": latency_ms,
        "input_tokens": 420,
        "output_tokens": 128,
        "cost_usd": 0.00041,
        "input": "Summarise this support ticket in two sentences: the customer reports that exports "
                 "time out after five minutes when the report has more than ten thousand rows.",
        "output": "The customer's large exports (over 10k rows) time out after five minutes. They ask "
                  "for a fix or a way to export in parts.",
        "metadata": metadata,
    }


# ---------------------------------------------------------------------------------------------------
# Processes we start, and only those, are killed on the way out


_children: list[subprocess.Popen] = []


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    """Start a child and remember it, so ``kill_children`` can stop it whatever happens."""
    # A session of its own: Ctrl-C reaches only this process, which then stops its children in order.
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    _children.append(proc)
    return proc


def kill_children(keep: tuple[subprocess.Popen | None, ...] = ()) -> None:
    """SIGKILL every child we started that is still running, but those in ``keep``."""
    for proc in _children:
        if proc in keep:
            continue
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    for proc in _children:
        if proc in keep:
            continue
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------------------------------------------
# /proc readers: what a process costs, read by the kernel rather than estimated


def proc_status_kb(pid: int, key: str, required: bool = False) -> int:
    """A number from ``/proc/<pid>/status`` (VmRSS in KB, Threads, ...); 0 if it is missing (a process that has
    exited has no VmRSS), or RuntimeError with ``required``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    if required:
        raise RuntimeError(f"no {key}")
    return 0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> dict[str, int]:
    """Machine-wide CPU time so far from /proc/stat, in clock ticks: busy in processes (user+nice+system),
    interrupts (irq+softirq, where the kernel does much of the loopback networking), iowait, steal."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return {"busy": user + nice + system, "interrupts": irq + softirq, "iowait": iowait, "steal": steal}


def tree_cpu_s(root: int | None = None) -> float:
    """CPU seconds of this process and every descendant (servers, demo, Playwright's driver, Chromium),
    children already reaped included (cutime/cstime), so processes that come and go are not lost."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    cpu: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def browser_cpu_s() -> float:
    """CPU seconds so far of Playwright's driver (our child) and the Chromium it runs, reaped renderers included."""
    for entry in Path("/proc").iterdir():
        try:
            stat, argv = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        if int(stat[stat.rindex(")") + 2:].split()[1]) == os.getpid() and b"playwright" in argv:
            return tree_cpu_s(int(entry.name))
    raise RuntimeError("Playwright's driver is not a child of this process")


# ---------------------------------------------------------------------------------------------------
# Servers under test


class Server:
    """A server subprocess on loopback, with its memory, CPU and file descriptors read from /proc.

    Ready when ``ready_path`` answers 200. The timings are each benchmark's own, kept as its results were
    measured with: ``poll_s`` between readiness probes, ``stop_grace_s`` from SIGTERM to SIGKILL, ``rss_every_s``
    between the samples of ``rss_median_kb``; ``rss_required`` makes a missing VmRSS an error instead of 0."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int,
                 ready_path: str = "/healthz", *, poll_s: float = 0.1, stop_grace_s: float = 10.0,
                 rss_every_s: float = 0.2, rss_required: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.port = port
        self.ready_path = ready_path
        self.poll_s = poll_s
        self.stop_grace_s = stop_grace_s
        self.rss_every_s = rss_every_s
        self.rss_required = rss_required
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def launch(self) -> None:
        """Start the process, its output appended to its log; ``wait_ready`` waits for it to answer."""
        with open(self.log_path, "ab") as log:
            self.proc = spawn(self.argv, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout: float = 60.0) -> Server:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
                try:
                    if (await client.get(self.url + self.ready_path)).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(self.poll_s)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} within {timeout:.0f} s:\n{self.log_tail()}")

    async def start(self, timeout: float = 60.0) -> Server:
        """``launch`` then ``wait_ready``: for a server nothing else has to start alongside."""
        self.launch()
        return await self.wait_ready(timeout)

    def stop(self) -> None:
        """SIGTERM, so the server shuts down as in production; SIGKILL after ``stop_grace_s``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, Any]:
        """Tracebacks and ERROR lines in the server's log: evidence of trouble the numbers may not show."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {"tracebacks_count": 0, "task_exception_never_retrieved_count": 0, "websocket_closed_errors_count": 0, "failed_sending_closed_count": 0,
                    "error_lines_count": 0, "sample": []}
        lines = text.splitlines()
        errors = [line for line in lines if " ERROR " in line or line.startswith("ERROR") or "Exception" in line]
        return {"tracebacks_count": text.count("Traceback (most recent call last)"),
                "task_exception_never_retrieved_count": text.count("Task exception was never retrieved"),
                "websocket_closed_errors_count": text.count("exception=WebSocketClosedError()"),
                "failed_sending_closed_count": text.count("Failed sending message as connection was closed"),
                "error_lines_count": len(errors), "sample": errors[:5]}

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS", required=self.rss_required)

    def threads(self) -> int:
        return proc_status_kb(self.pid, "Threads")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process (all its threads) so far."""
        return proc_cpu_s(self.pid)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def rss_median_kb(self, samples: int) -> int:
        """The median of ``samples`` RSS readings ``rss_every_s`` apart: one reading can catch an allocation burst."""
        values = []
        for _ in range(samples):
            values.append(self.rss_kb())
            await asyncio.sleep(self.rss_every_s)
        return int(statistics.median(values))


def panel_server(name: str, app: Path, env: dict[str, str], workdir: Path, *flags: str) -> Server:
    """``panel serve app`` on loopback on a free port, answering /liveness; ``flags``: panel serve's own."""
    port = free_port()
    return Server(name, [sys.executable, "-m", "panel", "serve", str(app), "--address", HOST, "--port", str(port),
                         "--allow-websocket-origin", f"{HOST}:{port}", "--liveness", *flags], env, workdir, port, "/liveness")


def server_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment for the servers under test: this one without TRACES_* and SUPABASE_* (a developer's own
    settings must not leak into a benchmark), plus ``settings`` and unbuffered output, so the logs are complete."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACES_", "SUPABASE_"))}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def api_metrics(api: Server, token: str) -> dict[str, float]:
    """The API's ``/metrics`` (Prometheus text) as name -> value, labels part of the name."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(api.url + "/metrics", headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


# ---------------------------------------------------------------------------------------------------
# Noise: on a small shared box, CPU used by other processes, not the code, can dominate the numbers


class Load:
    """What else the machine did during a measurement: CPU used by processes that are not ours, interrupts,
    iowait, steal. ``ours`` gives the CPU seconds so far that count as the benchmark's own (by default this
    process's whole tree), ``ours_key`` names their share in the result; a subclass adds fields with ``extra``."""

    def __init__(self, ours: Callable[[], float] = tree_cpu_s,
                 ours_key: str = "bench_tree_percent_of_one_core") -> None:
        self.began = time.monotonic()
        self.jiffies = machine_jiffies()
        self.ours_cpu_s = ours
        self.ours_key = ours_key
        self.ours = ours()

    def extra(self, wall: float) -> dict[str, Any]:
        return {}

    def end(self, children_cpu_s: float = 0.0) -> dict[str, Any]:
        """The shares of one core since construction; ``children_cpu_s``: our CPU that ``ours`` cannot see."""
        wall = max(time.monotonic() - self.began, 1e-9)
        tick = os.sysconf("SC_CLK_TCK")
        now = machine_jiffies()
        ours = self.ours_cpu_s() - self.ours + children_cpu_s
        busy = (now["busy"] - self.jiffies["busy"]) / tick
        others = max(0.0, 100 * (busy - ours) / wall)
        return {
            "noisy": others > NOISY_PERCENT,
            "wall_s": r(wall, 2),
            "machine_busy_percent_of_one_core": r(100 * busy / wall, 0),
            self.ours_key: r(100 * ours / wall, 0),
            "other_processes_percent_of_one_core": r(others, 0),
            "interrupts_percent_of_one_core": r(100 * (now["interrupts"] - self.jiffies["interrupts"]) / tick / wall, 0),
            "iowait_percent_of_one_core": r(100 * (now["iowait"] - self.jiffies["iowait"]) / tick / wall, 0),
            "steal_percent_of_one_core": r(100 * (now["steal"] - self.jiffies["steal"]) / tick / wall, 0),
            **self.extra(wall),
        }


def cpu_per_core_s(machine: dict[str, Any]) -> float:
    """What a ``Load.end()`` saw the whole machine do, in CPU seconds over its cores: no step that needed
    that work could have taken less wall time."""
    return machine["machine_busy_percent_of_one_core"] * machine["wall_s"] / 100 / (os.cpu_count() or 1)


async def wait_quiet(max_s: float, meter: Callable[[], Load] = Load, windows: int = 2, window_s: float = 1.0) -> float:
    """Wait (at most ``max_s``) until other processes used under NOISY_PERCENT of a core for ``windows``
    windows in a row, measured by a new ``meter()`` each window; the seconds waited. Only with --wait-quiet:
    a shared machine's noise is not the code's."""
    began = time.monotonic()
    quiet = 0
    while quiet < windows and time.monotonic() - began < max_s:
        load = meter()
        await asyncio.sleep(window_s)
        quiet = quiet + 1 if not load.end()["noisy"] else 0
    return round(time.monotonic() - began, 1)


# ---------------------------------------------------------------------------------------------------
# Report


def machine_info(packages: tuple[str, ...], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, memory, Python, the versions of ``packages``, the commit;
    ``extra`` (a browser's version, say) comes just before the packages."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {
        "cores_count": os.cpu_count(),
        "cores_usable_count": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_total_mb": mem_kb // 1024,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **(extra or {}),
        "packages": versions,
        "git_commit": commit,
    }


def fmt(value: Any, unit: str = "") -> str:
    """A number for the markdown tables: n/a for None, thousands separators from 10,000, the unit after a
    space (none before a %)."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100:
        value = int(value)
    text = f"{value:,.0f}" if isinstance(value, (int, float)) and abs(value) >= 10_000 else f"{value}"
    return f"{text}{unit}" if unit.startswith("%") else f"{text} {unit}".strip()


def noise_text(run: dict[str, Any]) -> str:
    """The noise of one timed run (its ``machine_during_run``) for a table cell."""
    machine = run["machine_during_run"]
    return f"{fmt(machine['other_processes_percent_of_one_core'])}% of a core" + (" **(noisy)**" if machine["noisy"] else "")


def wait_line(limit: float, waits: list[float], what: str) -> str:
    """The "How it was measured" line on --wait-quiet: ``limit`` the option's value, ``waits`` the seconds
    waited before each timed ``what`` (measurement, step)."""
    if not limit:
        return f"- Timed {what}s started one after another, without waiting for the machine to be quiet."
    return (f"- `--wait-quiet {limit:g}`: before each timed {what} the bench waited (at most {limit:g} s) until "
            f"other processes used under {NOISY_PERCENT:.0f}% of a core for 2 s in a row; it waited "
            f"{', '.join(f'{w:g}' for w in waits)} s.")


# ---------------------------------------------------------------------------------------------------
# Main


def run_and_write(run: Callable[[Path], Awaitable[dict[str, Any]]], *, tmp_prefix: str, keep_tmp: bool,
                  json_name: str, markdown_name: str, markdown: Callable[[dict[str, Any]], str]) -> int:
    """Run ``run(workdir)`` in a fresh temporary directory (kept only with ``keep_tmp``), with SIGTERM and
    SIGINT raising KeyboardInterrupt so every child is killed on the way out; then write the results to
    ``bench/<json_name>`` and their table to ``bench/<markdown_name>``, and print the table. The exit code."""

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (a background job)
    workdir = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    try:
        results = asyncio.run(run(workdir))
    except KeyboardInterrupt:
        print("interrupted; subprocesses stopped", file=sys.stderr)
        return 130
    finally:
        kill_children()
        if keep_tmp:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    (BENCH / json_name).write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (BENCH / markdown_name).write_text(table)
    print()
    print(table)
    return 0


def write_section(heading: str, section: str) -> None:
    """Put ``section`` (which starts with ``heading``) in RESULTS.md in place of its previous version, or at
    the end; the rest of the file is untouched."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else ""
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    path.write_text(text)
