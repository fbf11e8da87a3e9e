"""The service's own records, in `service.sqlite` beside the index: uploaded files' names, the upload
job journal and feedback.

A file of its own rather than tables in `chunks.sqlite`: the index's database is held by its one
writer for a whole indexing batch (minutes for a large upload), and a user's feedback click must
not wait for that. It lives in the index directory, so it moves, backs up and is deleted with it. The job journal
(`jobs`, `job_files`) is what lets upload jobs survive a restart or a kill: a job is in it before
its upload is answered, and every change of state is written as it happens.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spanqa.file_modes import create_private_file, sqlite_files, tighten

DATABASE_FILE = "service.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    path TEXT PRIMARY KEY, name TEXT NOT NULL, uploaded_by TEXT NOT NULL, uploaded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, question TEXT NOT NULL, source TEXT NOT NULL, page INTEGER NOT NULL,
    start INTEGER NOT NULL, end INTEGER NOT NULL, text TEXT NOT NULL, correct INTEGER NOT NULL,
    context TEXT NOT NULL, title TEXT NOT NULL, given_by TEXT NOT NULL, given_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_source ON feedback(source);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, submitted_by TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT, submitted_at TEXT NOT NULL, started_at TEXT, finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_files (
    job TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
    source TEXT, PRIMARY KEY (job, position)
);
"""
FINISHED = ("done", "failed")


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class JobFile:
    """One file of an upload job; `source` is where it is stored (None when it was refused on arrival)."""

    name: str
    status: str = "pending"  # pending | indexed | skipped | failed
    reason: str | None = None
    source: str | None = None

    def to_json(self, file_id: Callable[[str], str]) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "reason": self.reason,
            "file_id": None if self.source is None or self.status != "indexed" else file_id(self.source),
        }


@dataclass
class Job:
    """An upload job: its files, in the order they were uploaded, and where it stands."""

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


@dataclass(frozen=True)
class Feedback:
    """A user's verdict on one answer: characters start:end of page `page` of `source` (whose text
    is `context`) answer `question`, or do not."""

    question: str
    source: str
    page: int
    start: int
    end: int
    text: str
    correct: bool
    context: str
    title: str
    given_by: str


class ServiceDatabase:
    """`service.sqlite` in `index_dir`; safe to use from any thread."""

    def __init__(self, index_dir: str | Path):
        self.path = Path(index_dir) / DATABASE_FILE
        self._lock = threading.Lock()
        # Owner-only (issue 24): 0600 before SQLite opens it (its -wal and -shm take that mode); a
        # file made before is tightened. A folder that cannot be written fails in connect, as before.
        with suppress(OSError):
            create_private_file(self.path)
        self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        tighten(sqlite_files(self.path))
        # FULL: a journaled job is on disk before its upload is answered (a power cut keeps it too).
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.execute("PRAGMA busy_timeout=10000")
        self._connection.executescript(_SCHEMA)
        self.uploads_version = 0  # grows with every change to `uploads` (this process is its only writer)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # -- uploads ---------------------------------------------------------------------------------

    def record_upload(self, path: str, name: str, uploaded_by: str) -> None:
        with self._lock:
            self._connection.execute(
                "INSERT OR REPLACE INTO uploads(path, name, uploaded_by, uploaded_at) VALUES (?, ?, ?, ?)",
                (path, name, uploaded_by, now_utc()),
            )
            self.uploads_version += 1

    def forget_upload(self, path: str) -> None:
        with self._lock:
            self._connection.execute("DELETE FROM uploads WHERE path = ?", (path,))
            self.uploads_version += 1

    def upload_names(self) -> dict[str, str]:
        """Stored path -> the name the file was uploaded under."""
        with self._lock:
            return dict(self._connection.execute("SELECT path, name FROM uploads"))

    # -- the job journal -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def add_job(self, job: Job) -> None:
        """Journals a new job and its files, in one transaction (all of it or nothing)."""
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO jobs(id, submitted_by, status, detail, submitted_at, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job.job, job.submitted_by, job.status, job.detail, job.submitted_at, job.started_at, job.finished_at),
            )
            connection.executemany(
                "INSERT INTO job_files(job, position, name, status, reason, source) VALUES (?, ?, ?, ?, ?, ?)",
                [(job.job, position, entry.name, entry.status, entry.reason, entry.source)
                 for position, entry in enumerate(job.files)],
            )

    def save_job(self, job: Job) -> None:
        """Writes the job's state and each of its files' outcomes, in one transaction."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE jobs SET status = ?, detail = ?, started_at = ?, finished_at = ? WHERE id = ?",
                (job.status, job.detail, job.started_at, job.finished_at, job.job),
            )
            connection.executemany(
                "UPDATE job_files SET status = ?, reason = ?, source = ? WHERE job = ? AND position = ?",
                [(entry.status, entry.reason, entry.source, job.job, position)
                 for position, entry in enumerate(job.files)],
            )

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT id, submitted_by, status, detail, submitted_at, started_at, finished_at FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            return None if row is None else self._job_from(row)

    def unfinished_jobs(self) -> list[Job]:
        """The jobs journaled as queued or running, in the order they were submitted."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT id, submitted_by, status, detail, submitted_at, started_at, finished_at FROM jobs"
                " WHERE status NOT IN (?, ?) ORDER BY seq", FINISHED,
            ).fetchall()
            return [self._job_from(row) for row in rows]

    def prune_jobs(self, keep: int) -> int:
        """Forgets all but the `keep` most recently submitted finished jobs; returns how many it forgot."""
        with self._transaction() as connection:
            old = [row[0] for row in connection.execute(
                "SELECT id FROM jobs WHERE status IN (?, ?) ORDER BY seq DESC LIMIT -1 OFFSET ?", (*FINISHED, keep),
            )]
            connection.executemany("DELETE FROM job_files WHERE job = ?", [(job_id,) for job_id in old])
            connection.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in old])
        return len(old)

    def _job_from(self, row: tuple) -> Job:
        files = [JobFile(name, status, reason, source) for name, status, reason, source in self._connection.execute(
            "SELECT name, status, reason, source FROM job_files WHERE job = ? ORDER BY position", (row[0],),
        )]
        return Job(job=row[0], submitted_by=row[1], files=files, status=row[2], detail=row[3], submitted_at=row[4],
                   started_at=row[5], finished_at=row[6])

    # -- feedback --------------------------------------------------------------------------------

    def add_feedback(self, feedback: Feedback) -> int:
        with self._lock:
            cursor = self._connection.execute(
                "INSERT INTO feedback(question, source, page, start, end, text, correct, context, title, given_by,"
                " given_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (feedback.question, feedback.source, feedback.page, feedback.start, feedback.end, feedback.text,
                 int(feedback.correct), feedback.context, feedback.title, feedback.given_by, now_utc()),
            )
            return int(cursor.lastrowid)

    def feedback_count(self) -> int:
        """How many verdicts, right and wrong, users have given."""
        with self._lock:
            return int(self._connection.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def confirmed_feedback(self) -> list[tuple[int, Feedback]]:
        """Feedback marked correct, oldest first, with its id."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT id, question, source, page, start, end, text, correct, context, title, given_by"
                " FROM feedback WHERE correct = 1 ORDER BY id"
            ).fetchall()
        return [(row[0], Feedback(row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8], row[9],
                                  row[10])) for row in rows]


def squad_export(confirmed: list[tuple[int, Feedback]]) -> dict[str, Any]:
    """Confirmed answers as a SQuAD v1.1 file: one article per file, one paragraph per page text,
    each question once per answer span. `spanqa eval` reads it (what users confirm becomes an
    evaluation set); `answer_start` is the answer's offset in the page text, as SQuAD's are."""
    articles: dict[str, dict[tuple[int, str], list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    titles: dict[str, str] = {}
    seen: set[tuple[str, int, int, int, str]] = set()
    for feedback_id, item in confirmed:
        key = (item.source, item.page, item.start, item.end, item.question.strip())
        if key in seen:
            continue
        seen.add(key)
        titles.setdefault(item.source, item.title)
        answer = {"text": item.context[item.start : item.end], "answer_start": item.start}
        articles[item.source][(item.page, item.context)].append(
            {"id": f"feedback-{feedback_id}", "question": item.question.strip(), "answers": [answer]}
        )
    data = []
    for source, pages in articles.items():
        paragraphs = [{"context": context, "qas": qas} for (_, context), qas in sorted(pages.items(), key=lambda p: p[0][0])]
        data.append({"title": titles[source], "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}
