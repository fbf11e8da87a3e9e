"""`spanqa train` (spanqa.training): the data it reads, the targets and losses it builds, the loop's
checkpoints and exact resume, and the trained model loading everywhere a reader or reranker loads."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from spanqa.errors import ConfigError, DocumentError
from spanqa.records import Passage
from spanqa.settings import QASettings, TrainSettings
from spanqa.training.data import Span, TrainExample, answer_span, held_out_split, read_feedback, read_squad
from spanqa.training.features import collate_reader, reader_groups, token_span
from spanqa.training.losses import listwise_loss, shared_norm_loss

CONTEXTS = [
    "The Eiffel Tower is in Paris, France. It was built from 1887 to 1889.",
    "Marie Curie was a Polish physicist. She was the first woman to win a Nobel Prize.",
    "Python is a programming language created by Guido van Rossum and first released in 1991.",
    "Mount Everest is the highest mountain. Tenzing Norgay and Edmund Hillary reached the summit in 1953.",
]
QUESTIONS = [
    ("Where is the Eiffel Tower?", "Paris", 0),
    ("Who created Python?", "Guido van Rossum", 2),
    ("When was Python released?", "1991", 2),
    ("Who reached the summit?", "Tenzing Norgay and Edmund Hillary", 3),
    ("What did Marie Curie win?", "a Nobel Prize", 1),
    ("When was the tower built?", "1887 to 1889", 0),
]


def write_squad(path: Path, questions=QUESTIONS) -> Path:
    data = []
    for number, context in enumerate(CONTEXTS):
        qas = [{"id": f"q{i}", "question": q, "answers": [{"text": a, "answer_start": context.find(a)}]}
               for i, (q, a, c) in enumerate(questions) if c == number]
        data.append({"title": f"article {number}", "paragraphs": [{"context": context, "qas": qas}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


# -- data --------------------------------------------------------------------------------------------

def test_an_answer_start_off_by_some_characters_is_moved_to_the_nearest_occurrence():
    context = "one two three two"
    assert answer_span(context, "two", 14) == Span(14, 17)
    assert answer_span(context, "two", 12) == Span(14, 17)  # nearer the second "two"
    assert answer_span(context, "two", 2) == Span(4, 7)
    assert answer_span(context, "four", 0) is None
    assert answer_span(context, "  ", 0) is None


def test_squad_questions_without_an_answer_in_their_paragraph_are_left_out_and_named(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "Paris is big.", "qas": [
        {"id": "ok", "question": "What is big?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "bad", "question": "What is small?", "answers": [{"text": "Rome", "answer_start": 0}]},
    ]}]}]}), encoding="utf-8")
    data = read_squad(path)
    assert [e.example_id for e in data.examples] == ["ok"]
    assert data.left_out == [("bad", "no answer found in its paragraph")]
    assert set(data.inputs) == {"d.json"} and len(data.inputs["d.json"]) == 64


def test_a_file_that_is_not_squad_is_a_document_error_naming_what_is_wrong(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(DocumentError, match="not SQuAD format"):
        read_squad(path)
    with pytest.raises(DocumentError, match="no such file"):
        read_squad(tmp_path / "missing.json")


def test_the_held_out_split_keeps_whole_articles_apart_and_is_the_same_for_the_same_seed():
    examples = [TrainExample(f"q{i}", "q?", "c", f"article {i % 5}", (Span(0, 1),)) for i in range(50)]
    train, held = held_out_split(examples, 0.2, seed=3)
    assert len(train) + len(held) == 50 and held
    assert not {e.title for e in train} & {e.title for e in held}
    assert held_out_split(examples, 0.2, seed=3) == (train, held)
    assert held_out_split(examples, 0.0, seed=3) == (examples, [])


# -- targets and losses ---------------------------------------------------------------------------------

def test_a_span_maps_to_the_tokens_that_cover_it_and_not_to_a_window_that_cuts_it():
    offsets = np.array([[0, 0], [0, 3], [4, 9], [10, 13], [0, 0]])
    passage = np.array([False, True, True, True, False])
    assert token_span(offsets, passage, Span(4, 9)) == (2, 2)
    assert token_span(offsets, passage, Span(5, 12)) == (2, 3)  # inside words: the tokens holding them
    assert token_span(offsets, passage, Span(10, 20)) is None  # runs past the window


def test_a_groups_targets_are_the_answer_tokens_of_its_own_passage_only(tiny_qa_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_model_dir)
    example = TrainExample("q", "Who created Python?", CONTEXTS[2], "t", (answer_span(CONTEXTS[2], "Guido van Rossum", 0),))
    negatives = [[CONTEXTS[0], "Guido van Rossum is named here too."]]
    [group], problems = reader_groups(tokenizer, [example], negatives, 384, 128, 64)
    assert problems == [] and len(group.windows) == 3
    own, *others = group.windows
    start, end = int(np.flatnonzero(own.starts)[0]), int(np.flatnonzero(own.ends)[0])
    assert tokenizer.decode(own.input_ids[start : end + 1]) == "Guido van Rossum"
    assert all(not w.starts.any() and not w.ends.any() for w in others)  # negatives teach "not here"
    assert all(w.candidates[0] and w.candidates.sum() > 5 for w in group.windows)  # [CLS] and passage tokens


def test_an_answer_longer_than_a_window_leaves_its_question_out_with_the_reason(tiny_qa_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_model_dir)
    context = " ".join(["river"] * 80)
    example = TrainExample("long", "What?", context, "t", (Span(0, len(context)),))
    groups, problems = reader_groups(tokenizer, [example], [[]], 48, 16, 8)
    assert groups == [None] and problems == ["long: its answer is longer than a window"]


def test_the_shared_norm_loss_is_one_softmax_over_all_windows_of_a_group():
    start = torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 3.0, 0.0, 0.0]])
    end = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    candidates = torch.tensor([[True, True, True, False], [True, True, True, False]])
    starts = torch.zeros(2, 4, dtype=torch.bool)
    ends = torch.zeros(2, 4, dtype=torch.bool)
    starts[0, 1] = ends[0, 2] = True
    group_of = torch.tensor([0, 0])
    no_wrong = torch.zeros(0, 3, dtype=torch.long)
    loss = shared_norm_loss(start, end, candidates, starts, ends, group_of, 1, no_wrong)
    all_start = torch.tensor([0.0, 1.0, 2.0, 0.0, 3.0, 0.0])  # both windows' candidates, padding left out
    all_end = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 2.0])
    expected = (torch.logsumexp(all_start, 0) - 1.0) + (torch.logsumexp(all_end, 0) - 1.0)
    assert loss.item() == pytest.approx(expected.item())
    # the other window's span growing likelier raises the loss: the windows compete
    start[1, 1] = 6.0
    assert shared_norm_loss(start, end, candidates, starts, ends, group_of, 1, no_wrong) > loss


def test_a_span_marked_wrong_costs_more_the_likelier_it_is():
    candidates = torch.ones(1, 4, dtype=torch.bool)
    none = torch.zeros(1, 4, dtype=torch.bool)
    wrong = torch.tensor([[0, 1, 2]])
    losses = []
    for logit in (0.0, 2.0, 5.0):
        start = torch.tensor([[0.0, logit, 0.0, 0.0]])
        end = torch.tensor([[0.0, 0.0, logit, 0.0]])
        losses.append(shared_norm_loss(start, end, candidates, none, none, torch.tensor([0]), 1, wrong).item())
    p = math.exp(5.0) / (math.exp(5.0) + 3)
    assert losses[0] < losses[1] < losses[2] == pytest.approx(-math.log(1 - p * p), rel=1e-5)


def test_the_listwise_loss_is_the_cross_entropy_of_each_groups_first_passage():
    logits = torch.tensor([2.0, 0.0, 1.0, 0.5, 0.5])
    loss = listwise_loss(logits, (3, 2))
    first = torch.logsumexp(logits[:3], 0) - 2.0
    second = torch.logsumexp(logits[3:], 0) - 0.5
    assert loss.item() == pytest.approx(((first + second) / 2).item())


def test_collated_groups_keep_each_windows_group_and_wrong_spans_by_row(tiny_qa_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_model_dir)
    right = TrainExample("a", "Where is the Eiffel Tower?", CONTEXTS[0], "t", (Span(21, 26),))
    wrong = TrainExample("b", "Who created Python?", CONTEXTS[2], "t", (), (Span(0, 6),))
    groups, _ = reader_groups(tokenizer, [right, wrong], [[CONTEXTS[1]], []], 384, 128, 64)
    batch = collate_reader(groups, tokenizer.pad_token_id)
    assert batch.group_of.tolist() == [0, 0, 1] and batch.groups == 2
    assert batch.wrong[:, 0].tolist() == [2]  # the second group's only window is the batch's third row
    assert batch.attention_mask.sum(1).tolist() == [len(w.input_ids) for g in groups for w in g.windows]


# -- training runs (tiny models) ----------------------------------------------------------------------

FAST_SETTINGS = dict(learning_rate=3e-3, batch_questions=2, holdout=0.0, checkpoint_every=3, warmup=0.0)


def qa_settings(reader: Path, **changes) -> QASettings:
    return QASettings.from_keywords(reader=str(reader), device="cpu", rerank=0, **changes)


def reader_loss_on(model_dir: Path, examples) -> float:
    """The shared-norm loss of a saved reader on `examples`, each read alone, in eval mode."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from spanqa.training.tasks import ReaderTask

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
    groups, _ = reader_groups(tokenizer, examples, [[] for _ in examples], 384, 128, 64)
    task = ReaderTask(groups, tokenizer, model, torch.device("cpu"))
    with torch.no_grad():
        return task.loss(model, list(range(len(groups)))).item()


def test_training_lowers_the_loss_on_the_questions_it_learns_from(tmp_path, tiny_qa_model_dir):
    from spanqa.training import TrainRequest, train

    data = write_squad(tmp_path / "toy.json")
    result = train(TrainRequest(out=tmp_path / "out", data=(data,)),
                   TrainSettings(max_steps=48, **FAST_SETTINGS), qa_settings(tiny_qa_model_dir))
    examples = read_squad(data).examples
    assert not result.stopped and result.steps == 48
    assert reader_loss_on(tmp_path / "out", examples) < 0.7 * reader_loss_on(tiny_qa_model_dir, examples)
    record = json.loads((tmp_path / "out" / "training.json").read_text())
    assert record["steps"] == 48 and record["data"]["toy.json"] and record["base"] == str(tiny_qa_model_dir)
    assert not (tmp_path / "out" / "checkpoints").exists()  # a finished run keeps only the model


def weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_a_stopped_and_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path, tiny_qa_model_dir):
    from spanqa.training import TrainRequest, train

    data = write_squad(tmp_path / "toy.json")
    settings = TrainSettings(max_steps=7, **FAST_SETTINGS)
    whole = train(TrainRequest(out=tmp_path / "whole", data=(data,)), settings, qa_settings(tiny_qa_model_dir))
    stop = threading.Event()

    def stop_at_four(task: str, step: int, total: int, loss: float) -> None:
        if step == 4:
            stop.set()

    first = train(TrainRequest(out=tmp_path / "parts", data=(data,)), settings, qa_settings(tiny_qa_model_dir),
                  stop=stop, on_step=stop_at_four)
    assert first.stopped and first.steps == 4 and not (tmp_path / "parts" / "config.json").exists()
    with pytest.raises(ConfigError, match="unfinished run: add --resume"):
        train(TrainRequest(out=tmp_path / "parts", data=(data,)), settings, qa_settings(tiny_qa_model_dir))
    with pytest.raises(ConfigError, match="other settings"):
        train(TrainRequest(out=tmp_path / "parts", data=(data,), resume=True), settings.replace(seed=1),
              qa_settings(tiny_qa_model_dir))
    rest = train(TrainRequest(out=tmp_path / "parts", data=(data,), resume=True), settings,
                 qa_settings(tiny_qa_model_dir))
    assert not rest.stopped and rest.steps == whole.steps == 7
    expected, got = weights(tmp_path / "whole"), weights(tmp_path / "parts")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    base = weights_of_base(tiny_qa_model_dir)
    assert any(not torch.equal(base[name], got[name]) for name in got if name in base)  # it did learn


def weights_of_base(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {name: tensor.float() for name, tensor in load_file(str(directory / "model.safetensors")).items()}


def test_the_trained_reader_and_reranker_load_everywhere_a_reader_and_reranker_load(
    tmp_path, tiny_qa_model_dir, tiny_reranker_dir, facts_index
):
    from spanqa import DocumentQA
    from spanqa.training import TrainRequest, train

    data = write_squad(tmp_path / "toy.json")
    settings = TrainSettings(max_steps=2, negatives=1, **FAST_SETTINGS)
    result = train(
        TrainRequest(out=tmp_path / "reader", data=(data,), index=facts_index, reranker_out=tmp_path / "reranker"),
        settings, QASettings.from_keywords(reader=str(tiny_qa_model_dir), reranker=str(tiny_reranker_dir),
                                           device="cpu", rerank=3),
    )
    assert not result.stopped
    record = json.loads((tmp_path / "reranker" / "training.json").read_text())
    assert record["kind"] == "reranker" and record["steps"] == 2
    for fast in (False, True):  # the exact reader and the int8 fast mode
        qa = DocumentQA(facts_index, reader=str(tmp_path / "reader"), reranker=str(tmp_path / "reranker"),
                        rerank=3, fast_reader=fast, device="cpu")
        answers = qa.ask("When was the tower built?", top_k=1)
        assert len(answers) == 1 and answers[0].text in answers[0].context


def test_the_services_feedback_trains_right_answers_in_and_wrong_ones_out(tmp_path, tiny_qa_model_dir):
    from spanqa.service.database import Feedback, ServiceDatabase, squad_export
    from spanqa.training import TrainRequest, train

    index = tmp_path / "index"
    index.mkdir()
    database = ServiceDatabase(index)
    page = CONTEXTS[2]
    at = page.find("Guido van Rossum")
    database.add_feedback(Feedback("Who created Python?", "python.txt", 1, at, at + 16, "Guido van Rossum", True,
                                   page, "Python", "ann"))
    database.add_feedback(Feedback("Who created Python?", "python.txt", 1, 0, 6, "Python", False, page, "Python", "bob"))
    database.add_feedback(Feedback("When was Python released?", "python.txt", 1, 0, 6, "Python", False, page,
                                   "Python", "bob"))
    data = read_feedback(index)
    by_question = {e.question: e for e in data.examples}
    assert by_question["Who created Python?"].answers == (Span(at, at + 16),)
    assert by_question["Who created Python?"].wrong == (Span(0, 6),)
    assert by_question["When was Python released?"].answers == () and by_question["When was Python released?"].wrong
    result = train(TrainRequest(out=tmp_path / "out", feedback_index=index),
                   TrainSettings(max_steps=3, **FAST_SETTINGS), qa_settings(tiny_qa_model_dir))
    assert not result.stopped and result.record["examples"] == 2
    assert list(result.record["data"]) == ["feedback of index"]
    # the export (answers marked right, as SQuAD) trains as a data file too
    export = tmp_path / "export.json"
    export.write_text(json.dumps(squad_export(database.confirmed_feedback())), encoding="utf-8")
    assert [e.answer_texts() for e in read_squad(export).examples] == [("Guido van Rossum",)]


def test_an_index_without_feedback_and_bad_requests_are_config_errors_naming_the_fix(tmp_path, tiny_qa_model_dir):
    from spanqa.training import TrainRequest, train

    with pytest.raises(DocumentError, match="holds no feedback"):
        read_feedback(tmp_path)
    data = write_squad(tmp_path / "toy.json")
    with pytest.raises(ConfigError, match="--reranker-out needs --index"):
        train(TrainRequest(out=tmp_path / "o", data=(data,), reranker_out=tmp_path / "r"))
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a model"):
        train(TrainRequest(out=tmp_path / "done", data=(data,)))
    with pytest.raises(ConfigError, match="nothing to train on"):
        empty = tmp_path / "empty.json"
        empty.write_text('{"data": []}')
        train(TrainRequest(out=tmp_path / "o", data=(empty,)), qa_settings=qa_settings(tiny_qa_model_dir))


def test_ctrl_c_stops_spanqa_train_after_a_checkpoint_and_says_how_to_resume(tmp_path, tiny_qa_model_dir):
    import os
    import signal
    import subprocess
    import sys

    data = write_squad(tmp_path / "toy.json")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "spanqa.cli", "train", str(data), "--reader", str(tiny_qa_model_dir),
               "--out", str(out), "--max-steps", "100000", "--checkpoint-every", "100000", "--holdout", "0",
               "--rerank", "0", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        for line in process.stderr:  # the run announces its steps once its SIGINT handler is in place
            if "training the reader" in line:
                process.send_signal(signal.SIGINT)
                break
        stdout, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert "stopped at step" in stdout and "--resume" in stdout and "Traceback" not in stderr
    [checkpoint] = list((out / "checkpoints" / "reader").glob("step-*"))
    state = json.loads((checkpoint / "state.json").read_text())
    assert 1 <= state["step"] < 100000 and (checkpoint / "trainer.pt").is_file()
    assert not (out / "config.json").exists()  # no half-trained model passes for a finished one


@pytest.mark.gpu
def test_training_on_cuda_uses_fp16_autocast_and_its_output_loads_on_the_cpu(tmp_path, tiny_qa_model_dir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from spanqa import DocumentQA
    from spanqa.training import TrainRequest, train

    data = write_squad(tmp_path / "toy.json")
    result = train(TrainRequest(out=tmp_path / "out", data=(data,)), TrainSettings(max_steps=24, **FAST_SETTINGS),
                   QASettings.from_keywords(reader=str(tiny_qa_model_dir), device="cuda", rerank=0))
    assert result.record["device"].startswith("cuda") and result.steps == 24
    examples = read_squad(data).examples
    assert reader_loss_on(tmp_path / "out", examples) < reader_loss_on(tiny_qa_model_dir, examples)
    passage = Passage(text=CONTEXTS[2], score=1.0, source="python.txt", page=1, start=0, end=len(CONTEXTS[2]))
    answers = DocumentQA(tmp_path / "index", reader=str(tmp_path / "out"), device="cpu").read(
        "Who created Python?", [passage])
    assert answers and answers[0].text in CONTEXTS[2]
