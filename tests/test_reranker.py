"""The passage reranker (spanqa.reader.reranker) and how its scores, the retrieval scores and the
reader's spans make one ranking (spanqa.reader.reranking, spanqa.reader.answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from haystack import Document

from spanqa.errors import ConfigError, ModelLoadError
from spanqa.reader import PassageReranker
from spanqa.reader.answers import build_answers, group_spans
from spanqa.reader.reranker import rerank_documents, rerank_precision
import spanqa.reader.reranker as reranker_module
from spanqa.reader.reranking import evidence_sum, passage_order, passage_priors, passage_scores
from spanqa.reader.span_reader import PassageSpan

PASSAGES = [
    "The library opens at nine in the morning.",
    "The ferry leaves the harbour at six.",
    "The tower is forty metres tall and was built in 1871.",
    "Rome is the capital of Italy and Berlin is the capital of Germany.",
    "Marie Curie was the first woman to win a Nobel Prize.",
]


# -- the pure ranking -----------------------------------------------------------------------------------

def test_a_passage_score_is_the_logit_plus_its_retrieval_score_scaled_over_the_reranked():
    # retrieval scores 0.9 .. 0.5 scale to 1 .. 0: the weight is what the best retrieved adds over the last
    assert passage_scores([3.0, 3.0, 1.0], [0.9, 0.6, 0.5], 2.0) == pytest.approx([5.0, 3.0 + 2 * 0.25, 1.0])
    # BM25 scores, cosine similarities or fused scores: only their spread among the reranked counts
    assert passage_scores([0.0, 0.0], [31.0, 12.0], 1.0) == passage_scores([0.0, 0.0], [0.71, 0.33], 1.0)


def test_without_retrieval_scores_the_retrieval_order_stands_in_and_equal_scores_add_the_same():
    assert passage_scores([0.0, 0.0, 0.0], [0.8, None, 0.2], 2.0) == pytest.approx([2.0, 1.0, 0.0])
    assert passage_scores([1.0, 2.0], [0.5, 0.5], 3.0) == pytest.approx([4.0, 5.0])
    assert passage_scores([], [], 3.0) == []
    with pytest.raises(ValueError, match="2 reranker logits for 1 retrieval scores"):
        passage_scores([1.0, 2.0], [0.5], 1.0)


def test_passages_are_ordered_best_score_first_and_ties_keep_retrieval_order():
    assert passage_order([1.0, 5.0, 1.0, 7.0]) == [3, 1, 0, 2]


def test_priors_add_the_gap_to_the_best_passage_score_to_the_rank_term():
    priors = passage_priors([4.0, 1.0, None], rank_weight=2.0, passage_weight=0.5)

    assert priors[0] == pytest.approx(0.0)
    assert priors[1] == pytest.approx(-2 * math.log(2) + 0.5 * (1.0 - 4.0))
    # a passage not reranked counts as the lowest score read: it gains nothing over the reranked ones
    assert priors[2] == pytest.approx(-2 * math.log(3) + 0.5 * (1.0 - 4.0))


def test_without_reranking_the_prior_is_the_rank_term_alone():
    assert passage_priors([None, None, None], 2.0, 0.5) == pytest.approx([0.0, -2 * math.log(2), -2 * math.log(3)])


def test_evidence_sum_adds_up_each_passages_probability_of_the_answer():
    assert evidence_sum([5.0], 1.0) == 5.0
    assert evidence_sum([5.0, 3.0], 0.0) == 5.0
    assert evidence_sum([5.0, 5.0], 1.0) == pytest.approx(5.0 + math.log(2))
    assert evidence_sum([5.0, 3.0], 0.5) == pytest.approx(5.0 + 0.5 * math.log(1 + math.exp(-2)))


def _spans(*per_passage):
    """Hand-set spans: per passage, (start, end, logit sum) triples over PASSAGES-like texts."""
    return [
        [PassageSpan(passage, start, end, total, 0.0) for start, end, total in spans]
        for passage, spans in enumerate(per_passage)
    ]


def test_the_same_answer_in_several_passages_outranks_a_slightly_better_single_one():
    texts = ["Paris is big", "Lyon is old", "Paris again", "Paris once more"]
    spans = _spans([(0, 5, 6.0)], [(0, 4, 6.8)], [(0, 5, 6.0)], [(0, 5, 5.5)])

    by_best = group_spans(spans, texts, merge_same_text=True, score_threshold=None)
    summed = group_spans(spans, texts, merge_same_text=True, score_threshold=None, evidence_weight=1.0)

    assert texts[by_best[0].best.passage_index][:4] == "Lyon"
    assert texts[summed[0].best.passage_index][:5] == "Paris"
    assert summed[0].ranking_sum == pytest.approx(math.log(2 * math.exp(6.0) + math.exp(5.5)))
    assert summed[0].passage_count == 3


def test_evidence_counts_each_passage_once():
    texts = ["Paris and Paris", "Lyon"]
    spans = _spans([(0, 5, 6.0), (10, 15, 6.0)], [(0, 4, 6.5)])

    summed = group_spans(spans, texts, merge_same_text=True, score_threshold=None, evidence_weight=1.0)

    assert texts[summed[0].best.passage_index][:4] == "Lyon"


def test_a_reranked_passage_score_moves_its_answers_through_the_prior():
    documents = [
        Document(content="Answer A here", meta={"passage_score": 2.0}),
        Document(content="Answer B here", meta={"passage_score": -3.0}),
    ]
    texts = [d.content for d in documents]
    spans = _spans([(7, 8, 5.0)], [(7, 8, 6.0)])
    common = dict(top_k=2, context_chars=5, merge_same_text=True, score_threshold=None, rank_weight=0.0)

    alone = build_answers("q", documents, texts, spans, **common)
    weighted = build_answers("q", documents, texts, spans, passage_weight=0.5, **common)

    assert [a.data for a in alone] == ["B", "A"]
    assert [a.data for a in weighted] == ["A", "B"]
    assert weighted[1].meta["ranking_sum"] == pytest.approx(6.0 + 0.5 * (-3.0 - 2.0))


# -- the component --------------------------------------------------------------------------------------

class _KnownScores:
    """A scorer whose logit for a pair is set by hand from the passage's text."""

    def __init__(self, logits: dict[str, float]):
        self.logits = logits
        self.calls: list[int] = []

    def __call__(self, questions, passages):
        self.calls.append(len(passages))
        return np.array([self.logits[passage] for passage in passages])


def _reranker(logits: dict[str, float], candidates: int = 20, retrieval_weight: float = 0.0) -> PassageReranker:
    reranker = PassageReranker("unused/model", candidates=candidates, retrieval_weight=retrieval_weight, device="cpu")
    reranker._scorer = _KnownScores(logits)
    return reranker


def test_known_scores_reorder_the_passages_and_keep_what_retrieval_said():
    documents = [Document(content=text, score=1.0 - i / 10) for i, text in enumerate(PASSAGES[:3])]
    reranker = _reranker({PASSAGES[0]: -1.0, PASSAGES[1]: 4.0, PASSAGES[2]: 2.0})

    reranked = reranker.run("Which?", documents)["documents"]

    assert [d.content for d in reranked] == [PASSAGES[1], PASSAGES[2], PASSAGES[0]]
    assert [d.meta["retrieval_rank"] for d in reranked] == [1, 2, 0]
    assert [d.meta["rerank_score"] for d in reranked] == [4.0, 2.0, -1.0]
    assert [d.meta["retrieval_score"] for d in reranked] == pytest.approx([0.9, 0.8, 1.0])
    assert [d.score for d in reranked] == [d.meta["passage_score"] for d in reranked]
    assert documents[0].score == 1.0 and "rerank_score" not in documents[0].meta  # the input is left as it was


def test_the_retrieval_score_keeps_counting_against_the_reranker():
    documents = [Document(content=text, score=score) for text, score in zip(PASSAGES[:2], (0.9, 0.4), strict=False)]
    close = {PASSAGES[0]: 1.0, PASSAGES[1]: 1.5}

    assert _reranker(close, retrieval_weight=0.0).run("q", documents)["documents"][0].content == PASSAGES[1]
    assert _reranker(close, retrieval_weight=1.0).run("q", documents)["documents"][0].content == PASSAGES[0]


def test_only_the_first_candidates_are_scored_and_the_rest_follow_in_retrieval_order():
    documents = [Document(content=text) for text in PASSAGES]
    reranker = _reranker({PASSAGES[0]: 0.0, PASSAGES[1]: 3.0}, candidates=2)

    reranked = reranker.run("q", documents, top_k=4)["documents"]

    assert [d.content for d in reranked] == [PASSAGES[1], PASSAGES[0], PASSAGES[2], PASSAGES[3]]
    assert reranker._scorer.calls == [2]
    assert "passage_score" not in reranked[2].meta


def test_a_batch_scores_every_questions_pairs_in_one_call():
    reranker = _reranker({text: float(i) for i, text in enumerate(PASSAGES)})
    lists = [[Document(content=t) for t in PASSAGES[:2]], [Document(content=t) for t in PASSAGES[2:]]]

    result = reranker.run_batch(["a", "b"], lists)["documents"]

    assert reranker._scorer.calls == [5]
    assert [[d.content for d in docs] for docs in result] == [PASSAGES[1::-1], PASSAGES[:1:-1]]


def test_rerank_documents_of_an_empty_list_is_empty():
    assert rerank_documents([], [], 1.0) == []


def test_the_component_round_trips_through_haystack_serialisation():
    reranker = PassageReranker("some/model", candidates=7, retrieval_weight=0.5, device="cpu", precision="float32")

    again = PassageReranker.from_dict(reranker.to_dict())

    assert again.settings == reranker.settings and again.device == "cpu"


def test_precision_auto_is_int8_on_the_cpu_and_int8_is_refused_on_cuda():
    assert rerank_precision("auto", "cpu") == "int8"
    assert rerank_precision("float32", "cpu") == "float32"
    assert rerank_precision("auto", "cuda") == "float16"
    with pytest.raises(ConfigError, match="int8' runs on the CPU only"):
        rerank_precision("int8", "cuda:1")


# -- the model ------------------------------------------------------------------------------------------

def _single_pair_logits(model_dir, question, passages, max_tokens=320):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    logits = []
    for passage in passages:
        encoded = tokenizer(question, passage, truncation="longest_first", max_length=max_tokens, return_tensors="pt")
        with torch.no_grad():
            logits.append(float(model(**encoded).logits[0, 0]))
    return logits


def test_float_scores_are_the_models_own_logits_of_each_pair_alone(tiny_reranker_dir):
    reranker = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="float32")
    question = "Who was the first woman to win a Nobel Prize?"

    scores = reranker.score_pairs([question] * len(PASSAGES), PASSAGES)  # padded together in one batch

    assert scores == pytest.approx(_single_pair_logits(tiny_reranker_dir, question, PASSAGES), abs=1e-4)
    assert len(set(np.round(scores, 4))) == len(PASSAGES)  # the pairs are told apart


def test_the_int8_path_runs_the_same_model(tiny_reranker_dir):
    pytest.importorskip("onnxruntime")
    question = "When does the ferry leave the harbour?"
    exact = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="float32")
    fast = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="int8")

    exact_scores = exact.score_pairs([question] * len(PASSAGES), PASSAGES)
    fast_scores = fast.score_pairs([question] * len(PASSAGES), PASSAGES)

    # random weights quantise coarsely; how closely int8 ranks as float does is measured on the
    # trained reranker below
    assert fast_scores.shape == exact_scores.shape and np.isfinite(fast_scores).all()
    assert np.abs(fast_scores - exact_scores).max() < 0.5


def test_a_cached_int8_reranker_loads_without_its_float_model(tiny_reranker_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("SPANQA_CACHE_DIR", str(tmp_path))
    loads = []
    load_model = reranker_module._load_model
    monkeypatch.setattr(reranker_module, "_load_model", lambda name: loads.append(name) or load_model(name))
    pairs = (["When does the ferry leave?"] * 2, PASSAGES[:2])

    first = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="int8").score_pairs(*pairs)
    assert loads == [str(tiny_reranker_dir)]  # built: the float model was needed once
    again = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="int8").score_pairs(*pairs)

    assert loads == [str(tiny_reranker_dir)]  # from the cache: not loaded again
    assert np.array_equal(first, again)


@pytest.mark.slow
def test_the_int8_path_ranks_as_float_does_with_the_trained_reranker(shared_data_dir):
    from spanqa.pipelines.evaluation import load_squad

    pytest.importorskip("onnxruntime")
    model = shared_data_dir / "models" / "minilm-l6-rerank-a16"
    if not model.is_dir():
        pytest.skip("the trained stand-in reranker is not in ../shared")
    squad = load_squad(shared_data_dir / "squad" / "dev-v1.1-part-a.json")
    exact = PassageReranker(str(model), device="cpu", precision="float32")
    fast = PassageReranker(str(model), device="cpu", precision="int8")
    agreed, correlations, questions = 0, [], squad.questions[3000:3400:20]  # articles never trained on
    for question in questions:
        first = question.context_index - question.context_index % 8
        passages = list(squad.contexts[first : first + 8])
        exact_scores = exact.score_pairs([question.question] * len(passages), passages)
        fast_scores = fast.score_pairs([question.question] * len(passages), passages)
        agreed += int(np.argmax(exact_scores) == np.argmax(fast_scores))
        correlations.append(np.corrcoef(exact_scores, fast_scores)[0, 1])
    assert agreed >= len(questions) - 1
    assert np.mean(correlations) > 0.98


def test_a_model_with_several_labels_is_not_a_reranker(tmp_path, tiny_qa_model_dir):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_model_dir)
    tokenizer.save_pretrained(tmp_path)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
        num_labels=3,
    )).save_pretrained(tmp_path)

    with pytest.raises(ConfigError, match="has 3 labels; a passage reranker gives one relevance logit"):
        PassageReranker(str(tmp_path), device="cpu", precision="float32").warm_up()


def test_a_missing_reranker_model_is_a_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError):
        PassageReranker(str(tmp_path / "nothing"), device="cpu", precision="float32").warm_up()


# -- in the query engine --------------------------------------------------------------------------------

def test_search_and_ask_read_the_passages_in_the_rerankers_order(facts_index, tiny_qa_model_dir, tiny_reranker_dir):
    from spanqa import DocumentQA

    question = "How tall is the tower?"
    plain = DocumentQA(facts_index, reader=str(tiny_qa_model_dir), device="cpu")
    reranked = DocumentQA(
        facts_index, reader=str(tiny_qa_model_dir), device="cpu", rerank=3, reranker=str(tiny_reranker_dir),
        rerank_precision="float32", retrieval_weight=0.0,
    )
    retrieved = plain.search(question, top_k=3)
    logits = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="float32").score_pairs(
        [question] * 3, [p.text for p in retrieved]
    )

    passages = reranked.search(question, top_k=3)

    assert [p.text for p in passages] == [retrieved[i].text for i in np.argsort(-logits, kind="stable")]
    assert [p.score for p in passages] == pytest.approx(sorted(logits, reverse=True), abs=1e-4)
    answers = reranked.ask(question, top_k=3)
    assert answers and all(answer.source for answer in answers)


def test_a_calibration_fitted_without_reranking_does_not_hold_with_it(tmp_path):
    from spanqa.reader.calibration import AnswerCalibration, answer_ranking, index_calibration
    from spanqa.settings import ReaderSettings, RerankSettings

    calibration = AnswerCalibration(
        reader="r", rank_weight=2.0, passages=10, mean=(0.0,) * 4, scale=(1.0,) * 4, weights=(0.0,) * 4, bias=0.0,
        threshold=0.5, max_logit_sum=9.0, target_coverage=0.9, fitted_questions=10,
    )  # as saved before reranking existed: no ranking recorded
    calibration.save(tmp_path / "calibration.json")
    without = answer_ranking(ReaderSettings(passage_weight=0.0, evidence_weight=0.0), RerankSettings(rerank=0))
    with_reranking = answer_ranking(ReaderSettings(passage_weight=0.5, evidence_weight=0.0), RerankSettings(rerank=20))

    assert index_calibration(tmp_path, "r", 2.0, True, without) is not None
    assert index_calibration(tmp_path, "r", 2.0, False, with_reranking) is None
    with pytest.raises(ConfigError, match="passage_weight=0.0, rerank=0, .*not reader 'r' with rank_weight=2.0, "
                       "passage_weight=0.5, rerank=20"):
        index_calibration(tmp_path, "r", 2.0, True, with_reranking)


@pytest.mark.parametrize("command", ["ask", "search", "eval", "calibrate", "serve"])
def test_every_query_command_takes_the_reranker_options(command):
    from spanqa.cli import build_parser

    arguments = {"ask": ["ask", "q"], "search": ["search", "q"], "eval": ["eval", "f.json"],
                 "calibrate": ["calibrate", "f.json"], "serve": ["serve"]}[command]
    parsed = build_parser().parse_args([*arguments, "--index", "x", "--rerank", "30", "--reranker", "my/reranker"])

    assert (parsed.rerank, parsed.reranker) == (30, "my/reranker")


def test_an_unavailable_default_reranker_warns_and_answers_without_reranking(facts_index, tiny_qa_model_dir, caplog):
    from spanqa import DocumentQA

    plain = DocumentQA(facts_index, reader=str(tiny_qa_model_dir), device="cpu")
    qa = DocumentQA(facts_index, reader=str(tiny_qa_model_dir), device="cpu", rerank=5)  # the hub model: offline

    with caplog.at_level("WARNING"):
        passages = qa.search("When does the ferry leave?", top_k=2)

    assert [p.text for p in passages] == [p.text for p in plain.search("When does the ferry leave?", top_k=2)]
    assert all(p.rerank_score is None for p in passages)
    assert qa.settings.rerank.rerank == 0
    assert "answering without reranking: the default passage reranker did not load" in caplog.text


def test_a_named_reranker_that_cannot_load_is_an_error(facts_index, tiny_qa_model_dir, tmp_path):
    from spanqa import DocumentQA

    with pytest.raises(ModelLoadError, match="no such directory"):
        DocumentQA(facts_index, reader=str(tiny_qa_model_dir), device="cpu", rerank=5,
                   reranker=str(tmp_path / "no-such-reranker"))
    qa = DocumentQA(facts_index, reader=str(tiny_qa_model_dir), device="cpu", rerank=5, reranker="org/no-such-reranker")
    with pytest.raises(ModelLoadError, match="org/no-such-reranker"):
        qa.search("When does the ferry leave?")
