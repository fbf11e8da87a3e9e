"""OCR of pages without a usable text layer (spanqa.indexing.ocr), with the built-in engine (RapidOCR).

Scans are made here: a text PDF the test writes is rendered by pdfium and wrapped, as images
only, in a new PDF, so the words the OCR must find are known. One page costs a few seconds of OCR
on 2 cores, so the pages are few and reused.
"""

from __future__ import annotations

import importlib.util
import io
import json
import time
from pathlib import Path

import pytest

from spanqa.errors import ConfigError, DocumentError
from spanqa.indexing.ocr import OcrWord, engine_label, words_text
from spanqa.indexing.parsing import ParsedFile, ParseTask, parse_file
from spanqa.indexing.reading import read_document, read_pages
from spanqa.indexing.workers import ParsePool
from tests.pdf_factory import build_text_pdf

needs_rapidocr = pytest.mark.skipif(importlib.util.find_spec("rapidocr") is None, reason="needs rapidocr")

SCANNED_TEXT = "The lighthouse at Skarv Point was built in 1873 and stands 28 metres tall."


def scan_of(text_pdf: bytes, pages: list[int] | None = None) -> list:
    """Grayscale images of the pages of `text_pdf` (all, or those listed, 0-based), at 200 dpi."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(text_pdf)
    try:
        indexes = range(len(document)) if pages is None else pages
        return [document[i].render(scale=200 / 72, grayscale=True).to_pil().copy() for i in indexes]
    finally:
        document.close()


def image_pdf(images: list) -> bytes:
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=200, save_all=True, append_images=images[1:])
    return out.getvalue()


@pytest.fixture(scope="module")
def scanned_pdf(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ocr") / "scan.pdf"
    path.write_bytes(image_pdf(scan_of(build_text_pdf([SCANNED_TEXT]))))
    return path


@pytest.fixture(scope="module")
def mixed_pdf(tmp_path_factory, scanned_pdf) -> Path:
    """Page 1 has a text layer, page 2 is the scan."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(build_text_pdf(["Page one has a real text layer about harbours."]))).pages[0])
    writer.add_page(PdfReader(str(scanned_pdf)).pages[0])
    path = tmp_path_factory.mktemp("ocr") / "mixed.pdf"
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


class TestReadingOrder:
    """OCR'd boxes become page text by the layout geometry: no engine needed."""

    def test_lines_are_read_top_to_bottom_and_words_left_to_right(self):
        words = [
            OcrWord("second line", 10, 46, 120, 66),
            OcrWord("first", 10, 20, 60, 40),
            OcrWord("line", 70, 20, 110, 40),
        ]
        assert words_text(words, image_height=200) == "first line\nsecond line"

    def test_two_columns_are_read_one_after_the_other(self):
        left = [OcrWord(f"left{i}", 10, 20 + 30 * i, 200, 40 + 30 * i) for i in range(4)]
        right = [OcrWord(f"right{i}", 400, 20 + 30 * i, 600, 40 + 30 * i) for i in range(4)]
        text = words_text(right + left, image_height=400)
        assert text.split() == [f"left{i}" for i in range(4)] + [f"right{i}" for i in range(4)]


def test_an_unknown_ocr_mode_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="ocr='fast' is not an OCR mode: use one of auto, off, rapidocr, tesseract"):
        engine_label("fast")


def test_without_ocr_a_scan_says_how_to_index_it(scanned_pdf):
    with pytest.raises(DocumentError, match=r"no text layer: needs OCR \(index with --ocr auto\)"):
        read_pages(scanned_pdf, ocr="off")


@needs_rapidocr
class TestBuiltInEngine:
    def test_a_scanned_page_reads_back_its_words_in_order(self, scanned_pdf):
        document = read_document(scanned_pdf, ocr="auto")
        assert document.ocr_pages == (1,)
        assert document.pages[0].split() == SCANNED_TEXT.split()

    def test_only_the_scanned_page_of_a_mixed_pdf_is_ocred(self, mixed_pdf):
        with_ocr = read_document(mixed_pdf, ocr="auto")
        assert with_ocr.ocr_pages == (2,)
        assert with_ocr.pages[0] == read_pages(mixed_pdf, ocr="off")[0]
        assert "Skarv Point" in with_ocr.pages[1]

    def test_chunks_of_an_ocred_page_quote_the_page_text(self, mixed_pdf):
        parsed = parse_file(ParseTask(str(mixed_pdf), ocr="auto"))
        assert parsed.ok and parsed.ocr_pages == (2,)
        page_two = read_pages(mixed_pdf, ocr="auto")[1]
        ocr_chunks = [chunk for chunk in parsed.chunks if chunk.page == 2]
        assert ocr_chunks and all(page_two[chunk.start : chunk.end] == chunk.content for chunk in ocr_chunks)
        answer_start = page_two.index("1873")
        assert page_two[answer_start : answer_start + 4] == "1873"

    def test_indexing_reports_the_ocred_pages_and_finds_their_text(self, tmp_path, mixed_pdf, minilm_dir):
        from spanqa.pipelines.api import DocumentQA

        qa = DocumentQA(tmp_path / "index", embedder=str(minilm_dir), device="cpu", retrieval="keyword")
        report = qa.index([mixed_pdf])
        [indexed] = report.indexed
        assert (indexed.pages, indexed.ocr_pages) == (2, 1)
        hits = qa.search("lighthouse Skarv Point built", top_k=1)
        assert hits[0].page == 2 and "1873" in hits[0].text
        manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
        assert manifest["chunking"]["ocr"] == engine_label("auto")


@needs_rapidocr
def test_a_file_ocred_by_another_engine_version_is_ocred_again(tmp_path, mixed_pdf, minilm_dir, monkeypatch):
    from spanqa.indexing import ingest
    from spanqa.pipelines.api import DocumentQA

    qa = DocumentQA(tmp_path / "index", embedder=str(minilm_dir), device="cpu")
    assert qa.index([mixed_pdf]).indexed[0].ocr_pages == 1
    assert qa.index([mixed_pdf]).indexed[0].ocr_pages == 0  # unchanged: kept as it was
    monkeypatch.setattr(ingest, "engine_label", lambda mode: "rapidocr 0.0-other")
    assert qa.index([mixed_pdf]).indexed[0].ocr_pages == 1


def ocr_pages_job(task: ParseTask, ocr_page_started=None) -> ParsedFile:
    """A file of three 'OCR pages' of 0.6 s each: 1.8 s in all, over a 1 s budget without OCR time."""
    for _ in range(3):
        if ocr_page_started is not None and not Path(task.path).name.startswith("silent"):
            ocr_page_started()
        time.sleep(0.6)
    return ParsedFile(path=task.path, page_count=3)


def test_each_ocred_page_adds_to_a_file_s_time_budget(tmp_path):
    pool = ParsePool(workers=1, timeout_s=1.0, ocr_page_s=1.0, job=ocr_pages_job)
    ocr_file, silent_file = tmp_path / "ocr.pdf", tmp_path / "silent.pdf"
    results = {Path(r.path).name: r for r in pool.map([ParseTask(str(ocr_file)), ParseTask(str(silent_file))])}
    assert results["ocr.pdf"].ok and results["ocr.pdf"].page_count == 3
    assert results["silent.pdf"].reason == "timed out after 1 s"


@needs_rapidocr
def test_a_chinese_fax_is_found_by_a_chinese_phrase_from_it(tmp_path, shared_data_dir, minilm_dir):
    """The shared 3-page Chinese fax (image only) is OCR'd and found by keyword search for phrases of
    its text, two characters and more, from inside longer runs of characters."""
    from spanqa.pipelines.api import DocumentQA

    fax = shared_data_dir / "pdfs" / "scanned_no_text" / "fax_scan_ccitt_3pages.pdf"
    if not fax.is_file():
        pytest.skip(f"shared scan not found at {fax}")
    qa = DocumentQA(tmp_path / "index", embedder=str(minilm_dir), device="cpu", retrieval="keyword")
    [indexed] = qa.index([fax]).indexed
    assert indexed.ocr_pages == 3
    for phrase, page in (("行政处罚决定书", 1), ("无缝钢管", 1), ("哈尔滨电气", 1), ("海关", None)):
        passages = qa.search(phrase, top_k=3)
        assert passages and Path(passages[0].source) == fax.resolve(), phrase
        assert phrase in "".join(passages[0].text.split()), phrase
        if page is not None:
            assert passages[0].page == page, phrase
    assert qa.search("北京烤鸭", top_k=3) == []
