"""The reader with trained weights (../shared's MiniLM SQuAD reader) on SQuAD part-a articles 16-23,
which it was not trained on: known answers, and a calibration that abstains on unrelated passages.
Skips without ../shared."""

from __future__ import annotations

import json

import pytest
from haystack import Document

from spanqa.pipelines.eval_metrics import best_over_golds
from spanqa.reader import ExtractiveReader
from spanqa.reader.calibration import auroc, fit_calibration

FIRST_HELD_OUT_PARAGRAPH = 785  # part a's articles 16-23 start here; 0-15 are the reader's training data
# questions the trained reader answers exactly from their gold paragraph (found once, by running it)
KNOWN = ("5725b81b271a42140099d097", "5725b81b271a42140099d099", "5725d34089a1e219009abf52", "5726642f5951b619008f7157")


@pytest.fixture(scope="module")
def held_out(shared_data_dir):
    data = json.loads((shared_data_dir / "squad" / "dev-v1.1-part-a.json").read_text())
    rows, paragraph = [], 0
    for article in data["data"]:
        for item in article["paragraphs"]:
            if paragraph >= FIRST_HELD_OUT_PARAGRAPH:
                for qa in item["qas"]:
                    rows.append((article["title"], item["context"], qa["id"], qa["question"],
                                 tuple(a["text"] for a in qa["answers"])))
            paragraph += 1
    return rows


@pytest.fixture(scope="module")
def trained_reader(shared_data_dir):
    model = shared_data_dir / "models" / "minilm-l6-squad-a16"
    if not model.is_dir():
        pytest.skip(f"no trained reader at {model}")
    reader = ExtractiveReader(model=str(model), device="cpu", rank_weight=2.0)
    reader.warm_up()
    return reader


def test_known_questions_are_answered_with_their_gold_span(trained_reader, held_out):
    by_id = {row[2]: row for row in held_out}
    for question_id in KNOWN:
        _, context, _, question, golds = by_id[question_id]
        best = trained_reader.run(question, [Document(content=context)], top_k=1)["answers"][0]
        assert best_over_golds(best.data, golds)[0] == 1.0, (question, best.data, golds)
        assert context[best.document_offset.start : best.document_offset.end] == best.data


@pytest.fixture(scope="module")
def similarity_of(minilm_dir):
    """The cosine similarity of a question and a passage as the index's embedder measures it."""
    from sentence_transformers import SentenceTransformer

    embedder = SentenceTransformer(str(minilm_dir), device="cpu")

    def similarity(question: str, passages: list[str]) -> list[float]:
        vectors = embedder.encode([question, *passages], normalize_embeddings=True)
        return [float(vectors[0] @ vector) for vector in vectors[1:]]

    return similarity


def _best(reader, similarity_of, question, passages):
    """The best answer's features, reading `passages` as retrieved ones (with their similarity)."""
    documents = [
        Document(content=text, meta={"similarity": value})
        for text, value in zip(passages, similarity_of(question, passages), strict=True)
    ]
    best = reader.run(question, documents, top_k=1)["answers"][0]
    evidence = best.meta["evidence"]
    return {name: evidence[name] for name in ("ranking_sum", "margin", "passages", "similarity")}, evidence


def test_a_calibration_abstains_on_unrelated_passages_and_answers_related_ones(trained_reader, held_out, similarity_of):
    # Each question is read with its gold paragraph plus two of another article (answerable), and with
    # the other article's two alone (unanswerable); fitted on articles 16-19, checked on 20-23.
    articles = list(dict.fromkeys(row[0] for row in held_out))
    rows_of = {title: [row for row in held_out if row[0] == title] for title in articles}

    def asked(titles, per_article):
        pairs = []
        for number, title in enumerate(titles):
            other = rows_of[titles[(number + 1) % len(titles)]]
            unrelated = list(dict.fromkeys(row[1] for row in other))[:2]
            rows = rows_of[title][:: len(rows_of[title]) // per_article][:per_article]
            for _, context, _, question, _ in rows:
                pairs.append((_best(trained_reader, similarity_of, question, [context, *unrelated]),
                              _best(trained_reader, similarity_of, question, unrelated)))
        return pairs

    fit = asked(articles[:4], 6)
    calibration = fit_calibration(
        [a[0] for a, _ in fit], [u[0] for _, u in fit], reader="trained", rank_weight=2.0, passages=3,
        target_coverage=0.9, max_logit_sum=max(a[1]["logit_sum"] for a, _ in fit),
    )
    check = asked(articles[4:], 4)
    answerable = [calibration.confidence(a[0]) for a, _ in check]
    unanswerable = [calibration.confidence(u[0]) for _, u in check]
    assert sum(value >= calibration.threshold for value in answerable) / len(check) >= 0.75
    assert sum(value < calibration.threshold for value in unanswerable) / len(check) >= 0.75
    raw = auroc([a[1]["logit_sum"] for a, _ in check], [u[1]["logit_sum"] for _, u in check])
    assert auroc(answerable, unanswerable) >= max(0.85, raw)
