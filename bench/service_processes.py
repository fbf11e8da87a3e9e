"""Processes of `bench/service.py`: the servers it starts, stops and waits for, and CPU accounting from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 600.0

# ---------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cli(name: str) -> list[str]:
    """The console script `name` next to this interpreter (the venv's), else its entry point via -c."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    entry = {"spanqa": "spanqa.cli:main", "hayhooks": "hayhooks.cli:hayhooks_cli"}[name]
    module, function = entry.split(":")
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; "
            f"sys.exit({function}())"]


def run_step(argv: list[str], env: dict, cwd: Path, what: str) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}")
    return done.stdout, time.perf_counter() - started


def proc_snapshot() -> dict[int, tuple[int, float, int]] | None:
    """{pid: (parent pid, CPU seconds user + system, threads)} of every process (Linux /proc); None elsewhere."""
    if not Path("/proc/stat").exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    snapshot = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                snapshot[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks, int(fields[17]))
    return snapshot


def tree_usage(snapshot: dict | None, pid: int) -> tuple[float, int] | None:
    """(CPU seconds, threads) of a process and its descendants in a snapshot; None when it is not there."""
    if snapshot is None or pid not in snapshot:
        return None
    cpu, threads, frontier = 0.0, 0, {pid}
    while frontier:
        cpu += sum(snapshot[p][1] for p in frontier)
        threads += sum(snapshot[p][2] for p in frontier)
        frontier = {child for child, (parent, _, _) in snapshot.items() if parent in frontier}
    return cpu, threads


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat), to tell how much ran beside the bench."""
    with contextlib.suppress(OSError, ValueError):
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return None


@dataclass
class Server:
    name: str
    base_url: str
    ask_path: str
    ready_path: str
    headers: dict[str, str]
    process: subprocess.Popen
    log: Path
    answers_of: object = field(repr=False)  # response JSON -> list of answer dicts


def start_server(argv: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        # A session of its own: the whole server (and anything it spawns) is stopped as one group.
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(process: subprocess.Popen) -> None:
    """Ctrl-C to the server's process group (a graceful stop), then SIGKILL to whatever of it is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def wait_ready(server: Server, is_ready) -> float:
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} server exited ({server.process.returncode}) before it was ready; "
                             f"its log ({server.log}):\n{server.log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(server.base_url + server.ready_path, headers=server.headers, timeout=5,
                                 trust_env=False)
            if is_ready(response):
                return time.perf_counter() - started
        time.sleep(0.25)
    raise SystemExit(f"{server.name} server not ready after {READY_TIMEOUT_S:.0f} s; see {server.log}")


