"""Fine-tuning the reader (and the reranker) on your own questions: SQuAD files or the service's
feedback, each question read with its retrieved passages under one softmax.

    >>> from spanqa.training import TrainRequest, train
    >>> result = train(TrainRequest(out=Path("my-reader"), data=(Path("questions.json"),), index=Path("kb/")))

`train` and its types load torch, transformers and Haystack, so they are imported when first asked
for (`spanqa train --help` and the `spanqa` parser need none of them)."""

import importlib

_PUBLIC = {
    "TrainRequest": "spanqa.training.run", "TrainResult": "spanqa.training.run", "train": "spanqa.training.run",
    "Span": "spanqa.training.data", "TrainExample": "spanqa.training.data", "TrainingData": "spanqa.training.data",
    "read_feedback": "spanqa.training.data", "read_squad": "spanqa.training.data",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'spanqa.training' has no attribute {name!r}")


__all__ = sorted(_PUBLIC)
