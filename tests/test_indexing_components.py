"""The Haystack indexing components (PageConverter -> PageChunker -> embedder -> ChunkEmbeddings)
yield exactly the chunks `DocumentQA.index` stores: texts, offsets, ids, meta and vectors."""

from __future__ import annotations

import re
from pathlib import Path

import docx
import openpyxl
import pptx
import pytest
from haystack import Document, Pipeline
from pdf_factory import write_text_pdf

from spanqa import DocumentQA
from spanqa.chunk_meta import ChunkMeta
from spanqa.errors import ConfigError
from spanqa.indexing import read_pages
from spanqa.indexing.formats.cleaning import same_text
from spanqa.indexing.ingest.chunking import ChunkEmbeddings, PageChunker
from spanqa.indexing.ingest.converters import PageConverter, ReadSettings
from spanqa.indexing.ingest.parsing import ChunkSettings

PROSE = (
    "The harbour of Skarv Point has a deep-water quay built in 1880. The infor-\nmation office on the quay "
    "sells tickets for the ferry. Ferries leave every hour from seven in the morning.\nThe last ferry "
    "returns at ten in the evening. "
)


def write_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    two_pages = write_text_pdf(folder / "two_pages.pdf", [PROSE * 6, "Second page. " + PROSE * 4])
    # Running headers and footers are found across a file's pages: cleaning must see them together.
    headed = write_text_pdf(
        folder / "headed.pdf",
        [f"Harbour Handbook  Page {n}\n\n{PROSE * 2}\n\nSkarv Point Harbour Authority" for n in range(1, 5)],
    )
    text = folder / "notes.txt"
    text.write_text(PROSE * 8 + "\f" + "A second page of notes. " * 20, encoding="utf-8")
    markdown = folder / "guide.md"
    markdown.write_text("# Guide\n\n" + PROSE * 5 + "\n\n- first item\n- second item\n", encoding="utf-8")
    html = folder / "page.html"
    html.write_text(f"<html><head><title>x</title></head><body><h1>Ferry</h1><p>{PROSE * 5}</p></body></html>",
                    encoding="utf-8")
    return [two_pages, headed, text, markdown, html, *write_office_files(folder)]


def write_office_files(folder: Path) -> list[Path]:
    document = docx.Document()
    document.add_paragraph(PROSE * 3)
    table = document.add_table(rows=2, cols=2)
    for cell, value in zip(table.rows[0].cells + table.rows[1].cells, ("Ferry", "Leaves", "Morning", "07:00")):
        cell.text = value
    document.save(folder / "harbour.docx")
    deck = pptx.Presentation()
    for title in ("Skarv Point", "Ferries"):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = PROSE * 2
    deck.save(folder / "talk.pptx")
    workbook = openpyxl.Workbook()
    workbook.active.append(["Ferry", "Leaves", "Returns"])
    for hour in range(7, 22):
        workbook.active.append([f"Ferry {hour}", f"{hour}:00", f"{hour}:45"])
    workbook.save(folder / "timetable.xlsx")
    return [folder / "harbour.docx", folder / "talk.pptx", folder / "timetable.xlsx"]


def component_pipeline(chunk_settings: ChunkSettings, embedder) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("converter", PageConverter(ReadSettings()))
    pipeline.add_component("chunker", PageChunker(chunk_settings))
    pipeline.add_component("embedder", embedder)
    pipeline.add_component("embeddings", ChunkEmbeddings())
    pipeline.connect("converter.documents", "chunker.documents")
    pipeline.connect("chunker.cores", "embedder.documents")
    pipeline.connect("chunker.documents", "embeddings.documents")
    pipeline.connect("embedder.documents", "embeddings.cores")
    return pipeline


def test_a_pipeline_of_our_components_yields_the_chunks_index_stores(tmp_path, minilm_dir, tiny_qa_model_dir):
    from spanqa.indexing import FaissDocumentStore
    from spanqa.indexing.retrieval.embedders import make_document_embedder
    from spanqa.indexing.retrieval.embedding import EmbeddingSettings

    files = write_files(tmp_path / "docs")
    meta = {"team": "harbour", "tag": ["ferry", "quay"]}
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu",
                    embedder_precision="float32")
    report = qa.index(files, meta=meta)
    assert report.skipped == [] and len(report.indexed) == len(files)

    store = FaissDocumentStore.open(tmp_path / "kb")
    settings = ChunkSettings.from_manifest(store.chunking)
    assert settings == ChunkSettings.for_reader(str(tiny_qa_model_dir.resolve()))
    embedder = make_document_embedder(str(minilm_dir), "cpu", EmbeddingSettings.from_dict(store.embedding))
    result = component_pipeline(settings, embedder).run(
        {"converter": {"sources": [str(f) for f in files], "meta": meta}}
    )
    built = {document.id: document for document in result["embeddings"]["documents"]}
    stored = {document.id: document for document in store.filter_documents()}

    assert result["converter"]["skipped"] == []
    assert len(built) == len(result["embeddings"]["documents"]) == report.chunk_count
    assert set(built) == set(stored)
    for identifier, document in built.items():
        assert document.content == stored[identifier].content
        assert document.meta == stored[identifier].meta
    # The cleaning ran across pages (headers gone, hyphenated word joined) and offsets hold.
    metas = [ChunkMeta.from_meta(document.meta) for document in built.values()]
    assert {meta.file_type for meta in metas} == {"pdf", "txt", "md", "html", "docx", "pptx", "xlsx"}
    assert {meta.page for meta in metas if meta.file_type == "pptx"} == {1, 2}  # a page per slide
    assert any(meta.pieces is not None for meta in metas)
    for document, chunk in zip(built.values(), metas):
        if chunk.file_type == "pdf":  # only PDF text is cleaned
            assert "Harbour Handbook" not in document.content and "infor-" not in document.content
        page_text = read_pages(Path(chunk.source))[chunk.page - 1]
        assert same_text(page_text[chunk.start : chunk.end], document.content)
        assert chunk.extra == meta
    # The vectors are those of the cores, as the index embeds them.
    for identifier, document in built.items():
        similarity = store.similarities(document.embedding, [identifier])[identifier]
        assert similarity == pytest.approx(1.0, abs=1e-4)


def test_page_chunker_cuts_context_chunks_whose_cores_partition_the_page(tmp_path):
    path = write_text_pdf(tmp_path / "a.pdf", [PROSE * 12])
    pages = PageConverter(ReadSettings(ocr="off")).run(sources=[str(path)])["documents"]
    result = PageChunker(ChunkSettings(max_tokens=40, overlap_tokens=10)).run(documents=pages)
    chunks, cores = result["documents"], result["cores"]
    assert len(chunks) > 3 and [core.id for core in cores] == [chunk.id for chunk in chunks]
    for chunk, core in zip(chunks, cores):
        assert core.content in chunk.content and len(core.content) < len(chunk.content)
    # Cores partition the page's words; chunks overlap.
    joined = pages[0].content.count("infor-\n")  # cleaning joins "infor-\nmation" into one word
    assert sum(len(core.content.split()) for core in cores) == len(pages[0].content.split()) - joined > 0
    # Ids are stable across runs.
    again = PageChunker(ChunkSettings(max_tokens=40, overlap_tokens=10)).run(documents=pages)["documents"]
    assert [chunk.id for chunk in again] == [chunk.id for chunk in chunks]


def test_page_chunker_serialization_round_trip(tiny_qa_model_dir):
    settings = ChunkSettings.for_reader(str(tiny_qa_model_dir))
    chunker = PageChunker(ChunkSettings(**{**settings.__dict__, "max_tokens": 100, "mode": "overlap"}))
    data = chunker.to_dict()
    assert data["type"] == "spanqa.indexing.ingest.chunking.PageChunker"
    assert data["init_parameters"]["settings"]["max_tokens"] == 100
    assert PageChunker.from_dict(data).settings == chunker.settings
    assert PageChunker.from_dict(PageChunker().to_dict()).settings == ChunkSettings()


def test_a_pipeline_of_the_components_serializes_and_runs_again(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("# Title\n\n" + PROSE * 3, encoding="utf-8")
    pipeline = Pipeline()
    pipeline.add_component("converter", PageConverter(ReadSettings(ocr="off")))
    pipeline.add_component("chunker", PageChunker(ChunkSettings(max_tokens=30, overlap_tokens=5)))
    pipeline.connect("converter.documents", "chunker.documents")
    restored = Pipeline.loads(pipeline.dumps(), allowed_modules=["spanqa"])
    first = pipeline.run({"converter": {"sources": [str(path)]}})["chunker"]["documents"]
    second = restored.run({"converter": {"sources": [str(path)]}})["chunker"]["documents"]
    assert len(first) > 1 and first == second


def test_page_chunker_refuses_documents_that_are_not_whole_pages():
    with pytest.raises(ConfigError, match=re.escape("lacks 'source', 'page', 'start', 'end'")):
        PageChunker().run(documents=[Document(content="Some text.", meta={"file_path": "a.txt"})])
    part = ChunkMeta(source="/a.txt", file_type="txt", page=1, page_count=1, start=5, end=15)
    with pytest.raises(ConfigError, match="whole pages"):
        PageChunker().run(documents=[Document(content="Some text.", meta=part.to_meta())])


def test_chunk_embeddings_name_a_chunk_without_an_embedded_core():
    chunk = Document(id="c1", content="A chunk.")
    with pytest.raises(ConfigError, match="c1"):
        ChunkEmbeddings().run(documents=[chunk], cores=[Document(id="other", content="x", embedding=[0.1])])
