"""PDF pages for a server: highlight boxes of answers, page geometry and page images, thread-safe.

pdfium is not thread-safe, so every pdfium call in the process goes through the one lock
`spanqa.indexing.pdfium.PDFIUM_LOCK` (highlighting, rendering and OCR's rendering alike); pypdf (our page text) and the alignment run outside
it. `PdfPages` keeps the last PDFs open and the last pages' text, glyphs and alignment, keyed by the
file's path, modification time and size: a file changed on disk is read again, and a second answer
on a page costs only the boxes. An OCR'd page (a scan) is read by the engine the index used
(`ocr`), and its boxes come from the recognised words' boxes (`ocr_glyphs`) instead of pdfium's.

pypdfium2's objects close themselves when garbage-collected, which would call pdfium outside the
lock: everything opened here is closed explicitly, under the lock (call `close()` when done).
"""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError, check_positive_int
from spanqa.indexing.formats.cleaning import same_text
from spanqa.indexing.formats.extraction import (
    PDF_HEADER_WINDOW,
    PageReading,
    os_reason,
    out_of_range,
    read_bytes,
    read_pages,
    read_pdf_page_reading,
)
from spanqa.indexing.ocr.engines import PageFrame, check_ocr_mode
from spanqa.indexing.pages.glyph_alignment import Alignment, align
from spanqa.indexing.pages.glyphs import PageGlyphs
from spanqa.indexing.pages.highlight import HighlightBox, read_glyphs, span_boxes
from spanqa.indexing.pages.ocr_glyphs import ocr_glyphs, to_user_space
from spanqa.indexing.pdfium import PDFIUM_LOCK
from spanqa.paths import user_path
from spanqa.settings import ChunkingSettings, OcrSettings

PDF_SUFFIX = ".pdf"
PNG_COMPRESS_LEVEL = 3  # zlib level: 6 (Pillow's default) takes about twice as long for ~5% fewer bytes

PDFIUM_ERRORS = {
    1: "corrupt PDF: pdfium cannot read it",
    2: "cannot read file",
    3: "corrupt PDF: not in PDF format or damaged",
    5: "encrypted with an unsupported security handler",
    6: "corrupt PDF: page not found",
}
FPDF_ERR_PASSWORD = 4


@dataclass(frozen=True)
class PageGeometry:
    """What a page image shows: the page's crop box (x0, y0, x1, y1 in user-space points, origin
    bottom-left) turned clockwise by `rotation` degrees (its /Rotate); `width` and `height` are the
    shown size in points (after the turn: a 90-degree page is as wide as its box is tall)."""

    page: int
    width: float
    height: float
    x0: float
    y0: float
    x1: float
    y1: float
    rotation: int

    def to_json(self) -> dict[str, Any]:
        box = {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}
        return {"page": self.page, "width": self.width, "height": self.height, "box": box, "rotation": self.rotation}


@dataclass(frozen=True)
class FileStamp:
    """A file version: its resolved path, modification time and size."""

    path: str
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class PageLayout:
    """One page's text (as indexed), its glyphs and the alignment between them. The glyphs are
    pdfium's, or, on an OCR'd page, its recognised words' placed on the page as shown by `frame`."""

    text: str
    glyphs: PageGlyphs
    alignment: Alignment
    frame: PageFrame | None = None


class PdfPages:
    """Highlight boxes, geometry and images of PDF pages, for many threads.

    `passwords` are tried, after the empty one and the `password` of a call, on encrypted files.
    `layout` and `ocr` must be what the index read its PDFs with (its chunk settings' `layout`, the
    mode of its OCR engine), since span offsets point into that page text.
    """

    def __init__(
        self,
        passwords: Sequence[str] = (),
        *,
        layout: bool = ChunkingSettings.layout_reading_order,
        ocr: str = OcrSettings.ocr,
        max_documents: int = defaults.PDF_OPEN_DOCUMENTS,
        max_pages: int = defaults.HIGHLIGHT_CACHED_PAGES,
    ):
        self.passwords = tuple(passwords)
        self.layout = layout
        self.ocr = check_ocr_mode(ocr)
        self.max_documents = check_positive_int("max_documents", max_documents)
        self.max_pages = check_positive_int("max_pages", max_pages)
        # Open documents and the password each was opened with (None: none needed); under PDFIUM_LOCK.
        self._documents: OrderedDict[FileStamp, tuple[Any, str | None]] = OrderedDict()
        self._pages: OrderedDict[tuple[FileStamp, int], PageLayout] = OrderedDict()
        self._texts: OrderedDict[tuple[FileStamp, int], PageReading] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- public ------------------------------------------------------------------------------------

    def boxes(
        self,
        path: str | Path,
        page: int,
        start: int,
        end: int,
        password: str | None = None,
        *,
        expected_text: str | None = None,
    ) -> list[HighlightBox]:
        """Highlight boxes of characters start:end of page `page`'s text (`read_pages(path)[page - 1]`):
        one per visual line, in reading order; [] for files other than PDFs. With `expected_text` (the
        answer's text, raw or cleaned), raises DocumentError when the page text there no longer reads
        so (the file changed since it was indexed)."""
        path = Path(path)
        page = check_page(page)
        for name, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name}={value!r} must be a whole number >= 0 (a character offset)")
        if path.suffix.lower() != PDF_SUFFIX:
            return []
        layout = self._layout(path, page, password)
        if not start <= end <= len(layout.text):
            raise ConfigError(
                f"start={start}, end={end} is not a span of page {page}'s text of {path.name} "
                f"({len(layout.text)} characters; 0 <= start <= end <= {len(layout.text)})"
            )
        if expected_text is not None:
            if not same_text(layout.text[start:end], expected_text):
                where = f"page {page} [{start}:{end}]"
                raise DocumentError(path, f"changed since it was indexed: {where} no longer reads {expected_text[:60]!r}")
        boxes = span_boxes(layout.text, layout.glyphs, layout.alignment, start, end, page)
        if layout.frame is not None:
            return [to_user_space(box, layout.frame) for box in boxes]
        return boxes

    def page_text(self, path: str | Path, page: int, password: str | None = None) -> str:
        """The page's text as indexed (`read_pages(path)[page - 1]`), reading only that page of a PDF."""
        path = Path(path)
        page = check_page(page)
        if path.suffix.lower() != PDF_SUFFIX:
            return self._other_pages(path, page)[page - 1]
        stamp = file_stamp(path)
        self._check_page(stamp, path, page, password)
        return self._reading(stamp, path, page, password).text

    def page_count(self, path: str | Path, password: str | None = None) -> int:
        path = Path(path)
        if path.suffix.lower() != PDF_SUFFIX:
            return len(self._other_pages(path, 1))
        stamp = file_stamp(path)
        with PDFIUM_LOCK:
            return len(self._document(stamp, path, password))

    def geometry(self, path: str | Path, page: int, password: str | None = None) -> PageGeometry:
        path = Path(path)
        page = check_page(page)
        require_pdf(path)
        stamp = file_stamp(path)
        with self._locked_page(stamp, path, page, password) as pdf_page:
            width, height = pdf_page.get_size()
            x0, y0, x1, y1 = pdf_page.get_bbox()
            rotation = pdf_page.get_rotation()
        return PageGeometry(page, width, height, x0, y0, x1, y1, rotation)

    def render_png(self, path: str | Path, page: int, width_px: int, password: str | None = None) -> bytes:
        """The page as a PNG `width_px` pixels wide (at most PAGE_IMAGE_MAX_WIDTH; a very tall page
        narrower, to stay within PAGE_IMAGE_MAX_PIXELS), showing what `geometry` describes."""
        from PIL import Image

        path = Path(path)
        page = check_page(page)
        width = min(check_positive_int("width_px", width_px), defaults.PAGE_IMAGE_MAX_WIDTH)
        require_pdf(path)
        stamp = file_stamp(path)
        with self._locked_page(stamp, path, page, password) as pdf_page:
            shown_width, shown_height = pdf_page.get_size()
            height = max(1, round(width * shown_height / shown_width))
            if width * height > defaults.PAGE_IMAGE_MAX_PIXELS:
                shrink = (defaults.PAGE_IMAGE_MAX_PIXELS / (width * height)) ** 0.5
                width, height = max(1, int(width * shrink)), max(1, int(height * shrink))
            pixels = render_bgr(pdf_page, width, height)
        image = Image.frombytes("RGB", (width, height), pixels, "raw", "BGR")
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return out.getvalue()

    def close(self) -> None:
        """Closes the open documents and forgets every cached page."""
        with PDFIUM_LOCK:
            while self._documents:
                _, (pdf, _) = self._documents.popitem(last=False)
                pdf.close()
        with self._cache_lock:
            self._pages.clear()
            self._texts.clear()

    # -- pages -------------------------------------------------------------------------------------

    def _layout(self, path: Path, page: int, password: str | None) -> PageLayout:
        stamp = file_stamp(path)
        # Checked before the cache too: an encrypted file's pages are only for callers with its password.
        self._check_page(stamp, path, page, password)
        key = (stamp, page)
        with self._cache_lock:
            cached = self._pages.get(key)
            if cached is not None:
                self._pages.move_to_end(key)
                return cached
        reading = self._reading(stamp, path, page, password)
        if reading.ocr is not None:
            glyphs = ocr_glyphs(reading.ocr)  # a scan: its words' boxes, as OCR read them
        else:
            with self._locked_page(stamp, path, page, password) as pdf_page:
                textpage = pdf_page.get_textpage()
                try:
                    glyphs = read_glyphs(textpage)
                finally:
                    textpage.close()
        # Text objects only serve the alignment: the cached glyphs keep text and boxes.
        text = reading.text
        frame = None if reading.ocr is None else reading.ocr.frame
        layout = PageLayout(text, PageGlyphs(glyphs.text, glyphs.boxes), align(text, glyphs), frame)
        self._remember(self._pages, key, layout, stamp, path)
        return layout

    def _reading(self, stamp: FileStamp, path: Path, page: int, password: str | None) -> PageReading:
        key = (stamp, page)
        with self._cache_lock:
            cached = self._texts.get(key)
            if cached is not None:
                self._texts.move_to_end(key)
                return cached
        data = read_bytes(path)
        if len(data) != stamp.size:
            raise DocumentError(path, "changed while it was being read; try again")
        reading = read_pdf_page_reading(
            path, page, self._passwords(password), layout=self.layout, data=data, ocr=self.ocr
        )
        self._remember(self._texts, key, reading, stamp, path)
        return reading

    def _remember(self, cache: OrderedDict, key: tuple, value: Any, stamp: FileStamp, path: Path) -> None:
        # Only what was read from an unchanged file is kept; stale versions are never looked up again.
        if file_stamp(path) != stamp:
            return
        with self._cache_lock:
            cache[key] = value
            cache.move_to_end(key)
            while len(cache) > self.max_pages:
                cache.popitem(last=False)

    def _other_pages(self, path: Path, page: int) -> list[str]:
        pages = read_pages(path)
        if page > len(pages):
            raise out_of_range(path, page, len(pages))
        return pages

    # -- pdfium (callers hold PDFIUM_LOCK) ---------------------------------------------------------

    def _check_page(self, stamp: FileStamp, path: Path, page: int, password: str | None) -> None:
        with PDFIUM_LOCK:
            count = len(self._document(stamp, path, password))
        if page > count:
            raise out_of_range(path, page, count)

    @contextmanager
    def _locked_page(self, stamp: FileStamp, path: Path, page: int, password: str | None) -> Iterator[Any]:
        """Page `page` of `path`, open under PDFIUM_LOCK for the `with` block and closed after it."""
        with PDFIUM_LOCK:
            pdf_page = self._page(stamp, path, page, password)
            try:
                yield pdf_page
            finally:
                pdf_page.close()

    def _page(self, stamp: FileStamp, path: Path, page: int, password: str | None) -> Any:
        pdf = self._document(stamp, path, password)
        if page > len(pdf):
            raise out_of_range(path, page, len(pdf))
        return pdf[page - 1]

    def _passwords(self, password: str | None) -> list[str]:
        given = ([password] if password is not None else []) + list(self.passwords)
        return [candidate for candidate in dict.fromkeys(given) if candidate != ""]

    def _document(self, stamp: FileStamp, path: Path, password: str | None) -> Any:
        import pypdfium2 as pdfium

        candidates: list[str | None] = [None, *self._passwords(password)]
        cached = self._documents.get(stamp)
        if cached is not None and cached[1] in candidates:
            self._documents.move_to_end(stamp)
            return cached[0]
        check_pdf_header(path)
        for candidate in candidates:
            try:
                pdf = pdfium.PdfDocument(stamp.path, password=candidate)
                opened_with = candidate
                break
            except pdfium.PdfiumError as exc:
                if exc.err_code != FPDF_ERR_PASSWORD:
                    raise DocumentError(path, PDFIUM_ERRORS.get(exc.err_code, f"corrupt PDF: {exc}")) from exc
            except OSError as exc:
                raise DocumentError(path, f"cannot read file: {os_reason(exc)}") from exc
        else:
            needed = "encrypted: password needed" if len(candidates) == 1 else "encrypted: wrong password"
            raise DocumentError(path, needed)
        # Form fields are drawn as viewers draw them (the form must be set up before pages load).
        pdf.init_forms()
        for old in [key for key in self._documents if key.path == stamp.path]:
            self._documents.pop(old)[0].close()  # an older version of this file, or opened otherwise
        self._documents[stamp] = (pdf, opened_with)
        while len(self._documents) > self.max_documents:
            _, (oldest, _) = self._documents.popitem(last=False)
            oldest.close()
        return pdf


def render_bgr(pdf_page: Any, width: int, height: int) -> bytes:
    """The page drawn into width x height pixels (BGR, rows packed), as pdfium shows it: its crop
    box, turned by its /Rotate, annotations and form fields included. The caller holds PDFIUM_LOCK."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    bitmap = pdfium.PdfBitmap.new_native(width, height, pdfium_c.FPDFBitmap_BGR)
    try:
        bitmap.fill_rect((255, 255, 255, 255), 0, 0, width, height)
        args = (bitmap, pdf_page, 0, 0, width, height, 0, pdfium_c.FPDF_ANNOT)
        pdfium_c.FPDF_RenderPageBitmap(*args)
        formenv = pdf_page.formenv
        if formenv:
            pdfium_c.FPDF_FFLDraw(formenv, *args)
        row = width * 3
        buffer = bytes(bitmap.buffer)
        if bitmap.stride == row:
            return buffer
        return b"".join(buffer[y * bitmap.stride : y * bitmap.stride + row] for y in range(height))
    finally:
        bitmap.close()


def check_page(page: int) -> int:
    return check_positive_int("page", page, "(pages count from 1)")


def require_pdf(path: Path) -> None:
    if path.suffix.lower() != PDF_SUFFIX:
        raise DocumentError(path, "not a PDF: page images and geometry exist for PDF files only")


def file_stamp(path: Path) -> FileStamp:
    try:
        resolved = user_path(path)
        status = os.stat(resolved)
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read file: {os_reason(exc)}"
        raise DocumentError(path, reason) from exc
    if not os.path.isfile(resolved):
        raise DocumentError(path, "not a file")
    return FileStamp(str(resolved), status.st_mtime_ns, status.st_size)


def check_pdf_header(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(PDF_HEADER_WINDOW)
    except OSError as exc:
        raise DocumentError(path, f"cannot read file: {os_reason(exc)}") from exc
    if len(head) == 0:
        raise DocumentError(path, "empty file (0 bytes)")
    if b"%PDF" not in head:
        raise DocumentError(path, "not a PDF (no %PDF header)")
