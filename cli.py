"""The `spanqa` command: its parser, assembled from the sub-commands that spanqa.pipelines.cli and
spanqa.service.cli declare, and `main`, which runs the one asked for and turns any error into one
line (spanqa.pipelines.cli_errors). The top of the layers: nothing in spanqa imports it."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence

from spanqa.paths import model_reference
from spanqa.pipelines import cli as pipelines_cli
from spanqa.pipelines.cli_errors import report_error
from spanqa.service import cli as service_cli
from spanqa.training import cli as training_cli

MODEL_OPTIONS = ("reader", "embedder")  # settings naming a model, checked before any model loads


def build_parser() -> argparse.ArgumentParser:
    """The `spanqa` parser: each sub-command with its options, and the handler it runs as
    "module:function" (`handler`)."""
    parser = argparse.ArgumentParser(
        prog="spanqa", description="Answer questions from your documents by quoting the exact span."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pipelines_cli.add_commands(commands)
    training_cli.add_commands(commands)
    service_cli.add_commands(commands)
    return parser


def handler(reference: str) -> Callable[[argparse.Namespace], int]:
    """The function a sub-command runs, from its "module:function" reference."""
    module, name = reference.split(":")
    # Imported here, for the one command that runs: the handlers' modules load torch, Haystack or
    # FastAPI, which `spanqa --help`, a usage error, `token` or `check` must not wait for.
    return getattr(importlib.import_module(module), name)


def quiet_libraries() -> None:
    # Per-file problems are reported by spanqa itself; library chatter would bury them.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is first imported
    try:
        import transformers  # already loaded, or soon, by any command that loads a model

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `spanqa` with `argv` (default: the process's arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        for option in MODEL_OPTIONS:  # a path that is not there, named before anything loads
            if isinstance(getattr(args, option, None), str):
                model_reference(getattr(args, option), f"--{option}")
        return handler(args.handler)(args)
    except KeyboardInterrupt:
        print("spanqa: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one plain line, never a traceback (SPANQA_DEBUG=1 shows it)
        return report_error(exc, getattr(args, "index", None))


if __name__ == "__main__":
    sys.exit(main())
