"""The service's own records, in `service.sqlite` beside the index: uploaded files' names and feedback.

A file of its own rather than tables in `chunks.sqlite`: the index's database is held by its one
writer for a whole indexing batch (minutes for a large upload), and a user's feedback click must
not wait for that. It lives in the index directory, so it moves, backs up and is deleted with it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
"""


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
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
