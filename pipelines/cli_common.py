"""What the `spanqa` sub-commands share: the options that are not settings (--index, --json, the
passage filters, --meta), their argument types, and progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from spanqa.errors import ConfigError
from spanqa.indexing.ingest.file_meta import parse_meta_option
from spanqa.settings import argument_type, positive_int, share


def whole_number(flag: str) -> Callable[[str], int]:
    """The type of an option that counts and is not a setting (--page, --limit)."""
    return argument_type(flag, int, positive_int)


def share_of_one(flag: str) -> Callable[[str], float]:
    return argument_type(flag, float, share)


def counts(flag: str) -> Callable[[str], tuple[int, ...]]:
    """The type of eval's --passages: one count or a comma-separated list of them."""
    each = whole_number(flag)

    def counts_of(text: str) -> tuple[int, ...]:
        return tuple(each(part.strip()) for part in text.split(","))

    return counts_of


def meta_option(text: str) -> tuple[str, Any]:
    """A --meta KEY=VALUE of `spanqa index` (see spanqa.indexing.ingest.file_meta)."""
    try:
        return parse_meta_option(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def index_option(sub: argparse.ArgumentParser, required: bool = True, help: str = "the index directory") -> None:
    sub.add_argument("--index", required=required, metavar="DIR", help=help)


def json_option(sub: argparse.ArgumentParser, help: str = "print a machine-readable JSON report") -> None:
    sub.add_argument("--json", action="store_true", help=help)


def filter_options(sub: argparse.ArgumentParser) -> None:
    """--file, --page and --filter: which passages a question or a search may find."""
    sub.add_argument("--file", action="append", metavar="PATH",
                     help="only passages of this file (repeat for several)")
    sub.add_argument("--page", type=whole_number("--page"), action="append", metavar="N",
                     help="only passages of page N (repeat for several)")
    sub.add_argument("--filter", metavar="JSON",
                     help='a Haystack filter, e.g. \'{"field": "meta.file_type", "operator": "==", "value": "pdf"}\'')


def shows_progress(args: argparse.Namespace) -> bool:
    return not args.json and sys.stderr.isatty()


@contextmanager
def progress(total: int, unit: str, description: str, enabled: bool) -> Iterator[Callable[..., None] | None]:
    """A callback that advances a tqdm bar on stderr by one, when `enabled`; else None."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm  # only when a bar is shown: a pipe or --json never needs it

    bar = tqdm(total=total, unit=unit, desc=description, file=sys.stderr)
    try:
        yield lambda *_done: bar.update(1)
    finally:
        bar.close()
