"""Hostile metadata filters (issue 24): every bad or oversized filter is a ConfigError naming the bad
part (HTTP 422), never a sqlite3, Overflow or Recursion error, and every filter within the limits runs
in SQLite, in the store, through DocumentQA and through the service in each retrieval mode."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from haystack import Document
from haystack.utils.filters import document_matches_filter
from service_harness import server_config, start_server

from spanqa import defaults
from spanqa.errors import ConfigError
from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.indexing.store.filters import filter_sql


def nested(depth: int, operator: str = "AND") -> dict:
    node = {"field": "meta.page", "operator": "==", "value": 1}
    for _ in range(depth):
        node = {"operator": operator, "conditions": [node]}
    return node


def many_equalities(count: int, field: str = "meta.page") -> dict:
    return {"operator": "OR", "conditions": [{"field": field, "operator": "==", "value": i} for i in range(count)]}


# The four filters of issue 24 that answered 500, and what each message must name.
ISSUE_FILTERS = {
    "list with ==": ({"field": "meta.source", "operator": "==", "value": ["/kb/a.pdf"]}, "'in'"),
    "10^30": ({"field": "meta.page", "operator": "==", "value": 10**30}, "64-bit"),
    "AND 80 deep": (nested(80), "levels deep"),
    "AND 450 deep": (nested(450), "levels deep"),
    "OR of 20,000": (many_equalities(20_000), "values"),
}


@pytest.mark.parametrize("name", ISSUE_FILTERS)
def test_the_issue_s_filters_are_config_errors_naming_the_fix(name):
    filters, named = ISSUE_FILTERS[name]
    with pytest.raises(ConfigError, match=named):
        filter_sql(filters)


def comparison(field, operator, value):
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("filters", "named"),
    [
        # lists where one value goes
        (comparison("id", "==", ["a"]), "one value"),
        (comparison("content", "!=", {"a": 1}), "one value"),
        (comparison("meta.page", "!=", [1, 2]), "'in'"),
        (comparison("meta.page", ">", [1]), "number or an ISO date"),
        (comparison("meta.page", "in", 3), "list value"),
        (comparison("meta.page", "in", [[1], 2]), "list items"),
        (comparison("meta.tags", "not in", [{"a": 1}]), "list items"),
        (comparison("meta.tags", "contains", [["a"]]), "contains"),
        (comparison("meta.source", "under", ["/a", 3]), "path"),
        # numbers SQLite cannot hold
        (comparison("meta.page", "!=", -(10**19)), "64-bit"),
        (comparison("meta.page", "<", 2**63), "64-bit"),
        (comparison("meta.page", "in", [1, 10**30]), "64-bit"),
        (comparison("meta.tags", "contains", 10**20), "64-bit"),
        (comparison("meta.page", ">=", math.nan), "not a finite number"),
        (comparison("meta.score", "==", math.inf), "not a finite number"),
        (comparison("meta.score", "not in", [-math.inf]), "not a finite number"),
        (comparison("meta.tags", "==", [1, math.nan]), "not a finite number"),
        # wrong types, and text that is no UTF-8
        (comparison("meta.page", ">", True), "number or an ISO date"),
        (comparison("meta.date", "<", "yesterday"), "ISO dates"),
        (comparison("meta.x", "==", b"bytes"), "values must be"),
        (comparison("meta.x", "==", {1: "a"}), "keys"),
        (comparison("meta.x", "==", "\ud800"), "not valid text"),
        (comparison("meta.\ud800", "==", "a"), "not valid text"),
        (comparison(3, "==", "a"), "filter field"),
        (comparison("meta.", "==", "a"), "filter field"),
        (comparison("meta.x", ["=="], "a"), "filter operator"),
        ({"operator": "OR", "conditions": {"field": "id"}}, "must be a list"),
        ({"operator": "XOR", "conditions": []}, "logical filter operator"),
        ({"field": "meta.page", "operator": "=="}, "needs 'field'"),
        ([], "must be a dict"),
    ],
)
def test_every_operator_refuses_bad_values_with_a_config_error(filters, named):
    with pytest.raises(ConfigError, match=named):
        filter_sql(filters)


def test_sizes_are_capped_and_the_message_says_how_to_shrink():
    wide = {"operator": "AND", "conditions": [comparison("meta.page", ">", i) for i in range(defaults.FILTER_MAX_CONDITIONS + 1)]}
    with pytest.raises(ConfigError, match="conditions, more than the 1000 allowed: put the values"):
        filter_sql(wide)
    with pytest.raises(ConfigError, match="lists 10001 values"):
        filter_sql(comparison("id", "in", [str(i) for i in range(defaults.FILTER_MAX_VALUES + 1)]))
    filter_sql(nested(defaults.FILTER_MAX_DEPTH))  # the limit itself is fine
    with pytest.raises(ConfigError, match="more than 32 levels deep"):
        filter_sql(nested(defaults.FILTER_MAX_DEPTH + 1, "NOT"))
    with pytest.raises(ConfigError) as refused:
        filter_sql(comparison("meta.page", "in", "x" * 10**5))
    assert len(str(refused.value)) < 400  # the bad value is shown, shortened


def test_a_self_containing_filter_is_refused_not_a_recursion_error():
    loop = {"operator": "AND", "conditions": []}
    loop["conditions"].append(loop)
    with pytest.raises(ConfigError, match="levels deep"):
        filter_sql(loop)


def test_an_or_of_equalities_on_one_field_is_one_indexed_lookup():
    clause, params = filter_sql(many_equalities(5_000, "meta.year"))
    assert clause.count("chunk_meta") == 1 and len(params) == 5_001
    clause, params = filter_sql({"operator": "NOT", "conditions": [comparison("meta.year", "!=", i) for i in range(300)]})
    assert clause.count("chunk_meta") == 1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = FaissDocumentStore.create(tmp_path_factory.mktemp("limits"), embedder="test/e", dimension=4)
    rng = np.random.default_rng(3)
    documents = []
    for i in range(60):
        meta = {"source": f"/kb/{i % 4}.pdf", "page": i % 9, "date": f"2024-0{i % 9 + 1}-1{i % 10}", "team": ["a", "b", None][i % 3]}
        if i % 5 == 0:
            meta["tags"] = ["x", "y"][: i % 2 + 1]
        documents.append(Document(id=f"d{i}", content=f"text {i}", meta=meta, embedding=rng.normal(size=4).tolist()))
    store.write_documents(documents)
    return store, documents


def leaf(rng: random.Random) -> dict:
    return rng.choice([
        comparison("meta.page", rng.choice(["==", "!=", ">", "<="]), rng.randrange(9)),
        comparison("meta.page", rng.choice(["in", "not in"]), [rng.randrange(9) for _ in range(3)]),
        comparison("meta.team", rng.choice(["==", "!="]), rng.choice(["a", "b", None])),
        comparison("meta.team", rng.choice(["in", "not in"]), ["a", None]),
        comparison("meta.tags", rng.choice(["==", "!="]), ["x"]),
        comparison("meta.date", rng.choice([">", "<"]), "2024-05-01"),
        comparison("meta.source", rng.choice(["==", "!="]), f"/kb/{rng.randrange(4)}.pdf"),
        comparison("meta.source", "in", [f"/kb/{rng.randrange(4)}.pdf"]),
    ])


def random_filter(rng: random.Random, depth: int) -> dict:
    if depth == 0 or rng.random() < 0.3:
        return leaf(rng)
    conditions = [random_filter(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {"operator": rng.choice(["AND", "OR", "NOT"]), "conditions": conditions}


def test_merged_negated_and_rebalanced_filters_match_as_haystack_does(store):
    # ORs of equalities merged into `in`, NOTs pushed down to the comparisons, joins rebalanced:
    # the same chunks as Haystack's own matcher picks.
    store, documents = store
    rng = random.Random(11)
    for _ in range(150):
        filters = random_filter(rng, 5)
        expected = [d.id for d in documents if document_matches_filter(filters, d)]
        assert [d.id for d in store.filter_documents(filters)] == expected, filters


def alternating(depth: int, siblings: int, deep_first: bool) -> dict:
    """A chain `depth` levels deep, AND/OR/NOT in turn, each level with `siblings` comparisons."""
    node = comparison("meta.date", ">", "2024-01-01")
    for level in range(depth):
        others = [comparison("meta.n", ">", level * 100 + j) for j in range(siblings)]
        conditions = [node, *others] if deep_first else [*others, node]
        node = {"operator": ("AND", "OR", "NOT")[level % 3], "conditions": conditions}
    return node


@pytest.mark.parametrize(
    ("depth", "siblings"), [(32, 1), (32, 29), (16, 60), (10, 2)],
)
@pytest.mark.parametrize("deep_first", [True, False])
def test_the_largest_filters_allowed_run_in_sqlite_in_every_query(store, depth, siblings, deep_first):
    # Before: a right-nested filter 20 levels deep overflowed SQLite's parser stack (a 500).
    store, _ = store
    filters = alternating(depth, siblings, deep_first)
    store.filter_documents(filters)
    store.search([1.0, 0.0, 0.0, 0.0], 5, filters)
    store.keyword_search("text", 5, filters)


def test_a_filter_near_sqlite_s_bound_variable_limit_runs(store):
    store, documents = store
    many = comparison("meta.source", "under", [f"/kb/{i}.pdf" for i in range(defaults.FILTER_MAX_VALUES)])
    assert len(store.filter_documents(many)) == len(documents)


# -- through DocumentQA and the service ----------------------------------------------------------


@pytest.fixture(scope="module")
def qa_index(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("filter-service")
    (root / "docs").mkdir()
    (root / "docs" / "hours.md").write_text("# Hours\n\nThe library opens at nine every weekday.\n", encoding="utf-8")
    qa = DocumentQA(root / "index", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu")
    qa.index([root / "docs"], workers=1)
    return qa


@pytest.mark.parametrize("name", ISSUE_FILTERS)
def test_documentqa_search_and_ask_raise_config_errors(qa_index, tiny_qa_model_dir, name):
    from spanqa.pipelines.api import DocumentQA

    filters, named = ISSUE_FILTERS[name]
    for mode in ("hybrid", "dense", "keyword"):
        qa = DocumentQA(qa_index.index_dir, reader=str(tiny_qa_model_dir), device="cpu", retrieval=mode)
        with pytest.raises(ConfigError, match=named):
            qa.search("library", filters=filters)
        with pytest.raises(ConfigError, match=named):
            qa.ask("When does the library open?", filters=filters)


@pytest.fixture(scope="module")
def server(qa_index, tiny_qa_model_dir):
    live = start_server(server_config(qa_index.index_dir, tiny_qa_model_dir))
    yield live
    live.stop()


@pytest.mark.parametrize("name", ISSUE_FILTERS)
def test_the_service_answers_422_in_every_mode_and_keeps_answering(server, name):
    filters, named = ISSUE_FILTERS[name]
    with server.client() as client:
        for mode in ("hybrid", "dense", "keyword"):
            for path, body in (("/v1/search", {"query": "library"}), ("/v1/ask", {"question": "When does it open?"})):
                response = client.post(path, json={**body, "filters": filters, "retrieval": mode})
                assert response.status_code == 422, response.text
                assert response.json()["error"] == "invalid_request"
                assert named in response.json()["detail"], response.json()
        fine = client.post("/v1/search", json={"query": "library", "filters": nested(3)})
    assert fine.status_code == 200 and fine.json()["passages"]


def test_nan_in_a_json_body_is_a_422_too(server):
    with server.client() as client:
        response = client.post(
            "/v1/search", content=b'{"query": "library", "filters": {"field": "meta.page", "operator": ">", "value": NaN}}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422 and "finite" in response.json()["detail"]


def test_the_limits_fit_sqlite_s_default_bound_variable_limit():
    # 3 bound values per `under` path (the most a value takes) plus one per comparison fit the
    # default limit of SQLite builds (32766), whatever this build allows.
    assert 3 * defaults.FILTER_MAX_VALUES + defaults.FILTER_MAX_CONDITIONS + 64 <= 32766


@pytest.mark.parametrize("depth", [33, 450, 5000])
def test_deeply_nested_bodies_are_refused_with_a_4xx(server, depth):
    body = '{"query": "library", "filters": ' + '{"operator": "AND", "conditions": [' * depth
    body += '{"field": "meta.page", "operator": "==", "value": 1}' + "]}" * depth + "}"
    with server.client() as client:
        response = client.post("/v1/search", content=body.encode(), headers={"content-type": "application/json"})
        after = client.post("/v1/search", json={"query": "library"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["detail"] and after.status_code == 200


def test_past_sqlite_s_parser_budget_is_a_config_error_not_a_sqlite_error(store, monkeypatch):
    monkeypatch.setattr(defaults, "FILTER_MAX_DEPTH", 200)  # only the parser's budget is left to stop it
    store, _ = store
    with pytest.raises(ConfigError, match="too deeply for SQLite"):
        store.filter_documents(alternating(150, 1, False))
