"""The 27 real PDFs of ../shared/data/pdfs: each gets the status its manifest implies (skipped when absent)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from spanqa.indexing.ingest.parsing import ParseTask
from spanqa.indexing.ingest.workers import ParsePool


def manifest(shared_data_dir: Path) -> list[dict]:
    return json.loads((shared_data_dir / "pdfs" / "manifest.json").read_text(encoding="utf-8"))


# Words each OCR'd scan must yield.
SCAN_WORDS = {
    "scanned_no_text/ghostscript_image_only.pdf": "This is an example of a non-text-searchable PDF",
    "scanned_no_text/jpeg_scan_2pages.pdf": "Oversize Tire Accessory Kit",
    "scanned_no_text/fax_scan_ccitt_3pages.pdf": "行政处罚决定书",
    # Its only text, in a speech bubble, is found on tiles (its third word is dithered past reading).
    "scanned_no_text/xerox_scan_jbig2.pdf": "It Doesn't",
}


def expected_status(entry: dict, with_passwords: bool) -> str:
    """"indexed", or the reason (a prefix of it, for corrupt files) the file must be reported with."""
    category = entry["category"]
    if category in ("text", "multicolumn", "scanned_no_text"):
        return "indexed"
    if category == "encrypted":
        return "indexed" if entry["password"] == "" or with_passwords else "encrypted: password needed"
    if entry["bytes"] == 0:
        return "empty file (0 bytes)"
    if "pypdf_error" in entry:
        return "corrupt PDF: "
    return "indexed"  # corrupted but recoverable


def status_of(result) -> str:
    return "indexed" if result.ok else result.reason


def test_every_shared_pdf_gets_the_status_its_manifest_implies(shared_data_dir):
    pdf_dir = shared_data_dir / "pdfs"
    entries = manifest(shared_data_dir)
    assert len(entries) == 27
    results = ParsePool().map([ParseTask(str(pdf_dir / entry["file"])) for entry in entries])
    for entry, result in zip(entries, results):
        expected = expected_status(entry, with_passwords=False)
        assert status_of(result).startswith(expected), (entry["file"], result.reason)
        if result.ok:
            assert result.page_count == entry["pages"], entry["file"]
            assert result.chunks and all(chunk.content.strip() for chunk in result.chunks)
            assert {chunk.page for chunk in result.chunks} <= set(range(1, entry["pages"] + 1))
        if entry["file"] in SCAN_WORDS:
            assert result.ocr_pages == tuple(range(1, entry["pages"] + 1)), entry["file"]
            text = " ".join(" ".join(chunk.content.split()) for chunk in result.chunks)
            assert SCAN_WORDS[entry["file"]] in text, (entry["file"], text[:300])


def test_encrypted_shared_pdfs_open_with_their_passwords(shared_data_dir):
    pdf_dir = shared_data_dir / "pdfs"
    entries = [entry for entry in manifest(shared_data_dir) if entry["category"] == "encrypted"]
    tasks = [ParseTask(str(pdf_dir / entry["file"]), passwords=(entry["password"],)) for entry in entries]
    for entry, result in zip(entries, ParsePool().map(tasks)):
        assert result.ok, (entry["file"], result.reason)
        assert result.page_count == entry["pages"]


@pytest.mark.slow
def test_indexing_the_shared_pdfs_answers_from_the_right_pages(shared_data_dir, minilm_dir, tmp_path, repo_root):
    """`spanqa index ../shared/data/pdfs` in the API: statuses, and IRS / Federal Register facts found on their pages."""
    from spanqa import DocumentQA

    pdf_dir = shared_data_dir / "pdfs"
    entries = {entry["file"]: entry for entry in manifest(shared_data_dir)}
    reader = shared_data_dir / "models" / "distilbert-base-cased-distilled-squad-arch"
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(reader), device="cpu")
    passwords = {Path(name).name: e["password"] for name, e in entries.items() if e["password"]}
    report = qa.index([pdf_dir], passwords=passwords)
    statuses = {Path(f.source).relative_to(pdf_dir).as_posix(): "indexed" for f in report.indexed}
    statuses.update({Path(s.source).relative_to(pdf_dir).as_posix(): s.reason for s in report.skipped})
    # The folder's manifest is reported too, as a file of a type spanqa does not read.
    assert statuses.pop("manifest.json").startswith("unsupported file type '.json'")
    assert set(statuses) == set(entries)
    for name, entry in entries.items():
        assert statuses[name].startswith(expected_status(entry, with_passwords=True)), (name, statuses[name])

    questions = json.loads((repo_root / "bench" / "indexing_questions.json").read_text(encoding="utf-8"))

    def normalized(text: str) -> str:
        text = re.sub(r"(?<=[a-z])-\s*\n\s*(?=[a-z])", "", text)
        return re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()

    found = 0
    for question in questions:
        passages = qa.search(question["question"], top_k=5)
        found += any(
            Path(p.source).name == question["file"] and p.page in question["pages"]
            and normalized(question["answer"]) in normalized(p.text)
            for p in passages
        )
    assert found >= 0.7 * len(questions), f"{found} of {len(questions)} questions found on their page"
