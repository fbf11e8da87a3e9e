"""The embedder components of an index: the chunk embedder that builds it, the question embedder
that searches it (both made as the index records: int8 with ONNX Runtime, or the model in float32),
loading them, and which embedder an index is built and searched with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from haystack import Document
from haystack.utils import ComponentDevice

from spanqa.errors import ConfigError, IndexMismatchError, ModelLoadError
from spanqa.indexing.retrieval.embedding import EmbeddingSettings, Int8DocumentEmbedder, Int8TextEmbedder
from spanqa.settings import EMBEDDER_MODEL, EmbedderSettings


def _local_files_only(model: str) -> bool:
    # A local directory never needs the hub; a hub id may (first use downloads it).
    return Path(model).is_dir()


def _max_length(embedding: EmbeddingSettings) -> dict | None:
    # Haystack's sentence-transformers embedders read the model's max_seq_length from here.
    return None if embedding.max_tokens is None else {"model_max_length": embedding.max_tokens}


def make_document_embedder(
    model: str, torch_device: str, embedding: EmbeddingSettings,
    batch_size: int = EmbedderSettings.embedder_batch_size,
):
    """The chunk embedder of an index embedded with `embedding` (int8 on the CPU, or the model in
    float32, `batch_size` chunks per forward pass)."""
    if embedding.precision == "int8":
        return Int8DocumentEmbedder(model=model, max_tokens=embedding.max_tokens)
    # Normalised vectors make inner product equal cosine similarity, which the store relies on.
    # Imported here: sentence-transformers (and scikit-learn under it) takes ~3.7 s to import, and the
    # int8 embedder, the CPU default, never uses it.
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
    )

    return SentenceTransformersDocumentEmbedder(
        model=model,
        device=ComponentDevice.from_str(torch_device),
        batch_size=batch_size,
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=_local_files_only(model),
        tokenizer_kwargs=_max_length(embedding),
    )


def make_text_embedder(model: str, torch_device: str, embedding: EmbeddingSettings, threads: int | None = None):
    """The question embedder matching an index embedded with `embedding` (`threads`: the int8
    embedder's, None: as many as torch uses)."""
    if embedding.precision == "int8":
        return Int8TextEmbedder(model=model, max_tokens=embedding.max_tokens, threads=threads)
    # Imported here, as for the document embedder: the int8 one never needs sentence-transformers.
    from haystack_integrations.components.embedders.sentence_transformers import SentenceTransformersTextEmbedder

    return SentenceTransformersTextEmbedder(
        model=model,
        device=ComponentDevice.from_str(torch_device),
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=_local_files_only(model),
        tokenizer_kwargs=_max_length(embedding),
    )


def warm_up_embedder(component: Any, model: str) -> None:
    """Loads an embedder component: a load failure is a ModelLoadError naming `model`."""
    try:
        component.warm_up()
    except ConfigError:
        raise  # a setting that cannot work (int8 for a model it cannot run): its message says which
    except Exception as exc:  # noqa: BLE001 - every loader failure means the same thing to a user
        raise ModelLoadError.from_cause("embedder", model, exc) from exc


def probe_dimension(embedder: Any) -> int:
    """The size of the vectors a loaded document embedder makes (a new store needs it before its
    first write; the model tells it by example)."""
    return len(embedder.run([Document(content="dimension probe")])["documents"][0].embedding)


def index_embedder(index_dir: Path, recorded: str | None, requested: str | None) -> str:
    """The embedder of the index in `index_dir`: the one it recorded (None: a new index, which gets
    `requested`, or EMBEDDER_MODEL). Naming another than the recorded one is an IndexMismatchError:
    its vectors would not be comparable with the index's."""
    if recorded is None:
        return EMBEDDER_MODEL if requested is None else requested
    if requested is not None and requested != recorded:
        raise IndexMismatchError(
            f"the index at '{index_dir}' was built with embedder '{recorded}', not '{requested}': leave the "
            "embedder unset to use the recorded one, or build a new index with the other embedder"
        )
    return recorded
