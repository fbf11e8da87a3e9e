"""Parsers for tests that run them in parse workers, locally and in Ray tasks: some misbehave (hang,
crash, eat memory), one leaves a mark per parse. A module of its own, light to import: each parse
worker imports it under its memory cap and within its time budget."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from spanqa.indexing.ingest.parsing import ParsedFile, ParseTask, parse_file

MARKS = ".parsed"  # hidden, so that indexing the folder again passes over the marks


def misbehaving_parse(task: ParseTask, ocr_page_started=None) -> ParsedFile:
    name = Path(task.path).name
    if name.startswith("hang"):
        time.sleep(60)
    if name.startswith("segfault"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("exit"):
        os._exit(3)
    if name.startswith("hog"):
        hog = bytearray(8 * 1024**3)  # far above the cap: MemoryError
        hog[0] = 1
    if name.startswith("raise"):
        raise RuntimeError("parser bug")
    return parse_file(task)


def marked_parse(task: ParseTask, ocr_page_started=None) -> ParsedFile:
    """Parses after leaving a mark in `.parsed/` beside the file, named after the file, the Ray node
    it ran on (its raylet's pid) and the time; waits SPANQA_TEST_PARSE_DELAY_S seconds first."""
    path = Path(task.path)
    marks = path.parent / MARKS
    marks.mkdir(exist_ok=True)
    (marks / f"{path.name}|{os.environ.get('RAY_RAYLET_PID', 'local')}|{time.monotonic_ns()}").touch()
    time.sleep(float(os.environ.get("SPANQA_TEST_PARSE_DELAY_S", "0")))
    return parse_file(task)


def marks_of(folder: Path) -> list[tuple[str, str]]:
    """(file name, node) of each parse `marked_parse` made of the files in `folder`."""
    return sorted(tuple(mark.name.split("|")[:2]) for mark in (folder / MARKS).glob("*"))


def pid_parse(task: ParseTask, ocr_page_started=None) -> ParsedFile:
    """Reports the parser process's pid as the file's reason (which process parsed it)."""
    return ParsedFile(path=task.path, reason=f"pid {os.getpid()}")
