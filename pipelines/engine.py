"""The one query engine: an index, its question embedder, a retriever per retrieval mode and the
reader, built from `QASettings`; DocumentQA, the service and Ray Serve's readers all answer through it.

Each part is made when first used (a search loads no reader, keyword retrieval no embedder, reading
passages of one's own opens no index), or all at once by `load()`. The checks an index needs are
made here once: the embedder asked for against the one the index recorded, the shard count, and the
index's answer calibration for this reader (`spanqa.reader.calibration.index_calibration`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from haystack import Document
from haystack.dataclasses import ExtractedAnswer

from spanqa.devices import resolve_device
from spanqa.errors import ConfigError, IndexNotFoundError, ModelLoadError
from spanqa.indexing import FaissDocumentStore
from spanqa.indexing.retrieval.embedders import index_embedder, make_text_embedder, warm_up_embedder
from spanqa.indexing.retrieval.embedding import EmbeddingSettings
from spanqa.indexing.retrieval.fusion import check_retrieval_mode
from spanqa.indexing.retrieval.hybrid import HybridRetriever
from spanqa.indexing.store.shards import ShardedStore, index_exists, open_index
from spanqa.paths import model_reference, user_path
from spanqa.reader import ExtractiveReader
from spanqa.reader.calibration import AnswerCalibration, answer_ranking, index_calibration
from spanqa.reader.reranker import PassageReranker
from spanqa.settings import AUTO_THRESHOLD, RERANKER_MODEL, RETRIEVAL_MODES, QASettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """One question to read: its text, the passages retrieved for it and its own answer settings."""

    text: str
    documents: list[Document]
    top_k: int
    threshold: float | str | None  # a score, "auto" (the calibration's), or None: keep every answer


class QueryEngine:
    """Retrieval and reading over the index in `index_dir` with `settings`.

    Model options that name local directories become absolute paths here (`settings` then holds
    them so): the index records its embedder by that name. `embedder_threads` caps the int8
    question embedder's threads (None: as many as torch uses; a server gives the reader the cores).
    A reader setting that cannot work on the device (fast mode on CUDA) is a ConfigError now.
    """

    def __init__(self, index_dir: str | os.PathLike[str], settings: QASettings, *, embedder_threads: int | None = None):
        self.index_dir = user_path(index_dir)
        references = {"reader": model_reference(settings.reader.reader, "reader")}
        if settings.rerank.rerank:
            references["reranker"] = model_reference(settings.rerank.reranker, "reranker")
        if settings.embedder.embedder is not None:
            references["embedder"] = model_reference(settings.embedder.embedder, "embedder")
        self.settings = settings.replace(**references)
        self.embedder_threads = embedder_threads
        self._store: FaissDocumentStore | ShardedStore | None = None
        self._text_embedder = None
        self._retrievers: dict[str, HybridRetriever] = {}
        self._reader: ExtractiveReader | None = None
        self._reranker: PassageReranker | None = None
        self._calibration: AnswerCalibration | None = None
        self._calibration_read = False
        # Built, not loaded: the reader checks what holds only with the device. The calibration that
        # "auto" and adaptive reading need is the index's, read with it.
        ExtractiveReader.from_settings(
            self.settings.reader.replace(score_threshold=None, adaptive_reading=False), device=self.settings.device.device
        )

    # -- the index ---------------------------------------------------------------------------------

    @property
    def store(self) -> FaissDocumentStore | ShardedStore:
        """The index, opened on first use; IndexNotFoundError when `index_dir` holds none."""
        if self._store is None:
            if not index_exists(self.index_dir):
                raise IndexNotFoundError(self.index_dir)
            self.adopt_store(open_index(self.index_dir))
        return self._store

    def adopt_store(self, store: FaissDocumentStore | ShardedStore) -> None:
        """Answers from `store` (this engine's index, opened or just created) once it is checked: an
        index built with another embedder than the one asked for is an IndexMismatchError, one with
        another shard count than asked for a ConfigError."""
        index_embedder(self.index_dir, store.embedder, self.settings.embedder.embedder)
        count = len(store.shards) if isinstance(store, ShardedStore) else 1
        shards = self.settings.store.shards
        if shards is not None and shards != count:
            raise ConfigError(
                f"the index at '{self.index_dir}' has {count} shard(s), not {shards}: leave shards unset "
                "to use it as it is, or index into a new folder"
            )
        self._store = store
        self._retrievers = {}

    def new_index_embedder(self) -> str:
        """The embedder a new index in `index_dir` is built with: the one asked for, else the default."""
        return index_embedder(self.index_dir, None, self.settings.embedder.embedder)

    # -- retrieval ---------------------------------------------------------------------------------

    @property
    def text_embedder(self):
        """The question embedder, loaded on first use, made as the index records its vectors are made."""
        if self._text_embedder is None:
            store = self.store
            embedding = EmbeddingSettings.from_dict(store.embedding)
            device = resolve_device(self.settings.device.device)
            embedder = make_text_embedder(store.embedder, device, embedding, threads=self.embedder_threads)
            warm_up_embedder(embedder, store.embedder)
            self._text_embedder = embedder
        return self._text_embedder

    def retriever(self, mode: str) -> HybridRetriever:
        """The retriever of retrieval `mode` ('hybrid', 'dense' or 'keyword') over the index."""
        if mode not in self._retrievers:
            retrieval = self.settings.retrieval
            self._retrievers[mode] = HybridRetriever(
                document_store=self.store, mode=mode, dense_weight=retrieval.dense_weight,
                candidates=retrieval.hybrid_candidates,
            )
        return self._retrievers[mode]

    @property
    def reranker(self) -> PassageReranker | None:
        """The passage reranker, loaded on first use; None when the settings rerank nothing.

        The default reranker is a hub model: where it cannot load (offline, never downloaded) the
        engine warns once and answers without reranking (its settings then say rerank=0, and the
        answer calibration is the one for that). A reranker named otherwise must load: a
        ModelLoadError says why it did not.
        """
        if self._reranker is None and self.settings.rerank.rerank:
            reranker = PassageReranker.from_settings(self.settings.rerank, device=self.settings.device.device)
            try:
                reranker.warm_up()
            except ModelLoadError as error:
                if self.settings.rerank.reranker != RERANKER_MODEL:
                    raise
                logger.warning(
                    "answering without reranking: the default passage reranker did not load (%s); give "
                    "--reranker DIR (a local cross-encoder) or --rerank 0 to silence this", error
                )
                self._without_reranking()
                return None
            self._reranker = reranker
        return self._reranker

    def _without_reranking(self) -> None:
        self.settings = self.settings.replace(rerank=0)
        if self._calibration_read:  # the calibration that holds changes with the ranking
            self._calibration_read = False
            if self._reader is not None:
                self._reader.calibration = self.calibration

    def retrieve(
        self, text: str, top_k: int, filters: dict | None = None, mode: str | None = None
    ) -> list[Document]:
        """The `top_k` chunks that best match `text`, best first, among those `filters` allow, by
        retrieval `mode` (None: the settings' own), in the order the reader reads them: with
        reranking, the first `rerank` retrieved are reordered by the reranker (`PassageReranker`).
        Keyword retrieval loads no embedder."""
        mode = self.settings.retrieval.retrieval if mode is None else check_retrieval_mode(mode)
        embedding = None if mode == "keyword" else self.text_embedder.run(text=text)["embedding"]
        candidates = max(top_k, self.settings.rerank.rerank)
        documents = self.retriever(mode).run(
            query=text, query_embedding=embedding, top_k=candidates, filters=filters
        )["documents"]
        reranker = self.reranker
        if reranker is None:  # no reranking, or the default reranker could not load
            return documents[:top_k]
        return reranker.run(query=text, documents=documents, top_k=top_k)["documents"]

    # -- reading -----------------------------------------------------------------------------------

    @property
    def calibration(self) -> AnswerCalibration | None:
        """The index's answer calibration for this reader and rank weight, read once; None when the
        index has none for them (a ConfigError when adaptive reading or threshold 'auto' need it)."""
        if not self._calibration_read:
            reader = self.settings.reader
            needed = reader.adaptive_reading or reader.score_threshold == AUTO_THRESHOLD
            ranking = answer_ranking(reader, self.settings.rerank)
            self._calibration = index_calibration(self.index_dir, reader.reader, reader.rank_weight, needed, ranking)
            self._calibration_read = True
        return self._calibration

    @property
    def reader(self) -> ExtractiveReader:
        """The reader, loaded on first use (a ModelLoadError when its model cannot load)."""
        if self._reader is None:
            reader = ExtractiveReader.from_settings(
                self.settings.reader, device=self.settings.device.device, calibration=self.calibration
            )
            reader.warm_up()
            self._reader = reader
        return self._reader

    def use_reader(self, model: str) -> None:
        """Reads with `model` (a hub id or a local directory) from now on. It is loaded here, with the
        index's calibration for it, and swapped in whole only once loaded: a batch under way finishes
        with the reader it began with, and a model that does not load (a ModelLoadError), or lacks the
        calibration threshold 'auto' or adaptive reading need (a ConfigError), changes nothing."""
        settings = self.settings.replace(reader=model_reference(model, "reader"))
        reader_settings = settings.reader
        needed = reader_settings.adaptive_reading or reader_settings.score_threshold == AUTO_THRESHOLD
        calibration = index_calibration(self.index_dir, reader_settings.reader, reader_settings.rank_weight, needed,
                                        answer_ranking(reader_settings, settings.rerank))
        reader = ExtractiveReader.from_settings(reader_settings, device=settings.device.device, calibration=calibration)
        reader.warm_up()
        self._calibration, self._calibration_read = calibration, True
        self._reader = reader
        self.settings = settings

    def read(
        self, question: str, documents: list[Document], top_k: int, threshold: float | str | None
    ) -> list[ExtractedAnswer]:
        """Answers to `question` quoted from `documents`, best first, at most `top_k`, none scoring
        below `threshold` (a score, 'auto' for the calibration's, or None)."""
        return self.read_batch([Question(question, documents, top_k, threshold)])[0]

    def read_batch(self, questions: list[Question]) -> list[list[ExtractedAnswer]]:
        """Each question's answers, from one reader pass over all of them (their windows share
        forward passes): how the service reads the questions that arrive together."""
        result = self.reader.run_batch(
            queries=[question.text for question in questions],
            documents=[question.documents for question in questions],
            top_k=[question.top_k for question in questions],
            score_thresholds=[question.threshold for question in questions],
        )
        return result["answers"]

    def read_prefixes(
        self, question: str, documents: list[Document], counts: list[int], top_k: int,
        rank_weights: list[float] | None = None,
    ) -> dict[tuple[int, float], list[ExtractedAnswer]]:
        """`read` of each `documents[:count]` under each rank weight (None: the settings' own), keyed
        (count, rank weight), from one reading of the documents (see `ExtractiveReader.run_prefixes`)."""
        return self.reader.run_prefixes(question, documents, counts, top_k, rank_weights)

    # -- all at once -------------------------------------------------------------------------------

    def load(self, reading: bool = True) -> None:
        """Opens the index and loads the question embedder, a retriever per retrieval mode and, with
        `reading`, the reader (seconds): a server loads everything before it answers, since each
        request may pick its retrieval mode."""
        self.text_embedder  # noqa: B018 - loads it (and opens the index)
        for mode in RETRIEVAL_MODES:
            self.retriever(mode)
        self.reranker  # noqa: B018 - loads it, when the settings rerank
        if reading:
            self.reader  # noqa: B018 - loads it
