"""Fast mode (int8 ONNX Runtime) with a trained reader picks the exact mode's answers.

The random-weight models of the other reader tests cannot show what int8 does to a trained model's
answers. This reads SQuAD questions of articles 16-23 (held out from the trained MiniLM-L6
reader's training data, articles 0-15) with their gold paragraph in both modes. On all 1,390
questions of those articles fast mode picked exact mode's answer for 92.8% (EM 47.99 in both modes).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
from haystack import Document

from spanqa.reader import ExtractiveReader

TRAINED_READER = "models/minilm-l6-squad-a16"
SQUAD_PART_A = "squad/dev-v1.1-part-a.json"
HELD_OUT_ARTICLES = range(16, 24)
QUESTION_STRIDE = 35  # every 35th question of the articles: 40 questions spread over all eight
# The measured share on these 40 questions, less a margin of three for other CPUs' int8 rounding.
MIN_AGREEMENT = 0.9  # 36 of 40; 39 of 40 measured


@pytest.fixture(scope="module")
def readers(shared_data_dir):
    """(exact, fast) readers around one trained model."""
    model_dir = shared_data_dir / TRAINED_READER
    if not model_dir.is_dir():
        pytest.skip(f"trained reader not found at {model_dir}")
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("fast mode needs onnxruntime and onnx")
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    exact = ExtractiveReader.from_loaded(tokenizer, model, device="cpu", top_k=1)
    fast = ExtractiveReader.from_loaded(tokenizer, model, device="cpu", top_k=1, fast=True)
    return exact, fast


@pytest.fixture(scope="module")
def held_out_questions(shared_data_dir):
    """(question, gold paragraph, gold answers) of every QUESTION_STRIDE-th question of articles 16-23."""
    data = json.loads((shared_data_dir / SQUAD_PART_A).read_text(encoding="utf-8"))["data"]
    questions = [
        (qa["question"], paragraph["context"], [answer["text"] for answer in qa["answers"]])
        for article in (data[index] for index in HELD_OUT_ARTICLES)
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    return questions[::QUESTION_STRIDE]


def _best_answers(reader, questions) -> list[str]:
    queries = [question for question, _, _ in questions]
    documents = [[Document(content=context)] for _, context, _ in questions]
    answers = reader.run_batch(queries, documents, top_k=1)["answers"]
    return [found[0].data if found else "" for found in answers]


def test_fast_mode_picks_the_exact_answers(readers, held_out_questions):
    exact, fast = readers
    assert fast._loaded().runner.kind == "onnx-int8"
    exact_answers = _best_answers(exact, held_out_questions)
    fast_answers = _best_answers(fast, held_out_questions)
    agreement = sum(a == b for a, b in zip(exact_answers, fast_answers, strict=True)) / len(exact_answers)
    assert len(exact_answers) == 40
    assert agreement >= MIN_AGREEMENT, list(zip(exact_answers, fast_answers, strict=True))


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("When was the great plague of London?", "1665"),
        ('Who wrote "Walking in Fresno?"', "Bill Aken"),
    ],
)
def test_fast_mode_finds_known_answers(readers, held_out_questions, question, answer):
    """Questions of the set whose gold answer the exact reader finds: fast mode finds it too."""
    (context,) = [context for text, context, _ in held_out_questions if text == question]
    for reader in readers:
        (found,) = reader.run(query=question, documents=[Document(content=context)])["answers"]
        assert found.data == answer
