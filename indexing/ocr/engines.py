"""OCR of PDF pages that have no usable text layer: page image in, page text (in reading order) out.

Engines: RapidOCR (`rapidocr`, installed with spanqa: PP-OCR detection and recognition models that
ship inside the wheel and run on ONNX Runtime; English and Chinese) and Tesseract (Debian's
`tesseract-ocr`, when installed, through its command line). `auto` is RapidOCR.

An engine returns words with their boxes on the rendered image; they become `layout.Fragment`s, so
an OCR'd page is put in reading order (columns, lines, word spaces) by the same geometry as a page
with a text layer. Same engine and version, same rendering: same text, so offsets into an OCR'd
page are as stable as into any other page.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from spanqa.errors import ConfigError
from spanqa.indexing.layout import ASCENT_HEIGHTS, DESCENT_HEIGHTS, Fragment, page_text
from spanqa.indexing.pdfium import PDFIUM_LOCK
from spanqa.settings import OcrSettings

OCR_MANIFEST_KEY = "ocr"  # the index manifest's record of the engine ("rapidocr 3.10.0"; None: off)
# Pages are rendered at this resolution for OCR (issue #13's bench: word recall by dpi)...
OCR_DPI = 200
# ... unless the image would hold more pixels than this (a poster-sized page): then it is scaled down.
OCR_MAX_PIXELS = 25_000_000
# A page whose text layer has fewer non-space characters than this has no usable text (a scan, maybe
# with a stamped page number): it is OCR'd, and the OCR text is used when it holds more.
OCR_MIN_TEXT_CHARS = 16
# Words the engine is less sure of than this are dropped (RapidOCR scores 0..1, Tesseract 0..100).
OCR_MIN_WORD_SCORE = 0.5
# RapidOCR's text boxes reach this share of their height beyond the glyphs on each side.
RAPIDOCR_BOX_MARGIN = 0.2
# A rendered page whose darkest pixel is lighter than this (0 black, 255 white) is blank.
BLANK_PAGE_DARKEST = 200
# A page with ink where the engine finds no words on the whole image is read again in this many
# rows and columns of tiles (overlapping by TILE_OVERLAP of a tile on each inner edge): the detector
# misses small text on large, mostly empty pages (a speech bubble in a drawing) that it finds on a
# tile, which it sees larger.
TILE_GRID = (2, 2)
TILE_OVERLAP = 0.1
TESSERACT_LANGUAGES = "eng"
TESSERACT_TIMEOUT_S = 300


@dataclass(frozen=True)
class OcrWord:
    """Recognised text (a word, or a line of words) and its box on the page image, in pixels from
    the top left."""

    text: str
    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class PageFrame:
    """What a page image shows: the page's crop box (x0, y0, x1, y1 in user-space points, origin
    bottom-left) turned clockwise by `rotation` degrees, as pdfium renders it."""

    x0: float
    y0: float
    x1: float
    y1: float
    rotation: int = 0

    @property
    def shown_size(self) -> tuple[float, float]:
        """Width and height of the page as shown, in points (a quarter turn swaps the box's)."""
        width, height = self.x1 - self.x0, self.y1 - self.y0
        return (height, width) if self.rotation % 180 == 90 else (width, height)

    def to_user(self, fx: float, fy: float) -> tuple[float, float]:
        """The user-space point at fractions (fx, fy) of the image, from its top-left corner."""
        width, height = self.x1 - self.x0, self.y1 - self.y0
        turn = self.rotation % 360
        if turn == 90:
            return self.x0 + fy * width, self.y0 + fx * height
        if turn == 180:
            return self.x1 - fx * width, self.y0 + fy * height
        if turn == 270:
            return self.x1 - fy * width, self.y1 - fx * height
        return self.x0 + fx * width, self.y1 - fy * height


@dataclass(frozen=True)
class OcrPage:
    """One page as OCR read it: its text in reading order, and the recognised words on the page
    image (`width` x `height` pixels) that `frame` places on the page."""

    text: str
    words: tuple[OcrWord, ...]
    width: int
    height: int
    frame: PageFrame


class OcrEngine(Protocol):
    name: str
    version: str

    def words(self, image: Any) -> list[OcrWord]:
        """The words on `image` (a grayscale PIL image)."""
        ...


def check_ocr_mode(mode: object) -> str:
    """`mode` when it is an OCR mode (`OcrSettings.ocr`'s check), else a ConfigError naming the choices."""
    return OcrSettings(ocr=mode).ocr


def _rapidocr_version() -> str:
    try:
        return metadata.version("rapidocr")
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            "OCR with RapidOCR needs the rapidocr package (a dependency of spanqa): pip install rapidocr, "
            "or use --ocr tesseract|off"
        ) from exc


def _tesseract_binary() -> str:
    binary = shutil.which("tesseract")
    if binary is None:
        raise ConfigError(
            "OCR with Tesseract needs the tesseract program (Debian: apt-get install tesseract-ocr), "
            "or use --ocr auto for the built-in engine"
        )
    return binary


@functools.cache
def _tesseract_version(binary: str) -> str:
    first_line = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.splitlines()
    return first_line[0].split()[-1] if first_line else "unknown"


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self) -> None:
        self.version = _rapidocr_version()
        from rapidocr import RapidOCR

        # One thread per engine: parse workers already run one per core.
        self._engine = RapidOCR(params={"Global.log_level": "error", "EngineConfig.onnxruntime.intra_op_num_threads": 1})

    def words(self, image: Any) -> list[OcrWord]:
        import numpy as np

        # Whole recognised lines, not RapidOCR's word boxes: a line's text has the spaces the
        # recogniser read (its word boxes touch, so their gaps lose English word spaces, and split
        # Chinese into characters with gaps between).
        result = self._engine(np.asarray(image.convert("RGB")))
        found = []
        for text, score, box in zip(result.txts or (), result.scores or (), result.boxes if result.boxes is not None else (), strict=False):
            if text.strip() == "" or float(score) < OCR_MIN_WORD_SCORE:
                continue
            xs = [point[0] for point in box]
            ys = [point[1] for point in box]
            left, top, right, bottom = min(xs), min(ys), max(xs), max(ys)
            # The detector grows each text box by a margin on every side (its "unclip"), which can
            # close the gutter between two columns: take it off again.
            margin = RAPIDOCR_BOX_MARGIN * (bottom - top)
            if right - left > 2 * margin:
                left, right = left + margin, right - margin
            found.append(OcrWord(text.strip(), left, top + margin, right, bottom - margin))
        return found


class TesseractEngine:
    name = "tesseract"

    def __init__(self, languages: str = TESSERACT_LANGUAGES) -> None:
        self._binary = _tesseract_binary()
        self.languages = languages
        self.version = _tesseract_version(self._binary)

    def words(self, image: Any) -> list[OcrWord]:
        png = io.BytesIO()
        image.save(png, format="PNG")
        done = subprocess.run(
            [self._binary, "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"],
            input=png.getvalue(), capture_output=True, timeout=TESSERACT_TIMEOUT_S, check=False,
            # One thread, as RapidOCR: the parse workers already run one per core.
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"tesseract failed: {done.stderr.decode(errors='replace').strip()[:200]}")
        found = []
        for row in done.stdout.decode("utf-8", errors="replace").splitlines()[1:]:
            fields = row.split("\t")
            # level 5 rows are words: left, top, width, height, confidence (0-100), text.
            if len(fields) < 12 or fields[0] != "5" or fields[11].strip() == "":
                continue
            left, top, width, height = (float(value) for value in fields[6:10])
            if float(fields[10]) < 100 * OCR_MIN_WORD_SCORE:
                continue
            found.append(OcrWord(fields[11], left, top, left + width, top + height))
        return found


@functools.cache
def ocr_engine(mode: str) -> OcrEngine | None:
    """The engine of `mode` (loaded once per process), None for "off"."""
    check_ocr_mode(mode)
    if mode == "off":
        return None
    if mode == "tesseract":
        return TesseractEngine()
    return RapidOcrEngine()


def engine_label(mode: str) -> str | None:
    """What an index records about the OCR it uses: engine and version ("rapidocr 3.10.0"), None if
    off. Without loading the engine; ConfigError when it is not installed."""
    check_ocr_mode(mode)
    if mode == "off":
        return None
    if mode == "tesseract":
        return f"tesseract {_tesseract_version(_tesseract_binary())}"
    return f"rapidocr {_rapidocr_version()}"


def recorded_mode(label: str | None) -> str:
    """The OCR mode that reads pages as an index whose manifest records `label` ("rapidocr 3.10.0",
    or None when it indexed without OCR) did."""
    if label is None:
        return "off"
    return check_ocr_mode(label.split()[0])


def words_text(words: list[OcrWord], image_height: float) -> str:
    """The page text of OCR'd `words`, in reading order: columns one after another, lines top to
    bottom, words separated by a space where their boxes leave a gap."""
    fragments = []
    for word in words:
        # Layout geometry is PDF-like (y grows upwards, boxes from below the baseline to above it).
        bottom, top = image_height - word.bottom, image_height - word.top
        height = (top - bottom) / (ASCENT_HEIGHTS + DESCENT_HEIGHTS)
        if height <= 0:
            continue
        fragments.append(Fragment(word.text, word.left, word.right, bottom + DESCENT_HEIGHTS * height, height))
    return page_text(fragments)


def needs_ocr(text: str) -> bool:
    """Whether a page's text layer is too thin to be the page's text."""
    return sum(1 for character in text if not character.isspace()) < OCR_MIN_TEXT_CHARS


def render_for_ocr(data: bytes, page_index: int, passwords: list[str]) -> tuple[Any, PageFrame]:
    """Page `page_index` of the PDF `data` as a grayscale PIL image at OCR_DPI (or fewer pixels),
    and where that image lies on the page."""
    import pypdfium2 as pdfium  # here: a parse worker loads pdfium only for a page it OCRs

    with PDFIUM_LOCK:
        document = None
        for password in ["", *passwords]:
            try:
                document = pdfium.PdfDocument(data, password=password or None)
                break
            except pdfium.PdfiumError:
                continue
        if document is None:
            raise RuntimeError("pdfium cannot open the PDF to render it")
        try:
            page = document[page_index]
            try:
                width, height = page.get_size()
                scale = OCR_DPI / 72
                pixels = width * height * scale * scale
                if pixels > OCR_MAX_PIXELS:
                    scale *= (OCR_MAX_PIXELS / pixels) ** 0.5
                frame = PageFrame(*page.get_bbox(), rotation=page.get_rotation())
                bitmap = page.render(scale=scale, grayscale=True)
                try:
                    return bitmap.to_pil().copy(), frame
                finally:
                    bitmap.close()
            finally:
                page.close()
        finally:
            document.close()


def tiled_words(engine: OcrEngine, image: Any) -> list[OcrWord]:
    """The words `engine` finds on overlapping tiles of `image` (TILE_GRID), in image pixels; a word
    read on two tiles (in their overlap) is kept once."""
    rows, columns = TILE_GRID
    tile_width, tile_height = image.width / columns, image.height / rows
    found: list[OcrWord] = []
    for row in range(rows):
        for column in range(columns):
            left = max(0, round((column - TILE_OVERLAP) * tile_width))
            top = max(0, round((row - TILE_OVERLAP) * tile_height))
            right = min(image.width, round((column + 1 + TILE_OVERLAP) * tile_width))
            bottom = min(image.height, round((row + 1 + TILE_OVERLAP) * tile_height))
            for word in engine.words(image.crop((left, top, right, bottom))):
                placed = OcrWord(word.text, word.left + left, word.top + top, word.right + left, word.bottom + top)
                if not any(covers(kept, placed) for kept in found):
                    found.append(placed)
    return found


def covers(kept: OcrWord, word: OcrWord) -> bool:
    """Whether `word`'s centre lies in `kept`'s box (the same ink read twice)."""
    x, y = (word.left + word.right) / 2, (word.top + word.bottom) / 2
    return kept.left <= x <= kept.right and kept.top <= y <= kept.bottom


def ocr_page(mode: str, data: bytes, page_index: int, passwords: list[str]) -> OcrPage:
    """One PDF page read by the engine `mode` names (loaded at the first page with ink); a page with
    ink but no words found is read again in tiles."""
    image, frame = render_for_ocr(data, page_index, passwords)
    darkest, _ = image.getextrema()
    words: list[OcrWord] = []
    # A blank page has nothing to read, and needs no engine loaded for it.
    if darkest <= BLANK_PAGE_DARKEST:
        engine = ocr_engine(mode)
        words = engine.words(image)
        if not words:
            words = tiled_words(engine, image)
    return OcrPage(words_text(words, image.height), tuple(words), image.width, image.height, frame)
