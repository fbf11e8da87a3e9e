"""What `spanqa train` does: build the request from the command line, train with a progress bar,
stop cleanly on the first Ctrl-C (after a checkpoint; a second one interrupts at once), and print
where the model is with its before/after figures."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from spanqa.atomic_files import write_json_atomically
from spanqa.errors import ConfigError
from spanqa.paths import user_path
from spanqa.pipelines.cli_common import shows_progress
from spanqa.settings import QASettings, TrainSettings, from_args
from spanqa.training.run import TrainRequest, train


def request_from(args: argparse.Namespace) -> TrainRequest:
    if not args.data and args.from_feedback is None:
        raise ConfigError("spanqa train needs DATA.json files or --from-feedback INDEX to learn from")
    optional = {name: None if getattr(args, name) is None else user_path(getattr(args, name))
                for name in ("from_feedback", "index", "eval_file", "reranker_out")}
    return TrainRequest(
        out=user_path(args.out), data=tuple(user_path(path) for path in args.data),
        feedback_index=optional["from_feedback"], index=optional["index"], eval_file=optional["eval_file"],
        reranker_out=optional["reranker_out"], resume=args.resume,
    )


def run_train(args: argparse.Namespace) -> int:
    request = request_from(args)
    stop = threading.Event()

    def first_interrupt(signum, frame) -> None:
        print("\nspanqa: stopping after this step and a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    progress_file = None if args.progress_file is None else user_path(args.progress_file)

    def step_done(stage: str, step: int, total: int, loss: float) -> None:
        if progress_file is not None:
            write_json_atomically(progress_file, {"stage": stage, "step": step, "total": total, "loss": loss})

    previous = signal.signal(signal.SIGINT, first_interrupt)
    try:
        result = train(request, from_args(TrainSettings, args), from_args(QASettings, args), stop=stop,
                       show_progress=shows_progress(args), on_step=step_done,
                       say=lambda text: print(f"spanqa: {text}", file=sys.stderr, flush=True))
    finally:
        signal.signal(signal.SIGINT, previous)
    if args.json:
        print(json.dumps({"out": str(result.out), "steps": result.steps, "total_steps": result.total_steps,
                          "stopped": result.stopped, "record": result.record,
                          "before": None if result.before is None else result.before.to_json(),
                          "after": None if result.after is None else result.after.to_json()}, indent=2))
    elif result.stopped:
        print(f"stopped at step {result.steps} of {result.total_steps}; `spanqa train ... --resume` continues")
    else:
        print(f"trained the reader in {result.steps} steps: {result.out}")
        for name, figures in (("before", result.before), ("after", result.after)):
            if figures is not None:
                print(f"{name}: {figures.to_text()}")
    return 130 if result.stopped else 0
