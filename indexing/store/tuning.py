"""The index store's internal tuning (not user settings, which are `spanqa.settings.StoreSettings`):
FAISS structures, segment merging, filtered search and waiting for another writer. The store and its
parts are given one `IndexTuning`; nothing reads `defaults` at call time, so a test or a benchmark
sets them per store.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from spanqa import defaults
from spanqa.errors import ConfigError


@dataclass(frozen=True)
class IndexTuning:
    # FAISS structures, per segment (see vector_segments.segment_structure).
    approximate_min_vectors: int = defaults.APPROXIMATE_MIN_VECTORS
    auto_approximate_min_vectors: int = defaults.AUTO_APPROXIMATE_MIN_VECTORS
    hnsw_m: int = defaults.HNSW_M
    hnsw_ef_construction: int = defaults.HNSW_EF_CONSTRUCTION
    hnsw_ef_search: int = defaults.HNSW_EF_SEARCH
    ivf_max_lists: int = defaults.IVF_MAX_LISTS
    ivf_train_points_per_list: int = defaults.IVF_TRAIN_POINTS_PER_LIST
    ivf_train_iterations: int = defaults.IVF_TRAIN_ITERATIONS
    ivf_nprobe: int = defaults.IVF_NPROBE
    # Segment merging (see commits.plan_merges).
    merge_factor: int = defaults.SEGMENT_MERGE_FACTOR
    merge_floor_vectors: int = defaults.SEGMENT_MERGE_FLOOR_VECTORS
    max_deleted_share: float = defaults.SEGMENT_MAX_DELETED_SHARE
    # Search and locking.
    filter_exact_max: int = defaults.FILTER_EXACT_MAX
    busy_timeout_s: float = defaults.SQLITE_BUSY_TIMEOUT_S

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            # filter_exact_max may be 0: every filtered search then goes through FAISS.
            least = 0 if field.name == "filter_exact_max" else 1e-9
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < least:
                raise ConfigError(f"store setting {field.name}={value!r} must be a positive number")
        if self.merge_factor < 2:
            raise ConfigError(f"store setting merge_factor={self.merge_factor!r} must be at least 2 (segments merged at once)")
        if self.max_deleted_share >= 1:
            raise ConfigError(f"store setting max_deleted_share={self.max_deleted_share!r} must be below 1 (a share)")
