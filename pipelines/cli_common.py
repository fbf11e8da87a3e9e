"""What the `spanqa` sub-commands share: argument types, progress bars, the reader options' settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from spanqa import defaults


def tokens_or_all(text: str) -> int | None:
    return None if text.strip().lower() == "all" else positive_int(text)


def meta_option(text: str) -> tuple[str, Any]:
    """A --meta KEY=VALUE of `spanqa index` (see spanqa.indexing.ingest.file_meta)."""
    from spanqa.errors import ConfigError
    from spanqa.indexing.ingest.file_meta import parse_meta_option

    try:
        return parse_meta_option(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a score from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a score from 0 to 1, got {value}")
    return value


def threshold(text: str) -> float | str:
    """A --threshold: a score from 0 to 1, or 'auto' (the index's answer calibration decides)."""
    return defaults.AUTO_THRESHOLD if text == defaults.AUTO_THRESHOLD else score(text)


def counts(text: str) -> tuple[int, ...]:
    """--passages of eval: one count or a comma-separated list of them."""
    return tuple(positive_int(part.strip()) for part in text.split(","))


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def shows_progress(args: argparse.Namespace) -> bool:
    return not args.json and sys.stderr.isatty()


@contextmanager
def progress(total: int, unit: str, description: str, enabled: bool) -> Iterator[Callable[..., None] | None]:
    """A callback that advances a tqdm bar on stderr by one, when `enabled`; else None."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=description, file=sys.stderr)
    try:
        yield lambda *_done: bar.update(1)
    finally:
        bar.close()


def reader_settings(args: argparse.Namespace) -> dict:
    """The DocumentQA settings of the options `reader_options` adds to a sub-command."""
    return dict(
        reader=args.reader,
        max_answer_length=args.max_answer_length,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        fast_reader=args.fast,
        rank_weight=args.rank_weight,
        adaptive_reading=args.adaptive,
    )
