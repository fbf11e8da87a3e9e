"""Small PDFs written by hand, byte by byte, so tests and sample data need no PDF library to create them.

`write_text_pdf` produces the simplest PDF that pypdf's text extraction reads back word for word:
one Helvetica Type 1 font (a standard-14 font, so nothing is embedded) and one content stream per
page holding plain `Tj` text lines. The helpers below it write the broken and awkward files that
the converter must report instead of indexing.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

PAGE_WIDTH = 612  # US Letter, in points
PAGE_HEIGHT = 792
MARGIN = 54
FONT_SIZE = 10
LEADING = 13  # points between baselines
WRAP_CHARS = 90  # at 10 pt Helvetica a 90-character line is about 450 pt: it fits between the margins
MAX_LINES = (PAGE_HEIGHT - 2 * MARGIN) // LEADING


def pdf_string(text: str) -> bytes:
    """`text` as a PDF literal string in WinAnsiEncoding, with the characters the syntax reserves escaped."""
    try:
        encoded = text.encode("cp1252")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{text!r} holds a character Helvetica's WinAnsiEncoding cannot show: {exc}") from exc
    escaped = bytearray(b"(")
    for byte in encoded:
        if byte in b"()\\":
            escaped += b"\\" + bytes([byte])
        elif byte < 32 or byte > 126:
            escaped += b"\\%03o" % byte
        else:
            escaped.append(byte)
    escaped += b")"
    return bytes(escaped)


def layout_lines(page_text: str) -> list[str]:
    """The page's lines as they will be drawn: each paragraph wrapped, a blank line between paragraphs."""
    lines: list[str] = []
    for paragraph in page_text.split("\n"):
        if paragraph.strip() == "":
            lines.append("")
            continue
        # Whole words only: a word cut in two, or a hyphen at a line end, would not extract back unchanged.
        lines.extend(textwrap.wrap(paragraph, WRAP_CHARS, break_long_words=False, break_on_hyphens=False))
    return lines


def content_stream(page_text: str) -> bytes:
    lines = layout_lines(page_text)
    if len(lines) > MAX_LINES:
        raise ValueError(f"page text needs {len(lines)} lines; one page holds at most {MAX_LINES}")
    operators = [b"BT", b"/F1 %d Tf" % FONT_SIZE, b"%d %d Td" % (MARGIN, PAGE_HEIGHT - MARGIN)]
    for line_number, line in enumerate(lines):
        if line_number > 0:
            operators.append(b"0 -%d Td" % LEADING)
        # A blank line is drawn as one space: pypdf then extracts it as a whitespace-only line, so
        # paragraph breaks survive the round trip (an empty gap alone extracts as a single newline).
        operators.append(pdf_string(line if line != "" else " ") + b" Tj")
    operators.append(b"ET")
    return b"\n".join(operators) + b"\n"


def pdf_from_content_streams(streams: list[bytes]) -> bytes:
    """The bytes of a PDF with one page per content stream, all drawn in Helvetica as font /F1."""
    if len(streams) == 0:
        raise ValueError("a PDF needs at least one page")
    # Object numbers: 1 catalog, 2 page tree, 3 font, then a (page, content stream) pair per page.
    page_numbers = [4 + 2 * i for i in range(len(streams))]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % n for n in page_numbers), len(streams)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for page_number, stream in zip(page_numbers, streams):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (PAGE_WIDTH, PAGE_HEIGHT, page_number + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream")
    return pdf_from_objects(objects)


def pdf_from_objects(objects: list[bytes]) -> bytes:
    """The bytes of a PDF whose objects 1, 2, ... are `objects` (object 1 the catalog), with its
    cross-reference table and trailer."""
    out = io.BytesIO()
    # The second line's bytes above 127 tell file-transfer tools the file is binary.
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref_offset = out.tell()
    out.write(b"xref\n0 %d\n" % (len(objects) + 1))
    # Every cross-reference entry is exactly 20 bytes, its end-of-line included.
    out.write(b"0000000000 65535 f \n")
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_offset))
    return out.getvalue()


def build_text_pdf(pages: list[str]) -> bytes:
    """The bytes of a PDF with one page per entry of `pages`; "\\n" in a page's text starts a new line."""
    return pdf_from_content_streams([content_stream(page_text) for page_text in pages])


def write_text_pdf(path: str | Path, pages: list[str]) -> Path:
    path = Path(path)
    path.write_bytes(build_text_pdf(pages))
    return path


def write_corrupt_pdf(path: str | Path) -> Path:
    """A PDF header followed by bytes that are no PDF structure at all."""
    path = Path(path)
    path.write_bytes(b"%PDF-1.4\n" + b"this is not a cross-reference table \x00\xff\x13 " * 40)
    return path


def write_encrypted_pdf(path: str | Path, pages: list[str], user_password: str, owner_password: str = "owner") -> Path:
    """A text PDF encrypted with RC4-128, which pypdf decrypts without optional packages (AES needs one).

    With `user_password=""` the file opens without a password, like most "protected" PDFs in the wild.
    """
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(build_text_pdf(pages))))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    path = Path(path)
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def write_blank_pdf(path: str | Path, page_count: int = 2) -> Path:
    """Pages with nothing on them: what a scan without an OCR text layer looks like to a text extractor."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(page_count):
        writer.add_blank_page(width=PAGE_WIDTH, height=PAGE_HEIGHT)
    path = Path(path)
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def build_positioned_pdf(pages: list[list[tuple[float, float, str]]], font_size: int = FONT_SIZE) -> bytes:
    """A PDF whose pages draw each (x, y, text) line at that position, in the order given.

    Drawing the lines of two columns row by row (left line, right line, next row...) reproduces the
    content-stream order of typesetters that interleave columns, like the IRS instructions.
    """
    streams = []
    for lines in pages:
        operators = []
        for x, y, text in lines:
            operators += [b"BT", b"/F1 %d Tf" % font_size, b"%.2f %.2f Td" % (x, y), pdf_string(text) + b" Tj", b"ET"]
        streams.append(b"\n".join(operators) + b"\n")
    return pdf_from_content_streams(streams)


def write_two_column_pdf(
    path: str | Path, left: list[str], right: list[str], title: str | None = None, interleave: bool = True
) -> Path:
    """One page with two text columns (and an optional full-width title), drawn row by row across the
    columns when `interleave` (left line 1, right line 1, left line 2, ...), else column by column."""
    top = PAGE_HEIGHT - MARGIN
    lines: list[tuple[float, float, str]] = []
    if title is not None:
        lines.append((MARGIN, top, title))
        top -= 3 * LEADING
    left_lines = [(MARGIN, top - i * LEADING, text) for i, text in enumerate(left)]
    right_lines = [(PAGE_WIDTH / 2 + 12, top - i * LEADING, text) for i, text in enumerate(right)]
    if interleave:
        for row in range(max(len(left_lines), len(right_lines))):
            lines += [column[row] for column in (left_lines, right_lines) if row < len(column)]
    else:
        lines += left_lines + right_lines
    path = Path(path)
    path.write_bytes(build_positioned_pdf([lines]))
    return path


def write_truncated_pdf(path: str | Path, pages: list[str], keep: float = 0.4) -> Path:
    """A text PDF cut off after `keep` of its bytes, like an interrupted download."""
    data = build_text_pdf(pages)
    path = Path(path)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_fake_pdf(path: str | Path) -> Path:
    """A file named .pdf that is something else (here a ZIP header and some text)."""
    path = Path(path)
    path.write_bytes(b"PK\x03\x04" + b"this is a zip archive, not a PDF " * 20)
    return path


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
    """A PDF of `images` (PIL images at 200 dpi), one per page, with no text layer: a scan."""
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=200, save_all=True, append_images=images[1:])
    return out.getvalue()


def build_form_bomb_pdf(text: str, depth: int = 8, width: int = 10) -> bytes:
    """A one-page PDF of about 3 KB whose page shows `text` and then draws a Form XObject that draws
    the next one `width` times, `depth` levels deep: width**depth drawings of the last form (a small
    square, no text). pypdf stops following forms after 5000 (the text extracts, the file indexes);
    pdfium builds every drawing when it loads the page: 10**8 of them need tens of GB."""
    page_stream = content_stream(text) + b"q /X1 Do Q\n"
    # Objects: 1 catalog, 2 page tree, 3 font, 4 page, 5 its content stream, 6... the forms, outermost first.
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R >> "
        b"/XObject << /X1 6 0 R >> >> /Contents 5 0 R >>" % (PAGE_WIDTH, PAGE_HEIGHT),
        b"<< /Length %d >>\nstream\n" % len(page_stream) + page_stream + b"endstream",
    ]
    for level in range(1, depth + 1):
        if level < depth:
            body = b"q /X1 Do Q\n" * width
            resources = b"<< /XObject << /X1 %d 0 R >> >>" % (6 + level)
        else:
            body = b"0 0 1 1 re f\n"
            resources = b"<< >>"
        objects.append(
            b"<< /Type /XObject /Subtype /Form /BBox [0 0 %d %d] /Resources %s /Length %d >>\nstream\n"
            % (PAGE_WIDTH, PAGE_HEIGHT, resources, len(body)) + body + b"endstream"
        )
    return pdf_from_objects(objects)


def write_form_bomb_pdf(path: str | Path, text: str, depth: int = 8, width: int = 10) -> Path:
    path = Path(path)
    path.write_bytes(build_form_bomb_pdf(text, depth, width))
    return path
