"""One training run, from the request to the trained model directory: read the data, hold out
questions, find each question's retrieved passages without its answer (with an index), evaluate the
base, train the reader (and the reranker), write the models with their training record, evaluate
again. `train` is the Python API; `spanqa train` and the service's training job call it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification, AutoTokenizer

import spanqa
from spanqa.devices import resolve_device
from spanqa.errors import ConfigError, ModelLoadError
from spanqa.paths import model_reference
from spanqa.pipelines.api import DocumentQA
from spanqa.pipelines.evaluation import contains_an_answer
from spanqa.settings import QASettings, TrainSettings
from spanqa.training.data import TrainExample, TrainingData, held_out_split, read_feedback, read_squad
from spanqa.training.features import reader_groups
from spanqa.training.heldout import HeldOutFigures, as_squad_set, held_out_figures
from spanqa.training.loop import Trainer, checkpoints_in, total_steps
from spanqa.training.tasks import ReaderTask, RerankTask

RECORD_FILE = "training.json"
CHECKPOINTS = "checkpoints"
LOG_EVERY = 25  # steps between progress lines when there is no progress bar
NEGATIVE_SEARCH_EXTRA = 10  # retrieved beyond `negatives`, to find enough without the answer


@dataclass(frozen=True)
class TrainRequest:
    """What to learn from and where to write: SQuAD files (`data`), an index's collected feedback
    (`feedback_index`), the index whose passages become negatives (`index`), a held-out SQuAD file
    (`eval_file`; None: a share of the data), and the output directories."""

    out: Path
    data: tuple[Path, ...] = ()
    feedback_index: Path | None = None
    index: Path | None = None
    eval_file: Path | None = None
    reranker_out: Path | None = None
    resume: bool = False


@dataclass
class TrainResult:
    out: Path
    steps: int
    total_steps: int
    stopped: bool
    record: dict[str, Any] = field(default_factory=dict)
    before: HeldOutFigures | None = None
    after: HeldOutFigures | None = None


def read_training_data(request: TrainRequest) -> TrainingData:
    data = TrainingData()
    for path in request.data:
        data.extend(read_squad(path))
    if request.feedback_index is not None:
        data.extend(read_feedback(request.feedback_index))
    if not data.examples:
        raise ConfigError("nothing to train on: give SQuAD files with answered questions, or --from-feedback INDEX "
                          "of an index whose service collected feedback")
    return data


def _check_out(request: TrainRequest) -> None:
    for out in (request.out, request.reranker_out):
        if out is None:
            continue
        unfinished = (out / CHECKPOINTS).is_dir()
        if (out / "config.json").is_file() and not unfinished:
            raise ConfigError(f"--out {out.name}: the directory already holds a model; give a new directory")
        if unfinished and not request.resume and (checkpoints_in(out / CHECKPOINTS / "reader")
                                                  or checkpoints_in(out / CHECKPOINTS / "reranker")
                                                  or (out / "config.json").is_file()):
            raise ConfigError(f"--out {out.name} holds an unfinished run: add --resume to continue it, or give "
                              "a new directory")
    if request.reranker_out is not None and request.index is None:
        raise ConfigError("--reranker-out needs --index: the reranker learns from retrieved passages")


def find_negatives(examples: Sequence[TrainExample], index: Path, settings: QASettings, count: int,
                   cache: Path, say: Callable[[str], None]) -> list[list[str]]:
    """For each example, the first `count` passages hybrid (or the set) retrieval finds in `index`
    that hold none of its answers; cached beside the checkpoints, so a resumed run reads the same."""
    key = hashlib.sha256(json.dumps([[e.question, e.context] for e in examples]).encode()).hexdigest()
    if cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("key") == key and saved.get("count") == count:
            return saved["negatives"]
    # Retrieval alone ranks the candidates: reranking thousands of questions would cost more than it teaches.
    qa = DocumentQA(index, settings=settings.replace(rerank=0))
    if not qa.files():
        raise ConfigError(f"--index {index.name} holds no documents to draw retrieved passages from")
    negatives = []
    for number, example in enumerate(examples):
        found = []
        for passage in qa.search(example.question, top_k=count + NEGATIVE_SEARCH_EXTRA):
            if len(found) == count:
                break
            if example.answers and contains_an_answer(passage.text, example.answer_texts()):
                continue
            if passage.text.strip() and passage.text not in found:
                found.append(passage.text)
        negatives.append(found)
        if (number + 1) % 1000 == 0:
            say(f"retrieved the passages of {number + 1} of {len(examples)} questions")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "count": count, "negatives": negatives}), encoding="utf-8")
    return negatives


ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")  # BERT's, DistilBERT's


def _load(kind: str, name: str, device: torch.device, settings: TrainSettings) -> tuple[Any, Any]:
    """The base's fast tokenizer and its model in float32 on `device`, attention dropout off unless
    `settings.attention_dropout` (the saved config keeps the base's value)."""
    torch.manual_seed(settings.seed)  # a base without this head gets it drawn at random: the same for the same seed
    loader = AutoModelForQuestionAnswering if kind == "reader" else AutoModelForSequenceClassification
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        config = AutoConfig.from_pretrained(name, **({} if kind == "reader" else {"num_labels": 1}))
        kept = {key: getattr(config, key) for key in ATTENTION_DROPOUT_KEYS if hasattr(config, key)}
        if not settings.attention_dropout:
            for key in kept:
                setattr(config, key, 0.0)
        model = loader.from_pretrained(name, config=config, dtype=torch.float32)
        for key, value in kept.items():  # what the model is built with stays; what it saves is the base's
            setattr(model.config, key, value)
    except Exception as error:  # transformers raises OSError, ValueError... for a bad model
        raise ModelLoadError.from_cause(f"{kind} model", name, error) from error
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"the {kind} {name} has no fast tokenizer (tokenizer.json): training needs its offsets")
    return tokenizer, model.to(device)


def _fingerprint(data: TrainingData, settings: TrainSettings, qa: QASettings, base: str, kind: str) -> dict:
    return {"data": data.inputs, "examples": len(data.examples), "settings": settings.to_dict(), "base": base,
            "kind": kind, "windows": [qa.reader.max_seq_length, qa.reader.doc_stride, qa.reader.max_question_length]}


def _write_model(model: Any, tokenizer: Any, out: Path, record: dict[str, Any]) -> None:
    """The model, its tokenizer and the training record into `out`; config.json last, so a directory
    with one holds a whole model."""
    partial = out / ".model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    names = sorted(path.name for path in partial.iterdir())
    for name in [n for n in names if n != "config.json"] + ["config.json"]:
        os.replace(partial / name, out / name)
    partial.rmdir()


class _Run:
    """The state of one `train` call, stage by stage."""

    def __init__(self, request: TrainRequest, settings: TrainSettings, qa: QASettings, say: Callable[[str], None],
                 show_progress: bool):
        self.request, self.settings, self.qa, self.say, self.show = request, settings, qa, say, show_progress
        self.device = torch.device(resolve_device(qa.device.device))
        self.checkpoints = request.out / CHECKPOINTS

    def split(self, data: TrainingData) -> tuple[list[TrainExample], list[TrainExample]]:
        if self.request.eval_file is not None:
            held = read_squad(self.request.eval_file).examples
            self.say(f"held out: {len(held)} questions of {self.request.eval_file.name}")
            return data.examples, held
        train, held = held_out_split(data.examples, self.settings.holdout, self.settings.seed)
        if held:
            self.say(f"held out: {len(held)} of {len(data.examples)} questions (their articles are not trained on)")
        return train, held

    def figures(self, held: list[TrainExample], reader: str, reranker: str | None, name: str) -> HeldOutFigures | None:
        """Held-out figures of `reader`, computed once per run (kept beside the checkpoints)."""
        if not held:
            return None
        saved = self.checkpoints / f"{name}.json"
        if saved.is_file():
            return HeldOutFigures.from_json(json.loads(saved.read_text(encoding="utf-8")))
        settings = self.qa.replace(reader=reader) if reranker is None else self.qa.replace(reader=reader, reranker=reranker)
        passages = tuple(sorted({1, self.qa.retrieval.retriever_top_k}))
        figures = held_out_figures(as_squad_set(held), settings, self.request.index, passages, self.settings.eval_limit)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(figures.to_json()), encoding="utf-8")
        if name == "before":
            self.say(f"before training: {figures.to_text()}")
        return figures

    def progress(self, name: str, on_step: Callable | None) -> Callable[[int, int, float], None]:
        """The loop's per-step callback: `on_step`'s, and without a progress bar a line every LOG_EVERY steps."""
        started, losses = time.monotonic(), []

        def step_done(step: int, total: int, loss: float) -> None:
            losses.append(loss)
            if on_step is not None:
                on_step(name, step, total, loss)
            if not self.show and (step % LOG_EVERY == 0 or step == total):
                seconds = (time.monotonic() - started) / len(losses)
                recent = losses[-LOG_EVERY:]
                self.say(f"{name} step {step} of {total}: loss {sum(recent) / len(recent):.3f}, "
                         f"{seconds:.1f} s a step, {(total - step) * seconds / 60:.0f} min left")

        return step_done

    def trainer(self, model: Any, task: Any, data: TrainingData, base: str) -> Trainer:
        total = total_steps(task.items, self.settings)
        fingerprint = _fingerprint(data, self.settings, self.qa, base, task.name)
        trainer = Trainer(model, task, self.settings, self.checkpoints / task.name, fingerprint, self.device, total)
        if self.request.resume and checkpoints_in(self.checkpoints / task.name):
            step = trainer.resume()
            self.say(f"resuming the {task.name} at step {step} of {total}")
        else:
            self.say(f"training the {task.name}: {task.items} questions, {total} steps on {self.device}")
        return trainer


def train(
    request: TrainRequest,
    settings: TrainSettings | None = None,
    qa_settings: QASettings | None = None,
    *,
    stop: threading.Event | None = None,
    show_progress: bool = False,
    on_step: Callable[[str, int, int, float], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> TrainResult:
    """Fine-tunes `qa_settings.reader` (and, with `request.reranker_out`, `qa_settings.reranker`) on the
    request's data; returns where the model is and its before/after figures. Setting `stop` ends the
    run cleanly after a checkpoint (`stopped`: run again with `resume=True` to continue)."""
    settings = TrainSettings() if settings is None else settings
    qa_settings = QASettings() if qa_settings is None else qa_settings
    qa_settings = qa_settings.replace(reader=model_reference(qa_settings.reader.reader, "--reader"),
                                      reranker=model_reference(qa_settings.rerank.reranker, "--reranker"))
    say = (lambda text: None) if say is None else say
    _check_out(request)
    request.out.mkdir(parents=True, exist_ok=True)
    run = _Run(request, settings, qa_settings, say, show_progress)
    data = read_training_data(request)
    examples, held = run.split(data)
    if data.left_out:
        say(f"left out {len(data.left_out)} question(s), e.g. {data.left_out[0][0]}: {data.left_out[0][1]}")
    negatives = [[] for _ in examples]
    if request.index is not None and (settings.negatives > 0 or request.reranker_out is not None):
        negatives = find_negatives(examples, request.index, qa_settings, max(1, settings.negatives),
                                   run.checkpoints / "negatives.json", say)
    base = qa_settings.reader.reader
    before = run.figures(held, base, None, "before")
    result = TrainResult(request.out, 0, 0, False, before=before)
    if request.resume and (request.out / "config.json").is_file():
        record = json.loads((request.out / RECORD_FILE).read_text(encoding="utf-8"))  # the reader finished earlier
        result.steps = result.total_steps = record["steps"]
    else:
        record = _train_reader(run, examples, negatives, data, len(held), stop, on_step, result)
        if record is None:
            return result
        record["before"] = None if before is None else before.to_json()
        _write_model(record.pop("model"), record.pop("tokenizer"), request.out, record)
    reranker = None
    if request.reranker_out is not None:
        reranker = _train_reranker(run, examples, negatives, data, stop, on_step)
        if reranker is None:
            result.stopped = True
            return result
    after = run.figures(held, str(request.out.resolve()), reranker, "after")
    record["after"] = None if after is None else after.to_json()
    (request.out / RECORD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    shutil.rmtree(run.checkpoints, ignore_errors=True)
    result.after, result.record = after, record
    return result


def _train_reader(run: _Run, examples: list[TrainExample], negatives: list[list[str]], data: TrainingData,
                  held_out: int, stop: threading.Event | None, on_step: Callable | None,
                  result: TrainResult) -> dict[str, Any] | None:
    """The reader trained (its record, with "model" and "tokenizer" to write), or None when stopped."""
    started = time.monotonic()
    settings, qa = run.settings, run.qa
    base = qa.reader.reader
    tokenizer, model = _load("reader", base, run.device, settings)
    reader_negatives = [found[: settings.negatives] for found in negatives]
    groups, problems = reader_groups(tokenizer, examples, reader_negatives, qa.reader.max_seq_length,
                                     qa.reader.doc_stride, qa.reader.max_question_length)
    if problems:
        run.say(f"left out {len(problems)} question(s), e.g. {problems[0]}")
    task = ReaderTask([g for g in groups if g is not None], tokenizer, model, run.device)
    trainer = run.trainer(model, task, data, base)
    loop = trainer.run(stop, run.show, run.progress("reader", on_step))
    result.steps, result.total_steps, result.stopped = loop.steps, loop.total_steps, loop.stopped
    if loop.stopped:
        run.say(f"stopped at step {loop.steps} of {loop.total_steps}; run again with --resume to continue")
        return None
    return {
        "spanqa": spanqa.__version__, "kind": "reader", "base": base, "data": data.inputs,
        "examples": task.items, "left_out": len(data.left_out) + len(problems), "held_out": held_out,
        "negatives_per_question": settings.negatives if run.request.index is not None else 0,
        "settings": settings.to_dict(), "device": str(run.device), "steps": loop.steps,
        "seconds": round(time.monotonic() - started, 1), "loss": loop.loss_summary(),
        "model": model, "tokenizer": tokenizer,
    }


def _train_reranker(run: _Run, examples: list[TrainExample], negatives: list[list[str]], data: TrainingData,
                    stop: threading.Event | None, on_step: Callable | None) -> str | None:
    """The reranker trained on each answerable question's own passage against its retrieved ones; its
    directory, or None when stopped."""
    base = run.qa.rerank.reranker
    tokenizer, model = _load("reranker", base, run.device, run.settings)
    kept = [(e.question, [e.context, *found]) for e, found in zip(examples, negatives, strict=True) if e.answers and found]
    task = RerankTask([q for q, _ in kept], [g for _, g in kept], tokenizer, model, run.qa.rerank.rerank_max_tokens,
                      run.device)
    trainer = run.trainer(model, task, data, base)
    loop = trainer.run(stop, run.show, run.progress("reranker", on_step))
    if loop.stopped:
        run.say(f"stopped the reranker at step {loop.steps} of {loop.total_steps}; run again with --resume")
        return None
    out = run.request.reranker_out
    out.mkdir(parents=True, exist_ok=True)
    record = {"spanqa": spanqa.__version__, "kind": "reranker", "base": base, "data": data.inputs,
              "examples": task.items, "settings": run.settings.to_dict(), "steps": loop.steps,
              "loss": loop.loss_summary()}
    _write_model(model, tokenizer, out, record)
    return str(out)
