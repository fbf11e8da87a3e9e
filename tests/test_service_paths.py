"""What users see of server paths and of files outside their scope: display forms, redaction,
scope-aware duplicates (in process, and over a real `spanqa serve`)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from service_harness import server_config, start_server, wait_for_job, write_knowledge_base

from spanqa.errors import DocumentError, SpanQAError
from spanqa.service.catalog import file_id
from spanqa.service.paths import PathView, display_scope, display_source, redact
from spanqa.service.tokens import TokenFile

# -- the rule, as pure functions ---------------------------------------------------------------------

ROOTS = ["/srv/kb/docs", "/srv/kb/docs/hr", "/srv/single.pdf"]
UPLOADS = "/srv/index/uploads"
NAMES = {"/srv/index/uploads/team/ab12.txt": "notes.txt", "/srv/index/uploads/cd34.pdf": "Top Report.pdf"}


@pytest.mark.parametrize(("source", "shown"), [
    ("/srv/kb/docs/legal/contract.pdf", "docs/legal/contract.pdf"),  # under a root folder: its name first
    ("/srv/kb/docs/hr/policy.pdf", "hr/policy.pdf"),  # the deepest root wins
    ("/srv/single.pdf", "single.pdf"),  # a root that is a file: its name
    ("/srv/index/uploads/team/ab12.txt", "team/notes.txt"),  # an upload: folder/the name it was uploaded under
    ("/srv/index/uploads/cd34.pdf", "Top Report.pdf"),  # at the top of the uploads folder: the name alone
    ("/srv/index/uploads/team/ef56.md", "team/ef56.md"),  # an upload without a recorded name
    ("/srv/kb/docs2/other.pdf", "other.pdf"),  # docs2 is not under docs: under no root, the name
    ("/elsewhere/old.pdf", "old.pdf"),  # an index made before roots were recorded
])
def test_display_source_shows_paths_relative_to_the_indexed_roots(source, shown):
    assert display_source(source, ROOTS, UPLOADS, NAMES) == shown


def test_scope_entries_are_shown_by_the_same_rule():
    assert display_scope("/srv/kb/docs/legal", ROOTS, UPLOADS, NAMES) == "docs/legal"
    assert display_scope("/srv/index/uploads/team", ROOTS, UPLOADS, NAMES) == "team"
    assert PathView(tuple(ROOTS), UPLOADS, "/srv/index", NAMES).scope(["/srv/kb/docs", "/srv/x/y"]) == ["docs", "y"]


def test_redact_replaces_every_server_path_in_a_message_and_nothing_else():
    view = PathView(tuple(ROOTS), UPLOADS, "/srv/index", NAMES)
    cases = {
        "duplicate of /srv/kb/docs/legal/contract.pdf (same content, already indexed)":
            "duplicate of docs/legal/contract.pdf (same content, already indexed)",
        "duplicate of /srv/index/uploads/team/ab12.txt (same content)": "duplicate of team/notes.txt (same content)",
        "no spanqa index at '/srv/index': build one with `spanqa index PATH... --index /srv/index`":
            "no spanqa index at 'index': build one with `spanqa index PATH... --index index`",
        "/srv/kb/docs/a b.pdf: corrupt PDF": "docs/a b.pdf: corrupt PDF",
        "cannot load reader '/opt/models/minilm-squad': gone.": "cannot load reader 'minilm-squad': gone.",
        "(/srv/kb/docs2/x.pdf), and /srv/kb/docs/a.pdf.": "(x.pdf), and docs/a.pdf.",
        "send it as /v1/ask returned it, see http://127.0.0.1:8000/v1/files": None,  # routes and URLs stay
        "characters 3-9 of page 2 of hr/a.pdf are not 'x'": None,
    }
    for message, expected in cases.items():
        assert view.redact(message) == (message if expected is None else expected), message
    assert redact("at /srv/index/chunks.sqlite", (), None, {}, "/srv/index") == "at index/chunks.sqlite"


# -- every route of an in-process server, for an admin and a scoped admin ----------------------------


@dataclass
class Served:
    root: Path
    index_dir: Path
    live: object
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def served(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("service-paths")
    write_knowledge_base(root / "docs")
    index_dir = root / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [root / "docs"], workers=1
    )
    token_file = TokenFile(root / "tokens.json")
    tokens = {
        "admin": token_file.add("admin", "admin")[1],
        "hr-admin": token_file.add("hr-admin", "admin", [root / "docs" / "hr", index_dir / "uploads" / "hr"])[1],
    }
    live = start_server(server_config(index_dir, tiny_qa_model_dir, token_file.path))
    yield Served(root, index_dir, live, tokens)
    live.stop()


def upload(client: httpx.Client, name: str, data: bytes, folder: str | None = None) -> dict:
    response = client.post("/v1/files", files=[("files", (name, data))], data={} if folder is None else {"folder": folder})
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job"])


def route_bodies(client: httpx.Client, policy_id: str, contract_id: str) -> dict[str, httpx.Response]:
    """Every route's response (errors included) for one token."""
    answer = client.post("/v1/ask", json={"question": "How many weeks of parental leave?", "top_k": 3}).json()
    place = {key: answer["answers"][0][key] for key in ("file_id", "page", "start", "end", "text")}
    calls = {
        "me": ("GET", "/v1/me", None), "files": ("GET", "/v1/files", None),
        "ask": ("POST", "/v1/ask", {"question": "What penalty does the supplier pay?", "top_k": 5}),
        "search": ("POST", "/v1/search", {"query": "supplier penalty parental leave", "top_k": 8}),
        "page": ("GET", f"/v1/files/{policy_id}/pages/1", None),
        "page-past-end": ("GET", f"/v1/files/{policy_id}/pages/9", None),
        "other-scope-page": ("GET", f"/v1/files/{contract_id}/pages/1", None),
        "other-scope-raw": ("GET", f"/v1/files/{contract_id}/raw", None),
        "unknown-file": ("DELETE", "/v1/files/0000000000000000", None),
        "unknown-job": ("GET", "/v1/jobs/0123456789abcdef", None),
        "bad-filter": ("POST", "/v1/search", {"query": "x", "filters": {"field": "meta.source", "operator": "under",
                                                                         "value": "/"}}),
        "feedback-mismatch": ("POST", "/v1/feedback", {"question": "q?", "answer": {**place, "start": place["start"] + 1},
                                                       "correct": True}),
        "export": ("GET", "/v1/feedback/export", None), "metrics": ("GET", "/metrics", None),
        "ready": ("GET", "/readyz", None),
    }
    return {name: client.request(method, path, json=body) for name, (method, path, body) in calls.items()}


def test_no_route_shows_a_server_path_and_sources_read_relative_to_the_roots(served):
    server_paths = {str(served.root), str(served.root.resolve()), str(served.index_dir.resolve())}
    policy = served.root / "docs" / "hr" / "vacation_policy.pdf"
    policy_id = file_id(str(policy.resolve()))
    contract_id = file_id(str((served.root / "docs" / "legal" / "supplier_contract.pdf").resolve()))
    seen: dict[str, str] = {}
    for user in ("admin", "hr-admin"):
        with served.live.client(served.tokens[user]) as client:
            # An in-scope duplicate: skipped, and its reason names the indexed file relative to its root.
            job = upload(client, "copy.pdf", policy.read_bytes(), folder="hr")
            assert job["files"][0]["status"] == "skipped"
            assert job["files"][0]["reason"] == "duplicate of docs/hr/vacation_policy.pdf (same content, already indexed)"
            note = upload(client, f"note-{user}.txt", f"The {user} desk closes at four.".encode(), folder="hr")
            assert note["files"][0]["status"] == "indexed"
            seen[f"{user} jobs"] = json.dumps([job, note])
            for name, response in route_bodies(client, policy_id, contract_id).items():
                seen[f"{user} {name} {response.status_code}"] = response.text
            files = {entry["source"] for entry in client.get("/v1/files").json()["files"]}
            me = client.get("/v1/me").json()
            deleted = client.delete(f"/v1/files/{note['files'][0]['file_id']}")
            seen[f"{user} delete {deleted.status_code}"] = deleted.text
        assert deleted.json()["deleted"]["source"] == f"hr/note-{user}.txt"  # an upload: folder/name
        hr = {"docs/hr/vacation_policy.pdf", "docs/hr/handbook.pdf", "docs/hr/onboarding.md", f"hr/note-{user}.txt"}
        assert files == (hr | {"docs/legal/supplier_contract.pdf"} if user == "admin" else hr)
        assert me["scope"] == ([] if user == "admin" else ["docs/hr", "hr"])
    assert {key.rsplit(" ", 1)[1] for key in seen} >= {"200", "404", "422"}  # errors are among them
    for key, text in seen.items():
        for path in server_paths:
            assert path not in text, (key, text)
    for user in ("admin", "hr-admin"):
        answers = json.loads(seen[f"{user} ask 200"])["answers"]
        passages = json.loads(seen[f"{user} search 200"])["passages"]
        shown = [a["source"] for a in answers] + [p["source"] for a in answers for p in a["sources"]]
        shown += [p["source"] for p in passages]
        assert shown and all(re.fullmatch(r"(docs/hr|docs/legal|hr)/[\w.-]+", source) for source in shown), shown
        if user == "hr-admin":
            assert not any("legal" in source for source in shown)
    # Out of scope reads exactly like "no such file": the same status and body.
    assert seen["hr-admin other-scope-raw 404"] == seen["hr-admin unknown-file 404"]


def test_error_details_from_the_engine_and_the_pages_are_redacted(served, monkeypatch):
    state = served.live.state
    broken = served.root / "docs" / "hr" / "vacation_policy.pdf"
    policy_id = file_id(str(broken.resolve()))

    def unreadable(source):
        raise DocumentError(source, f"cannot open {source}: damaged")

    async def failing(source, page):
        raise SpanQAError(f"the index at '{served.index_dir}' failed to read {source}")

    monkeypatch.setattr(state.pages, "page_count", unreadable)
    with served.live.client(served.tokens["admin"]) as client:
        unreadable_page = client.get(f"/v1/files/{policy_id}/pages/1")
        monkeypatch.setattr(state.pages, "page_count", lambda source: _count(2))
        monkeypatch.setattr(state.pages, "geometry", failing)
        failed = client.get(f"/v1/files/{policy_id}/pages/1")
    assert unreadable_page.status_code == 404
    assert unreadable_page.json()["detail"] == "vacation_policy.pdf: cannot open docs/hr/vacation_policy.pdf: damaged"
    assert failed.status_code == 500
    assert failed.json()["detail"] == "the index at 'index' failed to read docs/hr/vacation_policy.pdf"


async def _count(pages: int) -> int:
    return pages


# -- a real `spanqa serve`: a scoped admin learns nothing of what lies outside its scope --------------


def make_token(capsys, tokens: Path, name: str, role: str, *scope: Path) -> str:
    from spanqa.cli import main

    options = [option for folder in scope for option in ("--scope", str(folder))]
    assert main(["token", "add", name, "--tokens", str(tokens), "--role", role, *options, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["token"]


def start_serve(index_dir: Path, tokens: Path, reader: Path) -> tuple[subprocess.Popen, int]:
    spanqa = Path(sys.executable).with_name("spanqa")
    process = subprocess.Popen(
        [str(spanqa), "serve", "--index", str(index_dir), "--reader", str(reader), "--device", "cpu",
         "--port", "0", "--tokens", str(tokens), "--log-level", "warning", "--workers", "1",
         "--rerank", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    line = process.stderr.readline()
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
    # The server says on stderr when its models are in (a closed stream: it exited instead).
    assert process.stderr.readline().strip() == "spanqa: ready: models loaded"
    return process, port


def test_a_scoped_admin_uploading_a_copy_of_a_file_outside_its_scope_learns_nothing_of_it(
    tmp_path, capsys, minilm_dir, tiny_qa_model_dir
):
    from spanqa.pipelines.api import DocumentQA

    docs = tmp_path / "docs"
    (docs / "public").mkdir(parents=True)
    (docs / "secret").mkdir()
    public = docs / "public" / "opening.txt"
    public.write_text("The reading room opens at nine and closes at five.", encoding="utf-8")
    hidden = docs / "secret" / "vault.txt"
    hidden.write_text("The vault code is 4711. Only the curator knows it.", encoding="utf-8")
    index_dir = tmp_path / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([docs], workers=1)
    tokens_file = tmp_path / "tokens.json"
    tokens = {
        "admin": make_token(capsys, tokens_file, "admin", "admin"),
        "reader": make_token(capsys, tokens_file, "reader", "read"),
        "team-admin": make_token(capsys, tokens_file, "team-admin", "admin", docs / "public", index_dir / "uploads" / "team"),
    }
    process, port = start_serve(index_dir, tokens_file, tiny_qa_model_dir)
    try:
        def client(user: str) -> httpx.Client:
            return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                headers={"Authorization": f"Bearer {tokens[user]}"})

        bodies: list[str] = []
        with client("team-admin") as scoped:
            copied = upload(scoped, "copy.txt", hidden.read_bytes(), folder="team")
            in_scope_copy = upload(scoped, "again.txt", public.read_bytes(), folder="team")
            files = scoped.get("/v1/files").json()["files"]
            asked = scoped.post("/v1/ask", json={"question": "What is the vault code?", "top_k": 5})
            searched = scoped.post("/v1/search", json={"query": "vault code curator", "top_k": 10})
            hidden_raw = scoped.get(f"/v1/files/{file_id(str(hidden.resolve()))}/raw")
            unknown_raw = scoped.get("/v1/files/0000000000000000/raw")
            hidden_delete = scoped.delete(f"/v1/files/{file_id(str(hidden.resolve()))}")
            me = scoped.get("/v1/me").json()
            bodies += [json.dumps(copied), json.dumps(in_scope_copy), json.dumps(files), asked.text, searched.text,
                       hidden_raw.text, hidden_delete.text, json.dumps(me)]
        with client("admin") as admin:
            admin_copy = upload(admin, "opening-copy.txt", public.read_bytes())

        # The copy of the out-of-scope file is indexed as the scoped admin's own file: no "duplicate".
        assert copied["status"] == "done"
        assert copied["files"] == [{"name": "copy.txt", "status": "indexed", "reason": None,
                                    "file_id": copied["files"][0]["file_id"]}]
        # A copy of a file inside its scope is still a duplicate, named relative to the indexed folder.
        assert in_scope_copy["files"][0]["status"] == "skipped"
        assert in_scope_copy["files"][0]["reason"] == "duplicate of docs/public/opening.txt (same content, already indexed)"
        assert sorted(entry["source"] for entry in files) == ["docs/public/opening.txt", "team/copy.txt"]
        assert asked.status_code == 200 and searched.status_code == 200
        answers = asked.json()["answers"]
        assert answers and all(a["source"] in ("team/copy.txt", "docs/public/opening.txt") for a in answers)
        assert all(place["source"] != "docs/secret/vault.txt" for a in answers for place in a["sources"])
        passages = searched.json()["passages"]
        assert any(p["source"] == "team/copy.txt" and "4711" in p["text"] for p in passages), passages
        assert all(p["source"] in ("team/copy.txt", "docs/public/opening.txt") for p in passages)
        # The hidden file reads exactly like a file that does not exist.
        assert hidden_raw.status_code == unknown_raw.status_code == 404 and hidden_raw.text == unknown_raw.text
        assert hidden_delete.status_code == 404
        assert me["scope"] == ["docs/public", "team"]
        for body in bodies:
            assert "secret" not in body and "vault.txt" not in body, body
            assert str(tmp_path) not in body and str(tmp_path.resolve()) not in body, body
        # An unscoped admin's copy of an indexed file is a duplicate, shown relative too.
        assert admin_copy["files"][0]["status"] == "skipped"
        assert admin_copy["files"][0]["reason"] == "duplicate of docs/public/opening.txt (same content, already indexed)"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
