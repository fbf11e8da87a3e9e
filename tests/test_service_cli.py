"""`spanqa token` and `spanqa serve` from the command line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from spanqa.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_token_add_prints_the_token_once_and_stores_only_its_hash(tmp_path, capsys):
    tokens = tmp_path / "tokens.json"
    code, out, _ = run(capsys, "token", "add", "alice", "--tokens", str(tokens), "--role", "read",
                       "--scope", str(tmp_path / "hr"), "--scope", str(tmp_path / "legal"), "--json")
    assert code == 0
    made = json.loads(out.strip().splitlines()[-1])
    assert made["name"] == "alice" and made["role"] == "read"
    assert made["scope"] == [str((tmp_path / "hr").resolve()), str((tmp_path / "legal").resolve())]
    assert made["token"].startswith("sqa_") and len(made["token"]) > 40
    stored = tokens.read_text()
    assert made["token"] not in stored and "sha256" in stored
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"

    code, out, _ = run(capsys, "token", "add", "bob", "--tokens", str(tokens), "--role", "admin")
    assert code == 0 and out.strip().splitlines()[-1].startswith("sqa_")
    bob_token = out.strip().splitlines()[-1]

    code, out, _ = run(capsys, "token", "list", "--tokens", str(tokens), "--json")
    listed = json.loads(out)["tokens"]
    assert [(t["name"], t["role"]) for t in listed] == [("alice", "read"), ("bob", "admin")]
    assert all("sha256" not in t and "token" not in t for t in listed)

    code, _, err = run(capsys, "token", "add", "bob", "--tokens", str(tokens), "--role", "read")
    assert code == 1 and "exists" in err

    from spanqa.service.tokens import TokenFile

    assert TokenFile(tokens).authenticate(bob_token).name == "bob"
    code, out, _ = run(capsys, "token", "revoke", "bob", "--tokens", str(tokens))
    assert code == 0 and TokenFile(tokens).authenticate(bob_token) is None
    code, _, err = run(capsys, "token", "revoke", "nobody", "--tokens", str(tokens))
    assert code == 1 and "nobody" in err


@pytest.mark.parametrize("name", ["", "_under", "a b", "x" * 65, "semi;colon"])
def test_token_names_are_checked(tmp_path, capsys, name):
    code, _, err = run(capsys, "token", "add", name, "--tokens", str(tmp_path / "t.json"), "--role", "read")
    assert code == 1 and "token name" in err


def test_serve_refuses_other_hosts_without_tokens_and_needs_a_tokens_file(tmp_path, capsys):
    code, _, err = run(capsys, "serve", "--index", str(tmp_path / "index"), "--host", "0.0.0.0", "--port", "0")
    assert code == 1 and "--tokens" in err and "--insecure-no-auth" in err
    code, _, err = run(capsys, "serve", "--index", str(tmp_path / "index"), "--tokens", str(tmp_path / "none.json"),
                       "--port", "0")
    assert code == 1 and "spanqa token add" in err
    assert not (tmp_path / "index").exists()  # refused before anything was made


def test_spanqa_serve_answers_over_http_and_stops_on_sigterm(tmp_path, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Bakery\n\nThe bakery sells rye bread every morning.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([docs], workers=1)
    from spanqa.service.tokens import TokenFile

    tokens = tmp_path / "tokens.json"
    _, token = TokenFile(tokens).add("client", "read")
    spanqa = Path(sys.executable).with_name("spanqa")
    process = subprocess.Popen(
        [str(spanqa), "serve", "--index", str(index_dir), "--reader", str(tiny_qa_model_dir), "--device", "cpu",
         "--port", "0", "--tokens", str(tokens), "--log-level", "warning", "--rerank", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        line = process.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            assert client.get("/healthz").status_code == 200
            # The server says on stderr when its models are in (a closed stream: it exited instead).
            assert process.stderr.readline().strip() == "spanqa: ready: models loaded"
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/ask", json={"question": "What does the bakery sell?"}).status_code == 401
            answer = client.post("/v1/ask", json={"question": "What does the bakery sell?"},
                                 headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json()["answers"]
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells why it ended.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
