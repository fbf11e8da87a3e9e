"""The index's one writer inside the server: upload jobs and deletions, one at a time, on one thread.

Questions keep being answered meanwhile: they read the store's last committed snapshot (the
writer commits each embedded batch of files, atomically), so an answer never sees half a batch.

Jobs are durable: an upload's files are moved to their place and the job is journaled in
`service.sqlite` before the upload is answered, and each change of state is journaled as it
happens. A server that stops or is killed before a job ends resumes it on its next start, under
the same id (indexing it again keeps what was committed: unchanged files are not parsed again).
The journal keeps the last `SERVICE_JOBS_KEPT` finished jobs.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.errors import IndexBusyError, StorageError, is_storage_failure
from spanqa.service.database import Job, JobFile, ServiceDatabase, now_utc
from spanqa.service.uploads import ReceivedFile, discard_staged, store_received

logger = logging.getLogger(__name__)

__all__ = ["GONE", "IndexWriter", "Job", "JobFile", "file_outcome"]

GONE = "the uploaded file is no longer on the server; upload it again"


def file_outcome(reason: str) -> str:
    """'skipped' for a file that needs no indexing (same content as an indexed one), else 'failed'."""
    return "skipped" if reason.startswith("duplicate of") else "failed"


def failure_detail(exc: BaseException) -> str:
    """Why a job failed, in words for its user (the traceback, with server paths, goes to the log)."""
    if is_storage_failure(exc):
        return str(exc if isinstance(exc, StorageError) else StorageError("the upload could not be indexed", exc))
    if isinstance(exc, IndexBusyError):
        return "the index is being written by another process: upload the files again once it has finished"
    return f"indexing failed ({type(exc).__name__}): see the server log"


class IndexWriter:
    """Runs upload jobs and deletions against the index, in submission order, on one thread.

    `index_files(paths, submitted_by) -> IndexReport` and `remove_file(source) -> int` do the index
    work (DocumentQA's `index`, duplicates judged within the submitting token's scope, and `remove`,
    with the server's settings); they are passed in so that
    this class only schedules and journals.
    """

    def __init__(
        self,
        uploads_dir: Path,
        database: ServiceDatabase,
        index_files: Callable[[list[Path], str], Any],
        remove_file: Callable[[str], int],
    ):
        self.uploads_dir = uploads_dir
        self._database = database
        self._index_files = index_files
        self._remove_file = remove_file
        self._queue: queue.Queue = queue.Queue()
        # Jobs of this process not yet journaled as finished (their state is here first).
        self._live: dict[str, Job] = {}
        self._live_lock = threading.Lock()
        # Stored uploads change under this lock only: storing a request's files, removing a deleted one.
        self._files_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="spanqa-index-writer", daemon=True)
        self._thread.start()

    # -- submitting ------------------------------------------------------------------------------

    def submit_upload(self, received: list[ReceivedFile], folder: tuple[str, ...], submitted_by: str) -> Job:
        """Stores the received files in their place and journals the job, then queues it: once this
        returns, the job survives a restart. A StorageError when the disk fails either step; the
        files this request stored are removed then (files stored before it never are)."""
        job = Job(job=secrets.token_hex(8), submitted_by=submitted_by, files=[JobFile(item.name) for item in received])
        created: list[Path] = []
        try:
            with self._files_lock:
                stored: dict[str, JobFile] = {}
                for item, entry in zip(received, job.files):
                    if item.problem is not None:
                        entry.status, entry.reason = "failed", item.problem
                        continue
                    path, new = store_received(item, self.uploads_dir, folder)
                    if new:
                        created.append(path)
                    entry.source = str(path)
                    if entry.source in stored:
                        entry.status, entry.reason = "skipped", f"same content as {stored[entry.source].name} in this upload"
                    else:
                        stored[entry.source] = entry
                self._database.add_job(job)
                with self._live_lock:
                    self._live[job.job] = job
        except Exception as exc:
            for path in created:  # new to the server with this request: no other job holds them
                path.unlink(missing_ok=True)
            discard_staged(received)
            if is_storage_failure(exc):
                raise StorageError("the upload could not be stored", exc) from exc
            raise
        self._queue.put(("upload", job))
        return job

    def resume(self) -> int:
        """Queues the jobs journaled as queued or running (the server stopped or was killed before
        they ended), in the order they were submitted, under their ids; returns how many."""
        jobs = self._database.unfinished_jobs()
        for job in jobs:
            job.status, job.started_at = "queued", None
            with self._live_lock:
                self._live[job.job] = job
            self._queue.put(("upload", job))
        if jobs:
            logger.info("resuming %d upload job(s) that had not finished: %s", len(jobs), ", ".join(j.job for j in jobs))
        return len(jobs)

    def submit_removal(self, source: str) -> Future:
        """Removes one indexed file (and its stored upload) after the jobs before it; resolves to its chunk count."""
        future: Future = Future()
        self._queue.put(("remove", future, source))
        return future

    def job(self, job_id: str) -> Job | None:
        """The job as this process knows it, else as the journal holds it (None: no such job)."""
        with self._live_lock:
            live = self._live.get(job_id)
        return live if live is not None else self._database.job(job_id)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

    # -- the writer thread -----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if task[0] == "upload":
                self._run_upload(task[1])
            else:
                self._run_removal(task[1], task[2])

    def _journal(self, job: Job) -> bool:
        try:
            self._database.save_job(job)
            return True
        except Exception:  # noqa: BLE001 - the job goes on; a restart runs it again (indexing is idempotent)
            logger.exception("could not journal upload job %s (status %s)", job.job, job.status)
            return False

    def _run_upload(self, job: Job) -> None:
        job.status, job.started_at = "running", now_utc()
        try:
            pending: dict[str, JobFile] = {}
            for entry in job.files:
                if entry.status != "pending":
                    continue
                if entry.source is None or not Path(entry.source).is_file():
                    entry.status, entry.reason = "failed", GONE  # deleted while the job waited
                    continue
                pending[entry.source] = entry
            self._journal(job)
            for source, entry in pending.items():
                self._database.record_upload(source, entry.name, job.submitted_by)
            if pending:
                report = self._index_files([Path(source) for source in pending], job.submitted_by)
                for indexed in report.indexed:
                    if indexed.source in pending:
                        pending[indexed.source].status = "indexed"
                for skipped in report.skipped:
                    entry = pending.get(skipped.source)
                    if entry is not None:
                        entry.status, entry.reason = file_outcome(skipped.reason), skipped.reason
            for entry in job.files:
                if entry.status == "pending":
                    entry.status, entry.reason = "failed", "not indexed (see the server log)"
            job.status = "done"
        except Exception as exc:  # noqa: BLE001 - the job fails with the reason; the server goes on
            logger.exception("upload job %s failed", job.job)
            job.status, job.detail = "failed", failure_detail(exc)
            for entry in job.files:
                if entry.status == "pending":
                    entry.status, entry.reason = "failed", job.detail
        finally:
            job.finished_at = now_utc()
            if self._journal(job):
                with self._live_lock:
                    self._live.pop(job.job, None)
                self._prune()

    def _prune(self) -> None:
        try:
            self._database.prune_jobs(defaults.SERVICE_JOBS_KEPT)
        except Exception:  # noqa: BLE001 - pruning waits for the next job
            logger.exception("could not prune the job journal")

    def _waiting_sources(self) -> set[str]:
        with self._live_lock:
            return {entry.source for job in self._live.values() if job.status == "queued"
                    for entry in job.files if entry.status == "pending" and entry.source is not None}

    def _run_removal(self, future: Future, source: str) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            chunks = self._remove_file(source)
            path = Path(source)
            if path.is_relative_to(self.uploads_dir):
                with self._files_lock:
                    # The same content uploaded again since, and waiting for its job: that job needs the file.
                    if source not in self._waiting_sources():
                        path.unlink(missing_ok=True)
                self._database.forget_upload(source)
            future.set_result(chunks)
        except Exception as exc:  # noqa: BLE001 - handed to the request that asked
            future.set_exception(exc)
