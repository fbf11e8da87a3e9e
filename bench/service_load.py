"""The load of `bench/service.py`: closed-loop clients, one phase's figures, medians over repeats."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import statistics
import time
from dataclasses import dataclass

from service_processes import Server, machine_busy_seconds, proc_snapshot, tree_usage

REQUEST_TIMEOUT_S = 300.0

# ---------------------------------------------------------------------------------------------
# pure logic


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def phase_questions(pool: int, requests: int, phase: int) -> list[int]:
    """Indices into the question pool for one phase: the next `requests` questions, wrapping around."""
    return [(phase * requests + offset) % pool for offset in range(requests)]


def error_kind(status: int | None, body: str | None, exception: BaseException | None) -> str:
    if exception is not None:
        return type(exception).__name__
    code = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        code = json.loads(body or "").get("error")
    return f"HTTP {status}" + (f" {code}" if code else "")


@dataclass
class Phase:
    """One side at one concurrency in one repeat."""

    side: str
    repeat: int
    concurrency: int
    requests: int
    answered: int
    sent: int  # requests sent in all: the timed ones, one warm-up per client, the untimed ones at the end
    wall_s: float  # from the first timed request's start to the last one's end
    throughput: float  # answers (timed or not) that arrived in that window, per second
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    server_cpu_ms_per_request: float | None
    server_cores_busy: float | None  # the server's CPU seconds per second of the phase (of os.cpu_count() cores)
    server_threads: int | None  # threads of the server's process tree when the phase ends
    idle_cpu_s_of_other: float | None  # CPU seconds the waiting server spent meanwhile (should be ~0)
    client_cpu_ms_per_request: float
    foreign_cpu_share: float | None  # share of all cores busy with neither server nor this client
    top1_exact: float | None
    top1_f1: float | None


def summarise(phases: list[Phase]) -> dict:
    """Medians over repeats of one side at one concurrency; errors summed."""
    def median(name: str):
        values = [getattr(p, name) for p in phases if getattr(p, name) is not None]
        return statistics.median(values) if values else None

    errors: dict[str, int] = {}
    for phase in phases:
        for kind, count in phase.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "repeats": len(phases),
        **{name: median(name) for name in (
            "throughput", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_request", "server_cores_busy",
            "server_threads", "client_cpu_ms_per_request", "foreign_cpu_share", "top1_exact", "top1_f1")},
        "errors": errors,
    }

# ---------------------------------------------------------------------------------------------
# load


async def load(
    server: Server, questions: list[str], concurrency: int, untimed: list[str]
) -> tuple[float, int, list, int]:
    """Closed loop: `concurrency` clients, each asking its next question as soon as its answer arrives.

    The timed requests see the server under a steady load of `concurrency` requests: each client
    first sends one warm-up request (so timing does not start with a synchronised burst), and
    clients that find no timed question left keep sending untimed ones until the last timed answer
    is in (so the last timed requests do not find an emptying server). Untimed questions come from
    `untimed`. Returns the window from the first timed request's start to the last one's end (wall
    seconds); the answers (timed or not) that arrived in it, so window and count measure throughput
    in a steady state; per question (seconds, error kind or None, response JSON or None); and the
    requests sent in all.
    """
    import httpx

    url = server.base_url + server.ask_path
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list = [None] * len(questions)
    starts: list[float] = []
    ends: list[float] = []
    answered_at: list[float] = []  # when each successful answer, timed or not, arrived
    queue = iter(range(len(questions)))  # shared by the clients: one event loop thread, no lock needed
    spare = itertools.cycle(untimed)
    sent = 0

    async def ask(client, question: str):
        nonlocal sent
        sent += 1
        started = time.perf_counter()
        try:
            response = await client.post(url, json={"question": question}, headers=server.headers)
        except httpx.HTTPError as error:
            return time.perf_counter() - started, error_kind(None, None, error), None
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            return seconds, error_kind(response.status_code, response.text, None), None
        try:
            body = response.json()
        except ValueError:
            return seconds, "HTTP 200 not JSON", None
        answered_at.append(started + seconds)
        return seconds, None, body

    async def client_loop(client) -> None:
        await ask(client, next(spare))
        for index in queue:
            starts.append(time.perf_counter())
            results[index] = await ask(client, questions[index])
            ends.append(time.perf_counter())
        while len(ends) < len(questions):
            await ask(client, next(spare))

    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    if not starts:
        return 0.0, 0, results, sent
    first, last = min(starts), max(ends)
    return last - first, sum(first < at <= last for at in answered_at), results, sent


def run_phase(server: Server, others: list[Server], questions, concurrency: int, warm_up: list[str],
              repeat: int) -> Phase:
    from spanqa.pipelines.eval_metrics import best_over_golds

    def usage() -> tuple[float, dict, float | None]:
        own = resource.getrusage(resource.RUSAGE_SELF)
        snapshot = proc_snapshot()
        return own.ru_utime + own.ru_stime, {s.name: tree_usage(snapshot, s.process.pid) for s in (server, *others)}, \
            machine_busy_seconds()

    client_before, trees_before, busy_before = usage()
    started = time.perf_counter()
    wall, completed, results, sent = asyncio.run(load(server, [q.question for q in questions], concurrency, warm_up))
    elapsed = time.perf_counter() - started
    client_after, trees_after, busy_after = usage()
    client_cpu = client_after - client_before
    spent = {name: None if trees_before[name] is None or trees_after[name] is None
             else trees_after[name][0] - trees_before[name][0] for name in trees_before}
    foreign = None
    if busy_before is not None and busy_after is not None and None not in spent.values():
        # CPU the machine spent on neither server nor this client: other people's work sharing the cores.
        foreign = max(0.0, busy_after - busy_before - sum(spent.values()) - client_cpu) / (elapsed * os.cpu_count())

    latencies, errors, exact, f1 = [], {}, [], []
    for question, (seconds, error, body) in zip(questions, results, strict=True):
        if error is not None:
            errors[error] = errors.get(error, 0) + 1
            continue
        try:
            answers = server.answers_of(body)
            top = (answers[0]["text"] or "") if answers else ""
        except (KeyError, TypeError, IndexError):
            errors["unexpected response shape"] = errors.get("unexpected response shape", 0) + 1
            continue
        latencies.append(seconds * 1000)
        em, f = best_over_golds(top, question.answers)
        exact.append(em)
        f1.append(f)
    server_cpu = spent[server.name]
    idle = [spent[o.name] for o in others]
    return Phase(
        side=server.name, repeat=repeat, concurrency=concurrency, requests=len(questions), answered=len(latencies),
        wall_s=round(wall, 3), throughput=round(completed / wall, 3) if wall > 0 else 0.0,
        p50_ms=percentile(latencies, 50), p95_ms=percentile(latencies, 95), p99_ms=percentile(latencies, 99),
        errors=errors,
        sent=sent,
        # Per request served, warm-up and untimed ones included: they cost the server the same.
        server_cpu_ms_per_request=None if server_cpu is None else round(server_cpu * 1000 / sent, 1),
        server_cores_busy=None if server_cpu is None else round(server_cpu / elapsed, 2),
        server_threads=None if trees_after[server.name] is None else trees_after[server.name][1],
        idle_cpu_s_of_other=None if not idle or None in idle else round(sum(idle), 2),
        client_cpu_ms_per_request=round(client_cpu * 1000 / sent, 2),
        foreign_cpu_share=None if foreign is None else round(foreign, 3),
        top1_exact=statistics.fmean(exact) if exact else None, top1_f1=statistics.fmean(f1) if f1 else None,
    )


