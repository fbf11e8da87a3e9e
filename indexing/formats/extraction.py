"""Files in, page texts out: PDF (pypdf, in reading order), plain text, Markdown, HTML, and Word,
PowerPoint and Excel files (`office_*.py`; legacy and OpenDocument files through LibreOffice).

Plain Python without Haystack: the parse worker processes import it.

The text returned for a page is the exact string every later offset points into (chunk `start`/`end`,
answer `start`/`end`), so nothing here cleans or rewrites extracted text after the fact.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanqa import defaults
from spanqa.errors import ConfigError, DocumentError
from spanqa.indexing.formats.html_text import html_to_text
from spanqa.indexing.formats.pdf_text import page_reading_text
from spanqa.indexing.ocr.engines import OcrPage, check_ocr_mode, needs_ocr, ocr_page
from spanqa.paths import user_path
from spanqa.records import SkippedFile
from spanqa.settings import OcrSettings

if TYPE_CHECKING:
    from pypdf import PdfReader

logger = logging.getLogger(__name__)

PDF_SUFFIXES = (".pdf",)
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
WORD_SUFFIXES = (".docx", ".docm", ".dotx")
POWERPOINT_SUFFIXES = (".pptx", ".pptm")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
OFFICE_SUFFIXES = WORD_SUFFIXES + POWERPOINT_SUFFIXES + EXCEL_SUFFIXES
# Read once LibreOffice has converted them to their OOXML twin (office_convert.py, which lists them).
CONVERTED_SUFFIXES = (".doc", ".rtf", ".odt", ".xls", ".xlsb", ".ods", ".ppt", ".odp")

# The PDF spec lets readers accept a header anywhere in the first 1024 bytes (some tools prepend junk).
PDF_HEADER_WINDOW = 1024
MAX_REASON_CHARS = 200
# The operator that begins an image drawn inline in a content stream.
INLINE_IMAGE = re.compile(rb"(?:^|\s)BI\s")


def supported_suffixes_text() -> str:
    return ", ".join(defaults.SUPPORTED_SUFFIXES)


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in defaults.SUPPORTED_SUFFIXES


def discover_files(paths: list[str | Path]) -> tuple[list[Path], list[SkippedFile]]:
    """The supported files named by `paths` (folders searched recursively), and the paths that cannot be used.

    Files come back resolved to absolute paths, folder contents in sorted order, each file once.
    A file of a type spanqa does not read is reported as skipped with its type, whether named or met
    in a folder; hidden files and folders (.git, .venv, an index) are passed over silently.
    """
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    seen: set[Path] = set()

    def keep(file: Path) -> None:
        if file not in seen:
            seen.add(file)
            files.append(file)

    for raw_path in paths:
        path = user_path(raw_path)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                # Hidden folders hold tool state (.git, .venv, an index), not documents to ask about.
                hidden = any(part.startswith(".") for part in candidate.relative_to(path).parts)
                if hidden or not candidate.is_file():
                    continue
                if is_supported(candidate):
                    keep(candidate)
                else:
                    skipped.append(SkippedFile(str(candidate), unsupported_reason(candidate)))
        elif path.is_file():
            if is_supported(path):
                keep(path)
            else:
                skipped.append(SkippedFile(str(path), unsupported_reason(path)))
        else:
            skipped.append(SkippedFile(str(path), "no such file or directory"))
    return files, skipped


def unsupported_reason(path: Path) -> str:
    suffix = path.suffix if path.suffix != "" else "(none)"
    return f"unsupported file type '{suffix}' (supported: {supported_suffixes_text()})"


def short_message(exc: BaseException) -> str:
    message = str(exc).strip()
    if message == "":
        message = type(exc).__name__
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 3] + "..."
    return message


def os_reason(exc: OSError) -> str:
    """What went wrong reading a file, in the operating system's words when it gave some."""
    return short_message(exc) if exc.strerror is None else exc.strerror


def read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(path, f"cannot read file: {os_reason(exc)}") from exc
    if len(data) == 0:
        raise DocumentError(path, "empty file (0 bytes)")
    return data


def decode_text(data: bytes) -> str:
    # utf-8-sig drops a byte-order mark, which is encoding metadata, not text; bytes that are not UTF-8
    # become U+FFFD so one stray Latin-1 byte does not cost the user the whole file.
    return data.decode("utf-8-sig", errors="replace")


@dataclass(frozen=True)
class DocumentText:
    """A file's page texts (item i is page i+1) and the pages (1-based) whose text is OCR'd."""

    pages: list[str]
    ocr_pages: tuple[int, ...] = ()


def read_pages(
    path: Path,
    password: str | None = None,
    *,
    passwords: Sequence[str] = (),
    layout: bool = True,
    data: bytes | None = None,
    ocr: str = OcrSettings.ocr,
) -> list[str]:
    """The text of every page of `path`: item i is page i+1.

    An encrypted PDF is tried with the empty password, then `password`, then each of `passwords`.
    With `layout` (the default) PDF pages are read in reading order, columns one after another
    (`spanqa.indexing.formats.pdf_text`); without it, in pypdf's content-stream order. PDF pages without a
    usable text layer (scans) are OCR'd with the engine `ocr` names ("auto", "rapidocr",
    "tesseract"; "off": they read as ""). `data` is the file's bytes when the caller has read them.

    Pages without text stay in the list as "" (or whitespace) so page numbers keep matching the
    file. Raises DocumentError, with a short reason a user can act on, when the file yields no text.
    """
    candidates = ([password] if password is not None else []) + list(passwords)
    return read_document(path, passwords=candidates, layout=layout, data=data, ocr=ocr).pages


def read_document(
    path: Path,
    *,
    passwords: Sequence[str] = (),
    layout: bool = True,
    data: bytes | None = None,
    ocr: str = OcrSettings.ocr,
    before_ocr_page: Callable[[], None] | None = None,
) -> DocumentText:
    """`read_pages`, also saying which pages were OCR'd; `before_ocr_page` is called before each
    page's OCR (a parse worker asks for more time there)."""
    path = Path(path)
    if path.is_dir():
        raise DocumentError(path, "is a directory (list its files with discover_files)")
    suffix = path.suffix.lower()
    if suffix not in defaults.SUPPORTED_SUFFIXES:
        raise DocumentError(path, unsupported_reason(path))
    if data is None:
        data = read_bytes(path)
    elif len(data) == 0:
        raise DocumentError(path, "empty file (0 bytes)")
    if suffix in PDF_SUFFIXES:
        return read_pdf_pages(path, data, list(passwords), layout=layout, ocr=ocr, before_ocr_page=before_ocr_page)
    if suffix in HTML_SUFFIXES:
        pages = [html_to_text(decode_text(data))]
        if pages[0].strip() == "":
            raise DocumentError(path, "no visible text")
        return DocumentText(pages)
    if suffix in TEXT_SUFFIXES:
        pages = split_form_feeds(decode_text(data))
        if all(page.strip() == "" for page in pages):
            raise DocumentError(path, "no text (only whitespace)")
        return DocumentText(pages)
    if suffix in OFFICE_SUFFIXES + CONVERTED_SUFFIXES:
        return DocumentText(read_office(path, suffix, data, passwords))
    # A suffix added to defaults.SUPPORTED_SUFFIXES without a reader here.
    raise DocumentError(path, f"no reader for '{suffix}' files")


def read_office(path: Path, suffix: str, data: bytes, passwords: Sequence[str]) -> list[str]:
    """The pages of a Word (one page), PowerPoint (a page per slide) or Excel file (a page per sheet);
    a legacy or OpenDocument file is read as the OOXML twin LibreOffice converts it to."""
    # Imported here: python-docx, python-pptx and openpyxl load in a parse worker only when it meets
    # such a file, not for every PDF.
    from spanqa.indexing.formats.office_convert import convert
    from spanqa.indexing.formats.office_docx import read_docx
    from spanqa.indexing.formats.office_pptx import read_pptx
    from spanqa.indexing.formats.office_xlsx import read_xlsx

    if suffix in CONVERTED_SUFFIXES:
        data, suffix = convert(path, data, passwords)
        passwords = ()  # decrypted before the conversion
    if suffix in WORD_SUFFIXES:
        pages = read_docx(path, data, passwords)
    elif suffix in POWERPOINT_SUFFIXES:
        pages = read_pptx(path, data, passwords)
    else:
        pages = read_xlsx(path, data, passwords)
    if all(page.strip() == "" for page in pages):
        raise DocumentError(path, "no text")
    return pages


def split_form_feeds(text: str) -> list[str]:
    """Pages of a text file: tools like pdftotext separate pages with a form feed."""
    pages = text.split("\f")
    # pdftotext ends every page, the last one included, with a form feed: that is no extra page.
    if len(pages) > 1 and pages[-1].strip() == "":
        pages = pages[:-1]
    return pages


def read_pdf_pages(
    path: Path,
    data: bytes,
    passwords: Sequence[str],
    layout: bool = True,
    ocr: str = OcrSettings.ocr,
    before_ocr_page: Callable[[], None] | None = None,
) -> DocumentText:
    check_ocr_mode(ocr)
    reader = open_pdf_reader(path, data, passwords)
    page_count = len(reader.pages)
    pages: list[str] = []
    failures: list[str] = []
    ocr_pages: list[int] = []
    ocr_failures: list[str] = []
    for page_index in range(page_count):
        try:
            text = page_text_of(reader.pages[page_index], layout)
        except Exception as exc:  # noqa: BLE001 - one unreadable page must not cost the rest of the file
            logger.warning("%s: page %d: text extraction failed: %s", path, page_index + 1, short_message(exc))
            failures.append(short_message(exc))
            text = ""
        if ocr != "off":
            recognised, ocr_error = ocr_if_needed(
                ocr, reader.pages[page_index], text, data, page_index, passwords, before_ocr_page
            )
            if recognised is not None:
                text = recognised.text
                ocr_pages.append(page_index + 1)
            if ocr_error is not None:
                logger.warning("%s: page %d: OCR failed: %s", path, page_index + 1, ocr_error)
                ocr_failures.append(ocr_error)
        pages.append(text)
    if len(failures) == page_count and not ocr_pages:
        raise DocumentError(path, f"corrupt PDF: {failures[0]}")
    if all(page.strip() == "" for page in pages):
        if ocr_failures:
            raise DocumentError(path, f"OCR failed: {ocr_failures[0]}")
        if ocr == "off":
            raise DocumentError(path, "no text layer: needs OCR (index with --ocr auto)")
        raise DocumentError(path, "no text found, by OCR either (blank pages?)")
    return DocumentText(pages, tuple(ocr_pages))


def draws_images(page: Any) -> bool:
    """Whether a pypdf page draws an image (its own, or one of its forms'): only such a page can be
    a scan worth OCR; a page without text and without images is blank."""
    try:
        if _resources_draw_images(page.get("/Resources"), depth=0):
            return True
        contents = page.get_contents()
        return contents is not None and INLINE_IMAGE.search(contents.get_data()) is not None
    except Exception:  # noqa: BLE001 - a page whose resources cannot be read is tried with OCR
        return True


def _resources_draw_images(resources: Any, depth: int) -> bool:
    if resources is None or depth > 3:  # forms nest; a few levels is all real files use
        return False
    resources = resources.get_object()
    objects = resources.get("/XObject")
    if objects is None:
        return False
    for reference in objects.get_object().values():
        item = reference.get_object()
        subtype = item.get("/Subtype")
        if subtype == "/Image" or (subtype == "/Form" and _resources_draw_images(item.get("/Resources"), depth + 1)):
            return True
    return False


def ocr_if_needed(
    ocr: str,
    page: Any,
    text: str,
    data: bytes,
    page_index: int,
    passwords: Sequence[str],
    before_ocr_page: Callable[[], None] | None,
) -> tuple[OcrPage | None, str | None]:
    """`page` (a pypdf page, whose text layer reads `text`) OCR'd by the engine `ocr` names when its
    text layer is too thin and it draws an image: (the OCR'd page if its text is the page's, the
    OCR error if any). The engine loads at the first page that needs it."""
    if not needs_ocr(text) or not draws_images(page):
        return None, None
    if before_ocr_page is not None:
        before_ocr_page()
    try:
        recognised = ocr_page(ocr, data, page_index, list(passwords))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - a page the engine cannot read keeps its own text
        # RapidOCR wraps ONNX Runtime's errors in a message that starts with a traceback: the reason
        # is its last line.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return None, short_message(RuntimeError(lines[-1])) if lines else short_message(exc)
    if len(recognised.text.split()) <= len(text.split()):
        return None, None
    return recognised, None


def open_pdf_reader(path: Path, data: bytes, passwords: str | None | Sequence[str]) -> PdfReader:
    """A pypdf reader of the PDF `data` (decrypted), with at least one page; DocumentError if none."""
    # Imported here so that listing files or reading text files does not pay for pypdf's import.
    import pypdf
    from pypdf.errors import DependencyError

    if b"%PDF" not in data[:PDF_HEADER_WINDOW]:
        raise DocumentError(path, "not a PDF (no %PDF header)")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            unlock_pdf(path, reader, passwords)
        page_count = len(reader.pages)
    except DocumentError:
        raise
    except DependencyError as exc:
        # pypdf needs the optional `cryptography` package for AES; RC4 works without it.
        raise DocumentError(path, "encrypted: AES needs the 'cryptography' package (pip install cryptography)") from exc
    except Exception as exc:  # noqa: BLE001 - pypdf raises many exception types on broken files
        raise DocumentError(path, f"corrupt PDF: {short_message(exc)}") from exc
    if page_count == 0:
        raise DocumentError(path, "corrupt PDF: no pages")
    return reader


def read_pdf_page(
    path: Path,
    page: int,
    passwords: Sequence[str] = (),
    *,
    layout: bool = True,
    data: bytes | None = None,
    ocr: str = OcrSettings.ocr,
) -> str:
    """The text of page `page` (1-based) of the PDF `path`: exactly `read_pages(path)[page - 1]`, without
    reading the other pages. An encrypted PDF is tried with the empty password, then each of `passwords`.

    A page whose text cannot be extracted reads as "" (as in read_pages). Raises ConfigError for a page
    number out of range, DocumentError when the file cannot be read as a PDF.
    """
    return read_pdf_page_reading(path, page, passwords, layout=layout, data=data, ocr=ocr).text


@dataclass(frozen=True)
class PageReading:
    """One PDF page's text and, when that text is OCR's, the page as OCR read it (words and boxes)."""

    text: str
    ocr: OcrPage | None = None


def read_pdf_page_reading(
    path: Path,
    page: int,
    passwords: Sequence[str] = (),
    *,
    layout: bool = True,
    data: bytes | None = None,
    ocr: str = OcrSettings.ocr,
) -> PageReading:
    """`read_pdf_page`, with the OCR'd words when the page's text is OCR's."""
    path = Path(path)
    if isinstance(page, bool) or not isinstance(page, int):
        raise ConfigError(f"page={page!r} must be a whole number (pages count from 1)")
    if data is None:
        data = read_bytes(path)
    elif len(data) == 0:
        raise DocumentError(path, "empty file (0 bytes)")
    reader = open_pdf_reader(path, data, list(passwords))
    if not 1 <= page <= len(reader.pages):
        raise out_of_range(path, page, len(reader.pages))
    check_ocr_mode(ocr)
    try:
        text = page_text_of(reader.pages[page - 1], layout)
    except Exception as exc:  # noqa: BLE001 - as read_pages: an unreadable page has no text
        logger.warning("%s: page %d: text extraction failed: %s", path, page, short_message(exc))
        text = ""
    if ocr != "off":
        recognised = ocr_if_needed(ocr, reader.pages[page - 1], text, data, page - 1, passwords, None)[0]
        if recognised is not None:
            return PageReading(recognised.text, recognised)
    return PageReading(text)


def out_of_range(path: Path, page: int, page_count: int) -> ConfigError:
    """The error for a page number past a file's pages."""
    return ConfigError(f"page={page} is out of range: {path.name} has {page_count} page(s), counted from 1")


def page_text_of(page, layout: bool) -> str:
    """One PDF page's text (a seam for tests that make single pages fail)."""
    return page_reading_text(page, layout=layout)


def unlock_pdf(path: Path, reader: PdfReader, passwords: str | None | Sequence[str]) -> None:
    from pypdf import PasswordType

    if passwords is None:
        passwords = []
    elif isinstance(passwords, str):
        passwords = [passwords]
    # Many "protected" PDFs only restrict printing or copying and open with the empty user password.
    if reader.decrypt("") != PasswordType.NOT_DECRYPTED:
        return
    candidates = [password for password in dict.fromkeys(passwords) if password != ""]
    if not candidates:
        raise DocumentError(path, "encrypted: password needed")
    for password in candidates:
        if reader.decrypt(password) != PasswordType.NOT_DECRYPTED:
            return
    raise DocumentError(path, "encrypted: wrong password")
