"""The index's one writer inside the server: upload jobs and deletions, one at a time, on one thread.

Questions keep being answered meanwhile: they read the store's last committed snapshot (the
writer commits each embedded batch of files, atomically), so an answer
never sees half a batch. Jobs are remembered in memory (the last `SERVICE_JOBS_KEPT` finished ones).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.service.database import ServiceDatabase, now_utc
from spanqa.service.uploads import ReceivedFile, store_received

logger = logging.getLogger(__name__)


@dataclass
class JobFile:
    name: str
    status: str = "pending"  # pending | indexed | skipped | failed
    reason: str | None = None
    source: str | None = None  # where it is stored, once it is

    def to_json(self, file_id: Callable[[str], str]) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "reason": self.reason,
            "file_id": None if self.source is None or self.status != "indexed" else file_id(self.source),
        }


@dataclass
class Job:
    job: str
    submitted_by: str
    files: list[JobFile]
    status: str = "queued"  # queued | running | done | failed
    detail: str | None = None
    submitted_at: str = field(default_factory=now_utc)
    started_at: str | None = None
    finished_at: str | None = None

    def to_json(self, file_id: Callable[[str], str]) -> dict[str, Any]:
        return {
            "job": self.job, "status": self.status, "detail": self.detail, "submitted_by": self.submitted_by,
            "submitted_at": self.submitted_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "files": [entry.to_json(file_id) for entry in self.files],
        }


def file_outcome(reason: str) -> str:
    """'skipped' for a file that needs no indexing (same content as an indexed one), else 'failed'."""
    return "skipped" if reason.startswith("duplicate of") else "failed"


class IndexWriter:
    """Runs upload jobs and deletions against the index, in submission order, on one thread.

    `index_files(paths) -> IndexReport` and `remove_file(source) -> int` do the index work
    (DocumentQA's `index` and `remove` with the server's settings); they are passed in so that
    this class only schedules.
    """

    def __init__(
        self,
        uploads_dir: Path,
        database: ServiceDatabase,
        index_files: Callable[[list[Path]], Any],
        remove_file: Callable[[str], int],
    ):
        self.uploads_dir = uploads_dir
        self._database = database
        self._index_files = index_files
        self._remove_file = remove_file
        self._queue: queue.Queue = queue.Queue()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="spanqa-index-writer", daemon=True)
        self._thread.start()

    # -- submitting ------------------------------------------------------------------------------

    def submit_upload(self, received: list[ReceivedFile], folder: tuple[str, ...], submitted_by: str) -> Job:
        files = [JobFile(name=item.name) for item in received]
        for item, entry in zip(received, files):
            if item.problem is not None:
                entry.status, entry.reason = "failed", item.problem
        job = Job(job=secrets.token_hex(8), submitted_by=submitted_by, files=files)
        with self._lock:
            self._jobs[job.job] = job
            self._forget_old_jobs()
        self._queue.put(("upload", job, received, folder))
        return job

    def submit_removal(self, source: str) -> Future:
        """Removes one indexed file (and its stored upload) after the jobs before it; resolves to its chunk count."""
        future: Future = Future()
        self._queue.put(("remove", future, source, None))
        return future

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _forget_old_jobs(self) -> None:
        finished = [key for key, job in self._jobs.items() if job.status in ("done", "failed")]
        for key in finished[: max(0, len(self._jobs) - defaults.SERVICE_JOBS_KEPT)]:
            del self._jobs[key]

    # -- the writer thread -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            kind, target, payload, folder = task
            if kind == "upload":
                self._run_upload(target, payload, folder)
            else:
                self._run_removal(target, payload)

    def _run_upload(self, job: Job, received: list[ReceivedFile], folder: tuple[str, ...]) -> None:
        job.status, job.started_at = "running", now_utc()
        try:
            stored: dict[str, JobFile] = {}
            for item, entry in zip(received, job.files):
                if item.problem is not None:
                    continue
                path = store_received(item, self.uploads_dir, folder)
                entry.source = str(path)
                if str(path) in stored:
                    entry.status, entry.reason = "skipped", f"same content as {stored[str(path)].name} in this upload"
                    continue
                stored[str(path)] = entry
                self._database.record_upload(str(path), item.name, job.submitted_by)
            if stored:
                report = self._index_files([Path(source) for source in stored])
                for indexed in report.indexed:
                    stored[indexed.source].status = "indexed"
                for skipped in report.skipped:
                    entry = stored.get(skipped.source)
                    if entry is not None:
                        entry.status, entry.reason = file_outcome(skipped.reason), skipped.reason
            for entry in job.files:
                if entry.status == "pending":
                    entry.status, entry.reason = "failed", "not indexed (see the server log)"
            job.status = "done"
        except Exception as exc:  # noqa: BLE001 - the job fails with the reason; the server goes on
            logger.exception("upload job %s failed", job.job)
            job.status, job.detail = "failed", str(exc) or type(exc).__name__
            for entry in job.files:
                if entry.status == "pending":
                    entry.status, entry.reason = "failed", job.detail
        finally:
            job.finished_at = now_utc()
            for item in received:
                # A staged file that never reached its place (the job failed before storing it).
                if item.path is not None and item.path.parent.name == ".staging":
                    item.path.unlink(missing_ok=True)

    def _run_removal(self, future: Future, source: str) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            chunks = self._remove_file(source)
            path = Path(source)
            if path.is_relative_to(self.uploads_dir):
                path.unlink(missing_ok=True)
                self._database.forget_upload(source)
            future.set_result(chunks)
        except Exception as exc:  # noqa: BLE001 - handed to the request that asked
            future.set_exception(exc)
