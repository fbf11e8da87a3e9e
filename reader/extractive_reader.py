"""ExtractiveReader: the Haystack component that quotes answer spans from retrieved Documents."""

from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import ExtractedAnswer

from spanqa import defaults
from spanqa.devices import check_device
from spanqa.errors import ConfigError, check_positive_int
from spanqa.reader.loading import LoadedQAModel, check_fast, load_qa_model, prepare_qa_model
from spanqa.reader.answers import build_answers, rank_priors
from spanqa.reader.calibration import AnswerCalibration
from spanqa.reader.span_reader import PassageSpan, ReadingSettings, per_question_top_k, read_passages_batch


def _check_context_chars(context_chars: object) -> None:
    if not isinstance(context_chars, int) or isinstance(context_chars, bool) or context_chars < 0:
        raise ConfigError(
            f"context_chars={context_chars!r} must be an integer >= 0 (default {defaults.CONTEXT_CHARS})"
        )


def _check_score_threshold(score_threshold: object) -> None:
    if score_threshold is None or score_threshold == defaults.AUTO_THRESHOLD:
        return
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)) or not (
        0.0 <= score_threshold <= 1.0
    ):
        raise ConfigError(
            f"score_threshold={score_threshold!r} must be a number from 0 to 1, 'auto' (the answer "
            "calibration's threshold), or None to keep every answer"
        )


def _check_rank_weight(rank_weight: object) -> float:
    if isinstance(rank_weight, bool) or not isinstance(rank_weight, (int, float)) or not rank_weight >= 0:
        raise ConfigError(
            f"rank_weight={rank_weight!r} must be a number >= 0 (0: rank answers by the reader's logits "
            f"alone; default {defaults.READER_RANK_WEIGHT})"
        )
    return float(rank_weight)


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
    memory (tests, notebooks), build the reader with `ExtractiveReader.from_loaded(tokenizer, model)`.
    """

    def __init__(
        self,
        model: str = defaults.READER_MODEL,
        device: str = defaults.DEVICE,
        top_k: int = defaults.ANSWER_TOP_K,
        max_answer_length: int = defaults.MAX_ANSWER_LENGTH,
        max_seq_length: int = defaults.MAX_SEQ_LENGTH,
        doc_stride: int = defaults.DOC_STRIDE,
        max_question_length: int = defaults.MAX_QUESTION_LENGTH,
        batch_size: int | None = defaults.READER_BATCH_SIZE,
        context_chars: int = defaults.CONTEXT_CHARS,
        score_threshold: float | None = defaults.SCORE_THRESHOLD,
        merge_same_answers: bool = True,
        max_batch_tokens: int | None = defaults.READER_MAX_BATCH_TOKENS,
        fast: bool = defaults.READER_FAST,
        rank_weight: float = defaults.READER_RANK_WEIGHT,
        calibration: AnswerCalibration | dict | None = None,
        adaptive: bool = False,
    ):
        """
        :param model: Hugging Face hub id or local directory of a question-answering model with a
            fast tokenizer (tokenizer.json).
        :param device: 'auto' (CUDA when torch sees a GPU, else CPU), 'cpu', 'cuda' or 'cuda:N'.
            On CUDA the model runs in fp16.
        :param top_k: answers returned by `run` unless it is given another top_k.
        :param max_answer_length: longest answer, in tokens.
        :param max_seq_length: tokens per (question, passage window) model input.
        :param doc_stride: tokens shared by consecutive windows of one long passage.
        :param max_question_length: questions are cut to this many tokens so a passage fits beside them.
        :param batch_size: most windows per forward pass; None (default): as many as
            `max_batch_tokens` allows.
        :param context_chars: characters of the Document kept on each side of an answer as its context.
        :param score_threshold: answers scoring below this (0..1) are not returned, so a question
            the documents cannot answer gets no answer; "auto": answers whose calibrated confidence
            is below the `calibration`'s threshold are not returned; None (default) returns the best
            spans found.
        :param merge_same_answers: one answer per answer text: the same text found in several
            Documents (or twice in one) is returned once, quoting its best occurrence and listing
            every occurrence in `meta["sources"]`.
        :param max_batch_tokens: tokens per forward pass, counted with padding (windows are sorted
            by length, so there is little); None (default): 8192 on CPU, sized from free GPU memory
            on CUDA.
        :param fast: CPU fast mode: the model runs in ONNX Runtime with int8 weights (needs the
            optional `onnxruntime` and `onnx` packages; warm-up exports and quantises the model,
            seconds). Several times faster than the default exact mode but not identical: the best
            span of a passage agrees with exact mode's in most, not all, cases (see bench/README.md).
            On CUDA the model runs in fp16: `fast` with a "cuda" device is a ConfigError, and with
            "auto" on a GPU it changes nothing.
        :param rank_weight: how much a Document's retrieval rank counts against its spans: a span's
            ranking sum is its start + end logit minus `rank_weight * ln(1 + rank)`. 0 ranks by the
            reader alone; the default was chosen on SQuAD (docs/measurements/answer-quality.md).
        :param calibration: an `AnswerCalibration` (or its dict) fitted for this model and
            `rank_weight`; answers then carry `meta["confidence"]`.
        :param adaptive: read Documents in rounds of a few, in the given order, and stop once the
            best answer's ranking sum is at least the calibration's highest logit sum plus the next
            Document's prior (no unread Document could outrank it). Needs a `calibration`.
        :raises ConfigError: a setting has a value the reader cannot use.
        """
        if not isinstance(model, str) or model.strip() == "":
            raise ConfigError(f"model={model!r} must be a hub id or a local model directory")
        check_device(device)
        check_positive_int("top_k", top_k, f"(default {defaults.ANSWER_TOP_K})")
        _check_context_chars(context_chars)
        _check_score_threshold(score_threshold)
        if not isinstance(merge_same_answers, bool):
            raise ConfigError(f"merge_same_answers={merge_same_answers!r} must be True or False")
        check_fast(fast)
        if fast and device.startswith("cuda"):
            raise ConfigError(
                f"fast=True is a CPU mode (int8 ONNX Runtime) and device={device!r} is a GPU, where the "
                "model already runs in fp16: use fast=False, or device='cpu'"
            )
        self.rank_weight = _check_rank_weight(rank_weight)
        if isinstance(calibration, dict):
            calibration = AnswerCalibration.from_dict(calibration)
        if calibration is not None and not isinstance(calibration, AnswerCalibration):
            raise ConfigError(f"calibration={calibration!r} must be an AnswerCalibration, its dict, or None")
        if not isinstance(adaptive, bool):
            raise ConfigError(f"adaptive={adaptive!r} must be True or False")
        if calibration is None and (adaptive or score_threshold == defaults.AUTO_THRESHOLD):
            raise ConfigError(
                "adaptive reading and score_threshold='auto' need an answer calibration (spanqa calibrate): "
                "give calibration=..., or adaptive=False and a numeric threshold"
            )
        self.calibration = calibration
        self.adaptive = adaptive
        self.fast = fast
        self.model = model
        self.device = device
        self.top_k = top_k
        self.context_chars = context_chars
        self.score_threshold = score_threshold
        self.merge_same_answers = merge_same_answers
        self.settings = ReadingSettings(
            max_answer_length=max_answer_length,
            max_seq_length=max_seq_length,
            doc_stride=doc_stride,
            max_question_length=max_question_length,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )
        self._qa_model: LoadedQAModel | None = None

    @classmethod
    def from_loaded(cls, tokenizer: Any, model: Any, **settings: Any) -> ExtractiveReader:
        """A warm reader around a tokenizer and model already in memory; `warm_up` then loads nothing.

        `model` is any torch.nn.Module called with input_ids (and attention_mask/token_type_ids
        where its forward() declares them) that returns an object with `start_logits` and
        `end_logits` of shape (batch, tokens). `settings` are `__init__` keyword arguments; the
        `model` setting only names the model in `to_dict`.
        """
        reader = cls(**settings)
        reader._adopt(prepare_qa_model(tokenizer, model, reader.device, fast=reader.fast))
        return reader

    def _adopt(self, qa_model: LoadedQAModel) -> None:
        self.settings.check_fits(qa_model)
        self._qa_model = qa_model

    def warm_up(self) -> None:
        """Load the tokenizer and model onto the device, once.

        :raises ModelLoadError: the model cannot be loaded (unknown hub id offline, missing directory).
        :raises ConfigError: the tokenizer is not a fast one, the device is unavailable, or the
            window settings do not fit the model.
        """
        if self._qa_model is not None:
            return
        self._adopt(load_qa_model(self.model, self.device, fast=self.fast))

    def _loaded(self) -> LoadedQAModel:
        self.warm_up()
        if self._qa_model is None:
            raise RuntimeError("warm_up returned without a model; this is a bug in ExtractiveReader")
        return self._qa_model

    def to_dict(self) -> dict[str, Any]:
        """The reader as a Haystack pipeline stores it: its model and settings."""
        return default_to_dict(
            self,
            model=self.model,
            device=self.device,
            top_k=self.top_k,
            max_answer_length=self.settings.max_answer_length,
            max_seq_length=self.settings.max_seq_length,
            doc_stride=self.settings.doc_stride,
            max_question_length=self.settings.max_question_length,
            batch_size=self.settings.batch_size,
            context_chars=self.context_chars,
            score_threshold=self.score_threshold,
            merge_same_answers=self.merge_same_answers,
            max_batch_tokens=self.settings.max_batch_tokens,
            fast=self.fast,
            rank_weight=self.rank_weight,
            calibration=None if self.calibration is None else self.calibration.to_dict(),
            adaptive=self.adaptive,
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
        top_ks = per_question_top_k(self.top_k if top_k is None else top_k, len(queries))
        if len(queries) != len(documents):
            raise ConfigError(
                f"run_batch got {len(queries)} queries and {len(documents)} document lists: give one list per query"
            )
        if score_thresholds is None:
            thresholds = [self.score_threshold] * len(queries)
        else:
            thresholds = list(score_thresholds)
            if len(thresholds) != len(queries):
                raise ConfigError(
                    f"run_batch got {len(thresholds)} score thresholds for {len(queries)} queries: give one per query"
                )
            for threshold in thresholds:
                _check_score_threshold(threshold)
        answers: list[list[ExtractedAnswer]] = [[] for _ in queries]
        readable = [[document for document in docs if _has_text(document)] for docs in documents]
        asked = [index for index, query in enumerate(queries) if query.strip() != "" and readable[index]]
        if not asked:
            return {"answers": answers}
        contents = [[str(document.content) for document in readable[index]] for index in asked]
        asked_queries = [queries[index] for index in asked]
        asked_top_ks = [top_ks[index] for index in asked]
        if self.adaptive:
            spans = self._read_adaptively(asked_queries, contents, asked_top_ks)
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
        `adaptive` says; answers carry a confidence only under the calibration's rank weight.
        """
        weights = [self.rank_weight] if rank_weights is None else [_check_rank_weight(w) for w in rank_weights]
        for count in counts:
            check_positive_int("count", count, "(Documents of a prefix)")
        top_k = check_positive_int("top_k", self.top_k if top_k is None else top_k)
        readable = [document for document in documents[: max(counts, default=0)] if _has_text(document)]
        if query.strip() == "" or not readable:
            return {(count, weight): [] for count in counts for weight in weights}
        contents = [str(document.content) for document in readable]
        spans = read_passages_batch(self._loaded(), [query], [contents], self.settings, top_k)[0]
        return {
            (count, weight): self._answers(
                query, readable[:count], contents[:count], spans[:count], top_k, self.score_threshold, weight
            )
            for count in counts
            for weight in weights
        }

    def _answers(
        self, query: str, documents: list[Document], contents: list[str], spans: list[list[PassageSpan]],
        top_k: int, threshold: float | str | None, rank_weight: float | None = None,
    ) -> list[ExtractedAnswer]:
        rank_weight = self.rank_weight if rank_weight is None else rank_weight
        calibration = self.calibration if rank_weight == self.rank_weight else None
        confidence_threshold = None
        if threshold == defaults.AUTO_THRESHOLD:
            if calibration is None:
                raise ConfigError(
                    f"score_threshold='auto' needs an answer calibration (spanqa calibrate) fitted with "
                    f"rank_weight={rank_weight}; give a number"
                )
            confidence_threshold = calibration.threshold
        return build_answers(
            query, documents, contents, spans,
            top_k=top_k,
            context_chars=self.context_chars,
            merge_same_text=self.merge_same_answers,
            score_threshold=None if threshold == defaults.AUTO_THRESHOLD else threshold,
            rank_weight=rank_weight,
            calibration=calibration,
            confidence_threshold=confidence_threshold,
        )

    def _read_adaptively(
        self, queries: list[str], contents: list[list[str]], top_ks: list[int]
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
                if read_count < len(contents[q]) and not self._beyond_reach(spans[q], read_count, bound):
                    still_reading.append(q)
            reading = still_reading
        return spans

    def _beyond_reach(self, spans: list[list[PassageSpan]], read_count: int, bound: float) -> bool:
        """Whether the best answer of the Documents read outranks any span with a logit sum up to
        `bound` in the next Document (and so in every later one, whose priors are lower)."""
        priors = rank_priors(read_count + 1, self.rank_weight)
        best = max(
            (s.start_logit + s.end_logit + priors[s.passage_index] for per in spans for s in per), default=None
        )
        return best is not None and best >= bound + priors[read_count]
