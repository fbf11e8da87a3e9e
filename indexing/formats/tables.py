"""Tables as text a reader can answer from: each row one line, each cell with its column's header.

A reader trained on prose cannot tell which column "300" belongs to in "Patrick 300 20"; it can in
"Name: Patrick; Budget: 300; Hours: 20". So every table (a Word or PowerPoint table, a sheet's rows)
becomes lines like that: the first row with text is the header row, and each later row names every
non-empty cell by its header. Plain functions on lists of cell strings, no file format here.
"""

from __future__ import annotations

from collections.abc import Sequence

CELL_SEPARATOR = "; "
HEADER_SEPARATOR = ": "


def clean_cell(text: str) -> str:
    """A cell's text on one line: its own line breaks and runs of spaces become single spaces."""
    return " ".join(text.split())


def trim_table(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """The rows with cells cleaned, rows without text dropped, and columns empty in every row dropped."""
    cleaned = [[clean_cell(cell) for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(cell != "" for cell in row)]
    width = max((len(row) for row in cleaned), default=0)
    cleaned = [row + [""] * (width - len(row)) for row in cleaned]
    keep = [column for column in range(width) if any(row[column] != "" for row in cleaned)]
    return [[row[column] for column in keep] for row in cleaned]


def row_text(header: Sequence[str], row: Sequence[str]) -> str:
    """One data row: each non-empty cell as "header: value" (the bare value under an empty header or
    one that repeats the value)."""
    parts = [
        value if name in ("", value) else f"{name}{HEADER_SEPARATOR}{value}"
        for name, value in zip(header, row)
        if value != ""
    ]
    return CELL_SEPARATOR.join(parts)


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a table's text: the header row (its cells joined), then one line per data row.

    A table of one row or one column has no headers to name: its cells are its lines."""
    table = trim_table(rows)
    if not table:
        return []
    if len(table) == 1 or len(table[0]) == 1:
        return [CELL_SEPARATOR.join(cell for cell in row if cell != "") for row in table]
    header = table[0]
    lines = [CELL_SEPARATOR.join(cell for cell in header if cell != "")]
    lines.extend(row_text(header, row) for row in table[1:])
    return [line for line in lines if line != ""]


def table_text(rows: Sequence[Sequence[str]]) -> str:
    """`table_lines` joined by line breaks ("" for a table without text)."""
    return "\n".join(table_lines(rows))
