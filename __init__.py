"""spanqa: extractive question answering over document collections.

Answers are quoted spans of your documents, each with its score, source file, page and
character offsets into the extracted text of that page.
"""

import os

# Haystack sends usage telemetry unless told otherwise; nothing we ship may phone home.
# Set before any Haystack module is imported (spanqa.* import Haystack only after this package).
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

from spanqa.errors import (  # noqa: E402
    ChunkNotFoundError,
    ConfigError,
    DocumentError,
    IndexBusyError,
    IndexMismatchError,
    IndexNotFoundError,
    ModelLoadError,
    SpanQAError,
)
from spanqa.records import Answer, AnswerEvidence, AnswerSource, IndexedFile, IndexReport, Passage, SkippedFile  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str):
    # `spanqa.DocumentQA`, a convenience of the public API outside the layers (pyproject's import-linter
    # contracts): it pulls in torch, transformers and Haystack, so it is imported only when asked for.
    if name == "DocumentQA":
        from spanqa.pipelines.api import DocumentQA

        return DocumentQA
    raise AttributeError(f"module 'spanqa' has no attribute {name!r}")


__all__ = [
    "Answer",
    "AnswerEvidence",
    "AnswerSource",
    "ChunkNotFoundError",
    "ConfigError",
    "DocumentError",
    "DocumentQA",
    "IndexBusyError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexReport",
    "IndexedFile",
    "ModelLoadError",
    "Passage",
    "SkippedFile",
    "SpanQAError",
]
