"""Parse workers: files parse in parallel; a hang, a crash or a memory hog costs one file, not the batch.

The misbehaving parsers are module-level functions here: workers import this module to run them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from parse_jobs import misbehaving_parse
from pdf_factory import (
    write_blank_pdf,
    write_corrupt_pdf,
    write_encrypted_pdf,
    write_text_pdf,
)

from spanqa.errors import ConfigError
from spanqa.indexing.ingest.parsing import ChunkSettings, ParseTask, parse_file
from spanqa.indexing.ingest.workers import ParsePool


@pytest.fixture
def good_pdf(tmp_path) -> Path:
    return write_text_pdf(tmp_path / "good.pdf", ["Skarv Point lighthouse is 28 metres tall.", "Second page."])


def tasks_for(*paths) -> list[ParseTask]:
    return [ParseTask(str(path)) for path in paths]


def test_pool_parses_files_and_reports_bad_ones(tmp_path, good_pdf):
    corrupt = write_corrupt_pdf(tmp_path / "corrupt.pdf")
    scan = write_blank_pdf(tmp_path / "scan.pdf")
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", ["Secret."], user_password="sesame")
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    results = ParsePool(workers=2).map(tasks_for(good_pdf, corrupt, scan, locked, empty))
    good, bad_corrupt, bad_scan, bad_locked, bad_empty = results
    assert good.ok and good.page_count == 2 and len(good.chunks) == 2
    assert good.sha256 is not None and all(chunk.content.strip() for chunk in good.chunks)
    assert bad_corrupt.reason.startswith("corrupt PDF: ")
    assert bad_scan.reason == "no text found, by OCR either (blank pages?)"
    assert bad_locked.reason == "encrypted: password needed"
    assert bad_empty.reason == "empty file (0 bytes)"


def test_a_hanging_parser_times_out_and_the_batch_goes_on(tmp_path, good_pdf):
    hang = write_text_pdf(tmp_path / "hang.pdf", ["Never parsed."])
    results = ParsePool(workers=1, timeout_s=1.0, job=misbehaving_parse).map(tasks_for(hang, good_pdf))
    # hang.pdf is a valid PDF: had its 60 s parse run to the end it would have come back parsed.
    assert results[0].reason == "timed out after 1 s"
    assert results[1].ok  # the worker was replaced


@pytest.mark.parametrize(("name", "reason"), [
    ("segfault.pdf", "parser crashed (SIGSEGV)"),
    ("exit.pdf", "parser crashed (exit code 3)"),
])
def test_a_crashing_parser_is_reported_and_the_pool_recovers(tmp_path, good_pdf, name, reason):
    bad = write_text_pdf(tmp_path / name, ["Crashes."])
    results = ParsePool(workers=1, job=misbehaving_parse).map(tasks_for(bad, good_pdf, bad))
    assert [r.reason for r in results] == [reason, None, reason]


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_AS is POSIX")
def test_a_parser_over_its_memory_budget_is_reported(tmp_path, good_pdf):
    hog = write_text_pdf(tmp_path / "hog.pdf", ["Eats memory."])
    results = ParsePool(workers=1, memory_mb=1024, job=misbehaving_parse).map(tasks_for(hog, good_pdf))
    assert results[0].reason == "out of memory (limit 1024 MB)"
    assert results[1].ok


def test_a_parser_exception_is_a_reason(tmp_path, good_pdf):
    bad = write_text_pdf(tmp_path / "raise.pdf", ["Bug."])
    results = ParsePool(workers=1, job=misbehaving_parse).map(tasks_for(bad, good_pdf))
    assert results[0].reason == "cannot parse: RuntimeError: parser bug"
    assert results[1].ok


def test_results_come_as_they_finish(tmp_path, good_pdf):
    hang = write_text_pdf(tmp_path / "hang.pdf", ["Slow."])
    order = [Path(r.path).name for r in ParsePool(workers=2, timeout_s=3.0, job=misbehaving_parse).run(tasks_for(hang, good_pdf))]
    assert order == ["good.pdf", "hang.pdf"]


def test_too_large_files_are_reported_without_parsing(good_pdf):
    [result] = ParsePool(workers=1).map([ParseTask(str(good_pdf), max_file_bytes=100)])
    assert result.reason.startswith("too large: 0 MB (limit 0 MB")


def test_passwords_are_tried_in_turn(tmp_path):
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", ["Secret page."], user_password="sesame")
    [wrong] = ParsePool(workers=1).map([ParseTask(str(locked), passwords=("nope",))])
    assert wrong.reason == "encrypted: wrong password"
    [right] = ParsePool(workers=1).map([ParseTask(str(locked), passwords=("nope", "sesame"))])
    assert right.ok and "Secret page." in right.chunks[0].content


def test_bad_pool_settings_are_config_errors():
    for settings in ({"workers": 0}, {"timeout_s": 0}, {"memory_mb": 1}):
        with pytest.raises(ConfigError):
            ParsePool(**settings)


def test_parse_file_runs_in_process_too(good_pdf):
    result = parse_file(ParseTask(str(good_pdf), chunking=ChunkSettings(max_tokens=4, overlap_tokens=1)))
    assert result.ok and len(result.chunks) > 2


def _parser_pid(result) -> int:
    assert result.reason.startswith("pid "), result.reason
    return int(result.reason.split()[1])


def test_a_pool_that_keeps_its_workers_parses_the_next_run_in_the_same_process(tmp_path):
    from parse_jobs import pid_parse

    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    kept = ParsePool(workers=1, job=pid_parse, keep_workers=True)
    try:
        pids = [_parser_pid(kept.map(tasks_for(path))[0]) for path in (first, second)]
        assert pids[0] == pids[1]
    finally:
        kept.close()
    assert _parser_pid(kept.map(tasks_for(first))[0]) != pids[0]  # close() stopped it: a new one
    kept.close()
    plain = ParsePool(workers=1, job=pid_parse)
    assert len({_parser_pid(plain.map(tasks_for(path))[0]) for path in (first, second)}) == 2


def test_a_kept_worker_that_died_while_idle_is_replaced_not_blamed(tmp_path):
    psutil = pytest.importorskip("psutil")
    from parse_jobs import pid_parse

    kept = ParsePool(workers=1, job=pid_parse, keep_workers=True)
    try:
        dead = _parser_pid(kept.map(tasks_for(tmp_path / "first.txt"))[0])
        parser = psutil.Process(dead)
        parser.kill()  # the kept worker dies while idle, between two runs
        parser.wait(timeout=60)
        after = kept.map(tasks_for(tmp_path / "next.txt"))[0]
        assert _parser_pid(after) != dead  # parsed, by a new worker: not "parser crashed"
    finally:
        kept.close()
