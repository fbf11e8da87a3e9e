"""The reader's speed paths give the answers of the plain paths: batch API, packed forward, token budgets, fast mode.

No timing is asserted here (bench/reader.py measures speed); these tests pin that each faster way
of reading returns what the straightforward way returns, and that their settings are validated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from haystack import Document

from spanqa.errors import ConfigError
from spanqa.reader import ExtractiveReader, load_qa_model, prepare_qa_model, read_passages
from spanqa.reader.forward import (
    CUDA_MAX_BATCH_TOKENS,
    CUDA_MIN_BATCH_TOKENS,
    PackedDistilBertRunner,
    PaddedRunner,
    cuda_batch_tokens,
)
from spanqa.reader.span_reader import read_passages_batch
from spanqa.reader.windows import encode_pairs, encode_windows, length_sorted_batches, plan_batches
from spanqa.settings import ReaderSettings

PASSAGES = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower.",
    "Marie Curie was a Polish and naturalised-French physicist and chemist.",
    "Mount Everest is Earth's highest mountain above sea level. " * 25,
    "Python is a popular programming language created by Guido van Rossum and first released in 1991.",
    "The Amazon River in South America is the largest river by discharge volume of water in the world.",
    "Rome is the capital of Italy.",
]
QUESTIONS = [
    "Who designed the tower in Paris?",
    "When was Python released?",
    "Which river is the largest?",
    "Who reached the summit of Mount Everest first?",
]


def passages_for(question_index: int) -> list[str]:
    """A different, overlapping selection of passages for each question (lengths vary a lot)."""
    return [PASSAGES[(question_index + offset) % len(PASSAGES)] for offset in range(3 + question_index % 3)]


def span_keys(spans_per_passage):
    return [[(span.passage_index, span.start, span.end) for span in spans] for spans in spans_per_passage]


def span_logits(spans_per_passage):
    return [span.start_logit + span.end_logit for spans in spans_per_passage for span in spans]


def answer_keys(answers):
    return [(answer.document.id, answer.document_offset.start, answer.document_offset.end) for answer in answers]


@pytest.fixture(scope="module")
def tiny_qa(tiny_qa_model_dir):
    return load_qa_model(str(tiny_qa_model_dir), "cpu")


@pytest.fixture(scope="module")
def tiny_bert_qa(tiny_qa_model_dir):
    """A random-weight BERT QA model (read by the padded forward) with the tiny tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    return prepare_qa_model(tokenizer, BertForQuestionAnswering(config), "cpu")


@pytest.fixture(scope="module")
def tiny_reader(tiny_qa_model_dir) -> ExtractiveReader:
    reader = ExtractiveReader(model=str(tiny_qa_model_dir), device="cpu", top_k=6)
    reader.warm_up()
    return reader


class TestBatchApi:
    def test_read_passages_batch_equals_one_question_at_a_time(self, tiny_qa):
        settings = ReaderSettings(max_seq_length=64, doc_stride=16, max_question_length=16)
        passages = [passages_for(index) for index in range(len(QUESTIONS))]

        together = read_passages_batch(tiny_qa, QUESTIONS, passages, settings, top_k=4)

        assert len(together) == len(QUESTIONS)
        for question, question_passages, batched in zip(QUESTIONS, passages, together, strict=True):
            alone = read_passages(tiny_qa, question, question_passages, settings, top_k=4)
            assert span_keys(batched) == span_keys(alone)
            np.testing.assert_allclose(span_logits(batched), span_logits(alone), rtol=1e-4, atol=1e-5)

    def test_blank_questions_and_empty_lists_get_no_spans_and_keep_their_places(self, tiny_qa):
        settings = ReaderSettings()
        passages = [PASSAGES[:2], PASSAGES[:3], [], PASSAGES[3:5]]

        result = read_passages_batch(tiny_qa, [QUESTIONS[0], "   ", QUESTIONS[1], QUESTIONS[2]], passages, settings, 2)

        assert [len(spans) for spans in result] == [2, 3, 0, 2]
        assert result[1] == [[], [], []]
        assert span_keys(result[3]) == span_keys(read_passages(tiny_qa, QUESTIONS[2], PASSAGES[3:5], settings, 2))

    def test_one_list_of_passages_per_question(self, tiny_qa):
        with pytest.raises(ValueError, match="one list per question"):
            read_passages_batch(tiny_qa, QUESTIONS[:2], [PASSAGES], ReaderSettings(), top_k=1)

    def test_run_batch_equals_separate_runs(self, tiny_reader):
        documents = [[Document(content=text) for text in passages_for(index)] for index in range(len(QUESTIONS))]
        documents[1].append(Document(content=""))  # skipped like in run

        batched = tiny_reader.run_batch(queries=QUESTIONS, documents=documents)["answers"]

        assert len(batched) == len(QUESTIONS)
        for query, docs, answers in zip(QUESTIONS, documents, batched, strict=True):
            alone = tiny_reader.run(query=query, documents=docs)["answers"]
            assert answer_keys(answers) == answer_keys(alone)
            assert [answer.data for answer in answers] == [answer.data for answer in alone]
            np.testing.assert_allclose([a.score for a in answers], [a.score for a in alone], rtol=1e-5)
            assert all(answer.query == query for answer in answers)

    def test_run_batch_applies_top_k_and_empty_inputs(self, tiny_reader):
        documents = [[Document(content=PASSAGES[0])], [], [Document(content=PASSAGES[1])]]

        answers = tiny_reader.run_batch(queries=[QUESTIONS[0], QUESTIONS[1], ""], documents=documents, top_k=2)[
            "answers"
        ]

        assert [len(query_answers) for query_answers in answers] == [2, 0, 0]

    def test_per_question_top_k_reads_each_question_as_alone(self, tiny_qa):
        # A server batches requests asking for different numbers of answers; each must get what a
        # call with its own top_k gives (the candidates per window depend on top_k).
        settings = ReaderSettings(max_seq_length=64, doc_stride=16, max_question_length=16)
        passages = [passages_for(index) for index in range(3)]
        top_ks = [1, 6, 3]

        together = read_passages_batch(tiny_qa, QUESTIONS[:3], passages, settings, top_k=top_ks)

        for question, question_passages, k, batched in zip(QUESTIONS, passages, top_ks, together):
            alone = read_passages(tiny_qa, question, question_passages, settings, top_k=k)
            assert span_keys(batched) == span_keys(alone)
            assert all(len(spans) <= k for spans in batched)

    def test_run_batch_takes_top_k_and_threshold_per_query(self, tiny_reader):
        documents = [[Document(content=text) for text in passages_for(index)] for index in range(2)]
        first_alone = tiny_reader.run(query=QUESTIONS[0], documents=documents[0], top_k=3)["answers"]
        # Between the second and third answers' scores, which batched reading gives only to float
        # rounding (batch shapes differ): it keeps the two best answers of the first question.
        assert first_alone[1].score > first_alone[2].score
        cut = (first_alone[1].score + first_alone[2].score) / 2

        batched = tiny_reader.run_batch(
            queries=QUESTIONS[:2], documents=documents, top_k=[3, 2], score_thresholds=[cut, None]
        )["answers"]

        assert [answer.data for answer in batched[0]] == [answer.data for answer in first_alone[:2]]
        second_alone = tiny_reader.run(query=QUESTIONS[1], documents=documents[1], top_k=2)["answers"]
        assert [answer.data for answer in batched[1]] == [answer.data for answer in second_alone]
        with pytest.raises(ConfigError, match="one per query"):
            tiny_reader.run_batch(queries=QUESTIONS[:2], documents=documents, score_thresholds=[0.5])
        with pytest.raises(ConfigError, match="one per question"):
            tiny_reader.run_batch(queries=QUESTIONS[:2], documents=documents, top_k=[1])

    def test_run_batch_needs_one_document_list_per_query(self, tiny_reader):
        with pytest.raises(ConfigError, match="one list per query"):
            tiny_reader.run_batch(queries=QUESTIONS[:2], documents=[[Document(content=PASSAGES[0])]])


class TestTokenBudgetBatching:
    def test_plan_batches_sorts_respects_both_limits_and_covers_every_window(self):
        lengths = np.array([50, 10, 384, 120, 118, 30, 384, 200, 5])

        batches = plan_batches(lengths, batch_size=3, max_batch_tokens=400)

        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(len(lengths)))
        assert lengths[flat].tolist() == sorted(lengths.tolist())
        for batch in batches:
            assert len(batch) <= 3
            assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 400

    @staticmethod
    def batch_cost(lengths: np.ndarray, batches, forward_cost: int) -> int:
        return sum(len(batch) * int(lengths[batch].max()) + forward_cost for batch in batches)

    def test_padding_aware_cuts_known_answers(self):
        # Three short windows are not padded to a long one when another pass is cheaper...
        assert [b.tolist() for b in plan_batches(np.array([100, 10, 10, 10]), None, 10_000, 5)] == [[1, 2, 3], [0]]
        # ... equal windows share one pass ...
        assert [b.tolist() for b in plan_batches(np.array([50, 50, 50, 50]), None, 10_000, 5)] == [[0, 1, 2, 3]]
        # ... and a pass costing more than the padding keeps them together.
        assert [b.tolist() for b in plan_batches(np.array([100, 10, 10, 10]), None, 10_000, 500)] == [[1, 2, 3, 0]]

    @pytest.mark.parametrize("seed", range(20))
    def test_padding_aware_cuts_are_the_cheapest_of_all_partitions(self, seed):
        # The reference: every way of cutting the sorted windows into contiguous batches.
        import itertools

        rng = np.random.default_rng(seed)
        lengths = rng.integers(5, 300, size=int(rng.integers(2, 9)))
        forward_cost, budget, size = int(rng.integers(0, 200)), int(rng.integers(300, 2000)), int(rng.integers(1, 6))
        ordered = np.argsort(lengths, kind="stable")
        best = None
        for cuts in itertools.product([False, True], repeat=len(lengths) - 1):
            batches, first = [], 0
            for position, cut in enumerate(cuts, start=1):
                if cut:
                    batches.append(ordered[first:position])
                    first = position
            batches.append(ordered[first:])
            fits = all(len(b) <= size and (len(b) == 1 or len(b) * lengths[b].max() <= budget) for b in batches)
            if fits:
                cost = self.batch_cost(lengths, batches, forward_cost)
                best = cost if best is None else min(best, cost)

        planned = plan_batches(lengths, size, budget, forward_cost)

        assert sorted(np.concatenate(planned).tolist()) == list(range(len(lengths)))
        assert all(len(b) <= size and (len(b) == 1 or len(b) * lengths[b].max() <= budget) for b in planned)
        assert self.batch_cost(lengths, planned, forward_cost) == best

    def test_the_padded_forward_on_a_cpu_cuts_batches_to_save_padding(self, tiny_bert_qa):
        qa_model = tiny_bert_qa
        assert qa_model.runner.kind == "padded"
        assert qa_model.forward_cost_tokens is not None
        settings = ReaderSettings(max_seq_length=64, doc_stride=16, max_question_length=16)
        for index, question in enumerate(QUESTIONS):
            passages = passages_for(index)
            planned = read_passages(qa_model, question, passages, settings, top_k=4)
            one_at_a_time = read_passages(qa_model, question, passages, ReaderSettings(
                max_seq_length=64, doc_stride=16, max_question_length=16, reader_batch_size=1), top_k=4)
            assert span_keys(planned) == span_keys(one_at_a_time)
            np.testing.assert_allclose(span_logits(planned), span_logits(one_at_a_time), rtol=1e-4, atol=1e-5)

    def test_packed_and_one_window_runners_keep_full_batches(self, tiny_qa):
        assert tiny_qa.runner.kind == "packed"
        assert tiny_qa.forward_cost_tokens is None

    def test_a_window_longer_than_the_budget_still_gets_a_batch(self):
        assert [batch.tolist() for batch in plan_batches(np.array([300, 20]), None, 100)] == [[1], [0]]

    @pytest.mark.parametrize("settings", [{"max_batch_tokens": 96}, {"max_batch_tokens": 256, "batch_size": 2}])
    def test_token_budgets_give_the_answers_of_one_window_per_batch(self, tiny_qa_model_dir, settings):
        documents = [Document(content=text) for text in PASSAGES]
        window_settings = {"max_seq_length": 64, "doc_stride": 16, "max_question_length": 16, "top_k": 8}
        one_by_one = ExtractiveReader(model=str(tiny_qa_model_dir), device="cpu", batch_size=1, **window_settings)
        budgeted = ExtractiveReader(model=str(tiny_qa_model_dir), device="cpu", **settings, **window_settings)

        for query in QUESTIONS:
            expected = one_by_one.run(query=query, documents=documents)["answers"]
            got = budgeted.run(query=query, documents=documents)["answers"]
            assert answer_keys(got) == answer_keys(expected)
            np.testing.assert_allclose([a.score for a in got], [a.score for a in expected], rtol=1e-5)

    def test_batches_are_padded_only_to_their_own_longest_window(self, tiny_qa):
        windows = encode_windows(tiny_qa.tokenizer, QUESTIONS[0], PASSAGES, 64, 16, word_ids_available=True)

        batches = list(length_sorted_batches(windows, None, 0, max_batch_tokens=128))

        assert sum(len(batch) for batch in batches) == len(windows)
        for batch in batches:
            assert batch.input_ids.shape[1] == batch.lengths.max()
            assert (batch.attention_mask.sum(axis=1) == batch.lengths).all()
            assert not batch.passage_tokens[batch.attention_mask == 0].any()


class TestVectorisedEncoding:
    def test_passage_tokens_and_word_ids_match_the_encodings(self, tiny_qa):
        tokenizer = tiny_qa.tokenizer
        questions = [QUESTIONS[0], QUESTIONS[1]]
        passages = [PASSAGES[2], PASSAGES[0]]
        encoded = tokenizer(
            questions, passages, truncation="only_second", max_length=48, stride=12,
            return_overflowing_tokens=True, return_offsets_mapping=True,
        )

        windows = encode_pairs(tokenizer, questions, passages, 48, 12, word_ids_available=True)

        assert [window.passage_index for window in windows] == list(encoded["overflow_to_sample_mapping"])
        for window, encoding in zip(windows, encoded.encodings, strict=True):
            expected_passage = [sequence == 1 for sequence in encoding.sequence_ids]
            expected_words = [
                word if sequence == 1 else -1
                for word, sequence in zip(encoding.word_ids, encoding.sequence_ids, strict=True)
            ]
            assert window.passage_tokens.tolist() == expected_passage
            assert window.word_ids.tolist() == expected_words
            assert window.input_ids.tolist() == encoding.ids


class TestPackedForward:
    def test_distilbert_reads_packed_and_matches_its_own_padded_forward(self, tiny_qa):
        windows = encode_windows(tiny_qa.tokenizer, QUESTIONS[3], PASSAGES, 64, 16, word_ids_available=True)
        batch = next(length_sorted_batches(windows, None, 0, max_batch_tokens=100_000))
        assert batch.padded and len(set(batch.lengths.tolist())) > 2

        packed = tiny_qa.logits(batch)
        padded = PaddedRunner(tiny_qa.model, tiny_qa.device, tiny_qa.input_names)(batch)

        assert isinstance(tiny_qa.runner, PackedDistilBertRunner)
        real = batch.attention_mask.astype(bool)
        for got, expected in zip(packed, padded, strict=True):
            assert got.dtype == np.float64 and got.shape == batch.input_ids.shape
            np.testing.assert_allclose(got[real], expected[real], rtol=1e-4, atol=1e-5)

    def test_every_attention_grouping_gives_the_same_logits(self, tiny_qa, monkeypatch):
        from spanqa.reader import forward

        windows = encode_windows(tiny_qa.tokenizer, QUESTIONS[0], PASSAGES, 64, 16, word_ids_available=True)
        batch = next(length_sorted_batches(windows, None, 0, max_batch_tokens=100_000))
        results = []
        for slack in (1.0, 1.5, 1000.0):  # one group per length ... one group for all
            monkeypatch.setattr(forward, "ATTENTION_PADDING_SLACK", slack)
            results.append(tiny_qa.logits(batch))
        real = batch.attention_mask.astype(bool)
        for other in results[1:]:
            for got, expected in zip(other, results[0], strict=True):
                np.testing.assert_allclose(got[real], expected[real], rtol=1e-4, atol=1e-5)

    def test_other_models_use_their_own_forward(self, tiny_qa):
        from transformers.modeling_outputs import QuestionAnsweringModelOutput

        class Flat(torch.nn.Module):
            def forward(self, input_ids, attention_mask):
                zeros = torch.zeros(input_ids.shape)
                return QuestionAnsweringModelOutput(start_logits=zeros, end_logits=zeros)

        qa_model = prepare_qa_model(tiny_qa.tokenizer, Flat(), "cpu")

        assert isinstance(qa_model.runner, PaddedRunner)


class TestDeviceBudgets:
    def test_cpu_budget(self, tiny_qa):
        assert tiny_qa.batch_tokens(384) == 8192

    def test_cuda_budget_is_sized_from_free_memory_within_bounds(self, tiny_qa, monkeypatch):
        gib = 1024**3
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free[0], 80 * gib))
        free = [40 * gib]
        roomy = cuda_batch_tokens(tiny_qa.model, torch.device("cpu"), 384)
        free[0] = 256 * 1024**2
        tight = cuda_batch_tokens(tiny_qa.model, torch.device("cpu"), 384)
        free[0] = 1024
        none_free = cuda_batch_tokens(tiny_qa.model, torch.device("cpu"), 384)

        assert CUDA_MIN_BATCH_TOKENS <= tight < roomy <= CUDA_MAX_BATCH_TOKENS
        assert none_free == CUDA_MIN_BATCH_TOKENS


class TestSettings:
    @pytest.mark.parametrize(
        ("bad", "named"),
        [
            ({"fast": "yes"}, "fast='yes'"),
            ({"fast": 1}, "fast=1"),
            ({"fast": None}, "fast=None"),
            ({"max_batch_tokens": 0}, "max_batch_tokens=0"),
            ({"max_batch_tokens": True}, "max_batch_tokens=True"),
            ({"max_batch_tokens": 2.5}, "max_batch_tokens=2.5"),
            ({"batch_size": 0}, "batch_size=0"),
            ({"batch_size": "16"}, "batch_size='16'"),
        ],
    )
    def test_bad_values_raise_config_error_naming_them(self, bad, named):
        with pytest.raises(ConfigError) as raised:
            ExtractiveReader(model="some/model", device="cpu", **bad)

        assert named in str(raised.value)

    def test_fast_mode_on_an_explicit_gpu_is_refused(self, monkeypatch):
        from spanqa.reader import loading

        monkeypatch.setattr(loading, "check_fast_mode_available", lambda: None)  # whether installed or not
        with pytest.raises(ConfigError, match="CPU mode"):
            ExtractiveReader(model="some/model", device="cuda", fast=True)

    def test_fast_mode_without_onnx_runtime_says_what_to_install(self, monkeypatch):
        import importlib.util

        real_find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *args: None if name == "onnxruntime" else real_find_spec(name, *args)
        )
        with pytest.raises(ConfigError, match="pip install onnxruntime"):
            ExtractiveReader(model="some/model", device="cpu", fast=True)

    def test_new_settings_round_trip(self):
        reader = ExtractiveReader(model="some/model", device="cpu", batch_size=None, max_batch_tokens=4096)

        restored = ExtractiveReader.from_dict(reader.to_dict())

        assert restored.to_dict()["init_parameters"]["max_batch_tokens"] == 4096
        assert restored.to_dict()["init_parameters"]["batch_size"] is None
        assert restored.to_dict()["init_parameters"]["fast"] is False


@pytest.fixture(scope="module")
def fast_reader(tiny_qa_model_dir) -> ExtractiveReader:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    reader = ExtractiveReader(model=str(tiny_qa_model_dir), device="cpu", top_k=5, fast=True)
    reader.warm_up()
    return reader


class TestFastMode:
    def test_the_smoothing_pairs_are_never_cut_whatever_window_the_reader_uses(self, tiny_qa):
        from spanqa.reader.fast_mode import FAST_CALIBRATION_MAX_TOKENS, FAST_CALIBRATION_TEXT, calibration_feeds

        blocks = FAST_CALIBRATION_TEXT.read_text(encoding="utf-8").strip().split("\n\n")
        feeds = calibration_feeds(tiny_qa.tokenizer)  # the tiny vocabulary cuts words into many pieces

        assert len(feeds) == len(blocks) > 0
        for feed, block in zip(feeds, blocks, strict=True):
            whole = tiny_qa.tokenizer(*block.split("\n", 1))["input_ids"]
            assert feed["input_ids"].shape[1] == len(whole) < FAST_CALIBRATION_MAX_TOKENS

    def test_fast_mode_uses_int8_onnx_runtime(self, fast_reader):
        qa_model = fast_reader._loaded()

        assert qa_model.fast and qa_model.runner.kind == "onnx-int8"

    def test_building_the_int8_graph_leaves_the_model_in_eval_mode(self, tiny_qa_model_dir, tmp_path, monkeypatch):
        pytest.importorskip("onnxruntime")
        monkeypatch.setenv("SPANQA_CACHE_DIR", str(tmp_path))  # an empty cache: the graph is built from the model
        qa_model = load_qa_model(str(tiny_qa_model_dir), "cpu", fast=True)

        assert qa_model.fast and qa_model.runner.kind == "onnx-int8"
        assert qa_model.model is not None and not qa_model.model.training

    def test_fast_answers_are_valid_spans(self, fast_reader):
        documents = [Document(content=text) for text in PASSAGES]

        for query in QUESTIONS:
            answers = fast_reader.run(query=query, documents=documents)["answers"]
            assert len(answers) == 5
            scores = [answer.score for answer in answers]
            assert scores == sorted(scores, reverse=True)
            for answer in answers:
                start, end = answer.document_offset.start, answer.document_offset.end
                assert 0 <= start < end <= len(answer.document.content)
                assert answer.data == answer.document.content[start:end]
                assert answer.data.strip() == answer.data

    def test_fast_mode_mostly_agrees_with_exact_mode(self, fast_reader, tiny_qa):
        settings = ReaderSettings()
        questions = QUESTIONS * 2
        passages = [passages_for(index) for index in range(len(questions))]

        exact = read_passages_batch(tiny_qa, questions, passages, settings, top_k=1)
        fast = read_passages_batch(fast_reader._loaded(), questions, passages, settings, top_k=1)

        same = [
            [(span.start, span.end) for span in exact_spans] == [(span.start, span.end) for span in fast_spans]
            for exact_q, fast_q in zip(exact, fast, strict=True)
            for exact_spans, fast_spans in zip(exact_q, fast_q, strict=True)
        ]
        assert sum(same) / len(same) >= 0.6, f"{sum(same)}/{len(same)} passages have exact mode's best span"
