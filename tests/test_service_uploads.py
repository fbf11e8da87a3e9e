"""Uploads and deletions over a real server: content typing, hostile names, jobs, answers during indexing."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from pdf_factory import build_text_pdf, image_pdf, scan_of
from service_harness import server_config, start_server, wait_for_job

from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.service import uploads as uploads_module
from spanqa.service.tokens import TokenFile

MAX_FILE_MB = 0.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("uploads")
    docs = root / "docs"
    docs.mkdir()
    (docs / "start.md").write_text("# Start\n\nThe library opens at nine every weekday.\n", encoding="utf-8")
    index_dir = root / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([docs], workers=1)
    tokens = TokenFile(root / "tokens.json")
    made = {
        "admin": tokens.add("admin", "admin")[1],
        "reader": tokens.add("reader", "read")[1],
        "team-admin": tokens.add("team-admin", "admin", [index_dir / "uploads" / "team"])[1],
    }
    live = start_server(server_config(index_dir, tiny_qa_model_dir, tokens.path, upload_max_file_mb=MAX_FILE_MB))
    yield live, made, index_dir
    live.stop()


def upload(client, files, folder=None):
    """POST /v1/files with a multipart body written here byte for byte (an HTTP library would
    escape hostile names, and the server must cope with what any client sends)."""
    boundary = "spanqa-test-boundary-7f3a"
    body = b""
    if folder is not None:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="folder"\r\n\r\n{folder}\r\n'.encode()
    for name, data, media_type in files:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="').encode()
        body += name.encode("utf-8") + f'"\r\nContent-Type: {media_type}\r\n\r\n'.encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return client.post("/v1/files", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})


def stored_files(index_dir: Path) -> list[Path]:
    return sorted(path for path in (index_dir / "uploads").rglob("*") if path.is_file())


def test_upload_indexes_typed_by_content_under_hashed_names(setup, tmp_path):
    live, tokens, index_dir = setup
    pdf = build_text_pdf(["The observatory telescope has a mirror of two point four metres."])
    with live.client(tokens["admin"]) as client:
        response = upload(client, [
            ("../../escape.pdf", pdf, "application/pdf"),
            ("notes\x00evil.txt", b"The archive keeps seven thousand maps.", "text/plain"),
            ("n" * 300 + ".md", b"# Long\n\nThe greenhouse grows basil.", "text/markdown"),
            ("fake.pdf", b"PK\x03\x04 this is a zip archive " * 20, "application/pdf"),
            ("text-named.pdf", b"The ferry leaves the harbour at six.", "application/pdf"),
            ("empty.txt", b"", "text/plain"),
        ])
        assert response.status_code == 202, response.text
        job = wait_for_job(client, response.json()["job"])
        listed = {entry["id"]: entry for entry in client.get("/v1/files").json()["files"]}
    assert job["status"] == "done"
    by_name = {entry["name"]: entry for entry in job["files"]}
    long_name = next(name for name in by_name if name.startswith("nnn"))
    assert len(long_name) <= 200 and long_name.endswith(".md") and "\x00" not in "".join(by_name)
    assert set(by_name) == {"escape.pdf", "notes evil.txt", long_name, "fake.pdf", "text-named.pdf", "empty.txt"}
    assert by_name["escape.pdf"]["status"] == "indexed"
    assert by_name["notes evil.txt"]["status"] == "indexed"
    assert by_name[long_name]["status"] == "indexed"
    assert by_name["text-named.pdf"]["status"] == "indexed"
    assert by_name["fake.pdf"]["status"] == "failed" and "ZIP" in by_name["fake.pdf"]["reason"]
    assert by_name["empty.txt"]["status"] == "failed" and "empty" in by_name["empty.txt"]["reason"]
    # Stored only under the uploads folder, by content hash and sniffed type; nothing escaped.
    uploads = (index_dir / "uploads").resolve()
    for path in stored_files(index_dir):
        assert path.resolve().is_relative_to(uploads)
        assert len(path.stem) == 64 and path.suffix in (".pdf", ".txt", ".md")
    assert not (index_dir.parent / "escape.pdf").exists()
    text_named = listed[by_name["text-named.pdf"]["file_id"]]
    assert text_named["file_type"] == "txt" and text_named["name"] == "text-named.pdf"
    assert listed[by_name["escape.pdf"]["file_id"]]["file_type"] == "pdf"


def test_oversized_file_is_refused_and_the_rest_indexed(setup):
    live, tokens, _ = setup
    big = b"word " * int(MAX_FILE_MB * 1024 * 1024 / 4)
    with live.client(tokens["admin"]) as client:
        job = wait_for_job(client, upload(client, [("big.txt", big, "text/plain"),
                                                   ("small.txt", b"The pier is 300 metres long.", "text/plain")]).json()["job"])
    statuses = {entry["name"]: (entry["status"], entry["reason"]) for entry in job["files"]}
    assert statuses["small.txt"][0] == "indexed"
    assert statuses["big.txt"][0] == "failed" and "too large" in statuses["big.txt"][1]


def test_uploads_need_an_admin_and_a_multipart_body(setup):
    live, tokens, _ = setup
    with live.client(tokens["reader"]) as client:
        assert upload(client, [("a.txt", b"text", "text/plain")]).status_code == 403
    with live.client(tokens["admin"]) as client:
        not_multipart = client.post("/v1/files", json={"files": []})
        assert client.post("/v1/files", data={"folder": "x"}, files=[("other", ("a.txt", b"x"))]).status_code == 422
        bad_folder = upload(client, [("a.txt", b"text", "text/plain")], folder="../../etc")
        malformed = client.post("/v1/files", content=b"garbage, not a multipart body",
                                headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert not_multipart.status_code == 415 and not_multipart.json()["error"] == "unsupported_media_type"
    assert bad_folder.status_code == 422 and "folder" in bad_folder.json()["detail"]
    assert malformed.status_code == 400 and malformed.json()["error"] == "bad_upload"
    assert malformed.json()["detail"].startswith("malformed multipart body")


def test_a_scoped_admin_uploads_only_into_its_scope(setup):
    live, tokens, _ = setup
    with live.client(tokens["team-admin"]) as client:
        outside = upload(client, [("a.txt", b"The quay is paved.", "text/plain")])
        inside = upload(client, [("b.txt", b"The team room has twelve chairs.", "text/plain")], folder="team")
        job = wait_for_job(client, inside.json()["job"])
        listed = client.get("/v1/files").json()["files"]
    assert outside.status_code == 403
    assert job["files"][0]["status"] == "indexed"
    assert [entry["name"] for entry in listed] == ["b.txt"]
    assert listed[0]["source"] == "team/b.txt"  # folder/name as uploaded, not the stored path


def test_questions_are_answered_from_the_last_commit_while_an_upload_is_being_written(setup, monkeypatch):
    live, tokens, _ = setup
    writing = threading.Event()
    release = threading.Event()
    original_commit = FaissDocumentStore._commit

    def held_commit(store, compact=False):
        # The writer has written the new chunks in its open transaction; hold the commit there.
        if threading.current_thread().name == "spanqa-index-writer" and store._commits.writing:
            writing.set()
            release.wait(120)
        return original_commit(store, compact)

    monkeypatch.setattr(FaissDocumentStore, "_commit", held_commit)
    unique = "The zeppelin hangar is four hundred metres long."
    with live.client(tokens["admin"]) as client:
        job_id = upload(client, [("hangar.txt", unique.encode(), "text/plain")]).json()["job"]
        assert writing.wait(120), "the writer never reached its commit"
        during = [client.post("/v1/search", json={"query": "zeppelin hangar", "top_k": 3}) for _ in range(3)]
        asked = client.post("/v1/ask", json={"question": "How long is the zeppelin hangar?"})
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        release.set()
        job = wait_for_job(client, job_id)
        after = client.post("/v1/search", json={"query": "zeppelin hangar", "top_k": 1}).json()["passages"]
    assert all(response.status_code == 200 for response in during) and asked.status_code == 200
    assert all("zeppelin" not in p["text"] for response in during for p in response.json()["passages"])
    assert job["status"] == "done" and job["files"][0]["status"] == "indexed"
    assert after[0]["text"] == unique


def test_delete_removes_the_file_its_chunks_and_the_stored_upload(setup):
    live, tokens, index_dir = setup
    with live.client(tokens["admin"]) as client:
        job = wait_for_job(client, upload(client, [("gone.txt", b"The lighthouse keeper owns a parrot.", "text/plain")]).json()["job"])
        identifier = job["files"][0]["file_id"]
        stored = [path for path in stored_files(index_dir) if path.read_bytes() == b"The lighthouse keeper owns a parrot."]
        assert len(stored) == 1
        with live.client(tokens["reader"]) as reader:
            assert reader.delete(f"/v1/files/{identifier}").status_code == 403
        with live.client(tokens["team-admin"]) as scoped:
            assert scoped.delete(f"/v1/files/{identifier}").status_code == 404
        deleted = client.delete(f"/v1/files/{identifier}")
        assert deleted.status_code == 200 and deleted.json()["deleted"]["name"] == "gone.txt"
        assert client.delete(f"/v1/files/{identifier}").status_code == 404
        listed = [entry["id"] for entry in client.get("/v1/files").json()["files"]]
        passages = client.post("/v1/search", json={"query": "lighthouse keeper parrot", "top_k": 5}).json()["passages"]
    assert identifier not in listed
    assert all("parrot" not in passage["text"] for passage in passages)
    assert not stored[0].exists()


@pytest.mark.skipif(importlib.util.find_spec("rapidocr") is None, reason="needs rapidocr")
def test_an_uploaded_scan_is_ocred_and_its_passages_are_boxed_where_the_words_are_printed(setup):
    import pypdfium2 as pdfium

    live, tokens, _ = setup
    sentence = "The planetarium dome seats ninety visitors under a painted sky."
    text_pdf = build_text_pdf([sentence])
    with live.client(tokens["admin"]) as client:
        job = wait_for_job(client, upload(client, [("dome-scan.pdf", image_pdf(scan_of(text_pdf)), "application/pdf")]).json()["job"])
        assert job["files"][0]["status"] == "indexed", job
        passages = client.post("/v1/search", json={"query": "planetarium dome seats", "top_k": 3}).json()["passages"]
    passage = next(p for p in passages if "planetarium" in p["text"])
    assert passage["highlight"], passage
    # The scan was rendered from the text page at its size: its words lie where pdfium boxes them there.
    document = pdfium.PdfDocument(text_pdf)
    try:
        ink = document[0].get_textpage().get_text_bounded
        for box in passage["highlight"]:
            inside = ink(box["x0"] + 1, box["y0"] + 1, box["x1"] - 1, box["y1"] - 1)
            assert " ".join(inside.split()) in " ".join(passage["text"].split()) and len(inside.split()) >= 3, (box, inside)
    finally:
        document.close()


# -- a full or failing disk ------------------------------------------------------------------------


class FailingWrites:
    """A staged file whose writes fail as a full (or broken) disk fails them, naming the file as the OS does."""

    def __init__(self, handle, error: int):
        self._handle = handle
        self._error = error

    def write(self, data):
        raise OSError(self._error, os.strerror(self._error), self._handle.name)

    def __getattr__(self, name):
        return getattr(self._handle, name)


class FailingDatabase:
    """service.sqlite's connection, except that statements starting with `failing` fail as on a full disk."""

    def __init__(self, connection, failing: str):
        self._connection = connection
        self._failing = failing

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(self._failing):
            raise sqlite3.OperationalError("database or disk is full")
        return self._connection.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._connection, name)


def staged_files(index_dir: Path) -> list[Path]:
    staging = index_dir / "uploads" / ".staging"
    return sorted(staging.iterdir()) if staging.is_dir() else []


def stored_path(index_dir: Path, data: bytes, suffix: str = ".txt") -> Path:
    return index_dir / "uploads" / f"{hashlib.sha256(data).hexdigest()}{suffix}"


@pytest.mark.parametrize(("error", "status", "code"), [
    (errno.ENOSPC, 507, "insufficient_storage"), (errno.EIO, 503, "storage_error"),
])
def test_a_disk_failing_while_an_upload_is_received_is_507_or_503_and_leaves_nothing(setup, monkeypatch, error,
                                                                                     status, code):
    live, tokens, index_dir = setup
    files = [("first.txt", f"The harbour crane {error} lifts forty tonnes.".encode(), "text/plain"),
             ("second.txt", f"The dry dock {error} holds two ships.".encode(), "text/plain")]
    real_open = open
    opened = []

    def failing_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        opened.append(path)
        return FailingWrites(handle, error) if "w" in mode and len(opened) == 2 else handle

    with live.client(tokens["admin"]) as client:
        monkeypatch.setattr(uploads_module, "open", failing_open, raising=False)
        refused = upload(client, files)
        monkeypatch.undo()
        left = [Path(path) for path in opened if Path(path).exists()] + staged_files(index_dir)
        stored = stored_path(index_dir, files[0][1]).exists()
        retried = upload(client, files)
        job = wait_for_job(client, retried.json()["job"])
    assert refused.status_code == status and refused.json()["error"] == code, refused.text
    assert ("disk is full" if error == errno.ENOSPC else "Input/output error") in refused.json()["detail"]
    assert str(index_dir.parent) not in refused.text and ".staging" not in refused.text
    assert len(opened) == 2 and left == [] and not stored  # the first file, received in full, is gone too
    assert retried.status_code == 202 and [entry["status"] for entry in job["files"]] == ["indexed", "indexed"]
    assert staged_files(index_dir) == []


def test_a_full_disk_while_journaling_an_upload_is_507_and_keeps_what_was_stored_before(setup, monkeypatch):
    live, tokens, index_dir = setup
    known = b"The old mill grinds wheat on Tuesdays."
    new = b"The new bakery opens next spring."
    with live.client(tokens["admin"]) as client:
        first = wait_for_job(client, upload(client, [("mill.txt", known, "text/plain")]).json()["job"])
        assert first["files"][0]["status"] == "indexed"
        state = live.state
        monkeypatch.setattr(state.database, "_connection", FailingDatabase(state.database._connection, "INSERT INTO JOBS"))
        refused = upload(client, [("mill-again.txt", known, "text/plain"), ("bakery.txt", new, "text/plain")])
        monkeypatch.undo()
        # Uploaded again with the same content: the stored file belongs to the first job and stays.
        assert stored_path(index_dir, known).read_bytes() == known
        assert not stored_path(index_dir, new).exists() and staged_files(index_dir) == []
        still = client.post("/v1/search", json={"query": "old mill grinds wheat", "top_k": 3}).json()["passages"]
        retried = upload(client, [("mill-again.txt", known, "text/plain"), ("bakery.txt", new, "text/plain")])
        job = wait_for_job(client, retried.json()["job"])
    assert refused.status_code == 507 and refused.json()["error"] == "insufficient_storage", refused.text
    assert "disk is full" in refused.json()["detail"] and str(index_dir.parent) not in refused.text
    assert known.decode() in [passage["text"] for passage in still]
    assert retried.status_code == 202 and job["status"] == "done"
    assert [entry["status"] for entry in job["files"]] == ["indexed", "indexed"]


def test_feedback_on_a_full_disk_is_507_and_recorded_once_there_is_space(setup, monkeypatch):
    live, tokens, _ = setup
    question = "When does the library open?"
    with live.client(tokens["admin"]) as client:
        answer = client.post("/v1/ask", json={"question": question, "top_k": 1}).json()["answers"][0]
        body = {"question": question, "correct": True,
                "answer": {key: answer[key] for key in ("file_id", "page", "start", "end", "text")}}
        database = live.state.database
        monkeypatch.setattr(database, "_connection", FailingDatabase(database._connection, "INSERT INTO FEEDBACK"))
        refused = client.post("/v1/feedback", json=body)
        monkeypatch.undo()
        recorded = client.post("/v1/feedback", json=body)
    assert refused.status_code == 507 and refused.json() == {
        "error": "insufficient_storage",
        "detail": "the feedback could not be recorded: the disk is full; nothing committed before is lost: "
                  "free some space and try again",
    }
    assert recorded.status_code == 201
