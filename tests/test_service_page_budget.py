"""Page work under budgets (issue 24, item 1): pdfium, pypdf and OCR run in capped page workers.

A page that needs more time or memory than the server's budget gets a clear error (its answers come
back without boxes, with the reason); the worker is replaced, the failure is remembered per page
version (the page costs its budget once) and the server goes on serving with bounded memory.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from page_jobs import misbehaving_call
from pdf_factory import write_form_bomb_pdf, write_text_pdf

from spanqa.errors import ConfigError
from spanqa.indexing.pages.pdf_pages import PageGeometry
from spanqa.service.page_workers import PageOverBudget, PagePool
from spanqa.service.pages import PageService

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")

MEMORY_MB = 1024
NORMAL_TEXT = "The bakery on Mill Street sells rye bread every morning and closes at noon on Sundays."
BOMB_TEXT = "The lighthouse keeper is named Orla Brennan. She has kept the light on Skellig Point since 1998."


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def normal_pdf(tmp_path) -> Path:
    return write_text_pdf(tmp_path / "normal.pdf", [NORMAL_TEXT])


# -- the pool ----------------------------------------------------------------------------------------


def test_a_call_over_time_has_its_worker_killed_and_the_next_call_works(tmp_path, normal_pdf):
    hang = write_text_pdf(tmp_path / "hang.pdf", [NORMAL_TEXT])
    pool = PagePool(workers=1, timeout_s=2, memory_mb=MEMORY_MB, job=misbehaving_call)
    try:
        assert pool.call("geometry", normal_pdf, 1, (1,)).width == 612
        [first] = pool.pids()
        with pytest.raises(PageOverBudget) as caught:
            pool.call("geometry", hang, 1, (1,))
        assert caught.value.reason == ("page 1 is too complex to draw within the server's budget (2 s, 1024 MB of "
                                       "memory): it took longer than 2 s")
        assert str(tmp_path) not in caught.value.reason
        assert not alive(first) and pool.pids() == []
        assert isinstance(pool.call("geometry", normal_pdf, 1, (1,)), PageGeometry)
        assert pool.started == 2 and pool.pids() != [first]
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("name", "what"),
    [("hog.pdf", "it needed more than 1024 MB of memory"),
     ("abort.pdf", "its worker crashed (SIGABRT, as pdfium does when memory runs out)")],
)
def test_a_call_out_of_memory_fails_cleanly_and_its_worker_is_replaced(tmp_path, normal_pdf, name, what):
    bad = write_text_pdf(tmp_path / name, [NORMAL_TEXT])
    pool = PagePool(workers=1, timeout_s=60, memory_mb=MEMORY_MB, job=misbehaving_call)
    try:
        with pytest.raises(PageOverBudget) as caught:
            pool.call("png", bad, 1, (1, 200))
        assert caught.value.reason.endswith(f"(60 s, 1024 MB of memory): {what}")
        assert pool.call("page_count", normal_pdf, 0) == 1
        assert pool.started == 2
    finally:
        pool.close()


def test_pool_settings_are_checked():
    for bad in ({"workers": 0}, {"timeout_s": 0}, {"memory_mb": 64}, {"memory_mb": 1.5}):
        with pytest.raises(ConfigError):
            PagePool(**bad)


# -- the service's cache -----------------------------------------------------------------------------


def service_with(pool: PagePool) -> tuple[PageService, list[str]]:
    outcomes: list[str] = []
    return PageService(observe=outcomes.append, pool=pool), outcomes


def test_results_and_failures_are_kept_per_page_version(tmp_path, normal_pdf):
    hang = write_text_pdf(tmp_path / "hang.pdf", [NORMAL_TEXT])
    pages, outcomes = service_with(PagePool(workers=1, timeout_s=2, memory_mb=MEMORY_MB, job=misbehaving_call))

    async def work() -> None:
        assert (await pages.geometry(str(normal_pdf), 1)).height == 792
        assert (await pages.geometry(str(normal_pdf), 1)).height == 792
        assert outcomes == ["drawn", "cached"]
        status = normal_pdf.stat()
        os.utime(normal_pdf, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # a new version of the file
        await pages.geometry(str(normal_pdf), 1)
        assert outcomes[-1] == "drawn"

        outcomes.clear()
        for call in (pages.geometry(str(hang), 1), pages.png(str(hang), 1, 300), pages.page_text(str(hang), 1)):
            with pytest.raises(PageOverBudget, match="took longer than 2 s"):
                await call
        assert outcomes == ["over_budget", "known_over_budget", "known_over_budget"]
        started = pages.pool.started
        highlight = await pages.highlight(str(hang), None, 1, 4, 10, NORMAL_TEXT[4:10])
        assert highlight.boxes == [] and "too complex to draw" in highlight.error
        assert pages.pool.started == started  # the budget was spent once

    try:
        asyncio.run(work())
    finally:
        pages.close()


def test_a_burst_of_calls_queues_for_the_workers(tmp_path):
    files = [write_text_pdf(tmp_path / f"f{i}.pdf", [NORMAL_TEXT, f"Page two of file {i}."]) for i in range(4)]
    pages, outcomes = service_with(PagePool(workers=1, timeout_s=60, memory_mb=MEMORY_MB))

    async def burst() -> list:
        calls = [pages.png(str(path), page, 200) for path in files for page in (1, 2)]
        return await asyncio.gather(*calls, *(pages.page_count(str(path)) for path in files))

    try:
        results = asyncio.run(burst())
        assert all(png.startswith(b"\x89PNG") for png in results[:8]) and results[8:] == [2, 2, 2, 2]
        assert pages.pool.started == 1 and outcomes == ["drawn"] * 12
    finally:
        pages.close()


# -- a real server ---------------------------------------------------------------------------------


SERVER_MEMORY_CAP = 8 * 1024**3  # protects the test machine should page work ever run in the server again
SERVER_RSS_LIMIT = 3 * 1024**3


def capped_server() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SERVER_MEMORY_CAP, SERVER_MEMORY_CAP))


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024


def page_work(metrics: str, outcome: str) -> float:
    found = re.search(rf'^spanqa_page_work_total\{{outcome="{outcome}"\}} (\S+)$', metrics, re.MULTILINE)
    return 0.0 if found is None else float(found.group(1))


def test_spanqa_serve_survives_a_form_xobject_bomb(tmp_path, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    docs = tmp_path / "docs"
    docs.mkdir()
    # The bomb: 2.8 KB, 10**8 form drawings; pypdf reads its text (the file indexes), pdfium explodes.
    write_form_bomb_pdf(docs / "bomb.pdf", BOMB_TEXT)
    write_text_pdf(docs / "normal.pdf", [NORMAL_TEXT, "A second page about the mill's history."])
    index_dir = tmp_path / "index"
    stored = DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [docs], workers=1
    )
    assert sorted(Path(f.source).name for f in stored.indexed) == ["bomb.pdf", "normal.pdf"]
    spanqa = Path(sys.executable).with_name("spanqa")
    process = subprocess.Popen(
        [str(spanqa), "serve", "--index", str(index_dir), "--reader", str(tiny_qa_model_dir), "--device", "cpu",
         "--port", "0", "--page-timeout", "5", "--page-memory-mb", str(MEMORY_MB), "--log-level", "warning",
         "--rerank", "0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, preexec_fn=capped_server,
    )
    try:
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", process.stderr.readline()).group(1))
        assert process.stderr.readline().strip() == "spanqa: ready: models loaded"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            ids = {entry["name"]: entry["id"] for entry in client.get("/v1/files").json()["files"]}
            # The bomb is the only one-page file: its answers are on the bomb page.
            on_bomb = {"question": "Who is the lighthouse keeper?", "top_k": 3,
                       "filters": {"field": "meta.page_count", "operator": "==", "value": 1}}
            asked = client.post("/v1/ask", json=on_bomb)
            assert asked.status_code == 200, asked.text
            answers = asked.json()["answers"]
            assert answers and all(answer["file_id"] == ids["bomb.pdf"] for answer in answers)
            for answer in answers:
                assert answer["highlight"] == []
                assert answer["highlight_error"].startswith("page 1 is too complex to draw within the server's "
                                                            f"budget (5 s, {MEMORY_MB} MB of memory): ")
            metrics = client.get("/metrics").text
            assert page_work(metrics, "over_budget") == 1
            # Asked again: the page's failure is remembered, its budget not spent again.
            again = client.post("/v1/ask", json=on_bomb).json()["answers"]
            assert [a["highlight_error"] for a in again] == [a["highlight_error"] for a in answers]
            metrics = client.get("/metrics").text
            assert page_work(metrics, "over_budget") == 1 and page_work(metrics, "known_over_budget") >= 2

            bomb_page = f"/v1/files/{ids['bomb.pdf']}/pages/1"
            for path in (bomb_page, bomb_page + ".png"):
                refused = client.get(path)
                assert refused.status_code == 422
                assert refused.json()["error"] == "page_over_budget"
                assert refused.json()["detail"].startswith("bomb.pdf: page 1 is too complex to draw")
            first = answers[0]
            feedback = {"question": "Who?", "correct": True, "answer": {key: first[key] for key in
                                                                        ("file_id", "page", "start", "end", "text")}}
            refused = client.post("/v1/feedback", json=feedback)
            assert refused.status_code == 422 and refused.json()["error"] == "page_over_budget"

            # Other pages are served as before.
            normal = client.post("/v1/ask", json={
                "question": "What does the bakery sell?", "top_k": 1,
                "filters": {"field": "meta.page_count", "operator": "==", "value": 2}}).json()["answers"][0]
            assert normal["highlight"] and normal["highlight_error"] is None
            normal_page = f"/v1/files/{ids['normal.pdf']}/pages/{normal['page']}"
            assert client.get(normal_page).json()["width"] == 612
            image = client.get(normal_page + ".png?width=300")
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
            assert client.get("/healthz").status_code == 200
        assert process.poll() is None
        assert rss_bytes(process.pid) < SERVER_RSS_LIMIT
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        log = process.stderr.read()
        assert "Traceback" not in log and "over budget" in log
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
