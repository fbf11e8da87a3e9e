"""OCR of pages without a usable text layer (spanqa.indexing.ocr.engines), with the built-in engine (RapidOCR).

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
from spanqa.indexing.formats.extraction import read_document, read_pages
from spanqa.indexing.ingest.parsing import ParsedFile, ParseTask, parse_file
from spanqa.indexing.ingest.workers import ParsePool
from spanqa.indexing.ocr.engines import OcrPage, OcrWord, PageFrame, engine_label, words_text
from spanqa.indexing.pages.highlight import HighlightBox
from spanqa.indexing.pages.ocr_glyphs import ocr_glyphs, to_user_space
from tests.pdf_factory import build_text_pdf, image_pdf, scan_of

needs_rapidocr = pytest.mark.skipif(importlib.util.find_spec("rapidocr") is None, reason="needs rapidocr")

SCANNED_TEXT = "The lighthouse at Skarv Point was built in 1873 and stands 28 metres tall."


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


class FindsInkOnCropsOnly:
    """A fake engine that, like RapidOCR on a sparse page, finds nothing on the whole page image but
    reads a word wherever a smaller image (a tile) holds ink: the ink's box, in that image's pixels."""

    name, version = "fake", "1"

    def __init__(self, page_size: tuple[int, int]):
        self.page_size = page_size

    def words(self, image) -> list[OcrWord]:
        from PIL import ImageOps

        if image.size == self.page_size:
            return []
        ink = ImageOps.invert(image).getbbox()
        return [] if ink is None else [OcrWord("ink", *ink)]


def test_a_page_with_ink_but_no_words_is_read_again_in_tiles():
    from PIL import Image, ImageDraw

    from spanqa.indexing.ocr.engines import tiled_words

    image = Image.new("L", (1000, 1200), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((470, 100, 529, 139), fill=0)  # inside both top tiles (their overlap): read twice
    draw.rectangle((800, 1000, 899, 1049), fill=0)  # in the bottom-right tile only
    words = tiled_words(FindsInkOnCropsOnly(image.size), image)
    # Placed on the page in page pixels, the twice-read mark kept once.
    assert [(w.left, w.top, w.right, w.bottom) for w in words] == [(470, 100, 530, 140), (800, 1000, 900, 1050)]


def test_an_unknown_ocr_mode_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="ocr='fast' must be one of 'auto', 'rapidocr', 'tesseract', 'off'"):
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

    def test_the_page_converter_reads_scans_as_indexing_does_and_records_the_engine(self, mixed_pdf):
        from spanqa.indexing.ingest.chunking import PageChunker
        from spanqa.indexing.ingest.converters import PageConverter, ReadSettings
        from spanqa.indexing.ingest.parsing import ChunkSettings

        pages = PageConverter(ReadSettings(ocr="auto")).run(sources=[str(mixed_pdf)])["documents"]
        assert [(page.meta["page"], page.meta.get("ocr")) for page in pages] == [(1, None), (2, engine_label("auto"))]
        chunks = PageChunker(ChunkSettings()).run(documents=pages)["documents"]
        parsed = parse_file(ParseTask(str(mixed_pdf), ocr="auto"))
        assert [(c.content, c.meta["page"], c.meta["start"], c.meta["end"]) for c in chunks] == [
            (c.content, c.page, c.start, c.end) for c in parsed.chunks
        ]
        assert {c.meta.get("ocr") for c in chunks if c.meta["page"] == 2} == {engine_label("auto")}

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
    from spanqa.indexing.ingest import indexer as ingest
    from spanqa.pipelines.api import DocumentQA

    qa = DocumentQA(tmp_path / "index", embedder=str(minilm_dir), device="cpu")
    assert qa.index([mixed_pdf]).indexed[0].ocr_pages == 1
    assert qa.index([mixed_pdf]).indexed[0].ocr_pages == 0  # unchanged: kept as it was
    monkeypatch.setattr(ingest, "engine_label", lambda mode: "rapidocr 0.0-other")
    assert qa.index([mixed_pdf]).indexed[0].ocr_pages == 1


def test_indexing_without_ocr_keeps_what_earlier_runs_ocred(tmp_path, mixed_pdf, minilm_dir):
    from spanqa.indexing.store.faiss_store import FaissDocumentStore
    from spanqa.pipelines.api import DocumentQA

    index = tmp_path / "index"
    qa = DocumentQA(index, embedder=str(minilm_dir), device="cpu")
    first = qa.index([mixed_pdf]).indexed[0]
    again = qa.index([mixed_pdf], ocr="off")
    # Unchanged: not read again (which, without OCR, would drop the scanned page's chunks).
    assert [(f.chunks, f.ocr_pages) for f in again.indexed] == [(first.chunks, 0)] and not again.skipped
    store = FaissDocumentStore.open(index)
    label = engine_label("auto")
    assert store.chunking["ocr"] == label  # still says what the OCR'd text is from
    scanned = [doc.content for doc in store.filter_documents() if doc.meta.get("ocr") == label]
    assert "Skarv Point" in " ".join(scanned)


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


class StuckEngine:
    name, version = "stuck", "1"

    def words(self, image):
        time.sleep(3600)


class CrashingEngine:
    name, version = "crashing", "1"

    def words(self, image):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)


def misbehaving_ocr_job(task: ParseTask, ocr_page_started=None) -> ParsedFile:
    """The real parser, with an OCR engine that hangs (files named stuck*) or crashes (crash*)."""
    from spanqa.indexing.ocr import engines as ocr

    name = Path(task.path).name
    ocr.ocr_engine = lambda mode: StuckEngine() if name.startswith("stuck") else CrashingEngine()
    return parse_file(task, ocr_page_started)


def test_a_hanging_or_crashing_ocr_costs_its_file_only(tmp_path, scanned_pdf):
    stuck, crash = tmp_path / "stuck.pdf", tmp_path / "crash.pdf"
    stuck.write_bytes(scanned_pdf.read_bytes())
    crash.write_bytes(scanned_pdf.read_bytes() + b"\n% another file\n")
    text = tmp_path / "text.pdf"
    text.write_bytes(build_text_pdf(["A page with its own text layer needs no OCR at all."]))
    pool = ParsePool(workers=2, timeout_s=2.0, ocr_page_s=1.0, job=misbehaving_ocr_job)
    results = {Path(r.path).name: r for r in pool.map([ParseTask(str(p)) for p in (stuck, crash, text)])}
    assert results["stuck.pdf"].reason == "timed out after 3 s"  # 2 s, and 1 s for its one OCR page
    assert results["crash.pdf"].reason == "parser crashed (SIGSEGV)"
    assert results["text.pdf"].ok and results["text.pdf"].chunks


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


# -- highlight boxes on OCR'd pages -------------------------------------------------------------------


def test_a_word_box_is_shared_among_its_characters_by_advance_width():
    page = OcrPage("mill", (OcrWord("mill", 100, 50, 200, 70),), width=400, height=200, frame=PageFrame(0, 0, 288, 144))
    glyphs = ocr_glyphs(page)
    boxes = glyphs.boxes
    assert glyphs.text == "mill"
    # 400 px across 288 points: 0.72 points a pixel; y turns upwards from the page's top.
    assert boxes[0, 0] == pytest.approx(72.0) and boxes[-1, 2] == pytest.approx(144.0)
    assert (boxes[0, 1], boxes[0, 3]) == (pytest.approx(144 - 70 * 0.72), pytest.approx(144 - 50 * 0.72))
    assert all(boxes[i, 2] == pytest.approx(boxes[i + 1, 0]) for i in range(3))  # edge to edge, in order
    widths = boxes[:, 2] - boxes[:, 0]
    assert widths[0] > 2.5 * widths[1]  # an 'm' is about three 'i's wide


def test_two_words_are_kept_apart_by_a_space_without_area():
    words = (OcrWord("ab", 0, 0, 10, 10), OcrWord("cd", 20, 0, 30, 10))
    glyphs = ocr_glyphs(OcrPage("ab cd", words, 100, 100, PageFrame(0, 0, 100, 100)))
    assert glyphs.text == "ab cd"
    space = glyphs.boxes[2]
    assert space[0] == space[2] and space[1] == space[3]


def test_boxes_on_a_turned_page_as_shown_move_to_its_user_space():
    # A page 200 wide, 100 tall, cropped from (10, 20) and shown turned a quarter clockwise: the
    # shown page is 100 wide, 200 tall; its top-left corner is the crop box's bottom-left.
    frame = PageFrame(10, 20, 210, 120, rotation=90)
    assert frame.shown_size == (100, 200)
    top_left_corner = HighlightBox(1, 0, 190, 10, 200)  # 10 points square at the shown page's top left
    moved = to_user_space(top_left_corner, frame)
    assert (moved.page, moved.x0, moved.y0, moved.x1, moved.y1) == pytest.approx((1, 10, 20, 20, 30))


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_image_points_map_to_the_page_as_the_page_viewer_places_them(rotation):
    from page_overlay import PageGeometry, image_point_to_user_space

    crop = (30.0, 40.0, 530.0, 840.0)
    frame = PageFrame(*crop, rotation=rotation)
    for fx, fy in ((0.0, 0.0), (1.0, 0.0), (0.25, 0.75), (0.6, 0.1)):
        assert frame.to_user(fx, fy) == pytest.approx(image_point_to_user_space(fx, fy, PageGeometry(*crop, rotation)))


@pytest.fixture(scope="module")
def upright_scan(tmp_path_factory) -> tuple[Path, object]:
    """The text PDF the scans are made from, and its page image at 200 dpi."""
    text_pdf = tmp_path_factory.mktemp("ocr") / "text.pdf"
    text_pdf.write_bytes(build_text_pdf([SCANNED_TEXT]))
    return text_pdf, scan_of(text_pdf.read_bytes())[0]


@needs_rapidocr
@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_an_answer_on_a_scan_is_boxed_where_its_words_are_printed(tmp_path, upright_scan, rotation):
    """The scan of a text page, stored turned and shown upright by its /Rotate: the boxes of a span
    of its OCR'd text lie where pdfium boxes the same words on the text page."""
    from page_overlay import PageGeometry, image_point_to_user_space
    from pypdf import PdfReader, PdfWriter

    from spanqa.indexing.pages.pdf_pages import PdfPages

    text_pdf, image = upright_scan
    writer = PdfWriter()
    # PIL turns counter-clockwise; the page's /Rotate turns it back clockwise.
    page = PdfReader(io.BytesIO(image_pdf([image.rotate(rotation, expand=True)]))).pages[0]
    writer.add_page(page.rotate(rotation))
    scan = tmp_path / "turned-scan.pdf"
    with scan.open("wb") as handle:
        writer.write(handle)

    pages = PdfPages()
    try:
        for phrase in ("1873", "28 metres tall"):
            expected, scan_boxes = [], []
            for path, boxes in ((text_pdf, expected), (scan, scan_boxes)):
                text = read_pages(path)[0]
                start = text.index(phrase)
                boxes.extend(pages.boxes(path, 1, start, start + len(phrase), expected_text=phrase))
            assert len(expected) == len(scan_boxes) == 1
            # Where the text page's box lies as fractions of its page, on the turned scan's page.
            paper = pages.geometry(text_pdf, 1)
            turned = pages.geometry(scan, 1)
            fractions = [((x - paper.x0) / paper.width, (paper.y1 - y) / paper.height)
                         for x, y in ((expected[0].x0, expected[0].y0), (expected[0].x1, expected[0].y1))]
            corners = [image_point_to_user_space(fx, fy, PageGeometry(turned.x0, turned.y0, turned.x1, turned.y1, turned.rotation))
                       for fx, fy in fractions]
            xs, ys = sorted(c[0] for c in corners), sorted(c[1] for c in corners)
            got = scan_boxes[0]
            assert (got.x0, got.y0, got.x1, got.y1) == pytest.approx((xs[0], ys[0], xs[1], ys[1]), abs=4.0), phrase
    finally:
        pages.close()
