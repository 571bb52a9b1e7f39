"""The server under slow, stalled and greedy clients: real uvicorn on 127.0.0.1, raw sockets, short deadlines.

Each test starts its own server in a thread (a fraction of a second) with deadlines of about half a second,
so that a missing deadline shows as a client still waiting seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn

from mnistlab.app import heap
from mnistlab.app.serve_config import SERVE_ENV, ServeConfig, ServeLimits
from mnistlab.app.server import INFERENCE_THREAD, create_app
from mnistlab.app.serving import app_from_env, bind, uvicorn_config
from mnistlab.cli.app import main
from mnistlab.errors import MnistlabError

HOST = "127.0.0.1"
DEADLINE = 0.5  # s: the request timeout these tests serve with


@contextlib.contextmanager
def serving(run, **limits) -> Iterator[tuple[int, uvicorn.Server]]:
    """The CLI's single-process server (same socket, protocol and config) in a thread; yields (port, server)."""
    config = ServeConfig(str(run.path), host=HOST, port=0, limits=ServeLimits(**limits))
    sock = bind(HOST, 0)
    server = uvicorn.Server(uvicorn_config(create_app(run, config.limits), config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start within 20 s"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def connect(port: int) -> socket.socket:
    conn = socket.create_connection((HOST, port), timeout=5)
    return conn


def read_until_closed(conn: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that was (s after the call)."""
    t0, data = time.monotonic(), b""
    conn.settimeout(0.1)
    while time.monotonic() - t0 < limit:
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - t0


def status(response: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.1 (\d{3})", response)
    return int(match.group(1)) if match else None


def get(port: int, path: str) -> tuple[int | None, bytes]:
    with connect(port) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data, _ = read_until_closed(conn, 5)
    return status(data), data


def stalled_upload(port: int, declared: int = 10_000, sent: int = 100) -> socket.socket:
    conn = connect(port)
    head = f"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    conn.sendall(head.encode() + b" " * sent)
    return conn


# ---- deadlines -------------------------------------------------------------------------------------------


def test_a_stalled_body_gets_408_within_the_deadline_and_the_connection_closes(app_run):
    with serving(app_run, request_timeout=DEADLINE) as (port, _):
        with stalled_upload(port, declared=1_000_000, sent=500_000) as conn:
            response, seconds = read_until_closed(conn, limit=5)
        assert status(response) == 408, response[:200]
        assert b"not received within 0.5 s" in response
        assert (
            DEADLINE * 0.8 < seconds < DEADLINE + 1.5
        )  # closed soon after the deadline: its buffer is freed
        assert get(port, "/healthz")[0] == 200  # and the server still serves


SLOW_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200  # never finished


@pytest.mark.parametrize("case", ["silent", "trickle", "trickle-after-a-response"])
def test_slow_headers_are_cut_off_even_while_bytes_keep_coming(app_run, case):
    """Slowloris: a header byte every 50 ms resets uvicorn's keep-alive timer each time; ours is not reset.

    And a connection that never sends a byte is held by uvicorn for ever: no timer runs before the first request.
    """
    with serving(app_run, request_timeout=DEADLINE) as (port, _), connect(port) as conn:
        if case == "trickle-after-a-response":
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b'"ok"}'):
                first += conn.recv(65536)
            assert status(first) == 200
        t0, answer = time.monotonic(), b""
        conn.settimeout(0.05)
        for byte in SLOW_REQUEST:  # at most 12 s if nothing cuts it off
            try:
                if case != "silent":
                    conn.sendall(bytes([byte]))
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break  # reset by the server
            if not chunk:
                break  # closed by the server
            answer += chunk
        seconds = time.monotonic() - t0
    assert status(answer) == 408, answer
    assert b"request headers not received within 0.5 s" in answer
    assert seconds < DEADLINE + 1.5


def test_requests_past_the_in_flight_cap_get_503_with_retry_after(app_run):
    with serving(app_run, request_timeout=5.0, max_in_flight=2, retry_after=3) as (port, _):
        holders = [stalled_upload(port), stalled_upload(port)]  # two requests in progress (awaiting bodies)
        try:
            answer = (None, b"")
            deadline = time.monotonic() + 5
            while answer[0] != 503 and time.monotonic() < deadline:
                answer = get(port, "/healthz")
            code, response = answer
            assert code == 503, response
            assert re.search(rb"(?i)\r\nretry-after: 3\r\n", response)
            assert b"2 requests in progress" in response
        finally:
            holders.pop().close()  # one slot frees...
        try:
            deadline = time.monotonic() + 5
            while get(port, "/healthz")[0] != 200:  # ...and requests are served again
                assert time.monotonic() < deadline, "no slot freed after a client left"
                time.sleep(0.05)
        finally:
            holders.pop().close()


def test_accepted_connections_have_nagle_off(app_run):
    """Without TCP_NODELAY, each keep-alive response waited ~40 ms for the client's delayed ACK."""
    with serving(app_run) as (port, server), connect(port) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(conn.recv(65536)) == 200
        (protocol,) = server.server_state.connections
        accepted = protocol.transport.get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


# ---- inference thread ------------------------------------------------------------------------------------


def test_inference_runs_on_one_dedicated_thread_with_the_serving_thread_count(app_run):
    seen: list[tuple[str, int, int]] = []

    def record(module, inputs, output):
        seen.append((threading.current_thread().name, threading.get_ident(), torch.get_num_threads()))
        time.sleep(0.05)  # so that concurrent requests overlap here: a pool of several threads would show

    async def six_at_once(app) -> list[int]:
        digit = np.zeros((28, 28), dtype=int)
        digit[6:22, 12:16] = 255  # a "1"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            posts = [client.post("/api/predict", json={"pixels": digit.tolist()}) for _ in range(6)]
            return [r.status_code for r in await asyncio.gather(*posts)]

    # 3 threads: neither torch's default here (2 cores) nor the 1 that other tests' servers set.
    hook = app_run.model.register_forward_hook(record)
    try:
        assert asyncio.run(six_at_once(create_app(app_run, ServeLimits(torch_threads=3)))) == [200] * 6
    finally:
        hook.remove()
    names, idents, threads = zip(*seen, strict=True)
    assert len(seen) == 6 and all(name.startswith(INFERENCE_THREAD) for name in names), names
    assert len(set(idents)) == 1 and threading.get_ident() not in idents  # one thread, not the loop's
    assert set(threads) == {3}


# ---- memory ----------------------------------------------------------------------------------------------


# The burst runs in a fresh interpreter: in the suite's own process the C heap already holds whatever earlier
# tests left (torch, servers, threads), and how a new burst lands in it, and what a trim can give back, then
# depends on the order the tests ran in (it failed that way under load, never alone).
RECLAIMER_BURST = """
import asyncio, ctypes, json, os
from pathlib import Path
from mnistlab.app import heap

def rss_bytes():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

trims = []
real_release = heap.release_free_heap
heap.release_free_heap = lambda: real_release() or trims.append(1)

async def burst_then_quiet():
    reclaimer = asyncio.get_running_loop().create_task(heap.reclaim_forever(0.01, threshold=32 * 2**20))
    await asyncio.sleep(0.05)  # the reclaimer has taken its reference
    # 1,600 bodies of 64 KiB (100 MiB: under malloc's mmap threshold, so from its heap), each followed by a
    # small long-lived object, so that freeing the bodies cannot shrink the heap from its top.
    bodies, pins = [], []
    for _ in range(1600):
        bodies.append(ctypes.create_string_buffer(64 * 1024))
        pins.append(ctypes.create_string_buffer(600))
    del bodies
    before, free = rss_bytes(), heap.free_heap_bytes()
    for _ in range(1000):  # the trim runs in an executor: wait for it to finish (bounded: 10 s)
        if trims:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # ~30 more periods, for a second trim that must not come
    reclaimer.cancel()
    return {"released": before - rss_bytes(), "free_before": free, "trims": len(trims)}

print(json.dumps(asyncio.run(burst_then_quiet())))
"""


@pytest.mark.skipif(not heap.AVAILABLE, reason="needs glibc >= 2.33 (malloc_trim, mallinfo2)")
def test_the_reclaimer_gives_a_freed_burst_back_to_the_os_once():
    out = subprocess.run(
        [sys.executable, "-c", RECLAIMER_BURST], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    assert result["free_before"] > 90 * 2**20  # freed, but still held by malloc
    assert result["released"] > 80 * 2**20
    assert result["trims"] == 1  # once for the burst, not once per period


# ---- the CLI: port check, workers ------------------------------------------------------------------------


def test_serve_on_a_taken_port_says_so_once_and_never_says_serving(app_run, capsys):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", str(app_run.path), "--port", str(port)])
    out = capsys.readouterr()
    assert exit_info.value.code == 1
    assert out.out == ""  # no "serving ..." first
    assert out.err.strip() == (
        f"mnistlab: error: cannot serve on http://{HOST}:{port}/: address already in use "
        "(is another server running there? choose another --port)"
    )


def test_a_bound_port_is_claimed_at_once_so_a_second_serve_cannot_share_it():
    """Two sockets with SO_REUSEADDR may both bind one port until one listens; bind() listens at once."""
    with bind(HOST, 0) as first:
        port = first.getsockname()[1]
        with pytest.raises(MnistlabError, match="address already in use"):
            bind(HOST, port).close()


def test_serve_config_travels_to_workers_as_json(monkeypatch):
    config = ServeConfig(
        "runs/x", port=0, workers=3, limits=ServeLimits(request_timeout=2.5, max_in_flight=7)
    )
    assert ServeConfig.from_json(config.to_json()) == config
    assert ServeConfig.from_json('{"run_dir": "runs/y"}') == ServeConfig("runs/y")  # the rest: defaults
    for bad in ("", "[]", '{"nope": 1}', '{"run_dir": "r", "limits": {"max_in_flight": 0}}'):
        with pytest.raises(ValueError):
            ServeConfig.from_json(bad)
    monkeypatch.delenv(SERVE_ENV, raising=False)
    with pytest.raises(MnistlabError, match=r"\$MNISTLAB_SERVE: not a serve config"):
        app_from_env()


def worker_pids(parent: int) -> list[int]:
    """Child processes of ``parent`` started by multiprocessing's spawn (uvicorn's workers)."""
    children = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts worker processes in /proc")
def test_serve_workers_starts_that_many_processes_that_all_serve(app_run):
    cmd = [sys.executable, "-m", "mnistlab", "serve", str(app_run.path), "--port", "0", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/  \(2 worker processes", banner)
        assert match, banner + proc.stderr.read() if proc.poll() is not None else banner
        port = int(match.group(1))
        deadline = time.monotonic() + 90  # two interpreters import torch and load the run
        while len(worker_pids(proc.pid)) < 2 or get(port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline and proc.poll() is None, "workers did not start"
            time.sleep(0.2)
        assert len(worker_pids(proc.pid)) == 2
        with connect(port) as conn:  # a prediction, from whichever worker accepts it
            body = json.dumps({"pixels": [[0] * 12 + [255] * 4 + [0] * 12] * 28}).encode()
            conn.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            response, _ = read_until_closed(conn, 10)
        assert status(response) == 200 and b'"label"' in response
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
