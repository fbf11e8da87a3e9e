"""The commit protocol: what a reader sees, how a write becomes one atomic commit, how segments merge.

A write holds SQLite's write lock (BEGIN IMMEDIATE) from its first change to its commit. Vectors it
adds wait in memory (`PendingVectors`); vectors it deletes are rows of `deleted` in the open
transaction. `commit` writes the added vectors as one new segment file (temporary name, fsync,
rename), carries out the merges the size policy asks for (each merged segment likewise a new file),
and then commits the SQLite transaction that names the new set of segments: that COMMIT is the one
commit point. A crash before it leaves only files no commit names, which the next writer removes; a
crash after it, only the merged-away files, removed likewise. So a commit writes O(what changed)
bytes outside SQLite, plus the merges, which rewrite each vector about log_factor(n / floor) times
over its life (`plan_merges`).

A reader reads inside a SQLite read transaction (a WAL snapshot) and opens the segment files that
snapshot names (segments never change, so those already open are kept); if a writer removed one in
between, it reads again from a fresh snapshot.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spanqa.atomic_files import is_leftover
from spanqa.errors import IndexBusyError, IndexMismatchError
from spanqa.indexing.store.chunk_database import ChunkDatabase
from spanqa.indexing.store.keyword import ensure_cjk_index
from spanqa.indexing.store.segment_search import stack_shared
from spanqa.indexing.store.tuning import IndexTuning
from spanqa.indexing.store.vector_segments import (
    QUANTIZER_PREFIX,
    SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
    LiveSegment,
    PendingVectors,
    Quantizer,
    Segment,
    build_index,
    is_segment_file,
    quantizer_wanted,
    read_quantizer,
    read_segment,
    segment_structure,
    train_quantizer,
    write_segment,
)

logger = logging.getLogger(__name__)

EMPTY_IDS = np.zeros(0, dtype=np.int64)
READ_ATTEMPTS = 5


@dataclass
class Snapshot:
    """One committed state (or, in a write, the state being written)."""

    generation: int
    next_id: int
    chunking: dict[str, Any] | None
    segments: list[LiveSegment]
    quantizer: Quantizer | None = None


@dataclass(frozen=True)
class CommitReport:
    """What a commit wrote outside SQLite: bytes of segment files, new segments, merged ones."""

    bytes_written: int = 0
    segments_written: int = 0
    segments_merged: int = 0


def end_transaction(connection: sqlite3.Connection, statement: str = "ROLLBACK") -> None:
    """Ends the connection's transaction with `statement` if one is still open (SQLite ends it
    itself after some errors: ROLLBACK would then raise "no transaction is active")."""
    if connection.in_transaction:
        connection.execute(statement)


def tier(live: int, settings: IndexTuning) -> int:
    """A segment's size tier: 0 below the merge floor, then one per factor of merge_factor."""
    if live < settings.merge_floor_vectors:
        return 0
    return 1 + int(math.log(live / settings.merge_floor_vectors, settings.merge_factor))


def plan_merges(segments: list[tuple[str, int, int]], settings: IndexTuning) -> list[list[str]]:
    """Which segments (name, vectors held, live vectors) to merge now: each list becomes one segment.

    A segment with max_deleted_share of its vectors deleted (or none live) is rewritten; a size tier
    with merge_factor segments is merged into one. Every segment is in at most one list."""
    merges: list[list[str]] = []
    by_tier: dict[int, list[str]] = {}
    for name, held, live in segments:
        if held > 0 and (held - live) / held >= settings.max_deleted_share:
            merges.append([name])
        else:
            by_tier.setdefault(tier(live, settings), []).append(name)
    merges.extend(names for _, names in sorted(by_tier.items()) if len(names) >= settings.merge_factor)
    return merges


class CommitLog:
    """Snapshots, writes and commits of one index directory, over one SQLite connection. Not
    thread-safe by itself: the store serialises calls."""

    def __init__(self, index_dir: Path, connection: sqlite3.Connection, dimension: int, index_type: str, settings: IndexTuning):
        self.index_dir = index_dir
        self.connection = connection
        self.database = ChunkDatabase(connection)
        self.dimension = dimension
        self.index_type = index_type
        self.settings = settings
        self.writing = False
        self.snapshot = Snapshot(-1, 0, None, [])
        self.pending: PendingVectors | None = None
        self._open: dict[str, Segment] = {}
        self._stacks: dict[tuple[str, ...], Any] = {}  # the stacked view of the live IVF segments

    # -- reading -----------------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """A consistent view: this writer's own, or a snapshot of the last commit with its segments."""
        if self.writing:
            yield self.snapshot
            return
        missing = None
        for attempt in range(READ_ATTEMPTS):
            self.connection.execute("BEGIN")
            try:
                self._load()
            except FileNotFoundError as exc:
                # A writer merged a segment away between our snapshot and our open: read again.
                missing = exc
                end_transaction(self.connection)
                time.sleep(0.01 * (attempt + 1))
                continue
            except BaseException:
                end_transaction(self.connection)
                raise
            try:
                yield self.snapshot
            finally:
                end_transaction(self.connection, "COMMIT")
            return
        name = Path(str(missing.args[0])).name if missing is not None and missing.args else "?"
        raise IndexMismatchError(
            f"segment {name} of the index at '{self.index_dir}', named by its last commit, is missing (lost, or the "
            "index is being replaced): run `spanqa check --index DIR --repair`"
        )

    def _load(self) -> None:
        state = self.database.state()
        generation = int(state["generation"])
        chunking = json.loads(state["chunking"])
        if generation == self.snapshot.generation:
            self.snapshot.next_id, self.snapshot.chunking = int(state["next_id"]), chunking
            return
        deleted = self.database.deleted()
        quantizer_name = state.get("quantizer", "")
        quantizer = self.snapshot.quantizer
        if quantizer_name == "":
            quantizer = None
        elif quantizer is None or quantizer.name != quantizer_name:
            quantizer = read_quantizer(self.index_dir / quantizer_name)
        segments = []
        for name, structure, built_on in self.database.segments():
            segment = self._open.get(name)
            if segment is None:
                if built_on is not None and (quantizer is None or built_on != quantizer.name):
                    raise IndexMismatchError(
                        f"segment '{name}' of '{self.index_dir}' was built on quantizer '{built_on}', which the index "
                        "no longer names: rebuild the index"
                    )
                segment = read_segment(self.index_dir / name, structure, self.settings, quantizer if built_on else None)
                if segment.index.d != self.dimension:
                    raise IndexMismatchError(
                        f"'{self.index_dir / name}' holds {segment.index.d}-dimensional vectors, the manifest says "
                        f"{self.dimension}: rebuild the index"
                    )
            segments.append(LiveSegment(segment, deleted.get(name, EMPTY_IDS)))
        self._open = {live.segment.name: live.segment for live in segments}
        self.snapshot = Snapshot(generation, int(state["next_id"]), chunking, segments, quantizer)

    def live_segments(self) -> list[LiveSegment]:
        """The snapshot's segments as searches see them (those on the index's quantizer stacked
        into one), and in a write the pending vectors as one more."""
        segments = stack_shared(self.snapshot.segments, self.snapshot.quantizer, self._stacks)
        if self.writing and self.pending is not None and self.pending.index.ntotal > 0:
            return [*segments, LiveSegment(self.pending.as_segment(), EMPTY_IDS)]
        return segments

    # -- writing -----------------------------------------------------------------------------------

    def begin_write(self) -> None:
        """Opens the write transaction (waiting for another writer to commit) and loads its state."""
        if self.writing:
            return
        try:
            self.connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise IndexBusyError(
                f"index at '{self.index_dir}' is being written by another process ({exc}) and stayed locked for "
                f"{self.settings.busy_timeout_s:.0f} s: try again when that indexing run has finished"
            ) from exc
        try:
            ensure_cjk_index(self.connection)
            self._load()
            self._remove_unnamed_files()
        except BaseException:
            end_transaction(self.connection)
            raise
        # The write changes its snapshot's deleted lists in place: give it its own.
        self.snapshot.segments = [LiveSegment(live.segment, live.deleted) for live in self.snapshot.segments]
        self.pending = PendingVectors(self.dimension)
        self.writing = True

    def _remove_unnamed_files(self) -> None:
        # Holding the write lock, no other writer is between writing a segment file and committing
        # it: a segment file the committed state does not name is left over from an interrupted
        # commit, or merged away by a commit that stopped before removing it.
        named = {name for name, _, _ in self.database.segments()} | {self.database.state().get("quantizer", "")}
        for path in self.index_dir.iterdir():
            if (is_segment_file(path.name) and path.name not in named) or is_leftover(path.name):
                path.unlink(missing_ok=True)

    def add_vectors(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.pending.add(ids, vectors)
        self.snapshot.next_id = int(ids.max()) + 1 if len(ids) > 0 else self.snapshot.next_id

    def delete_vectors(self, ids: np.ndarray) -> None:
        """Removes vectors: pending ones at once, committed ones by marking them deleted."""
        ids = np.sort(np.asarray(ids, dtype=np.int64))
        self.pending.remove(ids)
        marked: dict[str, np.ndarray] = {}
        for live in self.snapshot.segments:
            held = ids[live.segment.holds(ids)]
            if len(held) > 0:
                marked[live.segment.name] = held
                live.deleted = np.union1d(live.deleted, held)
        self.database.mark_deleted(marked)

    def rollback(self) -> None:
        """Forgets the open write. Also after a failed statement or COMMIT: SQLite ends the
        transaction itself on some errors (a full disk, an I/O error), so it is rolled back only if
        still open; either way the next read or write loads the committed state again."""
        if not self.writing:
            return
        self.writing = False
        self.pending = None
        self.snapshot = Snapshot(-1, 0, None, [], self.snapshot.quantizer)  # changed in place: read it again
        end_transaction(self.connection)

    def commit(self, chunking: dict[str, Any] | None, vectors_changed: bool, compact: bool = False) -> CommitReport:
        """Commits the write (see the module docstring); `compact` merges every segment into one.

        Any failure before the commit point (a full disk while writing a segment or the WAL, an I/O
        error) rolls the write back and raises: the committed state is as it was, and the files the
        failed commit wrote are named by no commit, so the next writer removes them. Removing the
        merged-away files after the commit point is best-effort: a file left over is removed likewise."""
        old_quantizer = self.snapshot.quantizer
        try:
            generation, report, segments, removed = self._prepare_commit(chunking, vectors_changed, compact)
            self.connection.execute("COMMIT")  # the commit point
        except BaseException:
            self.snapshot.quantizer = old_quantizer
            self.rollback()
            raise
        self.writing = False
        self.pending = None
        self.snapshot = Snapshot(generation, self.snapshot.next_id, chunking, segments, self.snapshot.quantizer)
        self._open = {live.segment.name: live.segment for live in segments}
        if old_quantizer is not None and self.snapshot.quantizer is not old_quantizer:
            removed.append(old_quantizer.name)
        for name in removed:
            try:
                (self.index_dir / name).unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("index at %s: could not remove merged-away %s (%s); the next writer will", self.index_dir, name, exc)
        return report

    def _prepare_commit(
        self, chunking: dict[str, Any] | None, vectors_changed: bool, compact: bool
    ) -> tuple[int, CommitReport, list[LiveSegment], list[str]]:
        """Everything a commit writes before its commit point: the new and merged segment files and
        the rows naming them. Returns the new generation, what it wrote, the new set of segments and
        the files merged away."""
        generation = self.snapshot.generation + 1 if vectors_changed or compact else self.snapshot.generation
        written, new_files, merged_files = 0, 0, 0
        segments = list(self.snapshot.segments)
        if self.pending is not None and self.pending.index.ntotal > 0:
            pending = self.pending.as_segment()
            segments.append(LiveSegment(pending, EMPTY_IDS))
        old_quantizer = self.snapshot.quantizer
        live = sum(segment.live for segment in segments)
        lists = None if old_quantizer is None else old_quantizer.lists
        if quantizer_wanted(live, self.index_type, lists, self.settings):
            # Centroids of the whole index; every segment is rewritten on them (as the index grew
            # geometrically since the last training, this costs O(1) per vector over its life).
            vectors = np.concatenate([segment.segment.reconstruct(segment.live_ids()) for segment in segments])
            quantizer = Quantizer(f"{QUANTIZER_PREFIX}{generation}{SEGMENT_SUFFIX}", train_quantizer(vectors, self.settings))
            written += write_segment(self.index_dir / quantizer.name, quantizer.template)
            self.database.set_state({"quantizer": quantizer.name})
            self.snapshot.quantizer = quantizer
            rewrite_all = True
        else:
            rewrite_all = False
        if self.pending is not None and self.pending.index.ntotal > 0 and not rewrite_all:
            segments.pop()
            segment, size = self._write(pending.ids, pending.reconstruct(pending.ids), f"{generation}.0")
            written, new_files = written + size, new_files + 1
            segments.append(LiveSegment(segment, EMPTY_IDS))
        removed: list[str] = []
        for round_number in range(1, 64):
            if rewrite_all:
                merges = [[live.segment.name for live in segments]] if segments else []
            elif compact:
                # Everything into one segment, unless it is one already with nothing deleted.
                whole = len(segments) == 1 and len(segments[0].deleted) == 0
                merges = [] if whole or not segments else [[live.segment.name for live in segments]]
            else:
                described = [(live.segment.name, live.segment.size, live.live) for live in segments]
                merges = plan_merges(described, self.settings)
            if not merges:
                break
            for number, group in enumerate(merges):
                inputs = [live for live in segments if live.segment.name in group]
                ids = np.concatenate([live.live_ids() for live in inputs]) if inputs else EMPTY_IDS
                segments = [live for live in segments if live.segment.name not in group]
                self.database.remove_segments(group)
                removed += [name for name in group if name != "(pending)"]
                merged_files += sum(1 for name in group if name != "(pending)")
                if len(ids) > 0:
                    vectors = np.concatenate([live.segment.reconstruct(live.live_ids()) for live in inputs])
                    segment, size = self._write(ids, vectors, f"{generation}.{round_number}.{number}")
                    written, new_files = written + size, new_files + 1
                    segments.append(LiveSegment(segment, EMPTY_IDS))
            compact = rewrite_all = False
        self.database.set_state({"generation": str(generation), "next_id": str(self.snapshot.next_id), "chunking": json.dumps(chunking)})
        return generation, CommitReport(written, new_files, merged_files), segments, removed

    def _write(self, ids: np.ndarray, vectors: np.ndarray, label: str) -> tuple[Segment, int]:
        """Writes a new segment file and names it in the open transaction."""
        quantizer = self.snapshot.quantizer
        structure = segment_structure(len(ids), self.index_type, quantizer is not None, self.settings)
        built_on = quantizer if structure == "ivf" else None
        index = build_index(vectors, ids, structure, self.settings, built_on)
        name = f"{SEGMENT_PREFIX}{label}{SEGMENT_SUFFIX}"
        size = write_segment(self.index_dir / name, index, shares_quantizer=built_on is not None)
        quantizer_name = None if built_on is None else built_on.name
        self.database.add_segment(name, structure, int(label.split(".")[0]), quantizer_name)
        logger.debug("index at %s: wrote %s (%s, %d vectors)", self.index_dir, name, structure, len(ids))
        return Segment(name, structure, index, np.sort(ids), quantizer_name, built_on), size
