"""ExtractiveReader end to end.

A scripted fake model pins exact answers; the tiny random DistilBERT exercises the real load path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from haystack import Document
from transformers.modeling_outputs import QuestionAnsweringModelOutput

from spanqa import defaults
from spanqa.errors import ConfigError, ModelLoadError
from spanqa.reader import ExtractiveReader, comparable_score, word_aligned_char_spans
from spanqa.reader.decoding import SpanCandidates
from spanqa.reader.windows import encode_windows
from spanqa.settings import ReaderSettings

QUESTION = "Who wrote the report?"


class ScriptedQAModel(torch.nn.Module):
    """A stand-in QA model: each token's start/end logit is looked up from its token id.

    Tokens not in the tables get `baseline`, so a test decides exactly which words win.
    """

    def __init__(self, start_by_token: dict[int, float], end_by_token: dict[int, float], baseline: float = 0.0):
        super().__init__()
        self.start_by_token = start_by_token
        self.end_by_token = end_by_token
        self.baseline = baseline
        self.calls: list[dict[str, tuple[int, ...]]] = []

    def _lookup(self, input_ids: torch.Tensor, table: dict[int, float]) -> torch.Tensor:
        logits = torch.full(input_ids.shape, self.baseline, dtype=torch.float32)
        for token_id, logit in table.items():
            logits[input_ids == token_id] = logit
        return logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> QuestionAnsweringModelOutput:
        self.calls.append({"input_ids": tuple(input_ids.shape), "attention_mask": tuple(attention_mask.shape)})
        return QuestionAnsweringModelOutput(
            start_logits=self._lookup(input_ids, self.start_by_token),
            end_logits=self._lookup(input_ids, self.end_by_token),
        )


@pytest.fixture(scope="module")
def tokenizer(tiny_qa_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_qa_model_dir)


def token_id(tokenizer, word: str) -> int:
    """The id of a word that the tiny vocabulary holds as one token."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{word!r} is not a single token of the tiny vocabulary: {ids}"
    return ids[0]


def scripted_reader(tokenizer, starts: dict[str, float], ends: dict[str, float], baseline: float = 0.0, **settings):
    model = ScriptedQAModel(
        {token_id(tokenizer, word): logit for word, logit in starts.items()},
        {token_id(tokenizer, word): logit for word, logit in ends.items()},
        baseline,
    )
    settings.setdefault("device", "cpu")
    return ExtractiveReader.from_loaded(tokenizer, model, **settings)


def assert_consistent(answer, document: Document) -> None:
    """Offsets point into the document and the context, and the texts agree."""
    start, end = answer.document_offset.start, answer.document_offset.end
    assert answer.data == document.content[start:end]
    assert answer.document is document
    context_start = start - answer.context_offset.start
    assert answer.context == document.content[context_start : context_start + len(answer.context)]
    assert answer.context[answer.context_offset.start : answer.context_offset.end] == answer.data
    assert answer.score == pytest.approx(
        float(comparable_score(answer.meta["start_logit"] + answer.meta["end_logit"]))
    )


class TestScriptedAnswers:
    def test_finds_the_exact_span_and_offsets(self, tokenizer):
        document = Document(content="The report was written by Marie Curie in Paris.", meta={"page": 3})
        reader = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0})

        answers = reader.run(query=QUESTION, documents=[document])["answers"]

        best = answers[0]
        assert best.data == "Marie Curie"
        assert (best.document_offset.start, best.document_offset.end) == (26, 37)
        assert best.query == QUESTION
        assert (best.meta["start_logit"], best.meta["end_logit"]) == (10.0, 10.0)
        assert [(o["start"], o["end"]) for o in best.meta["sources"]] == [(26, 37)]
        assert best.score == pytest.approx(float(comparable_score(20.0)))
        assert best.document.meta == {"page": 3}
        for answer in answers:
            assert_consistent(answer, document)

    def test_question_tokens_are_never_chosen(self, tokenizer):
        # "report" is in the question and the passage; "Who" only in the question, and scores highest.
        document = Document(content="The report was written by Marie Curie in Paris.")
        reader = scripted_reader(
            tokenizer, starts={"Who": 100.0, "report": 50.0, "Marie": 10.0}, ends={"Who": 100.0, "report": 50.0}
        )

        answers = reader.run(query=QUESTION, documents=[document], top_k=3)["answers"]

        assert answers[0].data == "report"
        assert answers[0].document_offset.start == document.content.index("report")
        assert all("Who" not in answer.data for answer in answers)
        for answer in answers:
            assert_consistent(answer, document)

    def test_a_start_inside_a_word_gives_the_whole_word(self, tokenizer):
        # "unbelievably" is several word pieces in the tiny vocabulary; the start is scripted on "##ab".
        content = "The tower is unbelievably large in Paris."
        pieces = tokenizer.tokenize("unbelievably")
        assert len(pieces) > 2 and pieces[-2].startswith("##")
        model = ScriptedQAModel(
            {tokenizer.convert_tokens_to_ids(pieces[-2]): 10.0}, {token_id(tokenizer, "Paris"): 10.0}
        )
        reader = ExtractiveReader.from_loaded(tokenizer, model, device="cpu")

        best = reader.run(query="How tall is it?", documents=[Document(content=content)])["answers"][0]

        assert best.data == "unbelievably large in Paris"
        assert best.document_offset.start == content.index("unbelievably")

    def test_long_passage_is_read_in_overlapping_windows(self, tokenizer):
        filler = "The cat sat on the mat while the dog slept near the warm fire. " * 12
        content = filler + "The first people to reach the summit were Tenzing Norgay and Edmund Hillary."
        document = Document(content=content)
        settings = {"max_seq_length": 40, "doc_stride": 10, "max_question_length": 12}
        windows = encode_windows(tokenizer, QUESTION, [content], 40, 10, word_ids_available=True)
        reader = scripted_reader(tokenizer, starts={"Tenzing": 10.0}, ends={"Norgay": 10.0}, **settings)

        best = reader.run(query=QUESTION, documents=[document])["answers"][0]

        assert len(windows) > 5
        assert best.data == "Tenzing Norgay"
        assert best.document_offset.start == content.index("Tenzing Norgay")
        assert_consistent(best, document)

    def test_an_answer_in_the_overlap_of_two_windows_is_returned_once(self, tokenizer):
        # As in the transformers 4.57 pipeline, one passage's spans with the same text are one
        # answer, placed at the first occurrence, whichever windows saw it.
        content = "The cat sat on the mat while the dog slept near the warm fire. " * 6
        settings = {"max_seq_length": 40, "doc_stride": 20, "max_question_length": 12, "top_k": 50}
        for merge in (True, False):
            answers = scripted_reader(
                tokenizer, starts={"dog": 10.0}, ends={"dog": 10.0}, merge_same_answers=merge, **settings
            ).run(query=QUESTION, documents=[Document(content=content)])["answers"]
            offsets = [(answer.document_offset.start, answer.document_offset.end) for answer in answers]
            assert len(offsets) == len(set(offsets))
            assert [span for span in offsets if content[span[0] : span[1]] == "dog"] == [
                (content.index("dog"), content.index("dog") + 3)
            ]
            assert len({answer.data.lower() for answer in answers}) == len(answers)

    def test_max_answer_length_bounds_the_span(self, tokenizer):
        content = "Rome is the capital of Italy and Berlin is the capital of Germany."
        starts, ends = {"Rome": 10.0}, {"Germany": 10.0}

        long_reader = scripted_reader(tokenizer, starts, ends, max_answer_length=30)
        short_reader = scripted_reader(tokenizer, starts, ends, max_answer_length=4)
        long_answer = long_reader.run(query=QUESTION, documents=[Document(content=content)])["answers"][0]
        short_answers = short_reader.run(query=QUESTION, documents=[Document(content=content)], top_k=20)["answers"]

        assert long_answer.data == content[:-1]
        for answer in short_answers:
            assert len(tokenizer.tokenize(answer.data)) <= 4

    def test_answers_across_documents_rank_by_logit_sum(self, tokenizer):
        # "Rome" stands alone in its passage (high window probability, logit sum 12); "Berlin" has a
        # larger logit sum (20) in a passage of near-equal rivals (low window probability). The
        # comparable score ranks Berlin first, as the logit sums say.
        crowded = Document(content="Berlin Madrid Madrid Madrid Madrid Madrid Madrid.")
        clear = Document(content="Rome is here.")
        reader = scripted_reader(
            tokenizer, starts={"Rome": 6.0, "Berlin": 10.0, "Madrid": 9.9}, ends={"Rome": 6.0, "Berlin": 10.0,
            "Madrid": 9.9}, baseline=-10.0, max_answer_length=1,
        )

        answers = reader.run(query=QUESTION, documents=[clear, crowded], top_k=10)["answers"]

        assert answers[0].data == "Berlin"
        rome = next(answer for answer in answers if answer.data == "Rome")
        assert answers.index(rome) > 0
        scores = [answer.score for answer in answers]
        assert scores == sorted(scores, reverse=True)
        sums = [answer.meta["start_logit"] + answer.meta["end_logit"] for answer in answers]
        assert sums == sorted(sums, reverse=True)

    def test_top_k_limits_the_answers(self, tokenizer):
        documents = [Document(content="Rome is the capital of Italy."), Document(content="Madrid is in Spain.")]
        reader = scripted_reader(tokenizer, starts={"Rome": 5.0}, ends={"Italy": 5.0}, top_k=3)

        assert len(reader.run(query=QUESTION, documents=documents)["answers"]) == 3
        assert len(reader.run(query=QUESTION, documents=documents, top_k=1)["answers"]) == 1
        with pytest.raises(ConfigError, match="top_k"):
            reader.run(query=QUESTION, documents=documents, top_k=0)

    def test_documents_without_text_are_skipped(self, tokenizer):
        reader = scripted_reader(tokenizer, starts={"Rome": 5.0}, ends={"Rome": 5.0})
        text = Document(content="Rome is the capital of Italy.")

        answers = reader.run(
            query=QUESTION, documents=[Document(content=""), Document(content="   \n"), text, Document(content=None)]
        )["answers"]

        assert answers and all(answer.document is text for answer in answers)
        assert reader.run(query=QUESTION, documents=[Document(content="")])["answers"] == []
        assert reader.run(query=QUESTION, documents=[])["answers"] == []

    def test_the_same_document_twice_gives_each_span_once(self, tokenizer):
        document = Document(content="Rome is the capital of Italy.")
        reader = scripted_reader(tokenizer, starts={"Rome": 5.0}, ends={"Italy": 5.0}, top_k=10)

        answers = reader.run(query=QUESTION, documents=[document, Document(content=document.content)])["answers"]

        keys = [(answer.document.id, answer.document_offset.start, answer.document_offset.end) for answer in answers]
        assert len(keys) == len(set(keys)) == 10

    def test_context_surrounds_the_answer(self, tokenizer):
        content = "Scientists measured the temperature, pressure and humidity every hour during the long experiment."
        document = Document(content=content)
        reader = scripted_reader(
            tokenizer, starts={"pressure": 10.0}, ends={"pressure": 10.0}, context_chars=12, top_k=20
        )

        answers = reader.run(query=QUESTION, documents=[document])["answers"]

        best = answers[0]
        start = content.index("pressure")
        assert best.context == content[start - 12 : start + len("pressure") + 12]
        assert (best.context_offset.start, best.context_offset.end) == (12, 12 + len("pressure"))
        for answer in answers:  # answers near the text's ends get a shorter context
            assert_consistent(answer, document)

    def test_a_long_question_is_cut_to_fit(self, tokenizer):
        question = "Who wrote the report about the tower and the river and the mountain? " * 10
        model = ScriptedQAModel({token_id(tokenizer, "Rome"): 5.0}, {token_id(tokenizer, "Rome"): 5.0})
        reader = ExtractiveReader.from_loaded(
            tokenizer, model, device="cpu", max_seq_length=48, doc_stride=8, max_question_length=16
        )

        best = reader.run(query=question, documents=[Document(content="Rome is the capital of Italy.")])["answers"][0]

        assert best.data == "Rome"
        assert all(shape["input_ids"][1] <= 48 for shape in model.calls)

    def test_windows_run_in_length_sorted_padded_batches(self, tokenizer):
        documents = [Document(content="Rome " * length) for length in (30, 2, 25, 3, 28, 4)]
        model = ScriptedQAModel({token_id(tokenizer, "Rome"): 5.0}, {token_id(tokenizer, "Rome"): 5.0})
        reader = ExtractiveReader.from_loaded(tokenizer, model, device="cpu", batch_size=3)

        reader.run(query=QUESTION, documents=documents)

        question_and_specials = len(tokenizer(QUESTION)["input_ids"]) + 1  # [CLS] q [SEP] ... [SEP]
        shapes = [shape["input_ids"] for shape in model.calls]
        assert shapes == [(3, question_and_specials + 4), (3, question_and_specials + 30)]

    def test_word_alignment_matches_encoding_word_to_chars(self, tokenizer):
        content = "Photosynthesis converts light energy into chemical energy in unbelievably tall plants. " * 4
        encoded = tokenizer(
            QUESTION, content, truncation="only_second", max_length=30, stride=6,
            return_overflowing_tokens=True, return_offsets_mapping=True,
        )
        windows = encode_windows(tokenizer, QUESTION, [content], 30, 6, word_ids_available=True)

        for encoding, window in zip(encoded.encodings, windows, strict=True):
            tokens = np.flatnonzero(window.passage_tokens)
            candidates = SpanCandidates(
                window=np.zeros(len(tokens), dtype=np.int64), start=tokens, end=tokens,
                start_logit=np.zeros(len(tokens)), end_logit=np.zeros(len(tokens)),
            )
            char_start, char_end = word_aligned_char_spans(
                window.word_ids, window.offsets, window.passage_tokens, candidates
            )
            expected = [encoding.word_to_chars(encoding.token_to_word(int(token)), 1) for token in tokens]
            assert list(zip(char_start.tolist(), char_end.tolist(), strict=True)) == expected


class TestEntryPoints:
    def test_runs_inside_a_haystack_pipeline(self, tokenizer):
        from haystack import Pipeline

        pipeline = Pipeline()
        pipeline.add_component("reader", scripted_reader(tokenizer, starts={"Rome": 5.0}, ends={"Italy": 5.0}))
        document = Document(content="Rome is the capital of Italy.")

        result = pipeline.run({"reader": {"query": QUESTION, "documents": [document], "top_k": 2}})

        answers = result["reader"]["answers"]
        assert [answer.data for answer in answers][:1] == ["Rome is the capital of Italy"]
        assert len(answers) == 2

    def test_read_passages_works_on_plain_strings(self, tokenizer):
        from spanqa.reader import prepare_qa_model, read_passages

        qa_model = prepare_qa_model(
            tokenizer, ScriptedQAModel({token_id(tokenizer, "Rome"): 5.0}, {token_id(tokenizer, "Italy"): 5.0}), "cpu"
        )
        passages = ["Madrid is in Spain.", "Rome is the capital of Italy."]

        spans = read_passages(qa_model, QUESTION, passages, ReaderSettings(), top_k=2)

        assert [len(passage_spans) for passage_spans in spans] == [2, 2]
        best = spans[1][0]
        assert (best.passage_index, passages[1][best.start : best.end]) == (1, "Rome is the capital of Italy")
        assert best.score == pytest.approx(float(comparable_score(10.0)))


class TestSettings:
    def test_to_dict_from_dict_round_trip(self):
        reader = ExtractiveReader(
            model="some/model", device="cuda:1", top_k=7, max_answer_length=20, max_seq_length=256,
            doc_stride=64, max_question_length=32, batch_size=4, context_chars=80, score_threshold=0.4,
            merge_same_answers=False, rank_weight=0.5, passage_weight=0.25, evidence_weight=1.0,
        )

        data = reader.to_dict()
        restored = ExtractiveReader.from_dict(data)

        assert data["type"] == "spanqa.reader.extractive_reader.ExtractiveReader"
        assert data["init_parameters"] == {
            "model": "some/model", "device": "cuda:1", "top_k": 7, "max_answer_length": 20,
            "max_seq_length": 256, "doc_stride": 64, "max_question_length": 32, "batch_size": 4,
            "context_chars": 80, "score_threshold": 0.4, "merge_same_answers": False, "max_batch_tokens": None,
            "fast": False, "rank_weight": 0.5, "passage_weight": 0.25, "evidence_weight": 1.0, "calibration": None,
            "adaptive": False,
        }
        assert restored.to_dict() == data

    def test_defaults_come_from_the_reader_settings(self):
        parameters = ExtractiveReader().to_dict()["init_parameters"]

        assert parameters["model"] == ReaderSettings.reader
        assert parameters["doc_stride"] == ReaderSettings.doc_stride
        assert parameters["top_k"] == ReaderSettings.answer_top_k
        assert parameters["batch_size"] is ReaderSettings.reader_batch_size is None

    def test_from_settings_is_the_reader_those_settings_describe(self):
        settings = ReaderSettings(
            reader="some/model", answer_top_k=3, max_seq_length=256, doc_stride=64, reader_batch_size=4,
            reader_max_batch_tokens=2048, rank_weight=0.5, score_threshold=0.2, context_chars=40,
        )

        reader = ExtractiveReader.from_settings(settings, device="cpu")

        assert reader.settings == settings
        assert reader.to_dict()["init_parameters"] == {
            "model": "some/model", "device": "cpu", "top_k": 3, "max_answer_length": 15, "max_seq_length": 256,
            "doc_stride": 64, "max_question_length": 64, "batch_size": 4, "context_chars": 40,
            "score_threshold": 0.2, "merge_same_answers": True, "max_batch_tokens": 2048, "fast": False,
            "rank_weight": 0.5, "passage_weight": ReaderSettings.passage_weight,
            "evidence_weight": ReaderSettings.evidence_weight, "calibration": None, "adaptive": False,
        }

    def test_from_settings_still_checks_what_joins_components(self):
        with pytest.raises(ConfigError, match="calibration"):
            ExtractiveReader.from_settings(ReaderSettings(score_threshold="auto"), device="cpu")

    @pytest.mark.parametrize(
        ("bad", "named"),
        [
            ({"top_k": 0}, "top_k=0"),
            ({"top_k": True}, "top_k=True"),
            ({"device": "gpu"}, "'gpu'"),
            ({"device": "cuda:x"}, "'cuda:x'"),
            ({"doc_stride": 384}, "doc_stride=384"),
            ({"doc_stride": -1}, "doc_stride=-1"),
            ({"max_answer_length": 0}, "max_answer_length=0"),
            ({"max_seq_length": 0}, "max_seq_length=0"),
            ({"max_question_length": 384}, "max_question_length=384"),
            ({"batch_size": 0}, "batch_size=0"),
            ({"context_chars": -1}, "context_chars=-1"),
            ({"model": ""}, "model=''"),
        ],
    )
    def test_bad_settings_raise_config_error_naming_the_value(self, bad, named):
        with pytest.raises(ConfigError) as raised:
            ExtractiveReader(**bad)

        assert named in str(raised.value)

    def test_windows_that_cannot_advance_are_refused_once_the_tokenizer_is_known(self, tokenizer):
        model = ScriptedQAModel({}, {})

        with pytest.raises(ConfigError, match="doc_stride=320"):
            # 384 - 64 question tokens - 3 special tokens leaves 317 passage tokens, not more than 320.
            ExtractiveReader.from_loaded(tokenizer, model, device="cpu", doc_stride=320)

    def test_a_slow_tokenizer_is_refused(self):
        class SlowTokenizer:
            is_fast = False

        with pytest.raises(ConfigError, match="fast"):
            ExtractiveReader.from_loaded(SlowTokenizer(), ScriptedQAModel({}, {}), device="cpu")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
    def test_cuda_without_a_gpu_is_a_config_error(self, tokenizer):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            ExtractiveReader.from_loaded(tokenizer, ScriptedQAModel({}, {}), device="cuda")

    def test_a_missing_local_model_raises_model_load_error(self, tmp_path):
        missing = tmp_path / "no-such-model"
        reader = ExtractiveReader(model=str(missing), device="cpu")

        with pytest.raises(ModelLoadError) as raised:
            reader.warm_up()

        assert str(missing) in str(raised.value)
        assert "local" in str(raised.value)


@pytest.fixture(scope="module")
def tiny_reader(tiny_qa_model_dir) -> ExtractiveReader:
    reader = ExtractiveReader(model=str(tiny_qa_model_dir), device="cpu", top_k=8, batch_size=2)
    reader.warm_up()
    return reader


class TestTinyDistilBert:
    DOCUMENTS = [
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
        "Marie Curie was a Polish and naturalised-French physicist and chemist.",
        "",
        "Mount Everest is Earth's highest mountain above sea level. " * 30,
        "Python is a popular programming language created by Guido van Rossum.",
    ]

    def test_answers_are_valid_spans_sorted_by_score(self, tiny_reader):
        documents = [Document(content=content) for content in self.DOCUMENTS]

        answers = tiny_reader.run(query="Who designed the tower in Paris?", documents=documents)["answers"]

        assert len(answers) == 8
        scores = [answer.score for answer in answers]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 < score < 1.0 for score in scores)
        for answer in answers:
            assert answer.document in documents and answer.document.content
            assert answer.data.strip() == answer.data != ""
            assert_consistent(answer, answer.document)

    def test_warm_up_is_idempotent(self, tiny_reader):
        loaded = tiny_reader._qa_model

        tiny_reader.warm_up()

        assert tiny_reader._qa_model is loaded

    def test_batch_size_does_not_change_answers(self, tiny_reader, tiny_qa_model_dir):
        documents = [Document(content=content) for content in self.DOCUMENTS]
        one_at_a_time = ExtractiveReader(model=str(tiny_qa_model_dir), device="cpu", top_k=8, batch_size=1)

        batched = tiny_reader.run(query="Who created Python?", documents=documents)["answers"]
        single = one_at_a_time.run(query="Who created Python?", documents=documents)["answers"]

        assert [(a.document.id, a.document_offset.start, a.document_offset.end) for a in batched] == [
            (a.document.id, a.document_offset.start, a.document_offset.end) for a in single
        ]
        np.testing.assert_allclose([a.score for a in batched], [a.score for a in single], rtol=1e-5)


def word_boundaries(tokenizer, content: str) -> tuple[set[int], set[int]]:
    """Character starts and ends of the tokenizer's words in `content`."""
    encoding = tokenizer(content, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for word, (start, end) in zip(encoding.word_ids(), encoding["offset_mapping"], strict=True):
        starts.setdefault(word, start)
        ends[word] = end
    return set(starts.values()), set(ends.values())


def test_real_distilbert_architecture_reads_squad_passages(shared_data_dir):
    import json

    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

    model_dir = shared_data_dir / "models" / "distilbert-base-cased-distilled-squad-arch"
    squad_file = shared_data_dir / "squad" / "dev-v1.1-part-a.json"
    if not model_dir.is_dir() or not squad_file.is_file():
        pytest.skip("the DistilBERT tokenizer/config or the SQuAD sample is not in the shared data")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(model_dir))
    paragraphs = json.loads(squad_file.read_text())["data"][0]["paragraphs"][:3]
    documents = [Document(content=paragraph["context"]) for paragraph in paragraphs]
    questions = [paragraph["qas"][0]["question"] for paragraph in paragraphs[:2]]
    reader = ExtractiveReader.from_loaded(tokenizer, model, device="cpu", top_k=5, max_seq_length=128, doc_stride=32)

    for question in questions:
        answers = reader.run(query=question, documents=documents)["answers"]

        assert len(answers) == 5
        scores = [answer.score for answer in answers]
        assert scores == sorted(scores, reverse=True)
        for answer in answers:
            assert_consistent(answer, answer.document)
            word_starts, word_ends = word_boundaries(tokenizer, answer.document.content)
            assert answer.document_offset.start in word_starts
            assert answer.document_offset.end in word_ends


def _calibration(max_logit_sum: float, rank_weight: float = ReaderSettings.rank_weight):
    from spanqa.reader.calibration import AnswerCalibration

    return AnswerCalibration(
        reader="scripted", rank_weight=rank_weight, passages=10, mean=(0.0,) * 4, scale=(1.0,) * 4,
        weights=(1.0, 0.0, 0.0, 0.0), bias=-10.0, threshold=0.5, max_logit_sum=max_logit_sum, target_coverage=0.9,
        fitted_questions=10,
    )


FILLER = ["The weather was mild that spring.", "Trains ran late on Sundays.", "The river froze in January.",
          "Bread prices rose again.", "The library opened at nine."]


class TestAdaptiveReading:
    def test_stops_once_no_unread_document_could_outrank_the_best_answer(self, tokenizer):
        documents = [Document(content="Marie Curie wrote the report.")] + [Document(content=t) for t in FILLER]
        reader = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0},
                                 calibration=_calibration(max_logit_sum=20.0), adaptive=True)

        best = reader.run(query=QUESTION, documents=documents)["answers"][0]

        # after the first round (2 documents) the best sum, 20, beats 20 + the third document's prior
        assert best.data == "Marie Curie"
        assert best.meta["evidence"]["passages_read"] == defaults.ADAPTIVE_ROUND_DOCUMENTS
        read_rows = sum(call["input_ids"][0] for call in reader._loaded().model.calls)
        assert read_rows == defaults.ADAPTIVE_ROUND_DOCUMENTS

    def test_reads_on_while_a_later_document_could_still_win(self, tokenizer):
        documents = [Document(content=t) for t in FILLER] + [Document(content="Marie Curie wrote the report.")]
        reader = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0},
                                 calibration=_calibration(max_logit_sum=20.0), adaptive=True)
        every = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0})

        adaptive = reader.run(query=QUESTION, documents=documents)["answers"]
        complete = every.run(query=QUESTION, documents=documents)["answers"]

        assert adaptive[0].data == complete[0].data == "Marie Curie"
        assert adaptive[0].meta["evidence"]["passages_read"] == len(documents)
        assert adaptive[0].score == pytest.approx(complete[0].score)

    def test_with_evidence_summed_it_reads_on_while_unread_documents_could_add_up_to_more(self, tokenizer):
        documents = [Document(content="Marie Curie wrote the report.")] + [Document(content=t) for t in FILLER]

        def passages_read(evidence_weight):
            reader = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0}, rank_weight=0.0,
                                     evidence_weight=evidence_weight, adaptive=True,
                                     calibration=_calibration(max_logit_sum=20.0, rank_weight=0.0))
            return reader.run(query=QUESTION, documents=documents)["answers"][0].meta["evidence"]["passages_read"]

        # No unread document's span can beat 20 alone, but four of them holding one answer at 20 could.
        assert passages_read(0.0) == defaults.ADAPTIVE_ROUND_DOCUMENTS
        assert passages_read(1.0) == len(documents)

    def test_batched_questions_stop_each_on_their_own(self, tokenizer):
        early = [Document(content="Marie Curie wrote the report.")] + [Document(content=t) for t in FILLER]
        late = [Document(content=t) for t in FILLER] + [Document(content="Marie Curie wrote the report.")]
        reader = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0},
                                 calibration=_calibration(max_logit_sum=20.0), adaptive=True)

        answers = reader.run_batch([QUESTION, QUESTION], [early, late])["answers"]

        assert [a[0].data for a in answers] == ["Marie Curie", "Marie Curie"]
        assert [a[0].meta["evidence"]["passages_read"] for a in answers] == [2, 6]
        assert answers[1][0].document is late[-1]

    def test_adaptive_reading_and_auto_threshold_need_a_calibration(self):
        with pytest.raises(ConfigError, match="calibration"):
            ExtractiveReader(adaptive=True)
        with pytest.raises(ConfigError, match="calibration"):
            ExtractiveReader(score_threshold="auto")

    def test_auto_threshold_drops_answers_the_calibration_finds_unlikely(self, tokenizer):
        documents = [Document(content="Marie Curie wrote the report.", meta={"similarity": 0.6})]
        strong = scripted_reader(tokenizer, starts={"Marie": 10.0}, ends={"Curie": 10.0},
                                 calibration=_calibration(20.0), score_threshold="auto")
        weak = scripted_reader(tokenizer, starts={"Marie": 4.0}, ends={"Curie": 4.0},
                               calibration=_calibration(20.0), score_threshold="auto")

        kept = strong.run(query=QUESTION, documents=documents)["answers"]
        assert kept[0].data == "Marie Curie" and kept[0].meta["confidence"] > 0.5
        assert weak.run(query=QUESTION, documents=documents)["answers"] == []
