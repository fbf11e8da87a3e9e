"""PowerPoint decks (PPTX, PPTM) as text: slide N is page N.

What is indexed on a slide, in this order: its title, then every other shape's text in the slide's
own order (grouped shapes opened), each table as rows of "header: value" cells (`tables.py`), a
chart's title; then the speaker notes, after a line "Notes:". Hidden slides are read (they are still
the deck's content) and keep their numbers. Slide masters and layouts (placeholder prompts such as
"Click to add title") are not read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pptx
from pptx.enum.shapes import MSO_SHAPE_TYPE
from pptx.slide import Slide

from spanqa.errors import DocumentError
from spanqa.indexing.formats.office_package import package_bytes
from spanqa.indexing.formats.tables import table_text

NOTES_LINE = "Notes:"
# python-pptx writes a line break inside a paragraph as a vertical tab.
LINE_BREAK = "\v"


def read_pptx(path: Path, data: bytes, passwords: Sequence[str]) -> list[str]:
    """One page of text per slide; DocumentError when the deck cannot be opened or has no slides."""
    package = package_bytes(path, data, passwords, "a PowerPoint deck")
    try:
        deck = pptx.Presentation(io.BytesIO(package))
        pages = [slide_text(slide) for slide in deck.slides]
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-pptx raises many exception types on broken files
        raise DocumentError(path, f"corrupt PowerPoint deck: {exc}") from exc
    if not pages:
        raise DocumentError(path, "no slides")
    return pages


def slide_text(slide: Slide) -> str:
    """A slide's title, its other shapes' texts, then its notes."""
    title = slide.shapes.title
    blocks = [] if title is None else [frame_text(title)]
    for shape in slide.shapes:
        if title is None or shape.shape_id != title.shape_id:
            blocks.extend(shape_blocks(shape))
    if slide.has_notes_slide:
        frame = slide.notes_slide.notes_text_frame
        notes = "" if frame is None else frame.text.replace(LINE_BREAK, "\n").strip()
        if notes != "":
            blocks.extend([NOTES_LINE, notes])
    return "\n".join(block for block in blocks if block.strip() != "")


def shape_blocks(shape: Any) -> Iterator[str]:
    """The texts of one shape: a group's shapes in order, a table's rows, a text frame, a chart's title."""
    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        for member in shape.shapes:
            yield from shape_blocks(member)
        return
    if getattr(shape, "has_table", False):
        yield table_text(table_rows(shape.table))
    elif getattr(shape, "has_text_frame", False):
        yield frame_text(shape)
    elif getattr(shape, "has_chart", False) and shape.chart.has_title:
        yield shape.chart.chart_title.text_frame.text.replace(LINE_BREAK, "\n")


def frame_text(shape: Any) -> str:
    return shape.text_frame.text.replace(LINE_BREAK, "\n")


def table_rows(table: Any) -> list[list[str]]:
    """A table's rows of cell texts; a cell covered by a merged one is empty."""
    return [
        ["" if cell.is_spanned else cell.text.replace(LINE_BREAK, "\n") for cell in row.cells]
        for row in table.rows
    ]
