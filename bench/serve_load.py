"""Load test of `mnistlab serve`: req/s, p50 and p99 at 1, 8, 32 and 128 connections, then a stalled-upload attack.

The server runs as a subprocess (`python -m mnistlab serve RUN --host 127.0.0.1 --port 0`: loopback only, a free
port read from its banner). Its RSS (summed over its worker processes) is read from /proc before and after
each phase. The client is a small keep-alive HTTP/1.1 client on asyncio streams, so that the client's own
CPU (it shares the machine's cores with the server) stays small next to the server's; every request is the
page's kind of work: POST /api/predict with a real MNIST test digit drawn dark-on-light, as a PNG upload.

The attack: ``--attack-clients`` (300) connections each declare a 2,000,000-byte body, send 1,900,000 bytes
of it, then stall. We report the server's RSS during it, how each client was answered (408 after the body
deadline, 503 past the in-flight cap), and how long after the stall began the RSS was back within 50 MB of
its value before the attack.

Every loop is bounded in time and in count. Usage (the lead's command; --run defaults to a small cnn run
trained into a temporary folder first):

    PYTHONPATH=src python bench/serve_load.py --out bench/results/serve.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from measure import load_average, write_json

HOST = "127.0.0.1"  # loopback only, always
ATTACK_DECLARED = 2_000_000  # bytes declared in Content-Length (under the server's 2 MiB limit)
ATTACK_SENT = 1_900_000  # bytes actually sent before stalling
RECOVERED_WITHIN_MB = 50.0


# ---- the server under test ------------------------------------------------------------------------------------


def train_small_run(folder: Path) -> Path:
    """The default cnn on 5,000 images for one epoch (~10 s): load testing needs the model, not its accuracy."""
    out = folder / "run"
    cmd = [sys.executable, "-m", "mnistlab", "train", "--model", "cnn", "--train-subset", "5000"]
    subprocess.run([*cmd, "--threads", "1", "--out", str(out), "-q"], check=True, timeout=600)
    return out


def start_server(
    run: Path, serve_args: list[str], log: Path, timeout: float = 120
) -> tuple[subprocess.Popen, int]:
    """`mnistlab serve` on 127.0.0.1 and a free port; returns (process, port) once /healthz answers."""
    cmd = [sys.executable, "-m", "mnistlab", "serve", str(run), "--host", HOST, "--port", "0", *serve_args]
    # stderr to a file, not a pipe: nobody reads a pipe while we measure, and a full one would block the server.
    with log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    banner = proc.stdout.readline()  # printed once the port is bound; blocks at most until the process exits
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {banner}{log.read_text()[-2000:]}")
    port = int(match.group(1))
    deadline = time.monotonic() + timeout
    while asyncio.run(status_of(port, get("/healthz"))) != 200:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("server did not answer /healthz in time")
        time.sleep(0.2)
    return proc, port


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the worker processes)."""
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the process has just exited
    return found


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MB (10^6 bytes)."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            total_kb += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1))
        except (OSError, AttributeError):
            continue
    return round(total_kb * 1024 / 1e6, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far: what the server itself spent, whatever
    else runs on the machine (its wall-clock latency also counts the waits for a core)."""
    ticks = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


# ---- a minimal keep-alive HTTP/1.1 client ----------------------------------------------------------------


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def post_upload(png: bytes) -> bytes:
    boundary = "mnistlabbench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes the connection) of one response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection") == "close"


async def status_of(port: int, request: bytes) -> int | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        writer.write(request)
        status, _, _ = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        return status
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return None


# ---- load levels ----------------------------------------------------------------------------------------------


async def connection_loop(port, request, stop_at, max_requests, latencies, errors) -> None:
    """One client connection: send, wait for the answer, repeat until ``stop_at`` (reconnect after an error)."""
    writer = None
    for _ in range(max_requests):
        if time.monotonic() >= stop_at:
            break
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
            t0 = time.perf_counter()
            writer.write(request)
            status, body, closing = await asyncio.wait_for(read_response(reader), 30)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 200 or b'"label"' not in body:
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
            if closing:
                writer.close()
                writer = None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def load_level(port: int, request: bytes, connections: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    t0 = time.monotonic()
    stop_at = t0 + seconds
    per_connection = max(1, max_requests // connections)
    await asyncio.gather(
        *(
            connection_loop(port, request, stop_at, per_connection, latencies, errors)
            for _ in range(connections)
        )
    )
    elapsed = time.monotonic() - t0
    latencies.sort()
    return {
        "connections": connections,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))], 2)
        if latencies
        else None,
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


# ---- the stalled-upload attack -------------------------------------------------------------------------------


async def stalled_client(port: int, payload: bytes, sent_at: list[float], stop_at: float) -> str:
    """Send the headers and 1.9 MB of a 2 MB body, then stall; return how the server ended it."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    except (OSError, asyncio.TimeoutError):
        return "connect failed"
    try:
        writer.write(payload)
        await asyncio.wait_for(writer.drain(), max(0.1, stop_at - time.monotonic()))
        sent_at.append(time.monotonic())
        status, _, _ = await asyncio.wait_for(read_response(reader), max(0.1, stop_at - time.monotonic()))
        return f"HTTP {status}"
    except asyncio.TimeoutError:
        return "no answer before the attack's time limit"
    except asyncio.IncompleteReadError:
        return "closed without a response"
    except OSError as exc:
        return type(exc).__name__
    finally:
        writer.close()


async def attack(port: int, pid: int, clients: int, max_seconds: float) -> dict:
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {ATTACK_DECLARED}\r\n\r\n"
    ).encode()
    payload = head + b" " * ATTACK_SENT
    before = rss_mb(pid)
    t0 = time.monotonic()
    stop_at = t0 + max_seconds
    sent_at: list[float] = []
    tasks = [asyncio.create_task(stalled_client(port, payload, sent_at, stop_at)) for _ in range(clients)]
    timeline: list[tuple[float, float]] = []
    recovered_at = None
    while time.monotonic() < stop_at:
        now, rss = time.monotonic(), rss_mb(pid)
        timeline.append((round(now - t0, 2), rss))
        done = all(t.done() for t in tasks)
        if done and rss <= before + RECOVERED_WITHIN_MB:
            recovered_at = now
            break
        await asyncio.sleep(0.25)
    outcomes: dict[str, int] = {}
    for result in await asyncio.gather(*tasks):
        outcomes[result] = outcomes.get(result, 0) + 1
    stall_began = max(sent_at) if sent_at else t0
    return {
        "clients": clients,
        "declared_bytes": ATTACK_DECLARED,
        "sent_bytes": ATTACK_SENT,
        "rss_before_mb": before,
        "rss_peak_mb": max(r for _, r in timeline),
        "rss_end_mb": timeline[-1][1],
        "stall_began_s": round(stall_began - t0, 2),
        "recovered_within_50mb_s_after_stall": None
        if recovered_at is None
        else round(max(0.0, recovered_at - stall_began), 2),
        "recovered_within_50mb_s_after_start": None if recovered_at is None else round(recovered_at - t0, 2),
        "outcomes": outcomes,
        "rss_timeline_s_mb": timeline,
    }


# ---- main -----------------------------------------------------------------------------------------------------


def digit_png() -> bytes:
    """The first MNIST test digit, 3x larger and dark ink on light paper, as a user's upload would be."""
    from mnistlab.data import load_dataset

    digit = load_dataset("mnist", progress=False).test_images[0]
    img = Image.fromarray(255 - np.kron(digit, np.ones((3, 3), dtype=np.uint8)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def run_bench(args: argparse.Namespace, run: Path, log: Path) -> dict:
    serve_args = ["--workers", str(args.workers), "--request-timeout", str(args.request_timeout)]
    result: dict = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": git_commit(),
        "serve_args": serve_args,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before": load_average(),
    }
    proc, port = start_server(run, serve_args, log)
    try:
        request = post_upload(digit_png())
        asyncio.run(
            load_level(port, request, 1, 1.0, 50)
        )  # warm-up: first-call costs stay out of the figures
        result["rss_before_load_mb"] = rss_mb(proc.pid)
        result["levels"] = []
        for connections in args.levels:
            server_cpu, client_cpu = cpu_seconds(proc.pid), time.process_time()
            level = asyncio.run(load_level(port, request, connections, args.seconds, args.max_requests))
            requests = max(1, level["requests"])
            level["server_cpu_ms_per_request"] = round(
                (cpu_seconds(proc.pid) - server_cpu) * 1000 / requests, 2
            )
            level["client_cpu_ms_per_request"] = round(
                (time.process_time() - client_cpu) * 1000 / requests, 2
            )
            level["rss_after_mb"] = rss_mb(proc.pid)
            result["levels"].append(level)
            print(json.dumps({k: v for k, v in level.items() if k != "error_kinds"}), flush=True)
        result["rss_after_load_mb"] = rss_mb(proc.pid)
        if args.attack_clients:
            result["attack"] = asyncio.run(attack(port, proc.pid, args.attack_clients, args.attack_seconds))
            result["attack"]["serves_after"] = asyncio.run(status_of(port, get("/healthz"))) == 200
            print(
                json.dumps({k: v for k, v in result["attack"].items() if k != "rss_timeline_s_mb"}),
                flush=True,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    result["load_average_after"] = load_average()
    return result


def git_commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def markdown(result: dict) -> str:
    lines = [
        f"Command: `{result['command']}` at {result['commit']}; server `{' '.join(result['serve_args'])}`, "
        f"{result['cores']} cores.",
        f"Load average before {result['load_average_before']}, after {result['load_average_after']}.",
        f"Server RSS before the load {result['rss_before_load_mb']} MB, after {result['rss_after_load_mb']} MB.",
        "",
        "| connections | requests | req/s | p50 ms | p99 ms | errors | server CPU ms/req | client CPU ms/req "
        "| RSS after, MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in result["levels"]:
        lines.append(
            f"| {lv['connections']} | {lv['requests']:,} | {lv['req_per_s']:,} | {lv['p50_ms']} | "
            f"{lv['p99_ms']} | {lv['errors']} | {lv['server_cpu_ms_per_request']} | "
            f"{lv['client_cpu_ms_per_request']} | {lv['rss_after_mb']} |"
        )
    a = result.get("attack")
    if a:
        lines += [
            "",
            f"Stalled-upload attack: {a['clients']} clients each sent {a['sent_bytes']:,} of {a['declared_bytes']:,} "
            f"declared bytes, then stalled. RSS before {a['rss_before_mb']} MB, peak {a['rss_peak_mb']} MB, "
            f"end {a['rss_end_mb']} MB; back within 50 MB {a['recovered_within_50mb_s_after_stall']} s after "
            f"the stall began ({a['recovered_within_50mb_s_after_start']} s after the first connection). "
            f"Answers: {a['outcomes']}. Serves afterwards: {a['serves_after']}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="run folder to serve (default: train a small cnn run first)")
    parser.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each load level")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap on requests per level")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=10.0, help="the server's --request-timeout")
    parser.add_argument("--attack-clients", type=int, default=300, help="0: no attack")
    parser.add_argument("--attack-seconds", type=float, default=60.0, help="time limit of the attack phase")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mnistlab-serve-bench-") as tmp:
        run = args.run or train_small_run(Path(tmp))
        result = run_bench(args, run, Path(tmp) / "server.log")
    if args.out:
        write_json(args.out, result)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
