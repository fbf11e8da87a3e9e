"""ExtractiveReader: the Haystack component that quotes answer spans from retrieved Documents."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import ExtractedAnswer

from spanqa import defaults
from spanqa.errors import ConfigError, check_positive_int
from spanqa.reader.answers import build_answers, document_priors, group_spans
from spanqa.reader.calibration import AnswerCalibration
from spanqa.reader.loading import LoadedQAModel, check_fast, load_qa_model, prepare_qa_model
from spanqa.reader.reranking import evidence_sum
from spanqa.reader.span_reader import PassageSpan, check_windows_fit, per_question_top_k, read_passages_batch
from spanqa.settings import AUTO_THRESHOLD, DeviceSettings, ReaderSettings

# The component's keywords that name a ReaderSettings field otherwise (Haystack's and the reader's
# older names); every other setting keyword is the field's own name.
KEYWORD_FIELDS = {
    "model": "reader",
    "fast": "fast_reader",
    "batch_size": "reader_batch_size",
    "max_batch_tokens": "reader_max_batch_tokens",
    "adaptive": "adaptive_reading",
    "top_k": "answer_top_k",
}
FIELD_KEYWORDS = {field: keyword for keyword, field in KEYWORD_FIELDS.items()}
_CHECKS = {info.name: info.check for info in ReaderSettings.infos()}


def reader_settings(**keywords: Any) -> ReaderSettings:
    """The ReaderSettings that ExtractiveReader keywords describe; a bad value is the declared check's
    ConfigError, naming the keyword as the caller wrote it."""
    fields = {KEYWORD_FIELDS.get(keyword, keyword): value for keyword, value in keywords.items()}
    for keyword, value in keywords.items():
        _CHECKS[KEYWORD_FIELDS.get(keyword, keyword)](keyword, value)
    return ReaderSettings(**fields)


def reader_keywords(settings: ReaderSettings) -> dict[str, Any]:
    """`settings` as ExtractiveReader keywords (the inverse of `reader_settings`)."""
    return {FIELD_KEYWORDS.get(name, name): value for name, value in settings.to_dict().items()}


def _has_text(document: Document) -> bool:
    return document.content is not None and document.content.strip() != ""


@component
class ExtractiveReader:
    """Quotes the spans of the given Documents that answer a query, best first.

    Decoding follows the classic transformers question-answering pipeline (which transformers 5
    no longer ships): each Document is read in overlapping token windows, question first; answer
    boundaries lie on passage tokens only; spans are at most `max_answer_length` tokens and are
    widened to whole words. Within one Document, candidates are chosen as that pipeline chooses
    them (by their per-window probability). Across Documents, answers are ranked by
    `score = sigmoid(0.1 * (start_logit + end_logit))`, which, unlike the per-window probability,
    means the same thing in every Document (see `spanqa.reader.decoding.comparable_score`), after
    adding the Document's retrieval prior, `-rank_weight * ln(1 + rank)`: Documents are taken in
    retrieval order, best first (see `spanqa.reader.answers`).

    With an answer `calibration` (`spanqa calibrate`), each answer's `meta["confidence"]` says how
    likely the question is answered at all; `score_threshold="auto"` drops answers below the
    calibration's threshold, and `adaptive=True` reads Documents a few at a time, stopping once no
    unread Document could outrank the best answer found.

    The model loads in `warm_up` (called by `run` if needed). To read with a model already in
    memory (tests, notebooks), build the reader with `ExtractiveReader.from_loaded(tokenizer, model)`;
    from the settings of a query engine, with `ExtractiveReader.from_settings`.
    """

    def __init__(
        self,
        model: str = ReaderSettings.reader,
        device: str = DeviceSettings.device,
        top_k: int = ReaderSettings.answer_top_k,
        max_answer_length: int = ReaderSettings.max_answer_length,
        max_seq_length: int = ReaderSettings.max_seq_length,
        doc_stride: int = ReaderSettings.doc_stride,
        max_question_length: int = ReaderSettings.max_question_length,
        batch_size: int | None = ReaderSettings.reader_batch_size,
        context_chars: int = ReaderSettings.context_chars,
        score_threshold: float | str | None = ReaderSettings.score_threshold,
        merge_same_answers: bool = True,
        max_batch_tokens: int | None = ReaderSettings.reader_max_batch_tokens,
        fast: bool = ReaderSettings.fast_reader,
        rank_weight: float = ReaderSettings.rank_weight,
        passage_weight: float = ReaderSettings.passage_weight,
        evidence_weight: float = ReaderSettings.evidence_weight,
        calibration: AnswerCalibration | dict | None = None,
        adaptive: bool = ReaderSettings.adaptive_reading,
    ):
        """The reader's settings are those of `spanqa.settings.ReaderSettings`, where each is declared
        with its default, what it means and its check; the keywords are the fields' names but for
        `model` (the field `reader`), `fast` (`fast_reader`), `batch_size` (`reader_batch_size`),
        `max_batch_tokens` (`reader_max_batch_tokens`), `adaptive` (`adaptive_reading`) and `top_k`
        (`answer_top_k`, the answers `run` returns unless it is given another top_k). On CUDA the
        model runs in fp16: `fast` (a CPU mode) with a "cuda" device is a ConfigError, and with
        "auto" on a GPU it changes nothing. `score_threshold="auto"` and `adaptive=True` need a
        `calibration`.

        :param device: where the model runs: 'auto' (CUDA when torch sees a GPU, else the CPU),
            'cpu', 'cuda' or 'cuda:N'.
        :param merge_same_answers: one answer per answer text: the same text found in several
            Documents (or twice in one) is returned once, quoting its best occurrence and listing
            every occurrence in `meta["sources"]`.
        :param calibration: an `AnswerCalibration` (or its dict) fitted for this model and
            `rank_weight`; answers then carry `meta["confidence"]`.
        :raises ConfigError: a setting has a value the reader cannot use.
        """
        self.settings = reader_settings(
            model=model, top_k=top_k, max_answer_length=max_answer_length, max_seq_length=max_seq_length,
            doc_stride=doc_stride, max_question_length=max_question_length, batch_size=batch_size,
            context_chars=context_chars, score_threshold=score_threshold, max_batch_tokens=max_batch_tokens,
            fast=fast, rank_weight=rank_weight, passage_weight=passage_weight, evidence_weight=evidence_weight,
            adaptive=adaptive,
        )
        self.device = DeviceSettings(device=device).device
        if not isinstance(merge_same_answers, bool):
            raise ConfigError(f"merge_same_answers={merge_same_answers!r} must be True or False")
        check_fast(fast)
        if fast and device.startswith("cuda"):
            raise ConfigError(
                f"fast=True is a CPU mode (int8 ONNX Runtime) and device={device!r} is a GPU, where the "
                "model already runs in fp16: use fast=False, or device='cpu'"
            )
        if isinstance(calibration, dict):
            calibration = AnswerCalibration.from_dict(calibration)
        if calibration is not None and not isinstance(calibration, AnswerCalibration):
            raise ConfigError(f"calibration={calibration!r} must be an AnswerCalibration, its dict, or None")
        if calibration is None and (adaptive or score_threshold == AUTO_THRESHOLD):
            raise ConfigError(
                "adaptive reading and score_threshold='auto' need an answer calibration (spanqa calibrate): "
                "give calibration=..., or adaptive=False and a numeric threshold"
            )
        self.calibration = calibration
        self.merge_same_answers = merge_same_answers
        self._qa_model: LoadedQAModel | None = None

    @classmethod
    def from_settings(
        cls, settings: ReaderSettings, device: str = DeviceSettings.device,
        calibration: AnswerCalibration | dict | None = None, merge_same_answers: bool = True,
    ) -> ExtractiveReader:
        """The reader of `settings` (a query engine's `QASettings.reader`) on `device` (not loaded:
        call `warm_up`)."""
        return cls(
            **reader_keywords(settings), device=device, calibration=calibration,
            merge_same_answers=merge_same_answers,
        )

    @classmethod
    def from_loaded(cls, tokenizer: Any, model: Any, **settings: Any) -> ExtractiveReader:
        """A warm reader around a tokenizer and model already in memory; `warm_up` then loads nothing.

        `model` is any torch.nn.Module called with input_ids (and attention_mask/token_type_ids
        where its forward() declares them) that returns an object with `start_logits` and
        `end_logits` of shape (batch, tokens). `settings` are `__init__` keyword arguments; the
        `model` setting only names the model in `to_dict`.
        """
        reader = cls(**settings)
        reader._adopt(prepare_qa_model(tokenizer, model, reader.device, fast=reader.settings.fast_reader))
        return reader

    def _adopt(self, qa_model: LoadedQAModel) -> None:
        check_windows_fit(self.settings, qa_model)
        self._qa_model = qa_model

    def warm_up(self) -> None:
        """Load the tokenizer and model onto the device, once.

        :raises ModelLoadError: the model cannot be loaded (unknown hub id offline, missing directory).
        :raises ConfigError: the tokenizer is not a fast one, the device is unavailable, or the
            window settings do not fit the model.
        """
        if self._qa_model is not None:
            return
        self._adopt(load_qa_model(self.settings.reader, self.device, fast=self.settings.fast_reader))

    def _loaded(self) -> LoadedQAModel:
        self.warm_up()
        if self._qa_model is None:
            raise RuntimeError("warm_up returned without a model; this is a bug in ExtractiveReader")
        return self._qa_model

    def to_dict(self) -> dict[str, Any]:
        """The reader as a Haystack pipeline stores it: its model and settings."""
        return default_to_dict(
            self,
            **reader_keywords(self.settings),
            device=self.device,
            merge_same_answers=self.merge_same_answers,
            calibration=None if self.calibration is None else self.calibration.to_dict(),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractiveReader:
        """The reader `to_dict` describes (not loaded: call `warm_up`)."""
        return default_from_dict(cls, data)

    @component.output_types(answers=list[ExtractedAnswer])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None
    ) -> dict[str, list[ExtractedAnswer]]:
        """Answers to `query` quoted from `documents`, best first, at most `top_k` of them.

        Each answer's `data` is `document.content[document_offset.start:document_offset.end]`;
        `context` is that span with up to `context_chars` characters either side, and
        `context_offset` the answer's place in it. Documents without text are skipped; the same
        span of the same Document is returned once. `meta` holds the span's `start_logit` and
        `end_logit`, its `ranking_sum` and `evidence` (see `spanqa.records.AnswerEvidence`), and
        its `confidence` when the reader has a calibration.
        """
        return {"answers": self.run_batch([query], [documents], top_k)["answers"][0]}

    def run_batch(
        self,
        queries: list[str],
        documents: list[list[Document]],
        top_k: int | list[int] | None = None,
        score_thresholds: list[float | None] | None = None,
    ) -> dict[str, list[list[ExtractedAnswer]]]:
        """`run` for many queries, each with its own Documents, read together in one pass.

        `answers[i]` is what `run(queries[i], documents[i], top_k)` returns (to float rounding),
        but the windows of all (query, Document) pairs are tokenised in one call and go through
        the model in shared length-sorted batches: fewer, fuller forward passes than one `run`
        per query. `top_k` is one number for all queries or one per query; `score_thresholds`,
        when given, holds each query's threshold (None: keep all) in place of the reader's own,
        so that a server can batch the questions of requests with different settings.
        """
        top_ks = per_question_top_k(self.settings.answer_top_k if top_k is None else top_k, len(queries))
        if len(queries) != len(documents):
            raise ConfigError(
                f"run_batch got {len(queries)} queries and {len(documents)} document lists: give one list per query"
            )
        if score_thresholds is None:
            thresholds = [self.settings.score_threshold] * len(queries)
        else:
            thresholds = list(score_thresholds)
            if len(thresholds) != len(queries):
                raise ConfigError(
                    f"run_batch got {len(thresholds)} score thresholds for {len(queries)} queries: give one per query"
                )
            for threshold in thresholds:
                _CHECKS["score_threshold"]("score_threshold", threshold)
        answers: list[list[ExtractedAnswer]] = [[] for _ in queries]
        readable = [[document for document in docs if _has_text(document)] for docs in documents]
        asked = [index for index, query in enumerate(queries) if query.strip() != "" and readable[index]]
        if not asked:
            return {"answers": answers}
        contents = [[str(document.content) for document in readable[index]] for index in asked]
        asked_queries = [queries[index] for index in asked]
        asked_top_ks = [top_ks[index] for index in asked]
        if self.settings.adaptive_reading:
            spans = self._read_adaptively(asked_queries, [readable[index] for index in asked], contents, asked_top_ks)
        else:
            spans = read_passages_batch(self._loaded(), asked_queries, contents, self.settings, asked_top_ks)
        for index, query_contents, spans_per_document in zip(asked, contents, spans, strict=True):
            read = len(spans_per_document)  # adaptive reading may stop before the last Document
            answers[index] = self._answers(
                queries[index], readable[index][:read], query_contents[:read], spans_per_document,
                top_ks[index], thresholds[index],
            )
        return {"answers": answers}

    def run_prefixes(
        self, query: str, documents: list[Document], counts: list[int], top_k: int | None = None,
        rank_weights: list[float] | None = None,
    ) -> dict[tuple[int, float], list[ExtractedAnswer]]:
        """What `run` returns for each of `documents[:count]` and each rank weight (None: the
        reader's own), keyed (count, rank weight), from one reading of the Documents.

        Each Document's spans do not depend on the others read beside it, so reading the first
        max(counts) once gives the answers of every shorter prefix too, ranked any way (how
        `spanqa eval` compares passages read and rankings). Reads every Document, whatever
        `adaptive` says. Another rank weight than the reader's own ranks by the rank prior alone
        (no passage score, no evidence summed) and gives no confidence.
        """
        if rank_weights is None:
            weights = [self.settings.rank_weight]
        else:
            weights = [_CHECKS["rank_weight"]("rank_weight", weight) for weight in rank_weights]
        for count in counts:
            check_positive_int("count", count, "(Documents of a prefix)")
        top_k = check_positive_int("top_k", self.settings.answer_top_k if top_k is None else top_k)
        readable = [document for document in documents[: max(counts, default=0)] if _has_text(document)]
        if query.strip() == "" or not readable:
            return {(count, weight): [] for count in counts for weight in weights}
        contents = [str(document.content) for document in readable]
        spans = read_passages_batch(self._loaded(), [query], [contents], self.settings, top_k)[0]
        return {
            (count, weight): self._answers(
                query, readable[:count], contents[:count], spans[:count], top_k, self.settings.score_threshold, weight
            )
            for count in counts
            for weight in weights
        }

    def _answers(
        self, query: str, documents: list[Document], contents: list[str], spans: list[list[PassageSpan]],
        top_k: int, threshold: float | str | None, rank_weight: float | None = None,
    ) -> list[ExtractedAnswer]:
        rank_weight = self.settings.rank_weight if rank_weight is None else rank_weight
        # Another rank weight than the settings' (run_prefixes' comparisons) ranks by the rank prior
        # alone: no passage score, no evidence summed, no calibration (it holds for the settings' ranking).
        configured = rank_weight == self.settings.rank_weight
        calibration = self.calibration if configured else None
        confidence_threshold = None
        if threshold == AUTO_THRESHOLD:
            if calibration is None:
                raise ConfigError(
                    f"score_threshold='auto' needs an answer calibration (spanqa calibrate) fitted with "
                    f"rank_weight={rank_weight}; give a number"
                )
            confidence_threshold = calibration.threshold
        return build_answers(
            query, documents, contents, spans,
            top_k=top_k,
            context_chars=self.settings.context_chars,
            merge_same_text=self.merge_same_answers,
            score_threshold=None if threshold == AUTO_THRESHOLD else threshold,
            rank_weight=rank_weight,
            passage_weight=self.settings.passage_weight if configured else 0.0,
            evidence_weight=self.settings.evidence_weight if configured else 0.0,
            calibration=calibration,
            confidence_threshold=confidence_threshold,
        )

    def _read_adaptively(
        self, queries: list[str], documents: list[list[Document]], contents: list[list[str]], top_ks: list[int]
    ) -> list[list[list[PassageSpan]]]:
        """Each query's Documents read in rounds of `ADAPTIVE_ROUND_DOCUMENTS`, all queries still
        reading sharing one batch per round; a query stops once no unread Document could outrank
        its best answer. Result i holds the spans of the Documents query i read, in order."""
        if self.calibration is None:
            raise ConfigError("adaptive reading needs an answer calibration (spanqa calibrate)")
        bound = self.calibration.max_logit_sum
        spans: list[list[list[PassageSpan]]] = [[] for _ in queries]
        reading = list(range(len(queries)))
        step = defaults.ADAPTIVE_ROUND_DOCUMENTS
        while reading:
            chunks = [contents[q][len(spans[q]) : len(spans[q]) + step] for q in reading]
            read = read_passages_batch(
                self._loaded(), [queries[q] for q in reading], chunks, self.settings, [top_ks[q] for q in reading]
            )
            still_reading = []
            for q, chunk_spans in zip(reading, read, strict=True):
                offset = len(spans[q])
                spans[q].extend(
                    [PassageSpan(offset + s.passage_index, s.start, s.end, s.start_logit, s.end_logit) for s in per]
                    for per in chunk_spans
                )  # numbered by the query's Documents, not the round's
                read_count = len(spans[q])
                if read_count < len(contents[q]) and not self._beyond_reach(spans[q], documents[q], contents[q], bound):
                    still_reading.append(q)
            reading = still_reading
        return spans

    def _beyond_reach(
        self, spans: list[list[PassageSpan]], documents: list[Document], contents: list[str], bound: float
    ) -> bool:
        """Whether the best answer of the Documents read (the first len(spans)) outranks any span with
        a logit sum up to `bound` in the next Document (and so in every later one, whose priors are
        no higher). With evidence summed, an answer could also gain from every unread Document: the
        runner-up, or an answer found only in them, is then counted with each unread Document
        adding a span at that bound."""
        read_count = len(spans)
        priors = document_priors(documents[: read_count + 1], self.settings.rank_weight, self.settings.passage_weight)
        groups = group_spans(
            spans, contents[:read_count], merge_same_text=self.merge_same_answers, score_threshold=None,
            passage_priors=priors[:read_count], evidence_weight=self.settings.evidence_weight,
        )
        if not groups:
            return False
        reach = bound + priors[read_count]
        if self.settings.evidence_weight == 0:
            return groups[0].ranking_sum >= reach
        unread = [reach] * (len(documents) - read_count)
        rivals = [unread] + ([[groups[1].ranking_sum, *unread]] if len(groups) > 1 else [])
        return all(groups[0].ranking_sum >= evidence_sum(rival, self.settings.evidence_weight) for rival in rivals)
