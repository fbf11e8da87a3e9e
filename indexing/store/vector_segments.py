"""Vector segments: immutable FAISS files that together hold an index's vectors, searched as one.

A commit writes the vectors it adds as one new segment file and never rewrites an old one: deleting
a chunk records its id as deleted (`commits`), and searches leave deleted ids out, until a merge
rewrites the segments concerned without them. Each segment is unit vectors with our chunk ids,
ranked by inner product (= cosine similarity), in one of three FAISS structures: `IndexIDMap2(
IndexFlatIP)` (exact), `IndexIDMap2(IndexHNSWFlat)` (a segment large enough, `segment_structure`),
or `IndexIVFFlat`.

IVF segments share the index's coarse quantizer (its centroids, trained once on the whole index,
`train_quantizer`, and again when the index outgrows it): every segment written while the index has
one is an IVF segment over those centroids, however small. Searching them is `segment_search`'s job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from spanqa.atomic_files import write_with
from spanqa.errors import ConfigError, IndexMismatchError
from spanqa.indexing.store.tuning import IndexTuning

logger = logging.getLogger(__name__)

STRUCTURES = ("flat", "hnsw", "ivf")
SEGMENT_PREFIX = "segment."
QUANTIZER_PREFIX = "quantizer."
SEGMENT_SUFFIX = ".faiss"


def is_segment_file(name: str) -> bool:
    """Segment and quantizer files ("vectors.N.faiss": the one vectors file of a format-3 index,
    adopted as its first segment)."""
    prefixes = (SEGMENT_PREFIX, QUANTIZER_PREFIX, "vectors.")
    return name.startswith(prefixes) and name.endswith(SEGMENT_SUFFIX)


def segment_structure(count: int, index_type: str, has_quantizer: bool, settings: IndexTuning) -> str:
    """The structure a segment of `count` vectors gets in an index of `index_type`: IVF whenever the
    index has its quantizer ("ivf" and "auto" indexes large enough, `quantizer_wanted`); HNSW for a
    segment large enough to pay off; else exact."""
    if index_type in ("ivf", "auto"):
        return "ivf" if has_quantizer else "flat"
    if index_type == "hnsw" and count >= settings.approximate_min_vectors:
        return "hnsw"
    return "flat"


def quantizer_wanted(live: int, index_type: str, lists: int | None, settings: IndexTuning) -> bool:
    """Whether an index of `live` vectors should (re)train its quantizer: once it is large enough
    for IVF, and again each time it has grown to want twice the lists (geometric growth: the
    retrainings cost O(1) per vector)."""
    if index_type == "auto":
        least = settings.auto_approximate_min_vectors
    elif index_type == "ivf":
        least = settings.approximate_min_vectors
    else:
        return False
    if lists is None:
        return live >= least
    return ivf_list_count(live, settings) >= 2 * lists


@dataclass
class Segment:
    """One segment file, open: its FAISS index and the sorted ids it holds (deleted ones included)."""

    name: str
    structure: str
    index: faiss.Index
    ids: np.ndarray
    quantizer: str | None = None  # the file name of the index quantizer an IVF segment was built on
    shared: Quantizer | None = None  # that quantizer, kept alive while the segment uses its centroids

    @property
    def size(self) -> int:
        return len(self.ids)

    def holds(self, ids: np.ndarray) -> np.ndarray:
        """Which of `ids` (sorted) are in this segment."""
        if len(self.ids) == 0 or len(ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        positions = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[positions] == ids

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros((0, self.index.d), dtype=np.float32)
        return np.ascontiguousarray(self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64)), dtype=np.float32)


@dataclass
class PendingVectors:
    """The vectors an open write added, searchable before they are committed as a segment."""

    dimension: int
    index: faiss.Index = field(init=False)

    def __post_init__(self) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) > 0 and self.index.ntotal > 0:
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))

    def as_segment(self) -> Segment:
        return Segment("(pending)", "flat", self.index, np.sort(faiss.vector_to_array(self.index.id_map)))


def index_ids(index: faiss.Index) -> np.ndarray:
    """The sorted ids a segment's FAISS index holds."""
    if isinstance(index, faiss.IndexIDMap2):
        return np.sort(faiss.vector_to_array(index.id_map))
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
        for number in range(ivf.nlist)
        if lists.list_size(number) > 0
    ]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


@dataclass
class Quantizer:
    """The index's coarse quantizer: an empty, trained IVF index whose copies become IVF segments."""

    name: str
    template: faiss.Index

    @property
    def lists(self) -> int:
        return self.template.nlist


def train_quantizer(vectors: np.ndarray, settings: IndexTuning) -> faiss.Index:
    """An empty IVF index whose centroids are trained on (a sample of) `vectors`."""
    dimension = vectors.shape[1]
    lists = ivf_list_count(len(vectors), settings)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = settings.ivf_train_iterations
    sample_size = settings.ivf_train_points_per_list * lists
    sample = vectors
    if len(vectors) > sample_size:
        rows = np.random.default_rng(0).choice(len(vectors), sample_size, replace=False)
        sample = vectors[np.sort(rows)]
    index.train(np.ascontiguousarray(sample))
    # A hash table from our ids to list positions: reconstruct by id.
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


def read_quantizer(path: Path) -> Quantizer:
    try:
        return Quantizer(path.name, faiss.read_index(str(path)))
    except RuntimeError as exc:
        if not path.is_file():
            raise FileNotFoundError(path) from exc
        raise IndexMismatchError(f"cannot read '{path}' ({exc}): rebuild the index") from exc


def attach_quantizer(index: faiss.Index, quantizer: Quantizer) -> None:
    """Points an IVF segment read from its file at the index's centroids (its file holds none)."""
    # The file's empty stand-in quantizer (a few hundred bytes) is left allocated: handing it to a
    # Python proxy to free (`.this.own(True)`) corrupted SWIG's type table within a few loads (seen
    # here: read_index then returned bare SwigPyObjects), and a segment is loaded once per process.
    index.own_fields = False
    index.quantizer = quantizer.template.quantizer


def read_segment(path: Path, structure: str, settings: IndexTuning, quantizer: Quantizer | None = None) -> Segment:
    """The segment file at `path`. Flat and HNSW files are memory-mapped (opening stays instant); IVF
    is read into memory: its queries touch ~16 scattered lists, and page faults on a mapped file
    tripled their latency at 1M vectors (bench/README.md, "Store")."""
    if structure not in STRUCTURES:
        raise IndexMismatchError(f"segment '{path}' has unknown structure {structure!r}: rebuild the index")
    flags = faiss.IO_FLAG_MMAP_IFC if structure in ("flat", "hnsw") else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        if not path.is_file():
            raise FileNotFoundError(path) from exc
        raise IndexMismatchError(f"cannot read '{path}' ({exc}): rebuild the index") from exc
    if quantizer is not None:
        attach_quantizer(index, quantizer)
    configure_search(index, structure, settings)
    return Segment(path.name, structure, index, index_ids(index), None if quantizer is None else quantizer.name, quantizer)


def write_segment(path: Path, index: faiss.Index, shares_quantizer: bool = False) -> int:
    """Writes a segment file whole (see atomic_files); returns its size in bytes. A segment on the
    index's quantizer is written without the centroids (an empty stand-in): a commit of 100
    vectors writes those, not a copy of 2,048 centroids."""
    if not shares_quantizer:
        write_with(path, lambda temp_name: write_index_file(index, temp_name))
        return path.stat().st_size
    shared, stand_in = index.quantizer, faiss.IndexFlatIP(index.d)
    index.quantizer = stand_in
    try:
        write_with(path, lambda temp_name: write_index_file(index, temp_name))
    finally:
        index.quantizer = shared
    return path.stat().st_size


def write_index_file(index: faiss.Index, file_name: str) -> None:
    """Writes `index` to `file_name` through a Python file, so that every failed write raises.

    `faiss.write_index(index, name)` writes through C stdio and only prints an error its final
    flush hits (fclose's): on a full disk it left a truncated segment file and returned normally,
    and the commit then named that file. Here FAISS hands its bytes to Python, whose writes and
    flush raise OSError (ENOSPC, EIO), which reaches the commit as it is."""
    failures: list[BaseException] = []
    with open(file_name, "wb") as handle:

        def write(data: bytes) -> None:
            try:
                handle.write(data)
            except BaseException as exc:
                failures.append(exc)
                raise

        try:
            faiss.write_index(index, faiss.PyCallbackIOWriter(write))
        except RuntimeError:
            if failures:
                raise failures[0] from None
            raise


def build_index(
    vectors: np.ndarray, ids: np.ndarray, structure: str, settings: IndexTuning, quantizer: Quantizer | None = None
) -> faiss.Index:
    """A FAISS index of `structure` holding `vectors` under `ids` (added in id order); an IVF one is a
    copy of `quantizer`'s template, or trained on `vectors` without one."""
    order = np.argsort(ids, kind="stable")
    vectors, ids = np.ascontiguousarray(vectors[order]), np.ascontiguousarray(ids[order], dtype=np.int64)
    dimension = vectors.shape[1]
    if structure == "flat":
        # IDMap2 keeps our ids and reconstructs vectors by id.
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    elif structure == "hnsw":
        graph = faiss.IndexHNSWFlat(dimension, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = settings.hnsw_ef_construction
        index = faiss.IndexIDMap2(graph)
    elif structure == "ivf":
        if quantizer is not None:
            # On the index's centroids, not a copy: the Segment keeps the quantizer alive.
            index = faiss.IndexIVFFlat(quantizer.template.quantizer, dimension, quantizer.lists, faiss.METRIC_INNER_PRODUCT)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
        elif len(vectors) == 0:
            raise ConfigError("an IVF segment is trained on the vectors it will hold: none were given")
        else:
            index = train_quantizer(vectors, settings)
    else:
        raise ConfigError(f"unknown index structure {structure!r}")
    if len(ids) > 0:
        index.add_with_ids(vectors, ids)
    configure_search(index, structure, settings)
    return index


def ivf_list_count(count: int, settings: IndexTuning) -> int:
    # About 4·sqrt(n) lists, each trained with at least 39 points (FAISS warns below that).
    return max(1, min(int(4 * np.sqrt(count)), settings.ivf_max_lists, count // 39))


def configure_search(index: faiss.Index, structure: str, settings: IndexTuning) -> None:
    if structure == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = settings.hnsw_ef_search
    elif structure == "ivf":
        index.nprobe = settings.ivf_nprobe


def search_parameters(
    structure: str, k: int, selector: faiss.IDSelector | None, settings: IndexTuning
) -> faiss.SearchParameters | None:
    if structure == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(settings.hnsw_ef_search, k))
    if structure == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=settings.ivf_nprobe)
    if selector is None:
        return None
    return faiss.SearchParameters(sel=selector)


@dataclass
class LiveSegment:
    """A segment as one commit sees it: the segment and the ids deleted from it since it was written."""

    segment: Segment
    deleted: np.ndarray  # sorted

    @property
    def live(self) -> int:
        return self.segment.size - len(self.deleted)

    def live_ids(self) -> np.ndarray:
        if len(self.deleted) == 0:
            return self.segment.ids
        return np.setdiff1d(self.segment.ids, self.deleted, assume_unique=True)


def normalized_rows(matrix: np.ndarray, dimension: int) -> np.ndarray:
    """`matrix` with every row scaled to unit length: inner products of unit vectors are cosines."""
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise IndexMismatchError(f"expected {dimension}-dimensional embeddings, got shape {tuple(matrix.shape)}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
        raise ConfigError("embeddings must be finite and not all zero: cosine similarity is undefined otherwise")
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)
