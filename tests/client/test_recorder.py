"""dashboard.client's Recorder: calls recorded from plain Python reach a real API on loopback.

What a user checks: decorated sync and async functions and ``with``/``async with`` blocks appear as
traces with their model, tokens, latency and status; a failing call is an ``error`` trace and its
exception reaches the caller unchanged; a slow call is seen running, then final; an API that is
down, hangs or refuses never blocks or raises into the caller, the buffer keeps to its byte bound
and counts what it dropped, and what it kept arrives when the API is back, or at exit.
Every wait is on a condition (a flush, an event, a process exit) under a deadline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from dashboard.backoff import Backoff
from dashboard.client import Recorder
from dashboard.schema import TRACES_PATH
from dashboard.server.auth import Authenticator

from ..support import ROOT, TEST_SECRET, ThreadedApi, free_port
from ..support import test_settings as settings_in

FAST = Backoff(0.01, 0.05)
WORKER = "trace-recorder"


# --- helpers --------------------------------------------------------------------------------------


def completion(model: str = "gpt-4o-2024-08-06", prompt: int = 12, output: int = 30) -> SimpleNamespace:
    """What an OpenAI ChatCompletion looks like to the recorder (duck-typed, no openai import)."""
    usage = SimpleNamespace(prompt_tokens=prompt, completion_tokens=output, total_tokens=prompt + output)
    return SimpleNamespace(model=model, usage=usage, choices=[])


def stored(api: Any, user: str = "alice") -> list[dict[str, Any]]:
    """The user's traces as the API serves them, newest first."""
    response = httpx.get(api.url + TRACES_PATH, params={"limit": 1000}, timeout=10,
                         headers={"Authorization": f"Bearer {api.token(user)}"})
    assert response.status_code == 200, response.text
    return response.json()["traces"]


@dataclass
class Sent:
    method: str
    path: str
    body: Any
    thread: str


@dataclass
class Wire:
    """Every request a recorder makes, and the thread it made it on."""

    requests: list[Sent] = field(default_factory=list)
    first: threading.Event = field(default_factory=threading.Event)

    def hook(self, request: httpx.Request) -> None:
        body = json.loads(request.content) if request.content else None
        self.requests.append(Sent(request.method, request.url.path, body, threading.current_thread().name))
        self.first.set()

    def client(self, transport: httpx.BaseTransport | None = None, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(transport=transport, timeout=timeout, event_hooks={"request": [self.hook]})

    def statuses(self) -> list[tuple[str, list[str] | str]]:
        """(method, statuses sent): a POST's batch, or a PATCH's one status."""
        return [(r.method, [t["status"] for t in r.body["traces"]] if r.method == "POST" else r.body["status"])
                for r in self.requests]


@pytest.fixture
def make_recorder() -> Iterator[Callable[..., Recorder]]:
    """Recorders (closed afterwards, then the clients given to them)."""
    made: list[Recorder] = []
    clients: list[httpx.Client] = []

    def make(url: str, token: str, **options: Any) -> Recorder:
        options.setdefault("backoff", Backoff(FAST.initial, FAST.cap))
        if isinstance(options.get("client"), httpx.Client):
            clients.append(options["client"])
        recorder = Recorder(url, token, **options)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close(timeout=1)
    for client in clients:
        client.close()


@pytest.fixture
def client_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="dashboard.client")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "dashboard.client" and r.levelno >= logging.WARNING]


@pytest.fixture
def silent_api() -> Iterator[str]:
    """A port that accepts connections and never answers: a hung API."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- what a user records --------------------------------------------------------------------------


def test_a_decorated_function_is_a_trace_with_model_tokens_latency_and_status(api, make_recorder):
    recorder = make_recorder(api.url, api.token("alice"))

    @recorder.record(provider="openai", metadata={"team": "search"})
    def summarize(text: str) -> SimpleNamespace:
        return completion()

    @recorder.record
    def plain(x: int) -> int:
        return x * 2

    answer = summarize("a long text")
    assert answer.usage.prompt_tokens == 12  # the result reaches the caller as is
    assert plain(21) == 42 and plain.__name__ == "plain"
    assert recorder.flush(5)

    by_name = {t["name"]: t for t in stored(api)}
    trace = by_name[summarize.__qualname__]
    assert trace["status"] == "success" and trace["error"] is None
    assert trace["model"] == "gpt-4o-2024-08-06" and trace["provider"] == "openai"
    assert (trace["input_tokens"], trace["output_tokens"], trace["total_tokens"]) == (12, 30, 42)
    assert trace["latency_ms"] > 0 and trace["metadata"] == {"team": "search"}
    assert trace["started_at"].endswith("Z") and trace["started_at"] <= trace["ended_at"]
    other = by_name[plain.__qualname__]
    assert other["status"] == "success" and other["model"] is None and other["input_tokens"] is None
    assert recorder.stats.sent == 2 and recorder.stats.dropped == 0 and recorder.stats.pending_bytes == 0


async def test_async_functions_and_async_with_are_traces_too(api, make_recorder):
    recorder = make_recorder(api.url, api.token("alice"))
    gate = asyncio.Event()

    @recorder.record("answer", model="claude-3-5-sonnet")
    async def answer(question: str) -> dict[str, Any]:
        await gate.wait()
        return {"model": "claude-3-5-sonnet-20241022", "usage": {"input_tokens": 7, "output_tokens": 9}}

    calls = [asyncio.create_task(answer(f"q{i}")) for i in range(3)]
    async with recorder.call("rerank", model="rerank-v3") as call:
        call.input = {"query": "cats", "documents": ["a", "b"]}
        call.output = ["b", "a"]
        call.input_tokens, call.output_tokens, call.cost_usd = 40, 2, 0.00025
        call.metadata["session"] = "s-1"
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*calls), 5)
    assert all(r["usage"]["input_tokens"] == 7 for r in results)
    assert await asyncio.to_thread(recorder.flush, 5)

    traces = stored(api)
    answers = [t for t in traces if t["name"] == "answer"]
    assert len(answers) == 3 and len({t["id"] for t in answers}) == 3
    for trace in answers:
        assert trace["status"] == "success" and trace["model"] == "claude-3-5-sonnet"  # the given model is kept
        assert (trace["input_tokens"], trace["output_tokens"]) == (7, 9) and trace["latency_ms"] > 0
    [rerank] = [t for t in traces if t["name"] == "rerank"]
    assert rerank["input"] == {"query": "cats", "documents": ["a", "b"]} and rerank["output"] == ["b", "a"]
    assert (rerank["total_tokens"], rerank["cost_usd"], rerank["metadata"]) == (42, 0.00025, {"session": "s-1"})


async def test_an_exception_is_an_error_trace_and_reaches_the_caller_unchanged(api, make_recorder):
    recorder = make_recorder(api.url, api.token("alice"))
    raised = ValueError("the model said no")

    @recorder.record(model="gpt-4o")
    def sync_call() -> None:
        raise raised

    @recorder.record(model="gpt-4o")
    async def async_call() -> None:
        raise KeyError("choices")

    with pytest.raises(ValueError) as info:
        sync_call()
    assert info.value is raised and info.traceback[-1].name == "sync_call"
    with pytest.raises(KeyError):
        await async_call()
    with pytest.raises(TimeoutError):
        with recorder.call("in-a-block"):
            raise TimeoutError()
    assert await asyncio.to_thread(recorder.flush, 5)

    errors = {t["name"]: t for t in stored(api)}
    assert errors[sync_call.__qualname__]["error"] == "ValueError: the model said no"
    assert errors[async_call.__qualname__]["error"] == "KeyError: 'choices'"
    assert errors["in-a-block"]["error"] == "TimeoutError"
    assert {t["status"] for t in errors.values()} == {"error"} and all(t["latency_ms"] >= 0 for t in errors.values())


def test_a_slow_call_is_seen_running_then_updated_to_its_end(api, make_recorder):
    wire = Wire()
    recorder = make_recorder(api.url, api.token("alice"), client=wire.client())
    entered, release = threading.Event(), threading.Event()

    @recorder.record("slow", model="gpt-4o")
    def slow() -> SimpleNamespace:
        entered.set()
        assert release.wait(10)
        return completion(prompt=5, output=6)

    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(slow)
        assert entered.wait(5)
        assert recorder.flush(5)  # the start is on the server now
        [running] = stored(api)
        assert running["status"] == "running" and running["ended_at"] is None and running["name"] == "slow"
        release.set()
        done.result(5)
    assert recorder.flush(5)

    [final] = stored(api)
    assert final["id"] == running["id"] and final["status"] == "success"
    assert (final["input_tokens"], final["output_tokens"]) == (5, 6) and final["latency_ms"] > 0
    assert wire.statuses() == [("POST", ["running"]), ("PATCH", "success")]
    assert wire.requests[1].path.endswith("/" + final["id"])
    assert {r.thread for r in wire.requests} == {WORKER}


def test_a_call_that_ends_before_its_start_left_is_sent_once_final(api, make_recorder):
    wire = Wire()
    recorder = make_recorder(api.url, api.token("alice"), client=wire.client(), flush_interval=60)
    for i in range(3):
        with recorder.call(f"quick-{i}", model="gpt-4o-mini") as call:
            call.output = "ok"
    assert recorder.flush(5)
    assert wire.statuses() == [("POST", ["success"] * 3)]  # one batch, no running, no PATCH
    assert sorted(t["name"] for t in stored(api)) == ["quick-0", "quick-1", "quick-2"]
    assert recorder.stats.sent == 3


# --- when the API is down, hung or says no ---------------------------------------------------------


def test_with_the_api_down_the_buffer_keeps_to_its_bound_and_delivers_when_the_api_is_back(
        tmp_path, make_recorder, client_warnings):
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}"
    token = Authenticator(TEST_SECRET).issue_token("alice", 3600)  # one the API started below accepts
    recorder = make_recorder(url, token, max_buffer_bytes=2000, flush_interval=60)
    calls = 40
    for i in range(calls):
        with recorder.call(f"call-{i:02}", model="gpt-4o") as call:
            call.input = "x" * 100
    stats = recorder.stats
    kept = stats.pending
    assert 0 < kept < calls and stats.pending_bytes <= 2000
    assert stats.dropped >= calls - kept and stats.sent == 0
    [warning] = client_warnings()  # one, not one per drop
    assert "buffer is full" in warning

    assert recorder.flush(0.3) is False  # tried, and the API is not there
    assert recorder.stats.last_error is not None and "cannot reach" in recorder.stats.last_error

    api = ThreadedApi(settings_in(tmp_path))
    api.server.config.port = port  # the API comes up where the recorder has been knocking
    api.start()
    try:
        assert recorder.flush(10)
        traces = stored(api)
    finally:
        api.stop()
    assert sorted(t["name"] for t in traces) == [f"call-{i:02}" for i in range(kept)]  # the oldest were kept
    assert {t["status"] for t in traces} == {"success"}
    assert recorder.stats.sent == kept and recorder.stats.pending == 0


def test_a_hung_api_never_blocks_the_caller_and_close_gives_up_in_time(make_recorder, silent_api, client_warnings):
    wire = Wire()
    recorder = make_recorder(silent_api, "token", client=wire.client(timeout=30), max_buffer_bytes=4096,
                             flush_interval=0.01)
    with recorder.call("first"):
        pass
    assert wire.first.wait(5)  # the worker is now waiting on an answer that never comes

    worst = 0.0
    began = time.perf_counter()

    def record(n: int) -> None:
        nonlocal worst
        for i in range(n):
            start = time.perf_counter()
            with recorder.call(f"c{i}", model="gpt-4o") as call:
                call.input = "y" * 200
            worst = max(worst, time.perf_counter() - start)
            assert recorder.stats.pending_bytes <= 4096

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(record, 100) for _ in range(4)]:
            done.result(10)
    assert time.perf_counter() - began < 5 and worst < 1.0  # no call waited on the wire (a read takes 30 s)
    assert recorder.dropped > 0 and recorder.stats.sent == 0
    assert {r.thread for r in wire.requests} == {WORKER} and len(wire.requests) == 1

    began = time.perf_counter()
    recorder.close(timeout=0.2)
    assert time.perf_counter() - began < 1  # the request still hangs; close does not wait for it
    with recorder.call("after-close"):  # dropped, counted, never raised
        pass
    assert recorder.stats.dropped >= 1 and any("closed" in w for w in client_warnings())


def test_an_end_too_big_for_the_buffer_is_sent_without_its_data_rather_than_leave_the_call_running(
        api, make_recorder, client_warnings):
    recorder = make_recorder(api.url, api.token("alice"), max_buffer_bytes=600, flush_interval=60)
    with recorder.call("big-answer", model="gpt-4o") as call:
        call.output = "z" * 1000  # the start fits the buffer; the end with this output does not
        call.output_tokens = 250
    assert recorder.flush(5)
    [trace] = stored(api)
    assert (trace["status"], trace["output_tokens"], trace["output"]) == ("success", 250, None)
    assert trace["metadata"] == {"recorder_omitted": ["input", "output", "metadata"]}
    assert recorder.stats.dropped == 0 and any("buffer is full" in w for w in client_warnings())


def test_a_record_the_api_refuses_is_dropped_and_counted_and_the_rest_of_its_batch_arrives(
        api, make_recorder, client_warnings):
    wire = Wire()
    recorder = make_recorder(api.url, api.token("alice"), client=wire.client(), flush_interval=60)
    for name, cost in (("good-1", 0.1), ("bad", -1.0), ("good-2", 0.2), ("good-3", 0.3)):
        with recorder.call(name) as call:
            call.cost_usd = cost
    assert recorder.flush(5)
    assert sorted(t["name"] for t in stored(api)) == ["good-1", "good-2", "good-3"]
    stats = recorder.stats
    assert (stats.sent, stats.dropped, stats.pending) == (3, 1, 0)
    assert "cost_usd" in stats.last_error and "422" in stats.last_error
    assert any("refused 1 trace" in w and "cost_usd" in w for w in client_warnings())


def test_a_refused_token_drops_the_batch_once_and_says_why(api, make_recorder, client_warnings):
    wire = Wire()
    recorder = make_recorder(api.url, "not-a-token", client=wire.client(), flush_interval=60)
    for i in range(3):
        with recorder.call(f"c{i}"):
            pass
    assert recorder.flush(5)  # settled by dropping, not retried for ever
    assert len(wire.requests) == 1 and recorder.stats.dropped == 3
    assert any("401" in w for w in client_warnings())


class LoseFirstAnswer(httpx.BaseTransport):
    """The first POST reaches the server, and its answer is lost on the way back."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and not self.lost:
            self.lost = True
            response.read()
            response.close()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_a_batch_whose_answer_was_lost_is_not_stored_twice(api, make_recorder):
    wire = Wire()
    recorder = make_recorder(api.url, api.token("alice"), client=wire.client(LoseFirstAnswer()), flush_interval=60)
    with recorder.call("once", model="gpt-4o") as call:
        call.output = "hello"
    assert recorder.flush(5)
    [trace] = stored(api)
    assert trace["status"] == "success" and trace["output"] == "hello"
    # Sent, answer lost; sent again: 409, the id is taken (by us); so it becomes an update.
    assert [r.method for r in wire.requests] == ["POST", "POST", "PATCH"]
    assert recorder.stats.sent == 1 and recorder.stats.dropped == 0


def test_429_waits_for_retry_after_and_5xx_is_retried(make_recorder):
    answers = [httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"code": "rate", "message": "slow down"}}),
               httpx.Response(503, json={"error": {"code": "store", "message": "unavailable"}})]
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return answers.pop(0) if answers else httpx.Response(201, json={"traces": []})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    recorder = make_recorder("http://api.test", "token", client=client, flush_interval=60)
    with recorder.call("limited"):
        pass
    assert recorder.flush(5)
    assert len(times) == 3 and times[1] - times[0] >= 0.99  # a flush does not cut Retry-After short
    assert recorder.stats.sent == 1 and "503" in (recorder.stats.last_error or "")


# --- lifecycle ------------------------------------------------------------------------------------

EXIT_SCRIPT = """
import sys
from dashboard.client import Recorder

recorder = Recorder(sys.argv[1], sys.argv[2], flush_interval=60, exit_timeout=float(sys.argv[3]))
with recorder.call("at-exit", model="gpt-4o") as call:
    call.output = "bye"
print("recorded", flush=True)
"""


def run_script(url: str, token: str, exit_timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, url, token, str(exit_timeout)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    return done, time.monotonic() - began


def test_a_process_that_exits_without_closing_still_delivers_its_calls(api):
    done, _ = run_script(api.url, api.token("alice"), 5.0)
    assert done.returncode == 0 and done.stdout == "recorded\n" and "Traceback" not in done.stderr, done.stderr
    [trace] = stored(api)
    assert (trace["name"], trace["status"], trace["output"]) == ("at-exit", "success", "bye")


def test_a_process_whose_api_is_down_still_exits_in_time():
    done, took = run_script(f"http://127.0.0.1:{free_port()}", "token", 0.3)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "not delivered" in done.stderr
    assert took < 10  # the import dominates; the flush gives up after exit_timeout


def test_a_recorder_starts_its_thread_on_first_use_and_stops_it_on_close(api, make_recorder):
    def workers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == WORKER}

    before = workers()
    recorder = make_recorder(api.url, api.token("alice"))
    assert recorder.flush(0) and workers() <= before  # nothing recorded: no thread, nothing to wait for
    with recorder.call("one"):
        pass
    [worker] = workers() - before
    recorder.close(timeout=5)
    recorder.close(timeout=5)  # again: nothing happens
    assert not worker.is_alive() and recorder.stats.sent == 1 and len(stored(api)) == 1


def test_record_refuses_a_generator_function(make_recorder):
    recorder = make_recorder("http://api.test", "token")
    with pytest.raises(TypeError, match="generator"):
        @recorder.record
        def stream() -> Iterator[int]:
            yield 1
