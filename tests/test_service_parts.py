"""The service's plain parts without a server: names, folders, content typing, rate limits, scopes,
the batcher, the feedback export."""

from __future__ import annotations

import asyncio
import threading

import pytest

from spanqa.errors import ConfigError
from spanqa.service.batching import MicroBatcher
from spanqa.service.database import Feedback, squad_export
from spanqa.service.limits import RateLimiter
from spanqa.service.tokens import Principal, scope_paths
from spanqa.service.uploads import check_folder, display_name, sniff_type


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b.pdf", "a b.pdf"),
        ("tab\there\nnew.txt", "tab here new.txt"),
        ("...", "upload"),
        ("", "upload"),
        ("Ünïcode naïve.md", "Ünïcode naïve.md"),
    ],
)
def test_display_names_are_a_last_segment_without_control_characters(raw, shown):
    assert display_name(raw) == shown


def test_long_names_keep_their_extension_within_the_limit():
    name = display_name("x" * 500 + ".pdf")
    assert len(name) <= 200 and name.endswith(".pdf")


@pytest.mark.parametrize(("folder", "segments"), [(None, ()), ("", ()), ("hr", ("hr",)), ("hr/policies/", ("hr", "policies"))])
def test_upload_folders_are_plain_segments(folder, segments):
    assert check_folder(folder) == segments


@pytest.mark.parametrize("folder", ["../x", "hr/../..", "/etc/../x", "a b", "hr/.", "x" * 65, "a/" * 9 + "b"])
def test_upload_folders_refuse_anything_else(folder):
    with pytest.raises(ConfigError):
        check_folder(folder)


@pytest.mark.parametrize(
    ("head", "name", "suffix", "why"),
    [
        (b"%PDF-1.7\n...", "x.txt", ".pdf", ""),
        (b"junk" * 10 + b"%PDF-1.4", "x", ".pdf", ""),
        (b"PK\x03\x04rest", "x.pdf", None, "ZIP"),
        (b"PK\x03\x04rest", "Report.DOCX", ".docx", ""),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "locked.xlsx", ".xlsx", ""),  # encrypted: the reader asks for a password
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old.doc", None, "legacy Office"),
        (b"plain text", "notes.pptx", ".txt", ""),
        (b"\x89PNG\r\n", "x.pdf", None, "PNG"),
        (b"plain\x00binary", "x.txt", None, "binary"),
        (b"\xff\xfe\xfd text", "x.txt", None, "UTF-8"),
        (b"<!DOCTYPE html><html>", "notes.txt", ".html", ""),
        (b"# Title\n\ntext", "notes.md", ".md", ""),
        (b"# Title\n\ntext", "notes.pdf", ".txt", ""),
        ("caf\u00e9".encode() * 1000 + "\u00e9".encode()[:1], "cut.txt", ".txt", ""),
    ],
)
def test_content_decides_the_type(head, name, suffix, why):
    found, reason = sniff_type(head, name)
    assert found == suffix
    assert why in reason


def test_rate_limit_allows_a_burst_then_the_rate():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == 1  # empty: one more token arrives in a second
    assert limiter.take("b") == 0  # another key has its own bucket
    now[0] = 1.0
    assert limiter.take("a") == 0
    now[0] = 100.0
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, 1]  # refilled to the burst, not beyond
    assert RateLimiter(per_minute=0, burst=1).take("a") == 0
    with pytest.raises(ConfigError):
        RateLimiter(per_minute=-1, burst=1)


def test_scopes_match_folders_by_path_segment(tmp_path):
    (hr,) = scope_paths([tmp_path / "hr"])
    who = Principal("x", "read", (hr,))
    assert who.may_see(hr + "/a.pdf") and who.may_see(hr + "/deep/b.pdf") and who.may_see(hr)
    assert not who.may_see(hr + "x/a.pdf") and not who.may_see(str(tmp_path / "legal.pdf"))
    assert who.scope_filter() == {"field": "meta.source", "operator": "under", "value": [hr]}
    assert Principal("y", "admin").scope_filter() is None
    with pytest.raises(ConfigError, match="everything"):
        scope_paths(["/"])


def test_the_batcher_hands_each_request_its_own_result_and_failures_to_the_whole_batch():
    release = threading.Event()
    seen: list[list[int]] = []

    def process(items):
        seen.append(list(items))
        release.wait(10)
        if 13 in items:
            raise ValueError("unlucky")
        return [item * 10 for item in items]

    batcher = MicroBatcher(process, max_batch=4, max_wait_s=0.0)

    async def main():
        first = asyncio.ensure_future(batcher.submit(1))
        while not seen:  # the first batch (of one) is being processed
            await asyncio.sleep(0.001)
        rest = [asyncio.ensure_future(batcher.submit(item)) for item in (2, 3, 4, 5, 13)]
        while batcher.pending < 5:
            await asyncio.sleep(0.001)
        release.set()
        return await first, await asyncio.gather(*rest, return_exceptions=True)

    try:
        first, rest = asyncio.run(main())
    finally:
        batcher.stop()
    assert first == 10
    assert seen == [[1], [2, 3, 4, 5], [13]]  # waiting items join a batch at once, up to max_batch
    assert rest[:4] == [20, 30, 40, 50]
    assert isinstance(rest[4], ValueError)


def test_feedback_export_groups_pages_and_points_at_the_answer():
    page = "The pier is 300 metres long. The ferry leaves at six."
    confirmed = [
        (1, Feedback("How long is the pier?", "/kb/a.txt", 1, 12, 22, "300 metres", True, page, "a.txt", "alice")),
        (2, Feedback("How long is the pier?", "/kb/a.txt", 1, 12, 22, "300 metres", True, page, "a.txt", "bob")),
        (3, Feedback("When does the ferry leave?", "/kb/a.txt", 1, 49, 52, "six", True, page, "a.txt", "bob")),
    ]
    squad = squad_export(confirmed)
    (article,) = squad["data"]
    (paragraph,) = article["paragraphs"]
    assert article["title"] == "a.txt" and paragraph["context"] == page
    assert [qa["id"] for qa in paragraph["qas"]] == ["feedback-1", "feedback-3"]  # the repeat is one question
    assert [qa["answers"] for qa in paragraph["qas"]] == [
        [{"text": "300 metres", "answer_start": 12}], [{"text": "six", "answer_start": 49}]
    ]
