"""The `spanqa train` sub-command: its options (settings from their declarations, spanqa.settings)
and its handler, named as "module:function" so torch loads only when it runs."""

from __future__ import annotations

import argparse

from spanqa.pipelines.cli_common import json_option
from spanqa.settings import (
    DeviceSettings,
    ReaderSettings,
    RerankSettings,
    RetrievalSettings,
    TrainSettings,
    add_options,
)

WINDOWS = ["reader", "max_seq_length", "doc_stride", "max_question_length"]


def add_commands(commands: argparse._SubParsersAction) -> None:
    sub = commands.add_parser(
        "train", help="fine-tune the reader (and the reranker) on SQuAD-format questions or the service's feedback",
    )
    sub.set_defaults(handler="spanqa.training.cli_run:run_train")
    sub.add_argument("data", nargs="*", metavar="DATA.json",
                     help="SQuAD v1.1 files to learn from (the service's feedback export is one)")
    sub.add_argument("--out", required=True, metavar="DIR",
                     help="where the trained reader is written (a transformers model directory, with training.json)")
    sub.add_argument("--from-feedback", metavar="INDEX",
                     help="also learn from the feedback the service over INDEX collected (answers marked wrong "
                     "are unlearnt)")
    sub.add_argument("--index", metavar="DIR",
                     help="read each question with the passages retrieved from this index that do not hold its "
                     "answer, under one softmax (multi-passage training); without it, each question's own passage")
    sub.add_argument("--eval", dest="eval_file", metavar="FILE.json",
                     help="held-out SQuAD questions evaluated before and after (default: --holdout of the data's "
                     "articles)")
    sub.add_argument("--reranker-out", metavar="DIR",
                     help="also train --reranker on the same questions (listwise over its own and the retrieved "
                     "passages; needs --index) and write it here")
    sub.add_argument("--resume", action="store_true",
                     help="continue the unfinished run in --out from its last checkpoint (same data order, optimizer "
                     "and schedule)")
    sub.add_argument("--progress-file", metavar="FILE",
                     help="also write the run's progress as JSON to FILE after every step ({\"stage\", \"step\", "
                     "\"total\", \"loss\"}; replaced whole, for a supervising process)")
    add_options(sub, TrainSettings)
    add_options(sub, ReaderSettings, WINDOWS, reader={"help": "the reader to start from: a hub id or a local "
                                                      "directory"})
    add_options(sub, RerankSettings, ["reranker", "rerank", "rerank_max_tokens"])
    add_options(sub, RetrievalSettings, ["retrieval", "retriever_top_k"])
    add_options(sub, DeviceSettings)
    json_option(sub, help="print the run's result as JSON")
