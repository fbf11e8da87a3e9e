"""The indexed files as the service shows them: stable ids, display names, and each token's view.

A file's id is derived from its indexed path (`file_id`), so it is stable across restarts and
re-indexing and needs no table of its own; the path itself stays on the server, and users see its
display form (`service.paths`: relative to the indexed roots, an upload as folder/name). Every lookup goes
through a principal: a file outside a token's scope is reported exactly like a file that does not
exist, so ids and names never leak across scopes.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanqa.service.database import ServiceDatabase
from spanqa.service.paths import PathView
from spanqa.service.tokens import Principal

FILE_ID_CHARS = 16  # hex digits of SHA-256(path): 64 bits, no collision in any real collection


def file_id(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:FILE_ID_CHARS]


def file_type(source: str) -> str:
    return Path(source).suffix.lower().lstrip(".")


@dataclass(frozen=True)
class CatalogFile:
    id: str
    source: str  # the absolute path: for the server only
    shown: str  # what users see as the file's `source` (service.paths)
    name: str
    pages: int
    chunks: int
    indexed_at: str
    sha256: str | None

    @property
    def file_type(self) -> str:
        return file_type(self.source)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.shown, "name": self.name, "pages": self.pages, "chunks": self.chunks,
            "indexed_at": self.indexed_at, "file_type": self.file_type,
        }


@dataclass(frozen=True)
class CatalogSnapshot:
    """The files as of one commit of the index: lookups by id and by path, without touching the store."""

    by_id: dict[str, CatalogFile]
    by_source: dict[str, CatalogFile]
    paths: PathView = field(default_factory=PathView)

    def files(self, principal: Principal) -> list[CatalogFile]:
        return [entry for entry in self.by_id.values() if principal.may_see(entry.source)]

    def sources_shown_as(self, shown: str) -> list[str]:
        """The server paths of the files users see as `shown` (their `source`; one, unless two roots
        share a name). For the service's own use: the token's scope still applies to what is found."""
        return [entry.source for entry in self.by_id.values() if entry.shown == shown]

    def visible(self, identifier: str, principal: Principal) -> CatalogFile | None:
        """The file with this id, if it exists and `principal` may see it; else None (a 404 either way)."""
        entry = self.by_id.get(identifier)
        if entry is None or not principal.may_see(entry.source):
            return None
        return entry

    def entry_for(self, source: str) -> CatalogFile | None:
        """The file indexed under `source` (for the service's own use: no scope check)."""
        return self.by_source.get(source)

    def name_of(self, source: str) -> str:
        entry = self.by_source.get(source)
        return entry.name if entry is not None else Path(source).name

    def shown(self, source: str) -> str:
        """What users see of the indexed path `source` (never the path itself)."""
        entry = self.by_source.get(source)
        return entry.shown if entry is not None else self.paths.source(source)


class FileCatalog:
    """The store's file list with ids and names, read again whenever the index commits.

    `snapshot()` reads the store (a SQLite snapshot): call it off the event loop, once per request.
    """

    def __init__(self, store: Any, database: ServiceDatabase, uploads_dir: Path, index_dir: Path):
        self._store = store
        self._database = database
        self._lock = threading.Lock()
        self._version: object = None
        self._folders = PathView(uploads_dir=str(uploads_dir), index_dir=str(index_dir))
        self._snapshot = CatalogSnapshot({}, {}, self._folders)

    @property
    def paths(self) -> PathView:
        """How paths were shown as of the last snapshot (without reading the store: for error messages)."""
        return self._snapshot.paths

    def snapshot(self) -> CatalogSnapshot:
        # Every commit that adds or removes a file writes vectors, which moves the generation; a run
        # may record a root without (its files were indexed before).
        version = (self._store.generation, self._database.uploads_version, tuple(self._store.roots()))
        with self._lock:
            if version != self._version:
                names = self._database.upload_names()
                paths = PathView(version[2], self._folders.uploads_dir, self._folders.index_dir, names)
                files = [
                    CatalogFile(
                        id=file_id(stored.source), source=stored.source, shown=paths.source(stored.source),
                        name=names.get(stored.source, Path(stored.source).name), pages=stored.pages,
                        chunks=stored.chunks, indexed_at=stored.indexed_at, sha256=stored.sha256,
                    )
                    for stored in self._store.files()
                ]
                self._snapshot = CatalogSnapshot(
                    {entry.id: entry for entry in files}, {entry.source: entry for entry in files}, paths
                )
                self._version = version
            return self._snapshot
