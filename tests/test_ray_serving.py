"""Serving on Ray (`spanqa serve --ray`): the same API, tokens, scopes and page as `spanqa serve`,
answers equal to the local server's, readers as Ray Serve replicas batching with `@serve.batch`.

A local Ray instance on the loopback address, declaring 4 CPUs (this machine has 2 cores): the
ingress takes one, two reader replicas one each.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from service_harness import server_config, start_server, write_knowledge_base

from spanqa.errors import ConfigError
from spanqa.service.state import ServerConfig
from spanqa.service.tokens import TokenFile

pytest.importorskip("ray.serve")

QUESTIONS = [
    "How many days of paid vacation does an employee receive?",
    "When does the office open?",
    "How long is parental leave?",
    "When does the supplier deliver the parts?",
    "Who approves vacation requests?",
    "What do new employees get on the first day?",
]
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def kb(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("ray-serving")
    write_knowledge_base(root / "docs")
    index_dir = root / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [root / "docs"], workers=1
    )
    tokens = TokenFile(root / "tokens.json")
    secrets = {
        "admin": tokens.add("admin", "admin", [])[1],
        "hr": tokens.add("hr", "read", [root / "docs" / "hr"])[1],
    }
    return root, index_dir, tokens.path, secrets


def settings_for(kb, tiny_qa_model_dir, **service) -> ServerConfig:
    root, index_dir, tokens_file, _ = kb
    return server_config(index_dir, tiny_qa_model_dir, tokens_file, max_batch=8, **service)


def test_spanqa_serve_ray_from_the_command_line(kb, tiny_qa_model_dir, tmp_path):
    """The command starts its own local Ray instance (before this module's fixture starts one), says
    when it is ready, answers, and stops on SIGTERM."""
    _, index_dir, tokens_file, secrets = kb
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    command = [str(Path(sys.executable).parent / "spanqa"), "serve", "--ray", "--index", str(index_dir),
               "--reader", str(tiny_qa_model_dir), "--device", "cpu", "--tokens", str(tokens_file),
               "--port", str(port), "--rerank", "0"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("spanqa: ready") or line.startswith("spanqa: error"):
                break
        assert any(line.startswith("spanqa: ready") for line in lines), "".join(lines)
        assert any("on Ray (local, 1 reader replica(s))" in line for line in lines), "".join(lines)
        response = ask(f"http://127.0.0.1:{port}", secrets["admin"], QUESTIONS[0])
        assert response.status_code == 200 and response.json()["answers"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_reader_that_cannot_load_ends_spanqa_serve_ray_with_its_reason(kb, tmp_path):
    _, index_dir, _, _ = kb
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    (tmp_path / "reader-without-files").mkdir()  # a path that is not there is refused before Ray starts
    command = [str(Path(sys.executable).parent / "spanqa"), "serve", "--ray", "--index", str(index_dir),
               "--reader", str(tmp_path / "reader-without-files"), "--device", "cpu", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=START_TIMEOUT_S)
    assert done.returncode == 1
    assert "spanqa: error: the service could not start on Ray: SpanQAReader:" in done.stderr
    assert f"cannot load reader model '{tmp_path / 'reader-without-files'}'" in done.stderr


@pytest.fixture(scope="module")
def ray_server(kb, tiny_qa_model_dir):
    """The service on a local Ray instance with two reader replicas, on a thread of this process."""
    ray = pytest.importorskip("ray")
    from spanqa.service.ray_serve import RayServeSettings, serve_on_ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, include_dashboard=False)
    port = free_port()
    started: list[str | None] = []
    ready = threading.Event()
    stop = threading.Event()

    def on_started(error):
        started.append(error)
        ready.set()

    failures: list[BaseException] = []

    def run():
        try:
            serve_on_ray(settings_for(kb, tiny_qa_model_dir, replicas=2), RayServeSettings(replica_cpus=1),
                         "127.0.0.1", port, on_started, stop=stop)
        except BaseException as exc:  # noqa: BLE001 - shown by the fixture
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="ray-serve", daemon=True)
    thread.start()
    assert ready.wait(START_TIMEOUT_S), "the service on Ray did not start"
    assert not failures, failures
    assert started == [None]
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield f"http://127.0.0.1:{port}"
    stop.set()
    thread.join(120)
    ray.shutdown()


@pytest.fixture(scope="module")
def local_server(kb, tiny_qa_model_dir):
    live = start_server(settings_for(kb, tiny_qa_model_dir))
    yield live.url
    live.stop()


def client(url: str, token: str | None) -> httpx.Client:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=url, headers=headers, timeout=120)


def ask(url: str, token: str | None, question: str) -> httpx.Response:
    with client(url, token) as http:
        return http.post("/v1/ask", json={"question": question, "top_k": 3})


def comparable(body: dict) -> list[tuple]:
    return [(a["text"], round(a["score"], 4), a["source"], a["page"], a["start"], a["end"]) for a in body["answers"]]


def test_answers_on_ray_equal_the_local_servers(ray_server, local_server, kb):
    admin = kb[3]["admin"]
    for question in QUESTIONS:
        on_ray, here = ask(ray_server, admin, question), ask(local_server, admin, question)
        assert on_ray.status_code == here.status_code == 200, (on_ray.text, here.text)
        assert comparable(on_ray.json()) == comparable(here.json())
        assert on_ray.json()["answers"], question


def test_tokens_scopes_and_the_page_are_the_services(ray_server, kb):
    _, _, _, secrets = kb
    assert ask(ray_server, None, QUESTIONS[0]).status_code == 401
    assert ask(ray_server, "sqa_not-a-token", QUESTIONS[0]).status_code == 401
    scoped = ask(ray_server, secrets["hr"], QUESTIONS[3]).json()["answers"]
    assert scoped and all(a["source"].startswith("docs/hr/") for a in scoped)  # relative to the indexed folder
    with client(ray_server, None) as http:
        page = http.get("/")
        ready = http.get("/readyz")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_two_reader_replicas_read_and_batches_are_counted_once(ray_server, kb):
    from ray import serve

    status = serve.status().applications["spanqa"].deployments
    readers = status["SpanQAReader"].replica_states
    assert readers.get("RUNNING") == 2, readers
    assert status["SpanQAService"].replica_states.get("RUNNING") == 1
    admin = kb[3]["admin"]

    def batches_and_questions() -> tuple[float, float]:
        with client(ray_server, admin) as http:
            metrics = http.get("/metrics").text
        values = {}
        for line in metrics.splitlines():
            for name in ("spanqa_reader_batch_questions_count", "spanqa_reader_batch_questions_sum"):
                if line.startswith(name + " "):
                    values[name] = float(line.split()[-1])
        return values.get("spanqa_reader_batch_questions_count", 0.0), values.get("spanqa_reader_batch_questions_sum", 0.0)

    batches_before, questions_before = batches_and_questions()
    asked = QUESTIONS * 4
    with ThreadPoolExecutor(len(asked)) as pool:
        responses = list(pool.map(lambda question: ask(ray_server, admin, question), asked))
    assert all(response.status_code == 200 for response in responses)
    batches, questions = batches_and_questions()
    # Every question read was counted in exactly one batch.
    assert questions - questions_before == len(asked)
    assert 1 <= batches - batches_before <= len(asked)


def test_an_upload_is_indexed_by_the_ingress_and_answered_by_the_readers(ray_server, kb):
    from service_harness import wait_for_job

    admin = kb[3]["admin"]
    text = b"The lighthouse on Skarv Point was painted red in the spring of 1911."
    with client(ray_server, admin) as http:
        response = http.post("/v1/files", files=[("files", ("lighthouse.txt", text, "text/plain"))])
        assert response.status_code == 202, response.text
        job = wait_for_job(http, response.json()["job"])
        assert job["status"] == "done", job
        passages = http.post("/v1/search", json={"query": "lighthouse painted red", "top_k": 1}).json()["passages"]
        assert passages[0]["name"] == "lighthouse.txt" and "painted red" in passages[0]["text"]
        answers = http.post("/v1/ask", json={"question": "When was the lighthouse painted red?", "passages": 1}).json()
    assert answers["answers"] and all(a["source"] == passages[0]["source"] for a in answers["answers"])


def test_replicas_that_do_not_fit_the_cluster_are_refused_at_once():
    from spanqa.service.ray_serve import RayServeSettings, ReaderPlacement

    assert ReaderPlacement.sized(2, RayServeSettings(), "auto", {"CPU": 8}) == ReaderPlacement(2, False, 2)
    assert ReaderPlacement.sized(3, RayServeSettings(), "auto", {"CPU": 4}) == ReaderPlacement(3, False, 1)
    assert ReaderPlacement.sized(2, RayServeSettings(), "auto", {"CPU": 8, "GPU": 2}).gpu
    assert not ReaderPlacement.sized(2, RayServeSettings(), "cpu", {"CPU": 8, "GPU": 2}).gpu
    with pytest.raises(ConfigError, match="do not fit on the Ray cluster: it has 2 CPUs"):
        ReaderPlacement.sized(2, RayServeSettings(), "auto", {"CPU": 2})
    with pytest.raises(ConfigError, match="--replicas 3 asks for a GPU each and the Ray cluster has 2"):
        ReaderPlacement.sized(3, RayServeSettings(), "cuda", {"CPU": 8, "GPU": 2})


def test_replicas_without_ray_is_an_error(kb, tiny_qa_model_dir, capsys):
    from spanqa.cli import main

    assert main(["serve", "--index", str(kb[1]), "--reader", str(tiny_qa_model_dir), "--replicas", "2"]) == 1
    assert "--replicas sizes the readers of a service on Ray: give --ray too" in capsys.readouterr().err
