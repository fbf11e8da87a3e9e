"""Excel workbooks (XLSX, XLSM) as text: sheet N is page N.

A sheet's page is its name on the first line, then its rows as a table (`tables.py`): the first row
with text is the header row, and every later row names each cell by its column's header ("Region:
North; Q1: 1200"). A formula cell reads as the value Excel last computed and saved (nothing is
recalculated, no macro runs); a date as its ISO date; a percentage as shown ("12.5%"). Rows after
the first MAX_SHEET_ROWS of a sheet are not read (logged), so one huge sheet stays within a parse
worker's memory. Hidden sheets are read; a chart sheet is a page with its name only.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openpyxl

from spanqa.errors import DocumentError
from spanqa.indexing.formats.office_package import package_bytes
from spanqa.indexing.formats.tables import table_text

logger = logging.getLogger(__name__)

MAX_SHEET_ROWS = 100_000
# Cells of a row past this column are not read: real tables are narrower, and a stray value in
# column XFD would otherwise make every row 16,384 cells wide.
MAX_SHEET_COLUMNS = 256


def read_xlsx(path: Path, data: bytes, passwords: Sequence[str]) -> list[str]:
    """One page of text per sheet; DocumentError when the workbook cannot be opened."""
    package = package_bytes(path, data, passwords, "an Excel workbook")
    try:
        with warnings.catch_warnings():
            # openpyxl warns about every extension it does not read (data validation, slicers, ...).
            warnings.simplefilter("ignore")
            workbook = openpyxl.load_workbook(io.BytesIO(package), read_only=True, data_only=True)
            try:
                return [sheet_text(path, workbook[name]) for name in workbook.sheetnames]
            finally:
                workbook.close()
    except DocumentError:
        raise
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many exception types on broken files
        raise DocumentError(path, f"corrupt Excel workbook: {exc}") from exc


def sheet_text(path: Path, sheet: Any) -> str:
    """A sheet's name, then its rows as table text."""
    if not hasattr(sheet, "iter_rows"):
        return sheet.title  # a chart sheet
    rows: list[list[str]] = []
    for number, row in enumerate(sheet.iter_rows(max_col=MAX_SHEET_COLUMNS), start=1):
        if number > MAX_SHEET_ROWS:
            logger.warning("%s: sheet %r: rows after %d not read", path, sheet.title, MAX_SHEET_ROWS)
            break
        # An empty cell of a read-only sheet has neither a value nor a number format.
        rows.append([
            cell_text(getattr(cell, "value", None), getattr(cell, "number_format", "General")) for cell in row
        ])
    body = table_text(rows)
    return sheet.title if body == "" else f"{sheet.title}\n{body}"


def cell_text(value: object, number_format: str = "General") -> str:
    """A cell's value as a reader should see it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        if "%" in number_format:
            return f"{number_text(value * 100)}%"
        return number_text(value)
    return str(value)


def number_text(value: float) -> str:
    """A number without float noise: 3.0 is "3", 0.1 + 0.2 is "0.3"."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".12g") if isinstance(value, float) else str(value)
