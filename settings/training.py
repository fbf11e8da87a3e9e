"""The settings of `spanqa train`: how long and how fast a reader (and a reranker) learn, and from
which passages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spanqa.settings.checks import flag, non_negative_int, optional, positive_int, positive_number, share
from spanqa.settings.declaring import Settings, setting


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Training: the optimizer, the schedule, the passages each question is read with, checkpoints
    and the held-out evaluation."""

    component: ClassVar[str] = "training"

    epochs: float = setting(1.0, "passes over the training questions", positive_number, metavar="N")
    max_steps: int | None = setting(None, "stop after this many optimizer steps (None: as many as the "
                                    "epochs take)", optional(positive_int), metavar="N")
    learning_rate: float = setting(3e-5, "peak learning rate of AdamW (reached after the warm-up, then "
                                   "decayed linearly to 0)", positive_number, metavar="RATE")
    warmup: float = setting(0.1, "share of the steps over which the learning rate rises to its peak",
                            share, metavar="SHARE")
    weight_decay: float = setting(0.01, "AdamW's weight decay", share, metavar="RATE")
    batch_questions: int = setting(8, "questions per optimizer step, each read with all its passages",
                                   positive_int, metavar="N")
    negatives: int = setting(3, "retrieved passages without the answer read beside each question's own "
                             "under one softmax (with --index; 0: each question's own passage only)",
                             non_negative_int, metavar="N")
    attention_dropout: bool = setting(False, "keep the model's dropout of attention weights while training (on a "
                                      "CPU it multiplies a step's time 2-3x: a random draw for every attention "
                                      "weight); the other dropout is always kept", flag)
    seed: int = setting(0, "seed of the data order, the held-out split and dropout", non_negative_int,
                        metavar="N")
    checkpoint_every: int = setting(200, "steps between checkpoints (--resume continues from the last)",
                                    positive_int, metavar="STEPS")
    holdout: float = setting(0.1, "share of the training articles held out for the before/after "
                             "evaluation when no --eval file is given (0: no evaluation)", share,
                             metavar="SHARE")
    eval_limit: int | None = setting(300, "held-out questions evaluated before and after training "
                                     "(None: all)", optional(positive_int), metavar="N")
