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
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    failures: dict[str, list[str]] = {"spanqa": [], "haystack": []}
    with tempfile.TemporaryDirectory() as work:
        for number, path in enumerate(files):
            reference = reference_text(path, Path(work))
            if reference is None or not words(reference):
                continue
            kind = SUFFIXES[path.suffix.lower()]
            sides = {"spanqa": spanqa_text, "haystack": lambda p, c=converters[kind]: haystack_text(c, p)}
            seconds: dict[str, list[float]] = {"spanqa": [], "haystack": []}
            texts: dict[str, str | None] = {}
            for repeat in range(args.repeats):
                order = list(sides) if (number + repeat) % 2 == 0 else list(reversed(sides))
                for side in order:
                    took, texts[side] = timed(sides[side], path)
                    seconds[side].append(took)
            ref = words(reference)
            for side in sides:
                got = words(texts[side] or "")
                if texts[side] is None:
                    failures[side].append(path.name)
                found = sum((ref & got).values())
                extra = sum((got - ref).values())
                rows[kind][side].append((found, sum(ref.values()), extra, statistics.median(seconds[side]),
                                         texts[side] is not None))
    print("| files | side | files read | word recall | extra words per reference word | seconds (files both read) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in ("docx", "pptx", "xlsx", "all"):
        kinds = list(SUFFIXES.values()) if kind == "all" else [kind]
        both = {side: [r for k in kinds for r, o in zip(rows[k][side], rows[k]["haystack" if side == "spanqa" else "spanqa"])
                       if r[4] and o[4]] for side in ("spanqa", "haystack")}
        for side in ("spanqa", "haystack"):
            items = [r for k in kinds for r in rows[k][side]]
            if not items:
                continue
            recall = sum(r[0] for r in items) / sum(r[1] for r in items)
            extra = sum(r[2] for r in items) / sum(r[1] for r in items)
            print(f"| {kind} ({len(items)}) | {side} | {sum(r[4] for r in items)} | {recall:.3f} | {extra:.3f} | "
                  f"{sum(r[3] for r in both[side]):.3f} |")
    spanqa_s = sum(r[3] for k in SUFFIXES.values() for r, o in zip(rows[k]["spanqa"], rows[k]["haystack"]) if r[4] and o[4])
    haystack_s = sum(r[3] for k in SUFFIXES.values() for r, o in zip(rows[k]["haystack"], rows[k]["spanqa"]) if r[4] and o[4])
    print(f"\nspeed: Haystack's seconds / spanqa's, on the files both read: {haystack_s / spanqa_s:.2f}x")
    for side, names in failures.items():
        print(f"{side} could not read: {', '.join(names) if names else 'none'}")


if __name__ == "__main__":
    main()
