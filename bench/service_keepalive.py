"""Keep-alive latency of `bench/service.py` (issue 24, item 5): `GET /v1/me` on one kept-alive connection.

A response written as headers then body can wait for the client's delayed ACK when TCP_NODELAY is
off on the server's end (Nagle). asyncio sets TCP_NODELAY only on connections accepted from a socket
made with proto=IPPROTO_TCP, which `spanqa serve` now makes; uvloop sets it on every TCP connection.
So `spanqa serve` is timed four ways, one server at a time: on uvloop and on asyncio's own loop (a
server installed without uvloop: the launcher hides it), each on its own listening socket and on one
made with proto=0 (as before issue 24). Two clients each send `requests` requests on one connection
after `WARM_UP` untimed ones: a raw socket that reads as data arrives (ACKing each segment as the
kernel decides) and http.client. Figures: median and p90 per request, in milliseconds.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import statistics
import sys
import time
from pathlib import Path

from service_processes import cli, free_port, start_server, stop_server

WARM_UP = 20
READY_TIMEOUT_S = 600.0
PATH = "/v1/me"
HIDE_UVLOOP = "import sys; sys.modules['uvloop'] = None; "  # `import uvloop` fails: uvicorn's auto loop is asyncio's
# `spanqa serve` with the listening socket it made before issue 24: proto=0, so no TCP_NODELAY under asyncio.
PROTO_ZERO_SOCKET = """
import socket
from spanqa.service import cli as service_cli
def listening_socket(host, port, backlog=128):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
service_cli.listening_socket = listening_socket
"""
RUN_CLI = "import sys; from spanqa.cli import main; sys.argv[0] = 'spanqa'; sys.exit(main())"
CASES = [("uvloop", "spanqa's (IPPROTO_TCP)"), ("uvloop", "proto=0 (before)"),
         ("asyncio", "spanqa's (IPPROTO_TCP)"), ("asyncio", "proto=0 (before)")]


def launcher(loop: str, proto_zero: bool) -> list[str]:
    if loop == "uvloop" and not proto_zero:
        return cli("spanqa")
    code = (HIDE_UVLOOP if loop == "asyncio" else "") + (PROTO_ZERO_SOCKET if proto_zero else "") + RUN_CLI
    return [sys.executable, "-c", code]


def raw_socket_client(port: int, requests: int) -> list[float]:
    """Milliseconds per request on one connection, reading each response as its bytes arrive."""
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for number in range(WARM_UP + requests):
            started = time.perf_counter()
            sock.sendall(request)
            received = b""
            while True:
                received += sock.recv(65536)
                head, _, body = received.partition(b"\r\n\r\n")
                if _ and len(body) >= _content_length(head):
                    break
            if number >= WARM_UP:
                times.append((time.perf_counter() - started) * 1000)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"{PATH} answered {head[:40]!r}")
    return times


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise SystemExit(f"{PATH} answered without content-length")


def http_client(port: int, requests: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for number in range(WARM_UP + requests):
            started = time.perf_counter()
            connection.request("GET", PATH)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{PATH} answered {response.status}")
            if number >= WARM_UP:
                times.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return times


def _wait_ready(process, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"spanqa serve exited ({process.returncode}); its log ({log}):\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError):
            if "spanqa: ready" in log.read_text(errors="replace"):
                return
        time.sleep(0.2)
    raise SystemExit(f"spanqa serve was not ready in {READY_TIMEOUT_S:.0f} s; its log: {log}")


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": statistics.median(ordered), "p90_ms": ordered[int(0.9 * (len(ordered) - 1))],
            "requests": len(ordered)}


def measure(index: Path, reader: Path, embedder: Path, device: str, env: dict, workdir: Path,
            requests: int) -> list[dict]:
    """One row per (loop, socket): both clients' figures. Servers run one at a time, models loaded."""
    rows = []
    for loop, socket_kind in CASES:
        port = free_port()
        argv = [*launcher(loop, socket_kind.startswith("proto=0")), "serve", "--index", str(index), "--reader",
                str(reader), "--embedder", str(embedder), "--device", device, "--host", "127.0.0.1", "--port",
                str(port), "--rate-limit", "0"]
        log = workdir / f"server-keepalive-{loop}-{'proto0' if 'proto=0' in socket_kind else 'tcp'}.log"
        process = start_server(argv, env, workdir, log)
        try:
            _wait_ready(process, log)
            rows.append({"loop": loop, "socket": socket_kind,
                         "raw_socket": summary(raw_socket_client(port, requests)),
                         "http_client": summary(http_client(port, requests))})
        finally:
            stop_server(process)
        row = rows[-1]
        print(f"keep-alive {loop:7s} {socket_kind:24s} raw socket p50 {row['raw_socket']['median_ms']:.2f} ms, "
              f"http.client p50 {row['http_client']['median_ms']:.2f} ms", flush=True)
    return rows


def report(rows: list[dict]) -> None:
    requests = rows[0]["raw_socket"]["requests"] if rows else 0
    print(f"\nkeep-alive latency of GET {PATH} (one connection, {requests} requests after {WARM_UP} warm-ups):")
    print("| event loop | listening socket | raw socket p50 ms | raw socket p90 ms | http.client p50 ms "
          "| http.client p90 ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        raw, client = row["raw_socket"], row["http_client"]
        print(f"| {row['loop']} | {row['socket']} | {raw['median_ms']:.2f} | {raw['p90_ms']:.2f} "
              f"| {client['median_ms']:.2f} | {client['p90_ms']:.2f} |")
    for loop in ("uvloop", "asyncio"):
        mine = [r for r in rows if r["loop"] == loop]
        if len(mine) == 2:
            new, old = mine if "IPPROTO" in mine[0]["socket"] else mine[::-1]
            ratios = [old[c]["median_ms"] / new[c]["median_ms"] for c in ("raw_socket", "http_client")]
            print(f"{loop}: proto=0 / spanqa's socket, median: raw socket {ratios[0]:.1f}x, http.client "
                  f"{ratios[1]:.1f}x")
    worst = max((r[c]["median_ms"] for r in rows if "IPPROTO" in r["socket"] for c in ("raw_socket", "http_client")),
                default=None)
    if worst is not None:
        print(f"target median < 2 ms on loopback (spanqa's socket, every loop and client): {worst:.2f} ms -> "
              f"{'met' if worst < 2 else 'NOT met'}")
