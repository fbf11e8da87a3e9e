"""A persistent document store: exact cosine search with FAISS, documents in a JSON-lines file.

Layout of an index directory (all written by `save()`, manifest last):

- `manifest.json`: format version, embedder, dimension, metric, document count and the SHA-256
  of the two data files, so a half-written index is detected on open instead of answering wrongly.
- `vectors.faiss`: `IndexIDMap2(IndexFlatIP(dimension))` over L2-normalised float32 vectors, so the
  inner product it ranks by is the cosine similarity.
- `documents.jsonl`: one `{"id", "faiss_id", "content", "meta"}` object per line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from haystack import Document, default_from_dict, default_to_dict
from haystack.document_stores.errors import DuplicateDocumentError
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils.filters import document_matches_filter

from spanqa.errors import ConfigError, IndexMismatchError, IndexNotFoundError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.faiss"
DOCUMENTS_FILE = "documents.jsonl"
METRIC = "cosine"
INDEX_TYPE = "flat"


class FaissDocumentStore:
    """Documents with embeddings, searchable by cosine similarity, saved to and loaded from `index_dir`.

    Implements Haystack's DocumentStore protocol. Changes live in memory until `save()`.
    Documents returned by `filter_documents` and `search` carry no embedding: vectors stay in FAISS.

    `FaissDocumentStore(index_dir)` opens the index saved there. Given `embedder` and `dimension`,
    it also accepts a directory without an index (an empty store is started) and checks that an
    existing index was built with that embedder and dimension. `open()` and `create()` say which of
    the two is meant.
    """

    def __init__(self, index_dir: str | Path, embedder: str | None = None, dimension: int | None = None):
        self.index_dir = Path(index_dir).expanduser().resolve()
        if FaissDocumentStore.exists(self.index_dir):
            self._load()
            self._check_settings(embedder, dimension)
            return
        if embedder is None or dimension is None:
            raise IndexNotFoundError(self.index_dir)
        self._start_empty(embedder, dimension)

    @classmethod
    def open(cls, index_dir: str | Path) -> FaissDocumentStore:
        """The index saved in `index_dir`; IndexNotFoundError when there is none."""
        index_dir = Path(index_dir).expanduser().resolve()
        if not cls.exists(index_dir):
            raise IndexNotFoundError(index_dir)
        return cls(index_dir)

    @classmethod
    def create(
        cls, index_dir: str | Path, embedder: str, dimension: int, overwrite: bool = False
    ) -> FaissDocumentStore:
        """A new, empty store for `index_dir` (the directory is created; files appear on `save()`).

        With `overwrite=True` an index already saved there is replaced on the next `save()`.
        """
        index_dir = Path(index_dir).expanduser().resolve()
        if cls.exists(index_dir) and not overwrite:
            raise ConfigError(
                f"an index already exists at '{index_dir}': open it with FaissDocumentStore.open(), "
                "or pass overwrite=True to replace it"
            )
        store = cls.__new__(cls)
        store.index_dir = index_dir
        store._start_empty(embedder, dimension)
        index_dir.mkdir(parents=True, exist_ok=True)
        return store

    def _start_empty(self, embedder: str, dimension: int) -> None:
        validate_dimension(dimension)
        if not isinstance(embedder, str) or embedder == "":
            raise ConfigError(f"embedder must name a model (hub id or local path), got {embedder!r}")
        self._embedder = embedder
        self._dimension = dimension
        self._index = new_faiss_index(dimension)
        self._documents: dict[str, Document] = {}
        self._faiss_ids: dict[str, int] = {}
        self._document_ids: dict[int, str] = {}  # the reverse of _faiss_ids, for search results
        self._next_faiss_id = 0
        self._chunking: dict[str, Any] | None = None

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        return (Path(index_dir) / MANIFEST_FILE).is_file()

    @property
    def embedder(self) -> str:
        """The model (hub id or absolute local path) whose embeddings this index holds."""
        return self._embedder

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def chunking(self) -> dict[str, Any] | None:
        """How the index's chunks were cut (manifest key "chunking"; None for an index from before it)."""
        return self._chunking

    @chunking.setter
    def chunking(self, settings: dict[str, Any] | None) -> None:
        if settings is not None:
            json.dumps(settings)  # must be recordable in the manifest
        self._chunking = settings

    def source_files(self) -> dict[str, dict[str, Any]]:
        """Each source with its chunk count and the SHA-256 of the file its chunks were cut from
        (`meta["sha256"]`; None for chunks written without it)."""
        files: dict[str, dict[str, Any]] = {}
        for document in self._documents.values():
            source = document.meta.get("source")
            if source is None:
                continue
            entry = files.setdefault(source, {"chunks": 0, "sha256": document.meta.get("sha256"), "pages": 0})
            entry["chunks"] += 1
            entry["pages"] = max(entry["pages"], int(document.meta.get("page_count", 0) or 0))
        return files

    def to_dict(self) -> dict[str, Any]:
        # The documents live in index_dir; the dictionary only says where, and with which model.
        return default_to_dict(
            self, index_dir=str(self.index_dir), embedder=self._embedder, dimension=self._dimension
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaissDocumentStore:
        return default_from_dict(cls, data)

    # DocumentStore protocol

    def count_documents(self) -> int:
        return len(self._documents)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        if filters is None:
            matching = list(self._documents.values())
        else:
            matching = [doc for doc in self._documents.values() if document_matches_filter(filters, doc)]
        return [detached_copy(document) for document in matching]

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        """Adds `documents`; with NONE or FAIL an id already stored, or repeated in `documents`, raises
        DuplicateDocumentError and nothing is written."""
        if not isinstance(documents, list) or not all(isinstance(doc, Document) for doc in documents):
            raise ConfigError("write_documents() takes a list of Documents")
        vectors = self._normalized_embeddings(documents)

        if policy in (DuplicatePolicy.NONE, DuplicatePolicy.FAIL):
            seen: set[str] = set()
            for document in documents:
                if document.id in self._documents or document.id in seen:
                    raise DuplicateDocumentError(f"ID '{document.id}' already exists.")
                seen.add(document.id)

        to_write: dict[str, int] = {}  # id -> row of `documents`; the last of repeated ids wins
        for row, document in enumerate(documents):
            if policy == DuplicatePolicy.SKIP and (document.id in self._documents or document.id in to_write):
                logger.debug("ID '%s' already exists, skipped", document.id)
                continue
            to_write[document.id] = row
        replaced = [doc_id for doc_id in to_write if doc_id in self._documents]
        self.delete_documents(replaced)

        rows = list(to_write.values())
        if len(rows) == 0:
            return 0
        faiss_ids = np.arange(self._next_faiss_id, self._next_faiss_id + len(rows), dtype=np.int64)
        self._index.add_with_ids(vectors[rows], faiss_ids)
        self._next_faiss_id += len(rows)
        for faiss_id, row in zip(faiss_ids.tolist(), rows):
            document = documents[row]
            self._documents[document.id] = replace(document, embedding=None, score=None)
            self._faiss_ids[document.id] = faiss_id
            self._document_ids[faiss_id] = document.id
        return len(rows)

    def delete_documents(self, document_ids: list[str]) -> None:
        """Removes the documents with these ids; ids not in the store are ignored."""
        present = [doc_id for doc_id in dict.fromkeys(document_ids) if doc_id in self._documents]
        if len(present) == 0:
            return
        faiss_ids = np.array([self._faiss_ids[doc_id] for doc_id in present], dtype=np.int64)
        self._index.remove_ids(faiss_ids)
        for doc_id in present:
            del self._documents[doc_id]
            del self._document_ids[self._faiss_ids.pop(doc_id)]

    # Search and bookkeeping beyond the protocol

    def search(self, query_embedding: list[float] | np.ndarray, top_k: int) -> list[Document]:
        """The `top_k` documents most similar to `query_embedding`, best first, `score` = cosine similarity."""
        validate_top_k(top_k)
        query = normalized_rows(np.asarray(query_embedding, dtype=np.float32).reshape(1, -1), self._dimension)
        k = min(top_k, self._index.ntotal)
        if k == 0:
            return []
        scores, faiss_ids = self._index.search(query, k)
        results = []
        for score, faiss_id in zip(scores[0].tolist(), faiss_ids[0].tolist()):
            if faiss_id == -1:
                continue
            results.append(detached_copy(self._documents[self._document_ids[faiss_id]], score=float(score)))
        return results

    def sources(self) -> dict[str, int]:
        """Each distinct `meta["source"]`, sorted, with its number of stored chunks."""
        counts: dict[str, int] = {}
        for document in self._documents.values():
            source = document.meta.get("source")
            if source is not None:
                counts[source] = counts.get(source, 0) + 1
        return dict(sorted(counts.items()))

    def delete_by_source(self, source: str) -> int:
        """Removes every chunk of `source` (before it is indexed again); returns how many were removed."""
        ids = [doc.id for doc in self._documents.values() if doc.meta.get("source") == source]
        self.delete_documents(ids)
        return len(ids)

    # Persistence

    def save(self) -> None:
        """Writes the index to `index_dir`. Every file goes to a temporary name in the same directory, is
        fsynced, and is swapped in with os.replace, manifest last, so no file is ever seen half-written."""
        self.index_dir.mkdir(parents=True, exist_ok=True)
        vectors_bytes = faiss.serialize_index(self._index).tobytes()
        documents_bytes = self._documents_jsonl()
        manifest = {
            "format_version": FORMAT_VERSION,
            "embedder": self._embedder,
            "dimension": self._dimension,
            "metric": METRIC,
            "normalized": True,
            "index_type": INDEX_TYPE,
            "document_count": len(self._documents),
            "chunking": self._chunking,
            "files": {
                VECTORS_FILE: sha256_hex(vectors_bytes),
                DOCUMENTS_FILE: sha256_hex(documents_bytes),
            },
        }
        manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        # The manifest goes last. A crash between two renames leaves data files that do not match the
        # manifest's checksums, which open() reports instead of pairing new vectors with old documents.
        write_atomically(self.index_dir / VECTORS_FILE, vectors_bytes)
        write_atomically(self.index_dir / DOCUMENTS_FILE, documents_bytes)
        write_atomically(self.index_dir / MANIFEST_FILE, manifest_bytes)
        fsync_directory(self.index_dir)

    def _documents_jsonl(self) -> bytes:
        lines = []
        for doc_id, document in self._documents.items():
            record = {
                "id": doc_id,
                "faiss_id": self._faiss_ids[doc_id],
                "content": document.content,
                "meta": document.meta,
            }
            lines.append(json.dumps(record, ensure_ascii=False))
        return "".join(line + "\n" for line in lines).encode("utf-8")

    def _load(self) -> None:
        manifest = self._read_manifest()
        self._start_empty(manifest["embedder"], manifest["dimension"])
        self._chunking = manifest.get("chunking")
        vectors_bytes = self._read_checked(VECTORS_FILE, manifest)
        documents_bytes = self._read_checked(DOCUMENTS_FILE, manifest)
        # Both files matched the manifest's checksums, so what follows reads what save() wrote.
        self._index = faiss.deserialize_index(np.frombuffer(vectors_bytes, dtype=np.uint8))
        # Split on "\n" only: JSON escapes it inside strings, but not U+2028 and the other characters
        # str.splitlines() also breaks at.
        for line in documents_bytes.decode("utf-8").split("\n"):
            if line == "":
                continue
            record = json.loads(line)
            self._documents[record["id"]] = Document(id=record["id"], content=record["content"], meta=record["meta"])
            self._faiss_ids[record["id"]] = record["faiss_id"]
            self._document_ids[record["faiss_id"]] = record["id"]
        counts = {self._index.ntotal, len(self._documents), manifest["document_count"]}
        if not isinstance(self._index, faiss.IndexIDMap2) or self._index.d != self._dimension or len(counts) != 1:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' is inconsistent ({self._index.ntotal} vectors of dimension "
                f"{self._index.d}, {len(self._documents)} documents, manifest says {manifest['document_count']} "
                f"of dimension {self._dimension}): rebuild it"
            )
        self._next_faiss_id = max(self._faiss_ids.values(), default=-1) + 1

    def _read_manifest(self) -> dict[str, Any]:
        path = self.index_dir / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexMismatchError(f"cannot read '{path}' ({exc}): rebuild the index") from exc
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' has format version {version!r}, newer than the version this "
                f"spanqa reads ({FORMAT_VERSION}): upgrade spanqa, or rebuild the index"
            )
        if manifest.get("metric") != METRIC or manifest.get("index_type") != INDEX_TYPE:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' uses metric {manifest.get('metric')!r} and index type "
                f"{manifest.get('index_type')!r}; this spanqa reads only {METRIC!r} / {INDEX_TYPE!r}: rebuild it"
            )
        required = ("embedder", "dimension", "document_count", "files")
        missing = [key for key in required if key not in manifest]
        if len(missing) > 0:
            raise IndexMismatchError(f"'{path}' lacks {', '.join(missing)}: rebuild the index")
        return manifest

    def _read_checked(self, name: str, manifest: dict[str, Any]) -> bytes:
        path = self.index_dir / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IndexMismatchError(f"cannot read '{path}' ({exc.strerror}): rebuild the index") from exc
        if sha256_hex(data) != manifest["files"].get(name):
            raise IndexMismatchError(
                f"'{path}' does not match its manifest (an interrupted save, or a file changed by hand): "
                "rebuild the index"
            )
        return data

    def _check_settings(self, embedder: str | None, dimension: int | None) -> None:
        if embedder is not None and embedder != self._embedder:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' was built with embedder '{self._embedder}', not '{embedder}': "
                "use that embedder, or rebuild the index"
            )
        if dimension is not None and dimension != self._dimension:
            raise IndexMismatchError(
                f"index at '{self.index_dir}' holds {self._dimension}-dimensional embeddings, not {dimension}"
            )

    def _normalized_embeddings(self, documents: list[Document]) -> np.ndarray:
        for document in documents:
            try:
                json.dumps(document.meta)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"document {document.id} has meta that cannot be saved as JSON: {exc}") from exc
            if document.embedding is None:
                raise ConfigError(
                    f"document {document.id} has no embedding: run a document embedder before writing to "
                    "FaissDocumentStore"
                )
            if len(document.embedding) != self._dimension:
                raise IndexMismatchError(
                    f"document {document.id} has a {len(document.embedding)}-dimensional embedding, but the "
                    f"index at '{self.index_dir}' holds {self._dimension}-dimensional embeddings "
                    f"(embedder '{self._embedder}')"
                )
        if len(documents) == 0:
            return np.zeros((0, self._dimension), dtype=np.float32)
        matrix = np.asarray([document.embedding for document in documents], dtype=np.float32)
        return normalized_rows(matrix, self._dimension)


def detached_copy(document: Document, score: float | None = None) -> Document:
    # A caller that edits a returned Document's meta must not edit the store.
    return replace(document, meta=dict(document.meta), score=score)


def validate_top_k(top_k: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")


def validate_dimension(dimension: int) -> None:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise ConfigError(f"dimension must be a positive integer, got {dimension!r}")


def new_faiss_index(dimension: int) -> faiss.IndexIDMap2:
    # IDMap2 keeps our ids stable across deletions and lets vectors be reconstructed by id.
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))


def normalized_rows(matrix: np.ndarray, dimension: int) -> np.ndarray:
    """`matrix` with every row scaled to unit length: inner products of unit vectors are cosines."""
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise IndexMismatchError(f"expected {dimension}-dimensional embeddings, got shape {tuple(matrix.shape)}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
        raise ConfigError("embeddings must be finite and not all zero: cosine similarity is undefined otherwise")
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    file_descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(file_descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def fsync_directory(directory: Path) -> None:
    # Makes the renames themselves durable; not every platform lets a directory be opened for this.
    try:
        directory_descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_descriptor)
    except OSError:
        pass
    finally:
        os.close(directory_descriptor)
