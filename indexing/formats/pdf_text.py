"""Text of one PDF page in reading order, from pypdf.

`page_reading_text` reads every text-show operation of the page with its position (through the
machinery of pypdf's layout mode) and hands the positioned fragments to `layout.page_text`, which
reads multi-column pages column by column. Where that machinery cannot see all the text (text in
form XObjects, rotated or upside-down text) or pypdf's internals differ from what is expected here,
the page falls back to pypdf's default extraction, in content-stream order.

pypdf's layout machinery moves the text position only between the strings of a TJ array that a
number follows, not after a Tj or a TJ's last string as the PDF spec does (ISO 32000-1, 9.4.4). Show operations
that follow each other without a positioning operator in between (OCR text layers draw each word and
each space with its own Tj, one Tm per line) would then all start at the line's origin and overlap,
and their word spaces vanish; `advancing_operations` rewrites them so every string moves the position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from spanqa.indexing.layout import SAME_LINE_HEIGHTS, Fragment, page_text

logger = logging.getLogger(__name__)

# Above this share of the page's characters drawn rotated, the page is read in stream order instead
# (the layout reader drops rotated text: a margin stamp is fine to lose, a landscape table is not).
MAX_ROTATED_SHARE = 0.2


class LayoutUnavailable(Exception):
    """The page cannot be read by position; read it in content-stream order instead."""


def plain_text(page: Any) -> str:
    return page.extract_text()


def page_reading_text(page: Any, layout: bool = True) -> str:
    """The page's text, columns in reading order when `layout` (else pypdf's default extraction)."""
    if not layout:
        return plain_text(page)
    try:
        fragments = page_fragments(page)
    except LayoutUnavailable:
        return plain_text(page)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the positional reader: use the default one
        logger.debug("layout reading failed (%s); using stream order", exc)
        return plain_text(page)
    return page_text(fragments)


def page_fragments(page: Any) -> list[Fragment]:
    """Every text-show operation of the page as a positioned Fragment (rotated text left out)."""
    from pypdf.generic import ArrayObject, ContentStream, StreamObject

    try:
        from pypdf._text_extraction._layout_mode._fixed_width_page import (
            recurse_to_target_op,
            set_font_operation,
        )
        from pypdf._text_extraction._layout_mode._text_state_manager import TextStateManager
    except ImportError as exc:  # another pypdf version: its internals moved
        raise LayoutUnavailable(str(exc)) from exc

    contents = page.get("/Contents")
    if contents is not None:
        contents = contents.get_object()
    if not isinstance(contents, (ArrayObject, StreamObject)):
        return []
    if uses_form_xobjects(page):
        raise LayoutUnavailable("text in form XObjects")
    fonts = page._layout_mode_fonts()
    operations = advancing_operations(ContentStream(contents, page.pdf, "bytes").operations)
    state = TextStateManager()
    text_ops: list[Any] = []
    for operands, operator in operations:
        if operator in (b"BT", b"q"):
            _, found = recurse_to_target_op(
                operations, state, b"ET" if operator == b"BT" else b"Q", fonts, strip_rotated=True
            )
            text_ops.extend(found)
        elif operator == b"Tf":
            set_font_operation(state, fonts, operands)
        else:
            state.set_state_param(operator, operands)

    fragments: list[Fragment] = []
    rotated_chars = 0
    total_chars = 0
    for op in text_ops:
        text = op.text
        if not isinstance(text, str) or text == "":
            continue
        size = len(text.strip())
        total_chars += size
        if op.rotated or op.flip_vertical:
            rotated_chars += size
            continue
        if not op.font.interpretable:
            continue
        x0, x1 = sorted((float(op.tx), float(op.displaced_tx)))
        fragment = Fragment(text=text, x0=x0, x1=x1, y=float(op.ty), height=abs(float(op.font_height)))
        if text.isspace() and fragments and follows_on_line(fragments[-1], fragment):
            # A space drawn on its own ends the word before it, however narrow the gap it leaves
            # (the layout reader leaves whitespace fragments out and judges gaps by width alone).
            if not fragments[-1].text[-1:].isspace():
                fragments[-1] = replace(fragments[-1], text=fragments[-1].text + " ")
            continue
        fragments.append(fragment)
    if total_chars > 0 and rotated_chars > MAX_ROTATED_SHARE * total_chars:
        raise LayoutUnavailable("mostly rotated text")
    return fragments


def follows_on_line(previous: Fragment, fragment: Fragment) -> bool:
    """Whether `fragment` starts on `previous`'s baseline within a font height of where it ends."""
    return (
        abs(fragment.y - previous.y) < SAME_LINE_HEIGHTS * previous.height
        and abs(fragment.x0 - previous.x1) <= previous.height
    )


def advancing_operations(operations: Iterable[tuple[list[Any], bytes]]) -> Iterator[tuple[list[Any], bytes]]:
    """The content stream's operations with every text show written as a TJ array in which each string
    is followed by a number, so that pypdf moves the text position past each string it reads."""
    from pypdf.generic import ArrayObject

    for operands, operator in operations:
        if operator == b"Tj" and operands and isinstance(operands[0], bytes):
            yield [ArrayObject([operands[0], 0])], b"TJ"
        elif operator == b"TJ" and operands and isinstance(operands[0], ArrayObject):
            yield [advancing_array(operands[0])], b"TJ"
        elif operator == b"'" and operands and isinstance(operands[0], bytes):
            yield [], b"T*"
            yield [ArrayObject([operands[0], 0])], b"TJ"
        elif operator == b'"' and len(operands) >= 3 and isinstance(operands[2], bytes):
            yield [operands[0]], b"Tw"
            yield [operands[1]], b"Tc"
            yield [], b"T*"
            yield [ArrayObject([operands[2], 0])], b"TJ"
        else:
            yield operands, operator


def advancing_array(items: list[Any]) -> Any:
    """The TJ array `items` with exactly one number after every string (0 where it had none).

    pypdf moves past a string when a number follows it, by the string's width plus that number, and
    moves by the string's width again for a second number in a row: so numbers in a row are summed.
    """
    from pypdf.generic import ArrayObject

    out: list[Any] = []
    for item in items:
        if isinstance(item, bytes):
            out += [item, 0]
        elif isinstance(item, (int, float)):
            if out:
                out[-1] += item
            else:
                out.append(item)
    return ArrayObject(out)


def uses_form_xobjects(page: Any) -> bool:
    """Whether the page's resources hold form XObjects (which may draw text the layout reader misses)."""
    resources = page.get("/Resources")
    if resources is None:
        return False
    xobjects = resources.get_object().get("/XObject")
    if xobjects is None:
        return False
    for reference in xobjects.get_object().values():
        xobject = reference.get_object()
        if xobject.get("/Subtype") == "/Form":
            return True
    return False
