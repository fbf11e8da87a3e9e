"""The settings of hybrid retrieval, checked as `spanqa.settings.RetrievalSettings` declares them:
the retrieval mode ('hybrid' fuses the dense and keyword rankings, `spanqa.indexing.store.rank_fusion`;
'dense' or 'keyword' use one) and the dense ranking's share of the fused score.
"""

from __future__ import annotations

from spanqa.settings import RetrievalSettings


def check_retrieval_mode(mode: object) -> str:
    """`mode` when it is a retrieval mode (`RetrievalSettings.retrieval`'s check), else a ConfigError
    naming the choices."""
    return RetrievalSettings(retrieval=mode).retrieval


def check_dense_weight(weight: object) -> float:
    """`weight` as a float when it is a share from 0 (keyword only) to 1 (dense only)
    (`RetrievalSettings.dense_weight`'s check), else a ConfigError."""
    return float(RetrievalSettings(dense_weight=weight).dense_weight)
