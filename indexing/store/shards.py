"""An index split into shards, searched as one: each shard is a whole spanqa index (its own folder,
commits and segments), and `shards.json` in the parent folder lists them.

A file lives in exactly one shard, chosen by a hash of its path (`shard_of`), so a write of a file
touches one shard and each shard's commits stay atomic on their own; a writer block commits the
shards one after another (a crash between them leaves every shard consistent, and an indexing run
again redoes what is missing, as on one index).

Searches fan out to every shard and merge:

- dense (`search`): each shard returns its own top k by cosine similarity; the merged top k is the
  top k of one index holding every chunk, exactly, as the scores are the same cosines wherever a
  chunk is stored (equal scores are ordered by document id);
- keyword (`keyword_search`): each shard ranks by its own BM25, whose statistics are the shard's
  (chunk count, average length, how many chunks hold each word), so a score depends a little on
  which shard a chunk is in; merged by score, the ranking is close to one index's when files are
  spread by hash, not equal (`bench/sharded_search.py` measures how close).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from haystack import Document, default_from_dict, default_to_dict
from haystack.document_stores.types import DuplicatePolicy

from spanqa.atomic_files import write_json_atomically
from spanqa.errors import (
    ConfigError,
    IndexMismatchError,
    IndexNotFoundError,
    check_positive_int,
)
from spanqa.file_modes import private_folder
from spanqa.indexing.store.chunk_database import FileChunks, StoredFile, files_by_source
from spanqa.indexing.store.commits import CommitReport
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.indexing.store.tuning import IndexTuning
from spanqa.paths import user_path

SHARDS_FILE = "shards.json"
SHARDS_FORMAT = 1


def index_exists(index_dir: str | Path) -> bool:
    """Whether `index_dir` holds an index, sharded or not."""
    return ShardedStore.exists(index_dir) or FaissDocumentStore.exists(index_dir)


def open_index(index_dir: str | Path, settings: IndexTuning | None = None) -> FaissDocumentStore | ShardedStore:
    """The index in `index_dir`: a ShardedStore where `shards.json` lists shards, else the one index."""
    if ShardedStore.exists(index_dir):
        return ShardedStore(index_dir, settings=settings)
    return FaissDocumentStore.open(index_dir, settings=settings)


def shard_of(source: str, count: int) -> int:
    """The shard a file's chunks live in: a hash of its path, so every writer agrees."""
    return int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big") % count


def merged(lists: list[list[Document]], top_k: int) -> list[Document]:
    """The `top_k` best of several ranked lists, by score (equal scores by document id)."""
    every = [document for documents in lists for document in documents]
    return sorted(every, key=lambda document: (-(document.score or 0.0), document.id))[:top_k]


class ShardedStore:
    """The shards listed in `index_dir/shards.json`, behind the store's read and write methods."""

    def __init__(self, index_dir: str | Path, settings: IndexTuning | None = None):
        self.index_dir = user_path(index_dir)
        path = self.index_dir / SHARDS_FILE
        if not path.is_file():
            raise IndexNotFoundError(self.index_dir)
        try:
            listing = json.loads(path.read_text(encoding="utf-8"))
            names = listing["shards"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexMismatchError(f"cannot read '{path}' ({exc}): it must list the shard folders") from exc
        if listing.get("format") != SHARDS_FORMAT or not isinstance(names, list) or not names:
            raise IndexMismatchError(f"'{path}' is not a shard list of format {SHARDS_FORMAT} with at least one shard")
        self.shards = [FaissDocumentStore.open(self.index_dir / name, settings=settings) for name in names]
        first = self.shards[0]
        for name, shard in zip(names, self.shards):
            if (shard.embedder, shard.dimension, shard.embedding) != (first.embedder, first.dimension, first.embedding):
                raise IndexMismatchError(
                    f"shard '{name}' of '{self.index_dir}' was built with embedder '{shard.embedder}' "
                    f"({shard.dimension} dimensions), shard '{names[0]}' with '{first.embedder}' ({first.dimension}): "
                    "every shard must be built alike; rebuild the odd one"
                )

    @staticmethod
    def exists(index_dir: str | Path) -> bool:
        return (user_path(index_dir) / SHARDS_FILE).is_file()

    @classmethod
    def create(
        cls, index_dir: str | Path, count: int, embedder: str, dimension: int, *,
        index_type: str | None = None, embedding: dict[str, Any] | None = None, settings: IndexTuning | None = None,
    ) -> ShardedStore:
        """`count` new, empty shards `shard-0`... in `index_dir`, and the list naming them (written last:
        the folder is a sharded index once it has one)."""
        check_positive_int("shards", count)
        index_dir = user_path(index_dir)
        if cls.exists(index_dir) or FaissDocumentStore.exists(index_dir):
            raise ConfigError(f"an index already exists at '{index_dir}': shard a new folder")
        names = [f"shard-{number}" for number in range(count)]
        private_folder(index_dir)  # a new folder 0700, as each shard's (issue 24)
        for name in names:
            FaissDocumentStore.create(
                index_dir / name, embedder=embedder, dimension=dimension, index_type=index_type,
                embedding=embedding, settings=settings,
            ).close()
        write_json_atomically(index_dir / SHARDS_FILE, {"format": SHARDS_FORMAT, "shards": names})
        return cls(index_dir, settings=settings)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    # -- what the index is ---------------------------------------------------------------------

    @property
    def embedder(self) -> str:
        return self.shards[0].embedder

    @property
    def embedding(self) -> dict[str, Any] | None:
        return self.shards[0].embedding

    @property
    def dimension(self) -> int:
        return self.shards[0].dimension

    @property
    def generation(self) -> tuple[int, ...]:
        """One generation per shard: changes whenever any shard commits new vectors."""
        return tuple(shard.generation for shard in self.shards)

    @property
    def chunking(self) -> dict[str, Any] | None:
        return self.shards[0].chunking

    @chunking.setter
    def chunking(self, settings: dict[str, Any] | None) -> None:
        for shard in self.shards:
            shard.chunking = settings

    def roots(self) -> list[str]:
        """The indexed roots (`FaissDocumentStore.roots`), kept in the first shard: one place."""
        return self.shards[0].roots()

    def add_roots(self, paths: Iterable[str | Path]) -> None:
        self.shards[0].add_roots(paths)

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[ShardedStore]:
        """Every shard's writer block: on success each shard commits (one after another)."""
        with ExitStack() as blocks:
            for shard in self.shards:
                blocks.enter_context(shard.writer())
            yield self

    def _shard_number(self, document: Document) -> int:
        source = document.meta.get("source")
        if not isinstance(source, str):
            raise ConfigError(f"document {document.id} has no meta 'source': a sharded index places chunks by their file")
        return shard_of(source, len(self.shards))

    def write_documents(self, documents: list[Document], policy: DuplicatePolicy = DuplicatePolicy.NONE) -> int:
        by_shard: dict[int, list[Document]] = {}
        for document in documents:
            by_shard.setdefault(self._shard_number(document), []).append(document)
        with self.writer():
            return sum(self.shards[number].write_documents(part, policy=policy) for number, part in sorted(by_shard.items()))

    def delete_documents(self, document_ids: list[str]) -> None:
        with self.writer():
            for shard in self.shards:
                shard.delete_documents(document_ids)

    def delete_by_source(self, source: str) -> int:
        return self.shards[shard_of(source, len(self.shards))].delete_by_source(source)

    def compact(self) -> CommitReport:
        reports = [shard.compact() for shard in self.shards]
        return CommitReport(
            sum(r.bytes_written for r in reports), sum(r.segments_written for r in reports),
            sum(r.segments_merged for r in reports),
        )

    def to_dict(self) -> dict[str, Any]:
        # The chunks live in the shard folders; the dictionary only says where.
        return default_to_dict(self, index_dir=str(self.index_dir))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardedStore:
        return default_from_dict(cls, data)

    # -- reading -------------------------------------------------------------------------------

    def count_documents(self) -> int:
        return sum(shard.count_documents() for shard in self.shards)

    def filter_documents(self, filters: dict[str, Any] | None = None) -> list[Document]:
        return [document for shard in self.shards for document in shard.filter_documents(filters)]

    def files(self) -> list[StoredFile]:
        return sorted((stored for shard in self.shards for stored in shard.files()), key=lambda stored: stored.source)

    def source_files(self) -> dict[str, dict[str, Any]]:
        return files_by_source(self.files())

    def file_chunks(self, source: str) -> FileChunks | None:
        return self.shards[shard_of(source, len(self.shards))].file_chunks(source)

    def sources(self) -> dict[str, int]:
        return dict(sorted((source, count) for shard in self.shards for source, count in shard.sources().items()))

    def search(self, query_embedding: list[float] | np.ndarray, top_k: int, filters: dict[str, Any] | None = None) -> list[Document]:
        return merged([shard.search(query_embedding, top_k, filters) for shard in self.shards], top_k)

    def keyword_search(self, query: str, top_k: int, filters: dict[str, Any] | None = None) -> list[Document]:
        return merged([shard.keyword_search(query, top_k, filters) for shard in self.shards], top_k)

    def similarities(self, query_embedding: list[float] | np.ndarray, document_ids: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for shard in self.shards:
            found.update(shard.similarities(query_embedding, document_ids))
        return found

    def verify(self) -> list[str]:
        problems = []
        for number, shard in enumerate(self.shards):
            problems += [f"shard {number}: {problem}" for problem in shard.verify()]
            misplaced = [source for source in shard.sources() if shard_of(source, len(self.shards)) != number]
            if misplaced:
                problems.append(f"shard {number} holds {len(misplaced)} file(s) of other shards, e.g. {misplaced[0]}")
        return problems
