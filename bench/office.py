"""Office files: the text spanqa reads from Word, PowerPoint and Excel files against Haystack's
DOCXToDocument, PPTXToDocument and XLSXToDocument, side by side on the same files.

    python bench/office.py --files ../shared/data/office --repeats 3

For every .docx, .pptx and .xlsx file of `--files` (the 83 Apache POI files: 45 of those types):
 - words recovered: a reference text is made by LibreOffice, a reader independent of both sides
   (`soffice --convert-to txt` for documents, PDF then pypdf's text for decks, CSV of every sheet
   for workbooks); recall is the share of the reference's words (lower-cased \\w+ tokens, counted
   with multiplicity) found in a side's text; "extra" is how many words a side has beyond the
   reference per reference word (spanqa repeats a table's column headers in every row, by design);
 - time: each side reads each file `--repeats` times, taking turns (the order alternates); a file's
   time is its median; totals are the sum over the files both sides read.
Files a side cannot read count as recall 0 for it (and are listed). Needs LibreOffice for the reference.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")

from haystack.components.converters import DOCXToDocument, PPTXToDocument, XLSXToDocument  # noqa: E402

from spanqa.errors import DocumentError  # noqa: E402
from spanqa.indexing.formats.extraction import read_document, read_pages  # noqa: E402
from spanqa.indexing.formats.office_convert import soffice  # noqa: E402

WORD = re.compile(r"\w+")
SUFFIXES = {".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx"}


def words(text: str) -> collections.Counter[str]:
    return collections.Counter(match.group().lower() for match in WORD.finditer(text))


def reference_text(path: Path, work: Path) -> str | None:
    """LibreOffice's text of the file (None when it cannot make one)."""
    kind = SUFFIXES[path.suffix.lower()]
    target = {"docx": "txt:Text (encoded):UTF8", "pptx": "pdf",
              "xlsx": 'csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1'}[kind]
    out = work / path.stem
    out.mkdir(parents=True, exist_ok=True)
    command = [soffice(), f"-env:UserInstallation={(work / 'profile').as_uri()}", "--headless",
               "--convert-to", target, "--outdir", str(out), str(path)]
    for _ in range(2):  # LibreOffice exits with 81 after it has made a new profile
        if subprocess.run(command, capture_output=True, timeout=300, check=False).returncode != 81:
            break
    produced = sorted(out.iterdir())
    if not produced:
        return None
    if kind == "pptx":
        try:
            return "\n".join(read_pages(produced[0], ocr="off"))
        except DocumentError:
            return None
    return "\n".join(item.read_text(encoding="utf-8", errors="replace") for item in produced)


def haystack_text(converter, path: Path) -> str:
    documents = converter.run(sources=[str(path)])["documents"]
    if not documents:  # Haystack logs the file as skipped and returns nothing
        raise ValueError(f"{path.name}: no document")
    return "\n".join(document.content or "" for document in documents)


def spanqa_text(path: Path) -> str:
    return "\n".join(read_document(path, ocr="off").pages)


def timed(read, path: Path) -> tuple[float, str | None]:
    began = time.perf_counter()
    try:
        text = read(path)
    except Exception:  # noqa: BLE001 - a side that cannot read a file scores 0 on it
        text = None
    return time.perf_counter() - began, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", required=True, type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if soffice() is None:
        sys.exit("bench/office.py needs LibreOffice (soffice) for its reference texts")
    converters = {"docx": DOCXToDocument(), "pptx": PPTXToDocument(), "xlsx": XLSXToDocument()}
    files = sorted(p for p in args.files.iterdir() if p.suffix.lower() in SUFFIXES)
    scored: list[tuple[Path, str, dict[str, Score]]] = []  # (file, kind, each side's score)
    with tempfile.TemporaryDirectory() as work:
        for number, path in enumerate(files):
            reference = reference_text(path, Path(work))
            if reference is not None and words(reference):
                kind = SUFFIXES[path.suffix.lower()]
                scored.append((path, kind, score_sides(path, converters[kind], words(reference), number, args.repeats)))
    print("| files | side | files read | word recall | extra words per reference word | seconds (files both read) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in ("docx", "pptx", "xlsx", "all"):
        chosen = [sides for _, file_kind, sides in scored if kind in ("all", file_kind)]
        for side in SIDES:
            items = [sides[side] for sides in chosen]
            if not items:
                continue
            reference_words = sum(item.reference for item in items)
            print(f"| {kind} ({len(items)}) | {side} | {sum(item.read for item in items)} | "
                  f"{sum(item.found for item in items) / reference_words:.3f} | "
                  f"{sum(item.extra for item in items) / reference_words:.3f} | {both_read_seconds(chosen, side):.3f} |")
    all_files = [sides for _, _, sides in scored]
    ratio = both_read_seconds(all_files, "haystack") / both_read_seconds(all_files, "spanqa")
    print(f"\nspeed: Haystack's seconds / spanqa's, on the files both read: {ratio:.2f}x")
    for side in SIDES:
        names = [path.name for path, _, sides in scored if not sides[side].read]
        print(f"{side} could not read: {', '.join(names) if names else 'none'}")


@dataclass(frozen=True)
class Score:
    """One side's reading of one file: reference words found, reference words, words beyond the
    reference, median seconds, and whether it read the file at all."""

    found: int
    reference: int
    extra: int
    seconds: float
    read: bool


SIDES = ("spanqa", "haystack")


def score_sides(
    path: Path, converter, reference: collections.Counter[str], number: int, repeats: int
) -> dict[str, Score]:
    """Both sides read `path` `repeats` times, taking turns (the order alternates with `number`)."""
    readers = {"spanqa": spanqa_text, "haystack": lambda p: haystack_text(converter, p)}
    seconds: dict[str, list[float]] = {side: [] for side in SIDES}
    texts: dict[str, str | None] = {}
    for repeat in range(repeats):
        for side in SIDES if (number + repeat) % 2 == 0 else reversed(SIDES):
            took, texts[side] = timed(readers[side], path)
            seconds[side].append(took)
    scores = {}
    for side in SIDES:
        got = words(texts[side] or "")
        scores[side] = Score(
            found=sum((reference & got).values()), reference=sum(reference.values()),
            extra=sum((got - reference).values()), seconds=statistics.median(seconds[side]),
            read=texts[side] is not None,
        )
    return scores


def both_read_seconds(files: list[dict[str, Score]], side: str) -> float:
    """`side`'s seconds summed over the files both sides read."""
    return sum(sides[side].seconds for sides in files if all(score.read for score in sides.values()))

if __name__ == "__main__":
    main()
