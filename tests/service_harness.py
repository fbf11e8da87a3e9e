"""A real spanqa server for tests: uvicorn on a free loopback port, in this process, on a thread; or
`spanqa serve` itself in a subprocess (`ServeProcess`).

The socket is bound before the server starts, so the port is known without a race, and the test
waits on the server's own "started" event (models loaded) rather than polling or sleeping.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from spanqa.service.app import create_app
from spanqa.service.state import ServerConfig, ServiceState
from spanqa.settings import ParseSettings, QASettings, ServiceSettings

START_TIMEOUT_S = 180


@dataclass
class LiveServer:
    url: str
    state: ServiceState
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def server_config(
    index_dir: Path, reader: Path, tokens_file: Path | None = None, reranker: Path | None = None, **service
) -> ServerConfig:
    """A test server's configuration: `reader` on the CPU (and `reranker`, else the default one, which
    cannot load offline: no reranking), one parser process for uploads, no rate limit unless
    `service` (ServiceSettings keywords) says otherwise."""
    models = {"reader": str(reader)} if reranker is None else {"reader": str(reader), "reranker": str(reranker)}
    return ServerConfig(
        index_dir=index_dir, qa=QASettings.from_keywords(**models, device="cpu"),
        service=ServiceSettings(**{"rate_limit": 0, **service}), parse=ParseSettings(workers=1), tokens_file=tokens_file,
    )


def start_server(config: ServerConfig, state: ServiceState | None = None) -> LiveServer:
    state = state if state is not None else ServiceState(config)
    app = create_app(config, state=state)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-server", daemon=True)
    thread.start()
    if not state.started.wait(START_TIMEOUT_S):
        server.should_exit = True
        raise RuntimeError("the test server did not finish loading")
    return LiveServer(url=f"http://127.0.0.1:{port}", state=state, server=server, thread=thread)


def wait_for_job(
    client: httpx.Client, job: str, statuses: tuple[str, ...] = ("done", "failed"), timeout_s: float = 180.0
) -> dict:
    """The job once its status is one of `statuses` (the server's writer thread runs it, and says
    nothing when it moves on: poll). `timeout_s` only ends a hang."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(f"/v1/jobs/{job}").json()
        if body.get("status") in statuses:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job} still {body.get('status')} after {timeout_s} s: {body}")
        time.sleep(0.1)


def write_knowledge_base(root: Path) -> dict[str, Path]:
    """Two folders of documents (hr/, legal/) with facts the tests ask about."""
    from pdf_factory import write_text_pdf

    hr = root / "hr"
    legal = root / "legal"
    hr.mkdir(parents=True)
    legal.mkdir(parents=True)
    files = {
        "policy": write_text_pdf(hr / "vacation_policy.pdf", [
            "Vacation policy.\nEvery employee receives twenty-eight days of paid vacation per year. "
            "Requests for vacation are approved by the team lead at least two weeks in advance.",
            "Parental leave.\nParents receive sixteen weeks of paid parental leave. The leave can be split "
            "into two parts taken within the first two years.",
        ]),
        "handbook": write_text_pdf(hr / "handbook.pdf", [
            "Office hours.\nThe office opens at eight in the morning and closes at six in the evening. "
            "The cafeteria serves lunch from noon until two.",
        ]),
        "notes": hr / "onboarding.md",
        "contract": write_text_pdf(legal / "supplier_contract.pdf", [
            "Supplier contract.\nThe supplier delivers the parts within thirty days of each order. "
            "Late deliveries cost the supplier a penalty of two percent per week.",
        ]),
    }
    files["notes"].write_text(
        "# Onboarding\n\nNew employees get their laptop from the IT desk on the first day. "
        "The security training must be finished within the first month.\n",
        encoding="utf-8",
    )
    return files


class ServeProcess:
    """`spanqa serve` on a free loopback port (no tokens: loopback only); its stderr read on a thread."""

    def __init__(self, index_dir: Path, reader: Path, environment: dict[str, str] | None = None):
        spanqa = Path(sys.executable).with_name("spanqa")
        self.process = subprocess.Popen(
            [str(spanqa), "serve", "--index", str(index_dir), "--reader", str(reader), "--device", "cpu",
             "--port", "0", "--log-level", "warning", "--rate-limit", "0",  # the test polls its jobs
             "--rerank", "0"],  # the default reranker is a hub model: offline, it would warn
            stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **({} if environment is None else environment)},
        )
        self.lines: queue.Queue = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.client = httpx.Client(timeout=120)
        try:
            port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", self._line()).group(1))
            assert self._line().strip() == "spanqa: ready: models loaded", self.log
        except BaseException:
            self.kill()
            raise
        self.client.base_url = f"http://127.0.0.1:{port}"

    def _read(self) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put("")  # the stream closed: the server exited

    def _line(self) -> str:
        return self.lines.get(timeout=180)

    def job_when(self, job: str, statuses: tuple[str, ...]) -> dict:
        return wait_for_job(self.client, job, statuses)

    def kill(self) -> None:
        """SIGKILL to the server (the crash), then to whatever it started (its parse workers)."""
        self.client.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.stderr.close()
