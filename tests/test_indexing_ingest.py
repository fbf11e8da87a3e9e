"""DocumentQA.index end to end on generated files: every file indexed or reported, offsets exact."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from pdf_factory import (
    build_text_pdf,
    write_blank_pdf,
    write_corrupt_pdf,
    write_encrypted_pdf,
    write_fake_pdf,
    write_text_pdf,
    write_truncated_pdf,
)

from spanqa import DocumentQA
from spanqa.indexing import read_pages
from spanqa.indexing.formats.cleaning import clean_pages, same_text
from spanqa.indexing.ingest.parsing import load_tokenizer, password_candidates
from spanqa.indexing.store.faiss_store import FaissDocumentStore

FACTS = [
    "Skarv Point lighthouse was first lit in 1872. Its tower is 28 metres tall and made of granite. "
    "The keepers kept a logbook of every ship that passed the point during the winter storms.",
    "The lens of the lighthouse was made in Paris. It was automated in 1994 and the last keeper left "
    "in the same year. The light can be seen from 19 nautical miles away on a clear night.",
]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    folder = tmp_path_factory.mktemp("docs")
    write_text_pdf(folder / "good.pdf", FACTS)
    shutil.copy(folder / "good.pdf", folder / "good_copy.pdf")
    (folder / "zero.pdf").write_bytes(b"")
    write_truncated_pdf(folder / "truncated.pdf", FACTS)
    write_corrupt_pdf(folder / "corrupt.pdf")
    write_fake_pdf(folder / "fake.pdf")
    write_blank_pdf(folder / "scan.pdf", page_count=2)
    write_encrypted_pdf(folder / "locked.pdf", ["The vault code is 4711."], user_password="sesame")
    write_encrypted_pdf(folder / "mapped.pdf", ["The harbour master is Ingrid Dahl."], user_password="ankh")
    write_encrypted_pdf(folder / "open.pdf", ["Printing is restricted, reading is not."], user_password="")
    (folder / "notes.md").write_text("# Notes\n\nThe ferry leaves at seven.\n", encoding="utf-8")
    qa = DocumentQA(tmp_path_factory.mktemp("kb") / "index", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir),
                    device="cpu")
    report = qa.index([folder], passwords={"mapped.pdf": "ankh"})
    return qa, report, folder


def test_every_file_is_indexed_or_reported_with_its_reason(batch):
    _, report, folder = batch
    indexed = {Path(f.source).name: f for f in report.indexed}
    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    assert set(indexed) | set(reasons) == {p.name for p in folder.iterdir()}
    assert set(indexed) == {"good.pdf", "mapped.pdf", "open.pdf", "notes.md"}
    assert reasons["good_copy.pdf"] == f"duplicate of {folder / 'good.pdf'} (same content)"
    assert reasons["zero.pdf"] == "empty file (0 bytes)"
    assert reasons["truncated.pdf"].startswith("corrupt PDF: ")
    assert reasons["corrupt.pdf"].startswith("corrupt PDF: ")
    assert reasons["fake.pdf"] == "not a PDF (no %PDF header)"
    assert reasons["scan.pdf"] == "no text found, by OCR either (blank pages?)"
    assert reasons["locked.pdf"] == "encrypted: password needed"
    assert indexed["good.pdf"].pages == 2 and indexed["good.pdf"].chunks >= 2
    assert report.chunk_count == sum(f.chunks for f in report.indexed)
    # Reports list files in the order they were found, whatever order the workers finished in.
    assert [f.source for f in report.indexed] == sorted(f.source for f in report.indexed)


def test_passages_point_at_their_page_text(batch):
    qa, _, _ = batch
    passages = qa.search("How tall is the lighthouse tower?", top_k=20)
    assert Path(passages[0].source).name == "good.pdf" and passages[0].page == 1
    for passage in passages:
        page_text = read_pages(Path(passage.source), password="ankh")[passage.page - 1]
        assert passage.text.strip() != ""
        assert same_text(page_text[passage.start : passage.end], passage.text)


def test_answers_point_at_their_page_text(batch):
    qa, _, _ = batch
    for answer in qa.ask("When was the lighthouse automated?", top_k=5):
        page_text = read_pages(Path(answer.source), password="ankh")[answer.page - 1]
        assert same_text(page_text[answer.start : answer.end], answer.text)


def test_the_index_records_how_it_was_chunked(batch, tiny_qa_model_dir):
    qa, _, _ = batch
    manifest = json.loads((qa.index_dir / "manifest.json").read_text(encoding="utf-8"))
    chunking = manifest["chunking"]
    assert chunking["unit"] == "tokens"
    assert chunking["tokenizer"] == str(tiny_qa_model_dir.resolve())
    assert chunking["max_tokens"] > chunking["overlap_tokens"] >= 0


def test_reindexing_keeps_unchanged_files_and_replaces_changed_ones(tmp_path, minilm_dir):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_text_pdf(folder / "a.pdf", [FACTS[0]])
    write_text_pdf(folder / "b.pdf", [FACTS[1]])
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    first = qa.index([folder])
    write_text_pdf(folder / "b.pdf", ["The museum opens at ten. Entry is free on Sundays."])
    second = qa.index([folder])
    assert [f.chunks for f in second.indexed][0] == [f.chunks for f in first.indexed][0]
    texts = " ".join(p.text for p in qa.search("museum", top_k=50))
    assert "museum" in texts and "Paris" not in texts
    assert second.chunk_count == len(qa.search("anything", top_k=100))
    # A moved copy of an indexed file is a duplicate while the original is still there.
    shutil.copy(folder / "a.pdf", tmp_path / "a_again.pdf")
    third = qa.index([tmp_path / "a_again.pdf"])
    assert third.skipped[0].reason == f"duplicate of {folder / 'a.pdf'} (same content, already indexed)"
    # Only indexed files `duplicate_scope` admits count: a copy of any other is indexed as its own file.
    outside = qa.index([tmp_path / "a_again.pdf"], duplicate_scope=lambda source: not source.startswith(f"{folder}/"))
    assert [Path(f.source).name for f in outside.indexed] == ["a_again.pdf"] and outside.skipped == []
    # Every path a run was given is recorded as a root of the index (what a service shows paths under).
    assert FaissDocumentStore.open(tmp_path / "kb").roots() == sorted([str(folder), str(tmp_path / "a_again.pdf")])


def test_a_new_index_stopped_after_its_first_commit_resumes_where_it_stopped(tmp_path, minilm_dir, monkeypatch, parsed_names):
    from spanqa.indexing.ingest import indexer as ingest

    folder = tmp_path / "docs"
    folder.mkdir()
    names = [f"note{n}.md" for n in range(4)]
    for n, name in enumerate(names):
        (folder / name).write_text(f"# Note {n}\n\n{FACTS[n % 2]}\n", encoding="utf-8")

    def stop(source: str) -> None:
        raise KeyboardInterrupt

    flush = ingest.Ingest._flush

    def one_commit_per_file(self, pending, result):
        for item in pending:
            flush(self, [item], result)

    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(ingest.Ingest, "_flush", one_commit_per_file)
        qa.index([folder], on_file_done=stop)
    committed = {Path(f.source).name for f in DocumentQA(tmp_path / "kb").files()}
    assert len(committed) == 1

    parsed = parsed_names
    parsed.clear()
    report = qa.index([folder])
    assert sorted(Path(f.source).name for f in report.indexed) == names
    # The first commit recorded how the index cuts chunks: the files it holds are unchanged, kept.
    assert sorted(parsed) == sorted(set(names) - committed)


def test_cleaned_chunks_map_back_through_hyphens_and_running_headers(tmp_path, minilm_dir):
    pages = [
        f"Harbour Handbook  Page {n}\n\nThe harbour of Skarv Point has a deep-water quay built in 18{n}0. The "
        f"infor-\nmation office on the quay sells tickets for the ferry number {n}.\n\nSkarv Point Harbour Authority"
        for n in range(1, 6)
    ]
    path = tmp_path / "handbook.pdf"
    path.write_bytes(build_text_pdf(pages))
    raw_pages = read_pages(path)
    assert any("infor-" in page for page in raw_pages), "the PDF must keep the hyphenated line break"
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    qa.index(path)
    passages = qa.search("information office tickets", top_k=10)
    cleaned = clean_pages(raw_pages)
    for passage in passages:
        assert "Harbour Handbook" not in passage.text and "Harbour Authority" not in passage.text
        assert "information office" in passage.text
        raw = raw_pages[passage.page - 1]
        assert same_text(raw[passage.start : passage.end], passage.text)
        clean = cleaned[passage.page - 1]
        offset = clean.text.index(passage.text)
        assert clean.raw_span(offset, offset + len(passage.text)) == (passage.start, passage.end)


def test_chunks_fit_the_token_budget(tmp_path, minilm_dir, tiny_qa_model_dir):
    text = " ".join(f"Sentence number {i} tells the reader about harbour item {i}." for i in range(60))
    path = write_text_pdf(tmp_path / "long.pdf", [text[:4000]])
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu")
    report = qa.index(path)
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text(encoding="utf-8"))["chunking"]
    tokenizer = load_tokenizer(str(tiny_qa_model_dir / "tokenizer.json"))
    passages = qa.search("harbour item", top_k=100)
    assert len(passages) == report.chunk_count > 1
    budget = manifest["max_tokens"] + 2 * manifest["overlap_tokens"]
    for passage in passages:
        assert len(tokenizer.encode(passage.text, add_special_tokens=False).ids) <= budget


def test_without_the_readers_tokenizer_sizes_are_estimated(tmp_path, minilm_dir):
    (tmp_path / "reader-without-files").mkdir()  # a path that is not there is refused where it is given
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(tmp_path / "reader-without-files"), device="cpu")
    qa.index(write_text_pdf(tmp_path / "a.pdf", [FACTS[0]]))
    chunking = json.loads((tmp_path / "kb" / "manifest.json").read_text(encoding="utf-8"))["chunking"]
    assert chunking["unit"] == "estimated tokens (words)" and chunking["tokenizer"] is None


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_reported(tmp_path, minilm_dir):
    path = write_text_pdf(tmp_path / "private.pdf", ["Private."])
    path.chmod(0)
    try:
        report = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu").index(path)
    finally:
        path.chmod(0o644)
    assert report.skipped[0].reason == "cannot read file: Permission denied"


def test_password_candidates_match_by_name_path_or_absolute_path(tmp_path):
    path = tmp_path / "sub" / "file.pdf"
    assert password_candidates(path, None, None) == ()
    assert password_candidates(path, "global", {"file.pdf": "named"}) == ("named", "global")
    assert password_candidates(path, None, {"sub/file.pdf": "trailing"}) == ("trailing",)
    assert password_candidates(path, None, {str(path): "absolute", "other.pdf": "no"}) == ("absolute",)
