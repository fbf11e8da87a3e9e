"""Concurrency over a real server: questions that arrive together share one reader pass, a full
queue answers 503, a token over its rate answers 429, and /healthz answers while the reader is busy."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from service_harness import server_config, start_server

from spanqa.service.engine import QAEngine
from spanqa.service.state import ServiceState
from spanqa.service.tokens import TokenFile

QUESTIONS = [
    "When does the library open?", "How many maps does the archive keep?", "What does the greenhouse grow?",
    "When does the ferry leave?", "How long is the pier?", "Who owns a parrot?", "How tall is the tower?",
]


class HeldEngine(QAEngine):
    """The real engine, whose reader pass can be held at its start (to let questions pile up)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hold = threading.Event()  # set: the next reader pass waits for `release`
        self.holding = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def _read_batch(self, questions):
        self.batches.append([question.text for question in questions])
        if self.hold.is_set():
            self.hold.clear()
            self.holding.set()
            self.release.wait(120)
        return super()._read_batch(questions)


def wait_until(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("batching")
    docs = root / "docs"
    docs.mkdir()
    facts = ["The library opens at nine.", "The archive keeps seven thousand maps.", "The greenhouse grows basil.",
             "The ferry leaves at six.", "The pier is 300 metres long.", "The keeper owns a parrot.",
             "The tower is 40 metres tall."]
    for number, fact in enumerate(facts):
        (docs / f"fact{number}.txt").write_text(fact, encoding="utf-8")
    index_dir = root / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([docs], workers=1)
    return index_dir


def serve(index_dir, tiny_qa_model_dir, tokens_file=None, **service):
    config = server_config(index_dir, tiny_qa_model_dir, tokens_file, **service)
    state = ServiceState(config, make_engine=HeldEngine)
    return start_server(config, state=state), state.engine


def ask(live, question):
    with live.client() as client:
        return client.post("/v1/ask", json={"question": question, "top_k": 2})


def test_questions_arriving_together_are_read_in_one_batch(index_dir, tiny_qa_model_dir):
    live, engine = serve(index_dir, tiny_qa_model_dir)
    try:
        alone = {question: ask(live, question).json()["answers"] for question in QUESTIONS}
        engine.batches.clear()
        engine.hold.set()
        with ThreadPoolExecutor(len(QUESTIONS)) as pool:
            first = pool.submit(ask, live, QUESTIONS[0])
            assert engine.holding.wait(60)
            rest = [pool.submit(ask, live, question) for question in QUESTIONS[1:]]
            wait_until(lambda: engine.waiting_to_read == len(QUESTIONS) - 1)
            with live.client() as client:
                # Answered while the reader is still held: /healthz never waits for it.
                health = client.get("/healthz")
                metrics_during = client.get("/metrics").text
            assert not engine.release.is_set()
            engine.release.set()
            responses = [first.result()] + [future.result() for future in rest]
        with live.client() as client:
            metrics = client.get("/metrics").text
    finally:
        live.stop()
    assert health.status_code == 200
    assert re.search(r"^spanqa_reader_waiting(\{\})? 6\.0$", metrics_during, re.MULTILINE)
    assert engine.batches[0] == [QUESTIONS[0]] and len(engine.batches) == 2
    assert sorted(engine.batches[1]) == sorted(QUESTIONS[1:])  # in arrival order, which threads decide
    for question, response in zip(QUESTIONS, responses):
        assert response.status_code == 200
        batched = response.json()["answers"]
        assert [a["text"] for a in batched] == [a["text"] for a in alone[question]]
        assert [a["score"] for a in batched] == pytest.approx([a["score"] for a in alone[question]], rel=1e-4)
    count = float(re.search(r"^spanqa_reader_batch_questions_count (\S+)$", metrics, re.MULTILINE).group(1))
    total = float(re.search(r"^spanqa_reader_batch_questions_sum (\S+)$", metrics, re.MULTILINE).group(1))
    assert (count, total) == (len(QUESTIONS) + 2, 2 * len(QUESTIONS))  # 7 alone, then a batch of 1 and one of 6


def test_a_full_queue_answers_503_with_retry_after(index_dir, tiny_qa_model_dir):
    live, engine = serve(index_dir, tiny_qa_model_dir, queue_size=2)
    try:
        engine.hold.set()
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(ask, live, QUESTIONS[0])
            assert engine.holding.wait(60)
            second = pool.submit(ask, live, QUESTIONS[1])
            wait_until(lambda: engine.in_flight == 2)
            refused = ask(live, QUESTIONS[2])
            engine.release.set()
            answered = [first.result(), second.result()]
        with live.client() as client:
            metrics = client.get("/metrics").text
    finally:
        live.stop()
    assert refused.status_code == 503 and refused.json()["error"] == "busy"
    assert int(refused.headers["retry-after"]) >= 1
    assert all(response.status_code == 200 for response in answered)
    assert 'spanqa_rejected_total{reason="queue_full"} 1.0' in metrics


def test_a_token_over_its_rate_gets_429_and_others_do_not(index_dir, tiny_qa_model_dir, tmp_path):
    tokens = TokenFile(tmp_path / "tokens.json")
    fast, other = tokens.add("fast", "read")[1], tokens.add("other", "read")[1]
    live, _ = serve(index_dir, tiny_qa_model_dir, tokens_file=tokens.path, rate_limit=6, rate_burst=3)
    try:
        with live.client(fast) as client:
            statuses = [client.get("/v1/me").status_code for _ in range(4)]
            limited = client.get("/v1/me")
        with live.client(other) as client:
            fine = client.get("/v1/me")
    finally:
        live.stop()
    assert statuses == [200, 200, 200, 429]
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert fine.status_code == 200
