"""Durable upload jobs: the journal in service.sqlite, resuming after a restart, and a real
`spanqa serve` killed with SIGKILL in the middle of a job."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

from service_harness import ServeProcess

from spanqa.records import IndexedFile, IndexReport
from spanqa.service.database import Job, JobFile, ServiceDatabase
from spanqa.service.jobs import GONE, IndexWriter
from spanqa.service.uploads import STAGING, ReceivedFile

# -- the journal alone ------------------------------------------------------------------------------


def test_the_journal_keeps_jobs_their_files_and_their_order_across_reopening(tmp_path):
    database = ServiceDatabase(tmp_path)
    first = Job("a1", "alice", [JobFile("a.pdf", source="/u/a.pdf"), JobFile("z.zip", "failed", "unsupported")])
    second = Job("b2", "bob", [JobFile("b.txt", source="/u/b.txt")])
    third = Job("c3", "alice", [JobFile("c.md", source="/u/c.md")])
    for job in (first, second, third):
        database.add_job(job)
    second.status, second.started_at = "running", "2024-01-01T00:00:00+00:00"
    database.save_job(second)
    first.status, first.finished_at = "done", "2024-01-01T00:01:00+00:00"
    first.files[0].status = "indexed"
    database.save_job(first)
    database.close()

    reopened = ServiceDatabase(tmp_path)
    assert reopened.job("a1") == first
    assert reopened.job("nope") is None
    assert [job.job for job in reopened.unfinished_jobs()] == ["b2", "c3"]  # submission order
    assert reopened.unfinished_jobs()[0].status == "running"
    assert reopened.prune_jobs(keep=0) == 1  # only finished jobs are pruned
    assert reopened.job("a1") is None and reopened.job("b2") is not None
    assert reopened._connection.execute("SELECT count(*) FROM job_files WHERE job = 'a1'").fetchone()[0] == 0


def test_a_service_database_from_before_the_journal_gains_it_and_keeps_its_records(tmp_path):
    old = sqlite3.connect(tmp_path / "service.sqlite")
    old.executescript(
        "CREATE TABLE uploads (path TEXT PRIMARY KEY, name TEXT NOT NULL, uploaded_by TEXT NOT NULL,"
        " uploaded_at TEXT NOT NULL);"
        "INSERT INTO uploads VALUES ('/u/x.pdf', 'x.pdf', 'alice', '2024-01-01T00:00:00+00:00');"
    )
    old.commit()
    old.close()
    database = ServiceDatabase(tmp_path)
    database.add_job(Job("j1", "alice", [JobFile("y.pdf", source="/u/y.pdf")]))
    assert database.upload_names() == {"/u/x.pdf": "x.pdf"}
    assert database.job("j1").files[0].name == "y.pdf"


# -- the writer: resuming, removals ----------------------------------------------------------------


def stored(uploads: Path, data: bytes) -> str:
    path = uploads / f"{hashlib.sha256(data).hexdigest()}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def staged(uploads: Path, name: str, data: bytes) -> ReceivedFile:
    path = uploads / STAGING / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return ReceivedFile(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def indexing_all(calls: list[list[str]], gate: threading.Event | None = None):
    def index_files(paths: list[Path], submitted_by: str) -> IndexReport:
        calls.append([str(path) for path in paths])
        if gate is not None:
            assert gate.wait(60)
        return IndexReport(indexed=[IndexedFile(str(path), 1, 1) for path in paths])

    return index_files


def test_resumed_jobs_keep_their_ids_and_order_and_only_files_deleted_meanwhile_fail(tmp_path):
    uploads = tmp_path / "uploads"
    database = ServiceDatabase(tmp_path)
    kept, gone, later = stored(uploads, b"kept"), stored(uploads, b"gone"), stored(uploads, b"later")
    interrupted = Job("first", "alice", [JobFile("kept.txt", source=kept), JobFile("gone.txt", source=gone),
                                         JobFile("bad.zip", "failed", "unsupported content")], status="running")
    waiting = Job("second", "bob", [JobFile("later.txt", source=later)])
    database.add_job(interrupted)
    database.add_job(waiting)
    Path(gone).unlink()  # deleted while the server was down

    calls: list[list[str]] = []
    writer = IndexWriter(uploads, database, indexing_all(calls), lambda source: 0)
    assert writer.resume() == 2
    writer.stop()  # returns once the queued jobs have run

    assert calls == [[kept], [later]]
    first, second = database.job("first"), database.job("second")
    assert first.status == "done" and second.status == "done"
    assert [(f.name, f.status, f.reason) for f in first.files] == [
        ("kept.txt", "indexed", None), ("gone.txt", "failed", GONE), ("bad.zip", "failed", "unsupported content")]
    assert database.unfinished_jobs() == []
    assert database.upload_names() == {kept: "kept.txt", later: "later.txt"}


def test_a_removal_keeps_a_stored_upload_that_a_waiting_job_holds(tmp_path):
    uploads = tmp_path / "uploads"
    database = ServiceDatabase(tmp_path)
    gate = threading.Event()
    calls: list[list[str]] = []
    writer = IndexWriter(uploads, database, indexing_all(calls, gate), lambda source: 1)
    try:
        blocking = writer.submit_upload([staged(uploads, "a.txt", b"held")], (), "alice")
        source = blocking.files[0].source
        removal = writer.submit_removal(source)
        again = writer.submit_upload([staged(uploads, "again.txt", b"held")], (), "alice")  # the same content
        assert again.files[0].source == source
    finally:
        gate.set()
        writer.stop()
    assert removal.result(timeout=5) == 1
    assert database.job(again.job).files[0].status == "indexed"
    assert Path(source).is_file()
    assert calls == [[source], [source]]
    assert not any((uploads / STAGING).iterdir())


# -- a real server killed with SIGKILL in the middle of a job ----------------------------------------


def test_upload_jobs_survive_a_sigkill_of_spanqa_serve_and_resume_under_their_ids(tmp_path, minilm_dir,
                                                                                    tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "start.md").write_text("# Start\n\nThe library opens at nine every weekday.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([docs], workers=1)
    kept_text = b"The observatory dome is painted a deep cobalt blue."
    gone_text = b"The ferry to the island leaves at seven sharp."

    server = ServeProcess(index_dir, tiny_qa_model_dir)
    lock = sqlite3.connect(index_dir / "chunks.sqlite", isolation_level=None)
    try:
        # A job that finishes before the kill (its one file refused, so no indexing run is needed).
        before = server.client.post("/v1/files", files=[("files", ("before.txt", b""))])
        finished = server.job_when(before.json()["job"], ("done", "failed"))
        # The index's write lock held here: the server's writer waits for it (its busy timeout) and
        # cannot finish the next job before the kill.
        lock.execute("BEGIN IMMEDIATE")
        accepted = server.client.post("/v1/files", files=[("files", ("kept.txt", kept_text)),
                                                          ("files", ("gone.txt", gone_text))])
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job"]
        server.job_when(job_id, ("running",))
    finally:
        server.kill()
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
    assert finished["status"] == "done" and finished["files"][0]["status"] == "failed"
    (index_dir / "uploads" / f"{hashlib.sha256(gone_text).hexdigest()}.txt").unlink()  # deleted while down

    restarted = ServeProcess(index_dir, tiny_qa_model_dir)
    try:
        job = restarted.job_when(job_id, ("done", "failed"))
        again = restarted.client.get(f"/v1/jobs/{finished['job']}").json()
        passages = restarted.client.post("/v1/search", json={"query": "observatory dome cobalt", "top_k": 3})
        listed = {entry["name"] for entry in restarted.client.get("/v1/files").json()["files"]}
    finally:
        restarted.kill()
    assert job["status"] == "done", job
    outcomes = {entry["name"]: (entry["status"], entry["reason"]) for entry in job["files"]}
    assert outcomes == {"kept.txt": ("indexed", None), "gone.txt": ("failed", GONE)}
    assert again == finished
    assert passages.status_code == 200 and kept_text.decode() in [p["text"] for p in passages.json()["passages"]]
    assert "kept.txt" in listed and "gone.txt" not in listed
    assert "Traceback" not in "".join(restarted.log), restarted.log
