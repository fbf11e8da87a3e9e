"""The reader: quotes answer spans from passages with an extractive question-answering model.

`ExtractiveReader` is the Haystack component; `read_passages` is the same reading without Haystack
documents; the functions of `spanqa.reader.decoding` turn logits into spans and need only numpy.
"""

from spanqa.reader.decoding import (
    SCORE_CALIBRATION,
    SpanCandidates,
    best_spans,
    comparable_score,
    span_log_probabilities,
    word_aligned_char_spans,
)
from spanqa.reader.extractive_reader import ExtractiveReader
from spanqa.reader.loading import LoadedQAModel, load_qa_model, prepare_qa_model
from spanqa.reader.span_reader import PassageSpan, ReadingSettings, read_passages

__all__ = [
    "SCORE_CALIBRATION",
    "ExtractiveReader",
    "LoadedQAModel",
    "PassageSpan",
    "ReadingSettings",
    "SpanCandidates",
    "best_spans",
    "comparable_score",
    "load_qa_model",
    "prepare_qa_model",
    "read_passages",
    "span_log_probabilities",
    "word_aligned_char_spans",
]
