"""The API behind a real nginx running the shipped ``deploy/nginx.conf`` (tests/nginx.py): events pass at
once (over TLS too), pings keep a quiet stream open past the proxy's read timeout, a reader that stalls is
still seen (and dropped) by the API, resume works through it, the limits agree, no credential reaches its
access log, HTTP/2 carries many streams on one connection, and two API processes behind it share the
traffic and stand in for each other.

Pinned to SQLite, but for the two-process test (PostgreSQL, the store several processes need): what is
under test is the proxy in front, and the stream is the same on both stores (tests/server/test_stream.py).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from ..nginx import Nginx, make_self_signed_cert, nginx_binary
from ..streams import STREAM, open_stream, post_trace, stalled_reader
from ..support import free_port, poll_until, wait_until

pytestmark = pytest.mark.skipif(nginx_binary() is None or shutil.which("openssl") is None,
                                reason="nginx or openssl is not installed (./serve.sh test installs nginx as root)")
SQLITE = pytest.mark.parametrize("store", ["sqlite"])
READ_TIMEOUT = 2.0  # the stream's proxy_read_timeout under test (120 s as shipped)
MIB = 1024 * 1024


@pytest.fixture(scope="session")
def cert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_proxy(tmp_path: Path, cert_folder: Path):
    """``make_proxy(api.url, ...)``: nginx on deploy/nginx.conf in front of those APIs, stream read timeout 2 s."""
    started: list[Nginx] = []

    def make(*api_urls: str) -> Nginx:
        upstreams = [url.removeprefix("http://") for url in api_urls]
        proxy = Nginx(tmp_path / f"nginx-{len(started)}", upstreams, cert_folder,
                      replace={"proxy_read_timeout 120s;": f"proxy_read_timeout {READ_TIMEOUT:g}s;"})
        started.append(proxy)
        return proxy.start()

    yield make
    for proxy in started:
        proxy.stop()


@pytest.fixture
def proxy(api, make_proxy) -> Nginx:
    """nginx in front of the ``api`` fixture (pings every 0.5 s)."""
    return make_proxy(api.url)


@pytest.fixture
async def client(proxy, request):
    """A client of the proxy's loopback HTTP listener, or of its TLS one (``indirect`` parameter "https")."""
    tls = getattr(request, "param", "http") == "https"
    async with httpx.AsyncClient(base_url=proxy.https_url if tls else proxy.url, verify=not tls,
                                 timeout=httpx.Timeout(10, read=10)) as http:
        yield http


# Over TLS too: there a buffering nginx (proxy_buffering on, X-Accel-Buffering ignored) holds the response,
# headers and events alike, in its 16 KB TLS record buffer: no stream opens within 10 s (tried).
LISTENERS = pytest.mark.parametrize("client", ["http", "https"], indirect=True)


@SQLITE
@LISTENERS
async def test_the_stream_keeps_its_headers_through_nginx(api, proxy, client):
    async with open_stream(client, headers=api.headers("alice")) as stream:
        headers = stream.response.headers
        await stream.next("subscribed")
    assert headers["server"].startswith("nginx")  # through the proxy indeed
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["connection"] == "keep-alive"
    assert headers["x-accel-buffering"] == "no"  # passed on, for any proxy in front of this one


@SQLITE
@LISTENERS
async def test_an_event_written_through_nginx_reaches_a_stream_through_nginx_at_once(api, client):
    alice = api.headers("alice")
    lags = []
    async with open_stream(client, headers=alice) as stream:
        await stream.next("subscribed")
        for i in range(20):
            began = time.perf_counter()
            await post_trace(client, alice, id=f"t{i}", model="gpt-4o", status="running")
            [(_, _, trace)] = await stream.traces(1)
            lags.append(time.perf_counter() - began)
            assert trace["id"] == f"t{i}"
    print(f"POST -> event through nginx ({client.base_url.scheme}): "
          f"p50 {statistics.median(lags) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms")
    assert max(lags) < 1.0, lags


@SQLITE
async def test_pings_keep_a_quiet_stream_open_past_the_proxy_read_timeout(api, client):
    alice = api.headers("alice")
    async with open_stream(client, headers=alice) as stream:
        await stream.next("subscribed")
        opened, pings = time.monotonic(), 0
        while time.monotonic() - opened < 2 * READ_TIMEOUT:  # twice the silence nginx allows, but pinged
            await stream.next("ping", timeout=READ_TIMEOUT)
            pings += 1
        await post_trace(client, alice, id="after-the-quiet")
        [(_, _, trace)] = await stream.traces(1)  # still open, still live
    assert pings >= 2 * READ_TIMEOUT / api.settings.ping_interval - 1
    assert trace["id"] == "after-the-quiet"


@SQLITE
async def test_without_pings_nginx_cuts_a_quiet_stream_at_its_read_timeout(make_api, make_proxy):
    api = make_api(ping_interval=30)
    proxy = make_proxy(api.url)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as client:
        async with open_stream(client, headers=api.headers("alice")) as stream:
            await stream.next("subscribed")
            quiet_since = time.monotonic()
            with pytest.raises(httpx.RemoteProtocolError):  # the body stops mid-stream: nginx hung up
                await stream.until_closed(timeout=READ_TIMEOUT + 5)
            cut_after = time.monotonic() - quiet_since
    assert READ_TIMEOUT - 0.1 <= cut_after < READ_TIMEOUT + 2, cut_after
    await wait_until(lambda: api.services.hub.open_streams == 0)  # and the API let the stream go



@SQLITE
async def test_a_stalled_reader_behind_nginx_is_still_dropped_by_the_api(make_api, make_proxy):
    """Unbuffered, nginx holds a few KB for a reader that stopped, so the API sees it stall and drops it
    (it resumes later with nothing lost). A buffering proxy would spool up to 1 GB per stream to disk."""
    api = make_api(ping_interval=0.5, write_rate=1_000_000)  # thousands of traces a second, far past the default
    proxy = make_proxy(api.url)
    alice = api.headers("alice")
    stalled = stalled_reader(proxy.http_port, api.token("alice"))
    client = httpx.AsyncClient(base_url=proxy.url, timeout=httpx.Timeout(10, read=10))
    try:
        await wait_until(lambda: api.services.hub.open_streams == 1)
        batch = {"traces": [{"input": "x" * 2000}] * 1000}  # 2 MB a request
        written = 0
        while api.metric("traces_slow_clients_dropped_total") == 0:
            assert written < 40_000, f"{written} traces (80 MB) written and the stalled reader is still served"
            response = await client.post("/api/traces", headers=alice, json=batch)
            assert response.status_code == 201
            written += 1000
        await wait_until(lambda: api.services.hub.open_streams == 0)
    finally:
        stalled.close()
        await client.aclose()
    print(f"a stalled reader behind nginx was dropped after {written} traces ({written * 2 / 1000:g} MB)")


@SQLITE
async def test_last_event_id_resumes_through_nginx(api, client):
    alice = api.headers("alice")
    async with open_stream(client, headers=alice) as stream:
        await stream.next("subscribed")
        await post_trace(client, alice, id="t1")
        [(last_seen, _, _)] = await stream.traces(1)
    for i in range(2, 5):  # while disconnected
        await post_trace(client, alice, id=f"t{i}")
    async with open_stream(client, headers={**alice, "Last-Event-ID": str(last_seen)}) as stream:
        assert json.loads((await stream.next("subscribed")).data)["replaying_from"] == last_seen
        replayed = await stream.traces(3)
        await post_trace(client, alice, id="t5")
        live = await stream.traces(1)
    got = replayed + live
    assert [trace["id"] for _, _, trace in got] == ["t2", "t3", "t4", "t5"]
    ids = [event_id for event_id, _, _ in got]
    assert ids == sorted(set(ids)) and ids[0] > last_seen


@SQLITE
async def test_nginx_and_the_api_agree_on_the_body_limit(api, proxy, client):
    alice = {**api.headers("alice"), "Content-Type": "application/json"}
    shell = json.dumps({"id": "big", "name": "big", "input": ""}).encode()
    exactly = shell.replace(b'"input": ""', b'"input": "' + b"x" * (8 * MIB - len(shell)) + b'"')
    assert len(exactly) == 8 * MIB == api.settings.max_body_bytes
    stored = await client.post("/api/traces", content=exactly, headers=alice)
    assert stored.status_code == 201, stored.text[:200]  # the largest body the API takes passes the proxy
    refused = await client.post("/api/traces", content=exactly + b" ", headers=alice)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"  # JSON, like the API's own errors
    huge_header = await client.get("/healthz", headers={"X-Padding": "x" * 20_000})
    assert huge_header.status_code == 400  # cut by nginx, where uvicorn alone took 64 MB of headers
    poll_until(lambda: len(proxy.access_lines("/api/traces")) == 2, 5, "both POSTs in the access log")
    took, cut = proxy.access_lines("/api/traces")
    assert " 201 " in took and f"upstream={api.url.removeprefix('http://')}" in took
    assert " 413 " in cut and "upstream=-" in cut  # refused before the API saw a byte


@SQLITE
async def test_no_credential_in_a_query_string_reaches_the_access_log(api, proxy, client):
    token = api.token("alice")
    ticket = (await client.post(STREAM + "/ticket", headers=api.headers("alice"))).json()["ticket"]
    for params in ({"token": token}, {"ticket": ticket}):
        async with open_stream(client, params=params) as stream:
            assert json.loads((await stream.next("connected")).data)["user_id"] == "alice"
    await client.get("/api/analytics/traces", params={"token": token, "limit": 5})
    # nginx writes a line when it finalizes the request, which can be just after the client has the answer.
    poll_until(lambda: len(proxy.access_lines(STREAM)) == 2 and len(proxy.access_lines("/api/analytics/traces")) == 1,
               5, "both streams and the GET in the access log")
    log = proxy.access_log()
    assert token not in log and ticket not in log and "token=" not in log and "?" not in log  # logged, not its query


async def test_forwarded_headers_reach_the_api_and_a_spoofed_one_does_not(api_process, make_proxy):
    node = api_process(env={"TRACES_PING_INTERVAL": "0.5"})
    proxy = make_proxy(node.url)
    # The client comes from 127.0.0.2, nginx from 127.0.0.1 (the API's trusted proxy, by default); what the
    # client claims in X-Forwarded-For is replaced by nginx, and the API logs the address nginx saw.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2", verify=False)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        spoof = {**node.headers("alice"), "X-Forwarded-For": "203.0.113.9"}
        async with client.stream("GET", proxy.https_url + STREAM, headers=spoof) as response:
            assert response.status_code == 200
        redirect = await client.get(proxy.https_url + "/healthz/")
    assert redirect.status_code == 307
    assert redirect.headers["location"].startswith("https://127.0.0.1")  # the API knows it was TLS
    poll_until(lambda: f'127.0.0.2:0 - "GET {STREAM} HTTP/1.1" 200' in node.log(), 5, "the stream in the API's log")
    assert "203.0.113.9" not in node.log()


@SQLITE
async def test_http2_carries_many_streams_on_one_connection(api, proxy, tmp_path):
    if shutil.which("curl") is None or "HTTP2" not in subprocess.run(["curl", "-V"], capture_output=True,
                                                                      text=True).stdout:
        pytest.skip("no curl with HTTP/2")
    tabs = 8  # more than the 6 HTTP/1.1 connections a browser opens to one host
    outputs = [tmp_path / f"tab-{i}.sse" for i in range(tabs)]
    command = ["curl", "--silent", "--insecure", "--http2", "--no-buffer", "--parallel", "--parallel-max", str(tabs),
               "-H", f"Authorization: Bearer {api.token('alice')}"]
    for output in outputs:
        command += [proxy.https_url + STREAM, "-o", str(output)]
    curl = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_until(lambda: api.services.hub.open_streams == tabs)
        async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as client:
            await post_trace(client, api.headers("alice"), id="to-every-tab")
        poll_until(lambda: all(output.exists() and '"to-every-tab"' in output.read_text() for output in outputs),
                   10, "the trace in every tab")
    finally:
        curl.terminate()
        curl.wait(timeout=10)
    poll_until(lambda: len(proxy.access_lines(STREAM)) == tabs, 10, "every stream in the access log")
    lines = proxy.access_lines(STREAM)
    assert all(f"{STREAM} HTTP/2.0" in line for line in lines)
    assert len({re.search(r"conn=(\d+)", line).group(1) for line in lines}) == 1  # one TCP connection for all


@pytest.mark.parametrize("store", ["postgres"])
async def test_two_api_processes_behind_nginx_share_the_work_and_stand_in_for_each_other(api_process, db_url,
                                                                                      make_proxy):
    nodes = [api_process(db_url=db_url) for _ in range(2)]
    proxy = make_proxy(*(node.url for node in nodes))
    alice = nodes[0].headers("alice")
    seen: list[tuple[int, str]] = []
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as client:
        async with open_stream(client, headers=alice) as stream:
            await stream.next("subscribed")
            counts = [await open_streams(client, node.url, alice) for node in nodes]
            assert sorted(counts) == [0, 1]
            holder, other = (nodes[0], nodes[1]) if counts[0] else (nodes[1], nodes[0])
            for i in range(5):  # least_conn: the writes go to the process that does not hold the stream
                await post_trace(client, alice, id=f"before-{i}")
            seen += [(event_id, trace["id"]) for event_id, _, trace in await stream.traces(5)]
            holder.kill()
            with pytest.raises(httpx.RemoteProtocolError):
                await stream.until_closed()
        async with open_stream(client, headers={**alice, "Last-Event-ID": str(seen[-1][0])}) as stream:
            await stream.next("subscribed")  # nginx found the other process
            for i in range(5):
                await post_trace(client, alice, id=f"after-{i}")
            seen += [(event_id, trace["id"]) for event_id, _, trace in await stream.traces(5)]
    ids = [event_id for event_id, _ in seen]
    assert ids == sorted(set(ids))
    assert [trace_id for _, trace_id in seen] == [f"before-{i}" for i in range(5)] + [f"after-{i}" for i in range(5)]
    # Every write was stored by the process the stream was not on: after the kill, nginx may first try the
    # dead one, whose refused connection sent nothing, so it passes the POST on ("502, 201").
    poll_until(lambda: len(proxy.access_lines("/api/traces")) == 10, 5, "every POST in the access log")
    answered = [re.search(r"upstream=(?:\S+, )*(\S+) upstream_status=(?:\d+, )*(\d+) conn=", line).groups()
                for line in proxy.access_lines("/api/traces")]
    assert answered == [(other.url.removeprefix("http://"), "201")] * 10


async def open_streams(client: httpx.AsyncClient, node_url: str, headers: dict[str, str]) -> int:
    metrics = (await client.get(node_url + "/metrics", headers=headers)).text
    return int(float(re.search(r"^traces_open_streams (\S+)$", metrics, re.MULTILINE).group(1)))


async def test_unreachable_api_processes_are_a_json_502_and_plain_http_goes_to_https(make_proxy):
    proxy = make_proxy(f"127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(timeout=10) as client:
        down = await client.get(proxy.url + "/healthz")
        moved = await client.get(proxy.redirect_url + "/app")
    assert down.status_code == 502 and down.json()["error"]["code"] == "api_unavailable"
    assert moved.status_code == 301 and moved.headers["location"] == "https://127.0.0.1/app"
