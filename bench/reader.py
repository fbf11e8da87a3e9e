"""Reader speed: spanqa's ExtractiveReader against Haystack's TransformersExtractiveReader.

    python bench/reader.py --model-arch ../shared/data/models/distilbert-base-cased-distilled-squad-arch \\
        --squad ../shared/data/squad/dev-v1.1-part-a.json --questions 60 --device cpu

Both readers load the same model files (a random-weight model of the real architecture, built
from a fixed seed and saved to a temporary directory), read the same SQuAD questions with the same
10 passages each (the gold paragraph and 9 other paragraphs of its article, chosen from the seed),
on the same device, in one process with the same torch settings, with the same top_k. The Haystack
reader has no answer-length limit; ours uses --max-answer-length. Readers take turns question by
question (the order rotates), after a warm-up, for --repeats repetitions; each reader's time is the
median over repetitions of its total, and ratios are taken within each repetition (paired), so the
machine's speed drifting between repetitions does not bias them.

Figures (see bench/README.md): seconds per question of each reader; speed ratios; our non-model
overhead (time outside the model's forward passes: tokenising, batching, decoding, ranking) as a
share of our time; the fast mode's speed and its agreement with exact mode (identical best span per
passage); and `run_batch` over all questions at once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ARCH = REPO.parent / "shared" / "data" / "models" / "distilbert-base-cased-distilled-squad-arch"
DEFAULT_SQUAD = REPO.parent / "shared" / "data" / "squad" / "dev-v1.1-part-a.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-arch", type=Path, default=DEFAULT_ARCH, help="directory with config.json + tokenizer")
    parser.add_argument("--squad", type=Path, default=DEFAULT_SQUAD, help="SQuAD v1.1 JSON file")
    parser.add_argument("--questions", type=int, default=60, help="questions to read (>= 1)")
    parser.add_argument("--passages", type=int, default=10, help="passages per question, the gold one included")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (both readers use it)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (after one warm-up)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--max-answer-length", type=int, default=15, help="ours only: the peer has no such limit")
    parser.add_argument("--seed", type=int, default=0, help="model weights and passage choice")
    parser.add_argument(
        "--init",
        choices=("seeded", "default"),
        default="seeded",
        help="seeded: tests/model_factory.seeded_qa_model (well-spread logits, like a trained model's); "
        "default: transformers' own random init after torch.manual_seed (near-flat logits)",
    )
    parser.add_argument("--no-fast", action="store_true", help="skip the fast mode")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both readers (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.questions < 1 or args.passages < 1 or args.repeats < 1:
        parser.error("--questions, --passages and --repeats must be >= 1")
    return args


def select_questions(squad_file: Path, count: int, passages: int, seed: int) -> list[tuple[str, list[str]]]:
    """`count` questions spread evenly over the file's paragraphs, each with `passages` paragraphs of its article.

    The first question of every paragraph is a candidate; every (len / count)-th is taken. The
    other paragraphs are a seeded sample of the same article, and the gold paragraph's place among
    them is seeded too.
    """
    data = json.loads(squad_file.read_text(encoding="utf-8"))["data"]
    candidates = [
        (article_index, paragraph_index)
        for article_index, article in enumerate(data)
        for paragraph_index, paragraph in enumerate(article["paragraphs"])
        if paragraph["qas"] and len(article["paragraphs"]) >= passages
    ]
    if not candidates:
        raise SystemExit(f"no article of {squad_file} has {passages} paragraphs")
    stride = max(1, len(candidates) // count)
    chosen = candidates[::stride][:count]
    items = []
    for article_index, paragraph_index in chosen:
        paragraphs = data[article_index]["paragraphs"]
        question = paragraphs[paragraph_index]["qas"][0]
        rng = random.Random(f"{seed}:{question['id']}")
        others = rng.sample([i for i in range(len(paragraphs)) if i != paragraph_index], passages - 1)
        order = [paragraph_index, *others]
        rng.shuffle(order)
        items.append((question["question"], [paragraphs[i]["context"] for i in order]))
    return items


def build_model_dir(arch: Path, init: str, seed: int, directory: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

    if init == "seeded":
        sys.path.insert(0, str(REPO / "tests"))
        from model_factory import seeded_qa_model

        model = seeded_qa_model(arch, seed)
    else:
        torch.manual_seed(seed)
        model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(str(arch)))
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(arch)).save_pretrained(directory)
    return directory


class ForwardClock:
    """Seconds spent inside the model's forward passes of one reader (wraps what its runner calls)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def clock_forward(reader) -> ForwardClock:
    """Time the model calls of a warm spanqa ExtractiveReader (packed, padded or ONNX Runtime runner)."""
    from spanqa.reader.fast_mode import OnnxInt8Runner
    from spanqa.reader.forward import PackedDistilBertRunner, PaddedRunner

    clock = ForwardClock()
    qa_model = reader._loaded()
    runner = qa_model.runner
    if isinstance(runner, PackedDistilBertRunner):
        runner.forward_packed = clock.wrap(runner.forward_packed)
    elif isinstance(runner, OnnxInt8Runner):
        session = runner.session

        class _Session:
            run = staticmethod(clock.wrap(session.run))

        runner.session = _Session()
    elif isinstance(runner, PaddedRunner):
        runner.model = clock.wrap(runner.model)
    else:
        raise SystemExit(f"unknown runner {type(runner).__name__}")
    reader._qa_model = replace(qa_model, runner=runner)
    return clock


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from haystack import Document
    from haystack.utils import ComponentDevice
    from haystack_integrations.components.readers.transformers import TransformersExtractiveReader

    import spanqa  # noqa: F401  (sets HAYSTACK_TELEMETRY_ENABLED=False before Haystack is imported)
    from spanqa.reader import ExtractiveReader
    from spanqa.reader.span_reader import read_passages_batch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    items = select_questions(args.squad, args.questions, args.passages, args.seed)
    device = args.device
    on_cpu = device == "cpu"
    figures: dict[str, object] = {
        "questions": len(items),
        "passages_per_question": args.passages,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "top_k": args.top_k,
        "max_answer_length": args.max_answer_length,
        "init": args.init,
        "repeats": args.repeats,
    }
    print(
        f"{len(items)} SQuAD questions x {args.passages} passages, device {device}, torch threads "
        f"{torch.get_num_threads()}, top_k {args.top_k}, model {args.model_arch.name} ({args.init} random weights, "
        f"seed {args.seed})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="spanqa-bench-model-") as model_dir:
        build_model_dir(args.model_arch, args.init, args.seed, Path(model_dir))
        readers = {}
        ours = ExtractiveReader(
            model=model_dir, device=device, top_k=args.top_k, max_answer_length=args.max_answer_length
        )
        ours.warm_up()
        readers["spanqa"] = ours
        fast = None
        if on_cpu and not args.no_fast:
            started = time.perf_counter()
            fast = ExtractiveReader(
                model=model_dir, device=device, top_k=args.top_k, max_answer_length=args.max_answer_length, fast=True
            )
            fast.warm_up()
            figures["fast_warm_up_s"] = time.perf_counter() - started
            readers["spanqa-fast"] = fast
        peer = TransformersExtractiveReader(
            model=model_dir, device=ComponentDevice.from_str("cuda:0" if device == "cuda" else device),
            top_k=args.top_k, no_answer=False,
        )
        peer.warm_up()
        readers["haystack"] = peer
        print(f"our runner: {ours._loaded().runner.kind}" + (f", fast: {fast._loaded().runner.kind}" if fast else ""))

        documents = [[Document(content=passage) for passage in passages] for _, passages in items]
        clocks = {name: clock_forward(reader) for name, reader in readers.items() if name != "haystack"}
        names = list(readers)

        for name in names:  # warm-up: not timed
            for (question, _), docs in zip(items[:2], documents[:2], strict=True):
                readers[name].run(query=question, documents=docs)

        totals = {name: [] for name in names}
        forward = {name: [] for name in clocks}
        per_question = {name: [[] for _ in items] for name in names}
        for repeat in range(args.repeats):
            elapsed = {name: 0.0 for name in names}
            for clock in clocks.values():
                clock.seconds = 0.0
            for index, ((question, _), docs) in enumerate(zip(items, documents, strict=True)):
                shift = (index + repeat) % len(names)
                for name in names[shift:] + names[:shift]:
                    started = time.perf_counter()
                    readers[name].run(query=question, documents=docs)
                    seconds = time.perf_counter() - started
                    elapsed[name] += seconds
                    per_question[name][index].append(seconds)
            for name in names:
                totals[name].append(elapsed[name])
            for name, clock in clocks.items():
                forward[name].append(clock.seconds)
            print(
                f"  repetition {repeat + 1}: "
                + ", ".join(f"{name} {elapsed[name] / len(items):.3f} s/question" for name in names),
                flush=True,
            )

        count = len(items)
        print()
        print("seconds per question (median of repetitions):")
        for name in names:
            seconds = statistics.median(totals[name]) / count
            figures[f"{name}_s_per_question"] = seconds
            print(f"  {name:12s} {seconds:.3f}")

        def ratio(slow: str, quick: str) -> None:
            paired = statistics.median(a / b for a, b in zip(totals[slow], totals[quick], strict=True))
            per_q = statistics.median(
                statistics.median(a) / statistics.median(b)
                for a, b in zip(per_question[slow], per_question[quick], strict=True)
            )
            figures[f"ratio_{slow}_over_{quick}"] = paired
            figures[f"ratio_{slow}_over_{quick}_median_per_question"] = per_q
            print(f"  {slow} / {quick}: {paired:.2f}x (median per question {per_q:.2f}x)")

        print("speed-up (Haystack time / ours; paired by repetition):")
        ratio("haystack", "spanqa")
        if fast is not None:
            ratio("haystack", "spanqa-fast")
            ratio("spanqa", "spanqa-fast")

        print("our time outside the model's forward passes (tokenise + batch + decode + rank):")
        for name in clocks:
            shares = [1 - f / t for f, t in zip(forward[name], totals[name], strict=True)]
            share = statistics.median(shares)
            figures[f"{name}_overhead_share"] = share
            print(f"  {name:12s} {share:.1%} of its time ({share * statistics.median(totals[name]) / count * 1000:.0f} ms/question)")

        settings = ours.settings
        questions = [question for question, _ in items]
        passages = [list(p) for _, p in items]
        started = time.perf_counter()
        exact_spans = read_passages_batch(ours._loaded(), questions, passages, settings, top_k=1)
        batch_seconds = (time.perf_counter() - started) / count
        figures["spanqa_read_passages_batch_s_per_question"] = batch_seconds
        print(f"read_passages_batch over all {count} questions at once (one run): {batch_seconds:.3f} s/question")
        if fast is not None:
            fast_spans = read_passages_batch(fast._loaded(), questions, passages, settings, top_k=1)
            pairs = [
                (exact[0].start, exact[0].end) == (quick[0].start, quick[0].end) if exact and quick else exact == quick
                for exact_q, fast_q in zip(exact_spans, fast_spans, strict=True)
                for exact, quick in zip(exact_q, fast_q, strict=True)
            ]
            agreement = sum(pairs) / len(pairs)
            figures["fast_best_span_agreement"] = agreement
            top1 = []
            for (question, _), docs in zip(items, documents, strict=True):
                a = ours.run(query=question, documents=docs)["answers"][:1]
                b = fast.run(query=question, documents=docs)["answers"][:1]
                top1.append([(x.document.id, x.document_offset.start, x.document_offset.end) for x in a]
                            == [(x.document.id, x.document_offset.start, x.document_offset.end) for x in b])
            figures["fast_top1_answer_agreement"] = sum(top1) / len(top1)
            print(
                f"fast mode agreement with exact mode: best span identical for {sum(pairs)}/{len(pairs)} passages "
                f"({agreement:.1%}); top answer identical for {sum(top1)}/{len(top1)} questions "
                f"({sum(top1) / len(top1):.1%}); fast warm-up (export + quantise) {figures['fast_warm_up_s']:.1f} s"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
