"""`spanqa eval` and `spanqa calibrate`: measure answer quality on SQuAD-format questions, and fit the
index's answer calibration."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from spanqa import defaults
from spanqa.pipelines.cli_common import (
    counts,
    positive_int,
    progress,
    reader_settings,
    score,
    shows_progress,
    threshold,
)


def add_commands(commands, reader_options: Callable, retrieval: Callable, embedding_options: Callable) -> None:
    evaluation = commands.add_parser(
        "eval", help="measure retrieval recall and answer EM/F1 on a SQuAD-format file of questions"
    )
    evaluation.add_argument("file", metavar="FILE.json", help="questions, answers and contexts in SQuAD v1.1 format")
    evaluation.add_argument("--index", metavar="DIR",
                            help="the index to evaluate (with --build: build it there from FILE's contexts)")
    evaluation.add_argument("--build", action="store_true",
                            help="index FILE's contexts first (into --index DIR, else a temporary index)")
    evaluation.add_argument("--embedder", metavar="MODEL",
                            help=f"embedding model of a built index (default: {defaults.EMBEDDER_MODEL})")
    embedding_options(evaluation)
    reader_options(evaluation)
    evaluation.add_argument("--passages", type=counts, default=(defaults.RETRIEVER_TOP_K,), metavar="N[,N...]",
                            help="passages the reader reads end to end, or several counts (1,3,5,10,20: the "
                            "passages are read once and each count scored); recall is also given at each "
                            "(default: %(default)s)")
    evaluation.add_argument("--threshold", type=threshold, default=defaults.SCORE_THRESHOLD, metavar="SCORE|auto",
                            help="as for ask; the report then gives the share of questions answered")
    stages = evaluation.add_mutually_exclusive_group()
    stages.add_argument("--retrieval-only", action="store_true", help="skip the reader")
    stages.add_argument("--reader-only", action="store_true",
                        help="only the reader, given each question's gold paragraph (no index needed)")
    evaluation.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N questions")
    retrieval(evaluation)
    evaluation.add_argument(
        "--device", default=defaults.DEVICE, choices=["auto", "cpu", "cuda"],
        help="where models run (default: %(default)s)",
    )
    evaluation.add_argument("--json", action="store_true", help="print a machine-readable JSON report")

    calibration = commands.add_parser(
        "calibrate", help="fit the index's answer calibration (for --threshold auto and --adaptive) and measure it"
    )
    calibration.add_argument("file", metavar="FILE.json",
                             help="SQuAD v1.1-format questions whose contexts the index holds (built by eval --build)")
    calibration.add_argument("--index", required=True, metavar="DIR", help="the index; the calibration is saved in it")
    reader_options(calibration)
    calibration.add_argument("--passages", type=positive_int, default=defaults.RETRIEVER_TOP_K, metavar="N",
                             help="retrieved passages the reader reads, as ask will (default: %(default)s)")
    calibration.add_argument("--coverage", type=score, default=defaults.CALIBRATION_TARGET_COVERAGE, metavar="SHARE",
                             help="share of answerable questions --threshold auto keeps answered (default: %(default)s)")
    calibration.add_argument("--limit", type=positive_int, metavar="N", help="use the first N questions")
    retrieval(calibration)
    calibration.add_argument("--device", default=defaults.DEVICE, choices=["auto", "cpu", "cuda"],
                             help="where models run (default: %(default)s)")
    calibration.add_argument("--json", action="store_true", help="print a machine-readable JSON report")


def run_eval(args: argparse.Namespace) -> int:
    import tempfile

    from spanqa.errors import ConfigError
    from spanqa.pipelines.api import DocumentQA
    from spanqa.pipelines.evaluation import evaluate, load_squad, write_contexts

    mode = "retrieval-only" if args.retrieval_only else "reader-only" if args.reader_only else "full"
    if mode != "reader-only" and args.index is None and not args.build:
        raise ConfigError("spanqa eval needs --index DIR (an index of the documents the questions are about) "
                          "or --build (index the file's own contexts first)")
    squad = load_squad(args.file)
    with tempfile.TemporaryDirectory(prefix="spanqa-eval-") as scratch:
        index_dir = Path(scratch) / "index" if args.index is None else Path(args.index)
        qa = DocumentQA(
            index_dir,
            embedder=args.embedder,
            device=args.device,
            retriever_top_k=max(args.passages),
            score_threshold=args.threshold,
            retrieval=args.retrieval,
            dense_weight=args.dense_weight,
            embedder_precision=args.embedder_precision,
            embed_max_tokens=args.embed_max_tokens,
            **reader_settings(args),
        )
        sources = None
        if args.build and mode != "reader-only":
            # Next to the index, not inside it: the contexts are documents like any others.
            contexts_dir = Path(scratch) / "contexts" if args.index is None else Path(f"{index_dir}-contexts")
            sources = write_contexts(squad, contexts_dir)
            with progress(len(sources), "file", "indexing contexts", shows_progress(args)) as advance:
                built = qa.index([contexts_dir], on_file_done=advance)
            for skipped in built.skipped:
                print(f"spanqa: skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
        count = len(squad.questions) if args.limit is None else min(args.limit, len(squad.questions))
        with progress(count, "question", "evaluating", shows_progress(args)) as advance:
            report = evaluate(
                qa, squad, file=str(args.file), mode=mode, passages=args.passages, limit=args.limit,
                sources=sources, threshold=args.threshold, on_question_done=advance,
            )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from spanqa.pipelines.abstention import calibrate
    from spanqa.pipelines.api import DocumentQA
    from spanqa.pipelines.evaluation import load_squad

    squad = load_squad(args.file)
    options = reader_settings(args)
    options["adaptive_reading"] = False  # every passage is read: the calibration is fitted on them all
    qa = DocumentQA(
        Path(args.index), device=args.device, retriever_top_k=args.passages, retrieval=args.retrieval,
        dense_weight=args.dense_weight, **options,
    )
    count = len(squad.questions) if args.limit is None else min(args.limit, len(squad.questions))
    with progress(count, "question", "asking each question twice", shows_progress(args)) as advance:
        calibration, report = calibrate(
            qa, squad, file=str(args.file), passages=args.passages, target_coverage=args.coverage,
            limit=args.limit, on_question_done=advance,
        )
    calibration.save(qa.calibration_path)
    report.saved_to = str(qa.calibration_path)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0
