"""The peer of `bench/service.py`: a Haystack extractive QA pipeline served by hayhooks.

Query pipeline (what hayhooks serves as POST /squad_qa/run {"question": ...}):
    SentenceTransformersTextEmbedder -> FAISSEmbeddingRetriever (faiss-haystack, index on disk)
    -> TransformersExtractiveReader

Indexing (run once before the server starts, as a script; not part of any timing):
    python pipeline_wrapper.py index --texts DIR --index PATH --embedder MODEL [--device cpu|cuda]
    TextFileToDocument -> DocumentSplitter -> SentenceTransformersDocumentEmbedder
    -> DocumentWriter(FAISSDocumentStore), then FAISSDocumentStore.save(PATH)

Settings come from environment variables, the way a hayhooks deployment is configured (hayhooks
loads this file itself, so there is no command line to pass them on): SQUAD_QA_INDEX (the saved
store's path), SQUAD_QA_EMBEDDER, SQUAD_QA_READER (model directories), SQUAD_QA_DEVICE (cpu or
cuda; default cpu), SQUAD_QA_PASSAGES (retriever top_k, default 10), SQUAD_QA_ANSWERS (reader
top_k, default 5).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from haystack import Pipeline
from haystack.utils import ComponentDevice
from haystack_integrations.components.embedders.sentence_transformers import (
    SentenceTransformersDocumentEmbedder,
    SentenceTransformersTextEmbedder,
)
from haystack_integrations.components.readers.transformers import TransformersExtractiveReader
from haystack_integrations.components.retrievers.faiss import FAISSEmbeddingRetriever
from haystack_integrations.document_stores.faiss import FAISSDocumentStore

try:
    from hayhooks import BasePipelineWrapper
except ImportError:  # indexing runs without hayhooks installed
    BasePipelineWrapper = object  # type: ignore[assignment,misc]

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2


def _device(name: str) -> ComponentDevice:
    return ComponentDevice.from_str("cuda:0" if name == "cuda" else name)


def build_query_pipeline(index: str, embedder: str, reader: str, device: str, passages: int, answers: int) -> Pipeline:
    store = FAISSDocumentStore(index_path=index, embedding_dim=EMBEDDING_DIM)
    if store.count_documents() == 0:
        raise SystemExit(f"no documents in the FAISS store at {index}: index first (python {__file__} index ...)")
    pipeline = Pipeline()
    # progress_bar=False: a server has no terminal to draw a bar per question on.
    pipeline.add_component(
        "embedder",
        SentenceTransformersTextEmbedder(
            model=embedder, device=_device(device), progress_bar=False, normalize_embeddings=True, local_files_only=True
        ),
    )
    pipeline.add_component("retriever", FAISSEmbeddingRetriever(document_store=store, top_k=passages))
    # no_answer=False: spanqa returns no empty "no answer" entry either (and the top answer must be a span).
    pipeline.add_component(
        "reader", TransformersExtractiveReader(model=reader, device=_device(device), top_k=answers, no_answer=False)
    )
    pipeline.connect("embedder.embedding", "retriever.query_embedding")
    pipeline.connect("retriever.documents", "reader.documents")
    return pipeline


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = build_query_pipeline(
            index=os.environ["SQUAD_QA_INDEX"],
            embedder=os.environ["SQUAD_QA_EMBEDDER"],
            reader=os.environ["SQUAD_QA_READER"],
            device=os.environ.get("SQUAD_QA_DEVICE", "cpu"),
            passages=int(os.environ.get("SQUAD_QA_PASSAGES", "10")),
            answers=int(os.environ.get("SQUAD_QA_ANSWERS", "5")),
        )
        # Models load now, not on the first question.
        self.pipeline.warm_up()

    def run_api(self, question: str) -> dict:
        """Answers a question with spans quoted from the indexed documents."""
        result = self.pipeline.run({"embedder": {"text": question}, "reader": {"query": question}})
        return {
            "answers": [
                {
                    "text": answer.data,
                    "score": answer.score,
                    "file": answer.document.meta.get("file_path") if answer.document else None,
                    "start": answer.document_offset.start if answer.document_offset else None,
                    "end": answer.document_offset.end if answer.document_offset else None,
                }
                for answer in result["reader"]["answers"]
            ]
        }


def index(texts: Path, index_path: Path, embedder: str, device: str) -> int:
    from haystack.components.converters import TextFileToDocument
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.writers import DocumentWriter

    store = FAISSDocumentStore(embedding_dim=EMBEDDING_DIM)
    pipeline = Pipeline()
    pipeline.add_component("converter", TextFileToDocument())
    pipeline.add_component("splitter", DocumentSplitter())
    pipeline.add_component(
        "embedder",
        SentenceTransformersDocumentEmbedder(
            model=embedder, device=_device(device), progress_bar=False, normalize_embeddings=True, local_files_only=True
        ),
    )
    pipeline.add_component("writer", DocumentWriter(document_store=store))
    pipeline.connect("converter.documents", "splitter.documents")
    pipeline.connect("splitter.documents", "embedder.documents")
    pipeline.connect("embedder.documents", "writer.documents")
    files = sorted(str(path) for path in texts.rglob("*.txt"))
    pipeline.run({"converter": {"sources": files}})
    index_path.parent.mkdir(parents=True, exist_ok=True)
    store.save(index_path)
    return store.count_documents()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the peer's FAISS store from a folder of text files.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("index")
    build.add_argument("--texts", type=Path, required=True)
    build.add_argument("--index", type=Path, required=True, help="store path (PATH.faiss and PATH.json are written)")
    build.add_argument("--embedder", required=True)
    build.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    count = index(args.texts, args.index, args.embedder, args.device)
    print(f"{count} chunks written to {args.index}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
