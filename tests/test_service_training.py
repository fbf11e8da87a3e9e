"""Reader training in the service (spanqa.service.training): an admin starts a run on the collected
feedback, follows it, stops it; the server then answers with the trained reader and can roll back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from service_harness import server_config, start_server, write_knowledge_base

from spanqa.service.tokens import TokenFile
from spanqa.service.training import ACTIVE_FILE, READERS_DIR, served_reader, train_command
from spanqa.settings import QASettings, TrainSettings

TOKENS = {"admin": ("admin", []), "reader": ("read", []), "hr-admin": ("admin", ["hr"])}
QUICK = {"max_steps": 2, "holdout": 0.0, "learning_rate": 0.001, "negatives": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("training-kb")
    write_knowledge_base(root / "docs")
    DocumentQA(root / "index", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [root / "docs"], workers=1)
    token_file = TokenFile(root / "tokens.json")
    tokens = {name: token_file.add(name, role, [root / "docs" / f for f in folders])[1]
              for name, (role, folders) in TOKENS.items()}
    live = start_server(server_config(root / "index", tiny_qa_model_dir, token_file.path))
    yield live, tokens, root
    live.stop()


def wait_for_training(client, states=("done", "failed", "stopped"), timeout_s: float = 300.0) -> dict:
    """The training status once its state is one of `states` (a child process runs it and tells no
    one: poll). `timeout_s` only ends a hang."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get("/v1/training").json()
        if body["state"] in states:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"training still {body['state']} after {timeout_s} s: {body}")
        time.sleep(0.2)


def give_feedback(client) -> None:
    question = "How many weeks of parental leave?"
    answer = client.post("/v1/ask", json={"question": question, "top_k": 1}).json()["answers"][0]
    place = {key: answer[key] for key in ("file_id", "page", "start", "end", "text")}
    assert client.post("/v1/feedback", json={"question": question, "answer": place, "correct": False}).status_code == 201
    assert client.post("/v1/feedback", json={"question": "Who approves vacation?", "answer": place,
                                              "correct": False}).status_code == 201


def test_training_from_feedback_switches_the_served_reader_and_rolls_back(setup, tiny_qa_model_dir):
    live, tokens, root = setup
    with live.client(tokens["admin"]) as admin, live.client(tokens["reader"]) as reader, \
            live.client(tokens["hr-admin"]) as scoped:
        idle = admin.get("/v1/training").json()
        assert idle["state"] == "idle" and idle["serving"] == tiny_qa_model_dir.name and idle["previous"] is None
        assert admin.post("/v1/training", json=QUICK).status_code == 409  # no feedback yet
        assert reader.get("/v1/training").status_code == 403
        refused = scoped.post("/v1/training", json=QUICK)
        assert refused.status_code == 403 and "without a scope" in refused.json()["detail"]
        give_feedback(reader)
        bad = admin.post("/v1/training", json={"max_steps": 0})
        assert bad.status_code == 422 and "max_steps=0" in bad.json()["detail"]
        assert admin.post("/v1/training", json={"epochs_": 1}).status_code == 422
        started = admin.post("/v1/training", json=QUICK)
        assert started.status_code == 202 and started.json()["state"] == "running"
        again = admin.post("/v1/training", json=QUICK)
        assert again.status_code == 409 and "under way" in again.json()["detail"]
        done = wait_for_training(admin)
        assert done["state"] == "done", done
        job = done["job"]
        assert done["serving"] == job and done["previous"] == tiny_qa_model_dir.name and done["steps"] == 2
        assert str(root) not in json.dumps(done)  # no server path leaves
        assert live.state.engine.settings.reader.reader == str(root / "index" / READERS_DIR / job)
        answers = reader.post("/v1/ask", json={"question": "When does the office open?", "top_k": 1}).json()
        assert answers["answers"]  # the trained reader answers
        rolled = admin.post("/v1/training/rollback")
        assert rolled.status_code == 200 and rolled.json()["serving"] == tiny_qa_model_dir.name
        assert live.state.engine.settings.reader.reader == str(tiny_qa_model_dir)
        assert admin.post("/v1/training/rollback").status_code == 409  # nothing earlier to go back to
        assert reader.post("/v1/ask", json={"question": "When does the office open?", "top_k": 1}).status_code == 200


def test_a_run_stopped_from_the_api_stops_after_a_checkpoint_and_leaves_the_reader(setup):
    live, tokens, _ = setup
    with live.client(tokens["admin"]) as admin, live.client(tokens["reader"]) as reader:
        if live.state.database.feedback_count() == 0:
            give_feedback(reader)
        serving = admin.get("/v1/training").json()["serving"]
        assert admin.post("/v1/training/stop").status_code == 409  # nothing to stop
        started = admin.post("/v1/training", json={**QUICK, "max_steps": 100000, "checkpoint_every": 100000})
        assert started.status_code == 202
        progress = wait_for_training(admin, states=("running",))
        deadline = time.monotonic() + 300
        while progress.get("step") is None and progress["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.2)  # the child writes its progress file after each step
            progress = admin.get("/v1/training").json()
        assert progress["stage"] == "reader" and progress["total"] == 100000 and progress["step"] >= 1
        assert admin.post("/v1/training/stop").json()["state"] in ("stopping", "stopped")
        stopped = wait_for_training(admin)
        assert stopped["state"] == "stopped" and stopped["serving"] == serving


def test_a_restarted_server_serves_the_switch_only_for_the_reader_it_replaced(tmp_path):
    trained = tmp_path / READERS_DIR / "20260101-000000"
    trained.mkdir(parents=True)
    (tmp_path / READERS_DIR / ACTIVE_FILE).write_text(json.dumps(
        {"serving": str(trained), "previous": "/models/base", "replaced": "org/base"}))
    assert served_reader(tmp_path, QASettings.from_keywords(reader="org/base")).reader.reader == str(trained)
    assert served_reader(tmp_path, QASettings.from_keywords(reader="org/other")).reader.reader == "org/other"
    (tmp_path / READERS_DIR / ACTIVE_FILE).write_text("{not json")
    assert served_reader(tmp_path, QASettings.from_keywords(reader="org/base")).reader.reader == "org/base"


def test_the_child_is_told_the_served_settings_each_by_its_declared_option(tmp_path):
    qa = QASettings.from_keywords(reader="org/reader", device="cpu", rerank=0, max_seq_length=256)
    command = train_command(tmp_path, tmp_path / "out", tmp_path / "p.json", qa,
                            TrainSettings(max_steps=5, attention_dropout=True))
    joined = " ".join(command)
    assert "--from-feedback" in command and "--reader org/reader" in joined and "--max-seq-length 256" in joined
    assert "--max-steps 5" in joined and "--attention-dropout" in command and "--rerank 0" in joined
    assert "--eval-limit 300" in joined and "--json" in command
    assert "--max-steps None" not in joined  # an unset setting is left to the child's default
