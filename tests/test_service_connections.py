"""Slow clients and connection limits (issue 24, items 4 and 5): deadlines for requests, caps on
connections with the oldest pending one evicted first, collapsed log lines, TCP_NODELAY."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from service_harness import wait_for_job, write_knowledge_base

from spanqa.errors import ConfigError
from spanqa.service.cli import listening_socket
from spanqa.service.connections import ConnectionLimits, guarded_protocol, total_cap
from spanqa.service.log_repeats import RepeatFilter
from spanqa.settings import ConnectionSettings

HALF_SENT = b"GET /v1/files HTTP/1.1\r\nHost: x\r\n"  # a request line and one header, never finished
SERVER_FD_LIMIT = 1024
FLOOD = 1200  # half-sent requests: more than the server may open files
FLOOD_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 12)]  # loopback sources, 120 connections each
HANG_S = 120  # socket and wait timeouts: only to catch a hang


# -- the eviction policy, without sockets ------------------------------------------------------------


def test_a_full_per_client_cap_evicts_that_clients_oldest_pending_connection():
    limits = ConnectionLimits(max_total=100, max_per_client=3)
    for name in ("a1", "a2", "a3", "b1"):
        assert limits.admit(name, name[0]).admitted
    limits.busy("a1")  # a1's request headers are in: it is not evictable
    decision = limits.admit("a4", "a")
    assert decision.admitted and decision.evicted == ["a2"] and decision.cap == "per-client"
    assert limits.held_by("a") == 3 and limits.held_by("b") == 1
    limits.busy("a3")
    limits.busy("a4")
    refused = limits.admit("a5", "a")  # all of a's connections have a request in progress
    assert not refused.admitted and refused.evicted == [] and limits.held_by("a") == 3
    assert limits.admit("b2", "b").admitted  # another client is not held back by a's cap


def test_a_full_total_cap_evicts_the_oldest_pending_connection_of_any_client():
    limits = ConnectionLimits(max_total=4, max_per_client=0)
    for name in ("x1", "y1", "x2", "y2"):
        limits.admit(name, name[0])
    limits.busy("x1")
    limits.busy("y1")
    limits.pending("y1")  # y1 answered and now idle: pending again, as the newest
    assert limits.admit("z1", "z").evicted == ["x2"]
    assert limits.admit("z2", "z").evicted == ["y2"]
    assert limits.admit("z3", "z").evicted == ["y1"]
    for name in ("z1", "z2", "z3"):
        limits.busy(name)
    refused = limits.admit("z4", "z")
    assert not refused.admitted and refused.cap == "total" and len(limits) == 4
    limits.closed("x1")
    limits.closed("x1")  # a second close (an evicted connection's own) changes nothing
    assert limits.admit("z4", "z").admitted and len(limits) == 4


def test_the_total_cap_leaves_descriptors_for_files_and_listen_queues():
    settings = ConnectionSettings(fd_reserve=256, backlog=128)
    assert total_cap(settings, 1024) == 1024 - 256 - 2 * 128
    assert total_cap(settings, 300) == 16  # never below a floor
    assert total_cap(ConnectionSettings(max_connections=100), 1024) == 100
    with pytest.raises(ConfigError, match="--max-connections 5000"):
        total_cap(ConnectionSettings(max_connections=5000), 1024)
    with pytest.raises(ConfigError, match="header_timeout_s=0"):
        ConnectionSettings(header_timeout_s=0)
    with pytest.raises(ConfigError, match="max_connections_per_client=-1"):
        ConnectionSettings(max_connections_per_client=-1)


def test_repeated_log_lines_are_counted_and_told_once_per_window():
    now = [0.0]
    repeats = RepeatFilter(window_s=60, clock=lambda: now[0])
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger("spanqa.test.repeats")
    log.propagate = False
    handlers = [Lines(), Lines()]  # one record through two handlers is judged once
    for handler in handlers:
        handler.addFilter(repeats)
        log.addHandler(handler)
    try:
        for _ in range(1000):
            log.warning("closed a connection from %s", "10.0.0.1")
        log.warning("another message")
        now[0] = 61.0
        log.warning("closed a connection from %s", "10.0.0.1")
        log.warning("closed a connection from %s", "10.0.0.1")
        repeats.flush()
    finally:
        for handler in handlers:
            log.removeHandler(handler)
    assert lines[::2] == lines[1::2]
    assert lines[::2] == [
        "closed a connection from 10.0.0.1",
        "another message",
        "closed a connection from 10.0.0.1 (repeated 999 more times in 60 s)",
        "closed a connection from 10.0.0.1 (repeated 1 more time in 60 s)",
    ]


# -- deadlines, in process: both event loops, both parsers -------------------------------------------


async def echo(scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(HANG_S)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.parametrize("parser", ["httptools", "h11"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_slow_headers_and_stalled_bodies_get_408_and_are_closed(loop, parser):
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    if parser == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol as base
    else:
        pytest.importorskip("httptools")
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    settings = ConnectionSettings(header_timeout_s=0.3, body_timeout_s=0.3)
    sock = listening_socket("127.0.0.1", 0)
    config = uvicorn.Config(echo, loop=loop, lifespan="off", ws="none", log_level="warning",
                            http=guarded_protocol(settings, ConnectionLimits(64, 8), base))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    address = sock.getsockname()
    try:
        with socket.create_connection(address, timeout=HANG_S) as half_sent:
            half_sent.sendall(HALF_SENT)
            assert read_to_end(half_sent).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(address, timeout=HANG_S) as silent:
            assert read_to_end(silent) == b""  # nothing asked, nothing answered: just closed
        with socket.create_connection(address, timeout=HANG_S) as stalled:
            stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            assert read_to_end(stalled).startswith(b"HTTP/1.1 408 ")
        with socket.create_connection(address, timeout=HANG_S) as kept_alive:
            for _ in range(2):
                kept_alive.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
                response = b""
                while not response.endswith(b"\r\n\r\nok"):
                    response += kept_alive.recv(65536)
                assert response.startswith(b"HTTP/1.1 200 ")
                # Idle past the first request's header deadline (within uvicorn's keep-alive): the
                # next request has a deadline of its own, from its first byte.
                time.sleep(settings.header_timeout_s * 1.5)
    finally:
        server.should_exit = True
        thread.join(timeout=HANG_S)


# -- TCP_NODELAY -------------------------------------------------------------------------------------


def test_connections_accepted_on_the_listening_socket_have_tcp_nodelay():
    async def accept_one() -> int:
        sock = listening_socket("127.0.0.1", 0)
        accepted = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                raw = transport.get_extra_info("socket")
                accepted.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, HANG_S)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) == 1  # the plain asyncio loop, as a server without uvloop runs


SYS_PIDFD_OPEN, SYS_PIDFD_GETFD = 434, 438  # x86-64 and arm64 alike


def server_side_socket(pid: int, server_port: int, client_port: int) -> socket.socket:
    """The server process's end of our connection, duplicated into this process (pidfd_getfd)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if (int(local, 16), int(remote, 16)) == (server_port, client_port):
            inode = fields[9]
    assert inode is not None, "the connection is not in /proc/net/tcp"
    fds = [fd for fd in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]"]
    assert fds, "the server holds no descriptor for the connection"
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        pytest.skip(f"pidfd_open refused: {os.strerror(ctypes.get_errno())}")
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fds[0]), 0)
        if copy < 0:
            pytest.skip(f"pidfd_getfd refused: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pidfd)
    return socket.socket(fileno=copy)


# -- a real `spanqa serve` ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kb(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA
    from spanqa.service.tokens import TokenFile

    root = tmp_path_factory.mktemp("connections")
    files = write_knowledge_base(root / "docs")
    index_dir = root / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [root / "docs"], workers=1)
    _, token = TokenFile(root / "tokens.json").add("admin", "admin")
    return {"root": root, "files": files, "index": index_dir, "tokens": root / "tokens.json", "token": token}


class Served:
    """`spanqa serve` as a child process; its stderr lines gathered on a thread."""

    def __init__(self, argv: list[str], fd_limit: int | None = None):
        def limit_files():
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                        preexec_fn=None if fd_limit is None else limit_files)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.started = threading.Event()
        self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.started.wait(HANG_S) and self.port, self.lines

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if found and self.port is None:
                self.port = int(found.group(1))
                self.started.set()
            if line.startswith("spanqa: ready") or line.startswith("spanqa: error"):
                self.ready.set()
        self.started.set()
        self.ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=HANG_S)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        self._reader.join(timeout=HANG_S)
        self.process.stderr.close()
        return code


def serve_argv(kb, tiny_qa_model_dir, *options: str, plain_loop: bool = False) -> list[str]:
    """`spanqa serve` over the kb; `plain_loop`: as installed without uvloop (asyncio's own loop)."""
    if plain_loop:
        launcher = [sys.executable, "-c", "import sys; sys.modules['uvloop'] = None; "
                    "from spanqa.cli import main; sys.exit(main())"]
    else:
        launcher = [str(Path(sys.executable).with_name("spanqa"))]
    return [*launcher, "serve", "--index", str(kb["index"]), "--reader", str(tiny_qa_model_dir), "--device", "cpu",
            "--port", "0", "--tokens", str(kb["tokens"]), "--rate-limit", "0", "--workers", "1", *options]


def test_spanqa_serve_sets_tcp_nodelay_on_accepted_connections(kb, tiny_qa_model_dir):
    served = Served(serve_argv(kb, tiny_qa_model_dir, "--log-level", "warning", plain_loop=True))
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=HANG_S) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # answered: the server has accepted it
            assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
            with server_side_socket(served.process.pid, served.port, client.getsockname()[1]) as theirs:
                assert theirs.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        served.stop()


def open_half_sent(address: tuple[str, int], sources: list[str], count: int) -> list[socket.socket]:
    flood = []
    for number in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(HANG_S)
        sock.bind((sources[number % len(sources)], 0))
        sock.connect(address)
        sock.sendall(HALF_SENT)
        flood.append(sock)
    return flood


def wait_all_closed(socks: list[socket.socket]) -> dict[bytes, int]:
    """Waits until the server has closed every socket; counts what each got first (b"": nothing)."""
    got: dict[bytes, int] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, bytearray())
        while selector.get_map():
            events = selector.select(timeout=HANG_S)  # the next socket the server closes (or writes to)
            if not events:
                pytest.fail(f"{len(selector.get_map())} connections still open, nothing heard for {HANG_S} s")
            for key, _ in events:
                try:
                    chunk = key.fileobj.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    key.data.extend(chunk)
                    continue
                selector.unregister(key.fileobj)
                first = bytes(key.data[:12])
                got[first] = got.get(first, 0) + 1
    return got


def test_a_flood_of_half_sent_requests_does_not_lock_out_authorised_clients(kb, tiny_qa_model_dir):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FLOOD + 512:
        pytest.skip(f"this test opens {FLOOD} sockets; the hard open-file limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 512), hard))
    served = Served(serve_argv(kb, tiny_qa_model_dir, "--header-timeout", "3"), fd_limit=SERVER_FD_LIMIT)
    flood: list[socket.socket] = []
    try:
        assert served.ready.wait(HANG_S), served.lines
        assert any(line.startswith("spanqa: ready") for line in served.lines), served.lines
        flood = open_half_sent(("127.0.0.1", served.port), FLOOD_ADDRESSES, FLOOD)
        with httpx.Client(base_url=served.url, timeout=HANG_S,
                          headers={"Authorization": f"Bearer {kb['token']}"}) as client:
            question = "How many days of paid vacation?"
            answered = client.post("/v1/ask", json={"question": question, "top_k": 1})
            assert answered.status_code == 200, answered.text
            answer = answered.json()["answers"][0]
            place = {key: answer[key] for key in ("file_id", "page", "start", "end", "text")}
            feedback = client.post("/v1/feedback", json={"question": question, "answer": place, "correct": True})
            assert feedback.status_code == 201, feedback.text
            ids = {entry["name"]: entry["id"] for entry in client.get("/v1/files").json()["files"]}
            page = client.get(f"/v1/files/{ids[kb['files']['policy'].name]}/pages/1.png", params={"width": 200})
            assert page.status_code == 200 and page.content.startswith(b"\x89PNG"), page.text
            ferry = ("ferry.txt", b"The ferry leaves the harbour at six.", "text/plain")
            upload = client.post("/v1/files", files=[("files", ferry)])
            assert upload.status_code == 202, upload.text
            job = wait_for_job(client, upload.json()["job"])
            assert job["status"] == "done" and job["files"][0]["status"] == "indexed", job
        # Every half-sent request is closed: evicted to make room, or answered 408 at its deadline.
        closed = wait_all_closed(flood)
        assert sum(closed.values()) == FLOOD and closed.get(b"HTTP/1.1 408", 0) > 0, closed
    finally:
        for sock in flood:
            sock.close()
        code = served.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert code in (0, -signal.SIGTERM)
    log = "".join(served.lines)
    assert "Traceback" not in log and "Too many open files" not in log
    # Thousands of evictions and timeouts, a few lines: each message once, then its count at shutdown.
    assert len(served.lines) < 100, log
    assert re.search(r"make room .* \(repeated \d+ more times", log), log
