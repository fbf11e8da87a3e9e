"""What `spanqa eval` and `spanqa calibrate` do (their options are declared in spanqa.pipelines.cli):
measure answer quality on SQuAD-format questions, and fit the index's answer calibration.

Imported by spanqa.cli only when one of these commands runs: DocumentQA loads torch and Haystack.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from spanqa.errors import ConfigError
from spanqa.paths import user_path
from spanqa.pipelines.abstention import calibrate
from spanqa.pipelines.api import DocumentQA
from spanqa.pipelines.cli_common import progress, shows_progress
from spanqa.pipelines.evaluation import evaluate, load_squad, write_contexts
from spanqa.settings import QASettings, from_args


def _evaluation_mode(args: argparse.Namespace) -> str:
    mode = "retrieval-only" if args.retrieval_only else "reader-only" if args.reader_only else "full"
    if mode != "reader-only" and args.index is None and not args.build:
        raise ConfigError("spanqa eval needs --index DIR (an index of the documents the questions are about) "
                          "or --build (index the file's own contexts first)")
    return mode


def run_eval(args: argparse.Namespace) -> int:
    mode = _evaluation_mode(args)
    squad = load_squad(args.file)
    settings = from_args(QASettings, args).replace(retriever_top_k=max(args.passages))
    with tempfile.TemporaryDirectory(prefix="spanqa-eval-") as scratch:
        index_dir = Path(scratch) / "index" if args.index is None else user_path(args.index)
        qa = DocumentQA(index_dir, settings=settings)
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
                sources=sources, threshold=args.score_threshold, on_question_done=advance,
            )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    squad = load_squad(args.file)
    # Every passage is read: the calibration is fitted on them all (calibrate takes no --adaptive).
    qa = DocumentQA(user_path(args.index), settings=from_args(QASettings, args))
    count = len(squad.questions) if args.limit is None else min(args.limit, len(squad.questions))
    with progress(count, "question", "asking each question twice", shows_progress(args)) as advance:
        calibration, report = calibrate(
            qa, squad, file=str(args.file), passages=args.retriever_top_k, target_coverage=args.coverage,
            limit=args.limit, on_question_done=advance,
        )
    calibration.save(qa.calibration_path)
    report.saved_to = str(qa.calibration_path)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.to_text())
    return 0
