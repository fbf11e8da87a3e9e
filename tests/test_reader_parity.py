"""Parity of the reader with the classic transformers question-answering pipeline, on real SQuAD text.

The reference answers (tests/fixtures/squad_parity_reference.json) were made once by
tests/fixtures/make_parity_reference.py with transformers 4.x, the last with the pipeline: the
first question of every paragraph of ../shared/data/squad/dev-v1.1-part-a.json, the real
distilbert-base-cased-distilled-squad architecture and tokenizer, and seeded random weights that
`model_factory.seeded_qa_model` rebuilds bit for bit here. Per passage, the reader's best span
must have the pipeline's character offsets.

Random weights say nothing about answer quality; they exercise what parity depends on: windows
of long paragraphs, the question/special-token mask, the answer-length limit, the choice among
windows, the widening to whole words and the 4.57 pipeline's merging of candidates with the same
text (their probabilities summed, the first one's place kept: without it 23 of the 1,048 answers
differ, among them the first multi-window paragraph of the fast subset), on real tokenisation of
real text.

All 1,048 paragraphs take 15-20 minutes on two CPU cores (`pytest -m slow`); by default a
16-paragraph subset runs (about 15-30 s).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from haystack import Document
from model_factory import seeded_qa_model, weights_checksum

from spanqa.errors import ModelLoadError
from spanqa.reader import ExtractiveReader, LoadedQAModel, prepare_qa_model, read_passages
from spanqa.settings import ReaderSettings

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "squad_parity_reference.json"
ARCH_DIR = Path("models") / "distilbert-base-cased-distilled-squad-arch"  # under shared/data
SQUAD_DIR = Path("squad")  # under shared/data; the file name is the fixture's
MIN_IDENTICAL_RATE = 0.995

# The fast subset: every FAST_STRIDE_COUNT-th example spread over the file, plus the first
# FAST_MULTI_WINDOW_COUNT paragraphs that need more than one window (the cross-window choice and
# window-edge word alignment only happen there).
FAST_STRIDE_COUNT = 12
FAST_MULTI_WINDOW_COUNT = 4

MODEL_CARD_QUESTION = "What is a good example of a question answering dataset?"
MODEL_CARD_CONTEXT = (
    "Extractive Question Answering is the task of extracting an answer from a text given a question. "
    "An example of a question answering dataset is the SQuAD dataset, which is entirely based on that "
    "task. If you would like to fine-tune a model on a SQuAD task, you may leverage the "
    "examples/pytorch/question-answering/run_squad.py script."
)


@dataclass(frozen=True)
class Mismatch:
    id: str
    windows: int
    expected: tuple[int, int]
    expected_text: str
    expected_score: float
    got: tuple[int, int] | None
    got_text: str | None

    def describe(self) -> str:
        return (
            f"{self.id} ({self.windows} window(s)): pipeline {self.expected} {self.expected_text!r} "
            f"(p={self.expected_score:.3g}), reader {self.got} {self.got_text!r}"
        )


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def squad_pairs(shared_data_dir: Path, reference: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """question id -> (question, paragraph) for every question of the fixture's SQuAD file."""
    squad_file = shared_data_dir / SQUAD_DIR / reference["squad_file"]
    data = json.loads(squad_file.read_text(encoding="utf-8"))["data"]
    return {
        qa["id"]: (qa["question"], paragraph["context"])
        for article in data
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


@pytest.fixture(scope="module")
def parity_qa_model(shared_data_dir: Path, reference: dict[str, Any]) -> LoadedQAModel:
    """The fixture's seeded model, built once per module and checked to be the reference's weights."""
    from transformers import AutoTokenizer

    arch_dir = shared_data_dir / ARCH_DIR
    model = seeded_qa_model(arch_dir, reference["seed"])
    checksum = weights_checksum(model)
    if checksum != reference["weights_checksum"]:
        pytest.fail(
            f"seeded_qa_model({arch_dir.name}, seed={reference['seed']}) has weight checksum {checksum}, "
            f"the reference was made with {reference['weights_checksum']} "
            f"(transformers {reference['versions']['transformers']}): the comparison would be meaningless. "
            "Was seeded_qa_model or the architecture changed? Then regenerate the fixture with "
            "tests/fixtures/make_parity_reference.py under transformers 4.x."
        )
    return prepare_qa_model(AutoTokenizer.from_pretrained(str(arch_dir)), model, "cpu")


def _reading_settings(reference: dict[str, Any]) -> ReaderSettings:
    settings = reference["settings"]
    # The pipeline always aligns to words and never answers "impossible"; the reader knows no other way.
    assert settings["align_to_words"] is True and settings["handle_impossible_answer"] is False
    assert settings["top_k"] == 1
    return ReaderSettings(
        max_answer_length=settings["max_answer_len"],
        max_seq_length=settings["max_seq_len"],
        doc_stride=settings["doc_stride"],
    )


def _compare(
    examples: list[dict[str, Any]],
    squad_pairs: dict[str, tuple[str, str]],
    qa_model: LoadedQAModel,
    reference: dict[str, Any],
) -> list[Mismatch]:
    """Read each example's paragraph alone, as the pipeline did; the examples whose best span differs."""
    settings = _reading_settings(reference)
    mismatches = []
    for example in examples:
        question, context = squad_pairs[example["id"]]
        spans = read_passages(qa_model, question, [context], settings, top_k=1)[0]
        expected = (example["start"], example["end"])
        got = (spans[0].start, spans[0].end) if spans else None
        if got != expected:
            mismatches.append(
                Mismatch(
                    id=example["id"],
                    windows=example["windows"],
                    expected=expected,
                    expected_text=context[expected[0] : expected[1]],
                    expected_score=example["score"],
                    got=got,
                    got_text=None if got is None else context[got[0] : got[1]],
                )
            )
    return mismatches


def _report(name: str, examples: list[dict[str, Any]], mismatches: list[Mismatch], seconds: float) -> str:
    count = len(examples)
    multi_window = sum(example["windows"] > 1 for example in examples)
    identical = count - len(mismatches)
    lines = [
        f"{name}: {identical}/{count} identical spans ({identical / count:.2%}), "
        f"{multi_window} multi-window paragraphs, {seconds:.1f} s"
    ]
    lines += [f"  mismatch {mismatch.describe()}" for mismatch in mismatches]
    return "\n".join(lines)


def _fast_subset(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stride = max(1, len(examples) // FAST_STRIDE_COUNT)
    chosen = {example["id"] for example in examples[::stride][:FAST_STRIDE_COUNT]}
    multi_window = [example["id"] for example in examples if example["windows"] > 1]
    chosen |= set(multi_window[:FAST_MULTI_WINDOW_COUNT])
    return [example for example in examples if example["id"] in chosen]


def test_fixture_is_compact_and_complete(reference: dict[str, Any]) -> None:
    assert reference["count"] == len(reference["examples"])
    assert reference["multi_window_count"] == sum(example["windows"] > 1 for example in reference["examples"])
    assert reference["versions"]["transformers"].startswith("4.")
    assert FIXTURE.stat().st_size < 200_000


def test_fast_subset_reads_multi_window_paragraphs(reference: dict[str, Any]) -> None:
    examples = _fast_subset(reference["examples"])
    assert len(examples) >= FAST_STRIDE_COUNT
    assert sum(example["windows"] > 1 for example in examples) >= FAST_MULTI_WINDOW_COUNT


def test_best_span_matches_pipeline_on_subset(
    reference: dict[str, Any],
    squad_pairs: dict[str, tuple[str, str]],
    parity_qa_model: LoadedQAModel,
    record_property: Any,
) -> None:
    examples = _fast_subset(reference["examples"])
    started = time.perf_counter()
    mismatches = _compare(examples, squad_pairs, parity_qa_model, reference)
    report = _report("subset", examples, mismatches, time.perf_counter() - started)
    print(report)
    record_property("parity", report)
    assert len(mismatches) <= math.floor((1 - MIN_IDENTICAL_RATE) * len(examples)), report


@pytest.mark.slow
def test_best_span_matches_pipeline_on_all_paragraphs(
    reference: dict[str, Any],
    squad_pairs: dict[str, tuple[str, str]],
    parity_qa_model: LoadedQAModel,
    record_property: Any,
) -> None:
    examples = reference["examples"]
    started = time.perf_counter()
    mismatches = _compare(examples, squad_pairs, parity_qa_model, reference)
    report = _report("all paragraphs", examples, mismatches, time.perf_counter() - started)
    print(report)
    record_property("parity", report)
    assert (len(examples) - len(mismatches)) / len(examples) >= MIN_IDENTICAL_RATE, report


@pytest.mark.integration
def test_model_card_example_with_real_weights() -> None:
    """The answer the distilbert-base-cased-distilled-squad model card shows for its own example."""
    # A local copy of the model (offline machines, CI caches), else the hub id.
    model = os.environ.get("SPANQA_READER_MODEL_DIR", "")
    if model.strip() == "":
        model = ReaderSettings.reader
    reader = ExtractiveReader(model=model, device="cpu", top_k=1)
    try:
        reader.warm_up()
    except ModelLoadError as error:
        pytest.skip(f"real reader weights unavailable: {error}")

    answers = reader.run(query=MODEL_CARD_QUESTION, documents=[Document(content=MODEL_CARD_CONTEXT)])["answers"]

    assert len(answers) == 1
    answer = answers[0]
    assert answer.data == "SQuAD dataset"
    assert (answer.document_offset.start, answer.document_offset.end) == (147, 160)
