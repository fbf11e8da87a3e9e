"""The reader: reranks passages for a question and quotes answer spans from them with an extractive
question-answering model.

`ExtractiveReader` is the Haystack component; `read_passages` (one question) and
`read_passages_batch` (many) are the same reading without Haystack documents; the functions of
`spanqa.reader.decoding` turn logits into spans and need only numpy; `spanqa.reader.forward` runs
the model over batches of windows (packed DistilBERT or the model's own padded forward), and
`spanqa.reader.fast_mode` in the int8 ONNX Runtime fast mode. The reader's settings are
`spanqa.settings.ReaderSettings`: `read_passages` takes them as they are, and `ExtractiveReader`
takes them as keywords (or `ExtractiveReader.from_settings`). `PassageReranker` (a Haystack
component, settings `spanqa.settings.RerankSettings`) orders the retrieved passages first;
`spanqa.reader.reranking` holds how its scores, the retrieval rank and the spans combine.
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
from spanqa.reader.reranker import PassageReranker
from spanqa.reader.span_reader import PassageSpan, read_passages, read_passages_batch

__all__ = [
    "SCORE_CALIBRATION",
    "ExtractiveReader",
    "LoadedQAModel",
    "PassageReranker",
    "PassageSpan",
    "SpanCandidates",
    "best_spans",
    "comparable_score",
    "load_qa_model",
    "prepare_qa_model",
    "read_passages",
    "read_passages_batch",
    "span_log_probabilities",
    "word_aligned_char_spans",
]
