"""Word documents (DOCX, DOCM, DOTX) as text: one page, the body in reading order, then the notes.

What is indexed, in this order:
- the body's paragraphs and tables as they come (content controls opened), each table as rows of
  "header: value" cells (`tables.py`), each text box after the paragraph that anchors it;
- tracked changes as if accepted: insertions are read, deletions are not;
- then footnotes, endnotes and comments, then the text of the headers and footers (each distinct one
  once: they repeat on every printed page).
Field codes, deleted text and the fallback copies of drawings that Word stores twice are not read.
A Word file has no fixed pages (they depend on the printer), so the whole document is page 1.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

from docx.document import Document as DocxDocument
from docx.opc.constants import CONTENT_TYPE
from docx.opc.part import PartFactory
from docx.package import Package
from docx.parts.document import DocumentPart
from lxml import etree

from spanqa.errors import DocumentError
from spanqa.indexing.formats.office_package import package_bytes, parse_xml
from spanqa.indexing.formats.tables import table_text

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# Parts whose paragraphs come after the body, by relationship type (the part's own root lists them).
NOTE_RELATIONSHIPS = (
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/footnotes",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/endnotes",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/comments",
)
# Tracked deletions and moved-away text: a reader of the document today does not see them.
SKIPPED = {W + "del", W + "moveFrom", MC_FALLBACK, W + "instrText", W + "delText"}
# The main part of a macro-enabled document and of templates: python-docx reads them as it reads a
# document's (python-docx's own `docx.Document()` refuses them by content type, so packages are opened
# with `Package.open` below).
MAIN_CONTENT_TYPES = (
    CONTENT_TYPE.WML_DOCUMENT_MAIN,
    "application/vnd.ms-word.document.macroEnabled.main+xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml",
    "application/vnd.ms-word.template.macroEnabledTemplate.main+xml",
)
for _content_type in MAIN_CONTENT_TYPES:
    PartFactory.part_type_for.setdefault(_content_type, DocumentPart)
# Footnote separators are lines drawn by Word, not notes.
SEPARATOR_TYPES = {"separator", "continuationSeparator", "continuationNotice"}


def read_docx(path: Path, data: bytes, passwords: Sequence[str]) -> list[str]:
    """The document's text as one page; DocumentError when it cannot be opened."""
    package = package_bytes(path, data, passwords, "a Word document")
    try:
        main = Package.open(io.BytesIO(package)).main_document_part
    except Exception as exc:  # noqa: BLE001 - python-docx raises many exception types on broken files
        raise DocumentError(path, f"corrupt Word document: {exc}") from exc
    if main.content_type not in MAIN_CONTENT_TYPES or not isinstance(main, DocumentPart):
        raise DocumentError(path, f"not a Word document (its main part is {main.content_type!r})")
    document = main.document
    blocks = list(body_blocks(document.element.body))
    for relationship in document.part.rels.values():
        if relationship.reltype in NOTE_RELATIONSHIPS and not relationship.is_external:
            root = parse_xml(path, relationship.target_part.blob, str(relationship.target_part.partname))
            blocks.extend(note_blocks(root))
    blocks.extend(header_footer_blocks(document))
    return ["\n".join(block for block in blocks if block.strip() != "")]


def body_blocks(container: etree._Element) -> Iterator[str]:
    """The texts of a body (or cell, text box, note) in order: a paragraph's text, then its text
    boxes; a table's rows; a content control's contents."""
    for child in container:
        if child.tag == W + "p":
            text, boxes = paragraph_text(child)
            yield text
            for box in boxes:
                yield from body_blocks(box)
        elif child.tag == W + "tbl":
            yield table_text(table_rows(child))
        elif child.tag in (W + "sdt", W + "sdtContent", W + "customXml", W + "ins", W + "moveTo"):
            yield from body_blocks(child)


def paragraph_text(paragraph: etree._Element) -> tuple[str, list[etree._Element]]:
    """A paragraph's visible text and the text boxes (w:txbxContent) anchored in it."""
    parts: list[str] = []
    boxes: list[etree._Element] = []

    def walk(element: etree._Element) -> None:
        for child in element:
            tag = child.tag
            if tag in SKIPPED or not isinstance(tag, str):
                continue
            if tag == W + "t":
                parts.append(child.text or "")
            elif tag == W + "tab":
                parts.append("\t")
            elif tag in (W + "br", W + "cr"):
                parts.append("\n")
            elif tag == W + "noBreakHyphen":
                parts.append("-")
            elif tag == W + "txbxContent":
                boxes.append(child)
            else:
                walk(child)

    walk(paragraph)
    return "".join(parts), boxes


def table_rows(table: etree._Element) -> list[list[str]]:
    """A table's rows of cell texts; a cell spanning columns is one cell (its text once), a cell
    continuing a vertical merge is empty."""
    rows: list[list[str]] = []
    for row in table.iterchildren(W + "tr"):
        cells: list[str] = []
        for cell in row.iterchildren(W + "tc"):
            properties = cell.find(W + "tcPr")
            merge = None if properties is None else properties.find(W + "vMerge")
            continues = merge is not None and merge.get(W + "val") in (None, "continue")
            cells.append("" if continues else " ".join(body_blocks(cell)))
            span = None if properties is None else properties.find(W + "gridSpan")
            if span is not None and (span.get(W + "val") or "").isdigit():
                # The columns it spans after its first stay empty, so later cells keep their headers.
                cells.extend([""] * (min(int(span.get(W + "val")), 64) - 1))
        rows.append(cells)
    return rows


def note_blocks(root: etree._Element) -> Iterator[str]:
    """The texts of a footnotes, endnotes or comments part, separators left out."""
    for note in root:
        if not isinstance(note.tag, str) or note.get(W + "type") in SEPARATOR_TYPES:
            continue
        yield " ".join(block for block in body_blocks(note) if block.strip() != "")


def header_footer_blocks(document: DocxDocument) -> list[str]:
    """Each distinct header and footer text once, in section order."""
    seen: dict[str, None] = {}
    for section in document.sections:
        for part in (
            section.header, section.first_page_header, section.even_page_header,
            section.footer, section.first_page_footer, section.even_page_footer,
        ):
            if part.is_linked_to_previous:
                continue
            text = "\n".join(block for block in body_blocks(part._element) if block.strip() != "")
            if text != "":
                seen.setdefault(text, None)
    return list(seen)
