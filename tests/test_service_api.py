"""The HTTP API over a real server: auth matrix, scopes inside retrieval, limits, files, pages, feedback."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from service_harness import server_config, start_server, write_knowledge_base

from spanqa.indexing.formats.cleaning import same_text
from spanqa.indexing.formats.extraction import read_pages
from spanqa.service.tokens import TokenFile

TOKENS = {  # name: (role, scope folders relative to the knowledge base)
    "admin": ("admin", []),
    "reader": ("read", []),
    "hr": ("read", ["hr"]),
    "hr-admin": ("admin", ["hr"]),
}


@dataclass
class KnowledgeBase:
    root: Path
    files: dict[str, Path]
    index_dir: Path
    tokens_file: Path
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def kb(tmp_path_factory, minilm_dir, tiny_qa_model_dir) -> KnowledgeBase:
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("service-kb")
    files = write_knowledge_base(root / "docs")
    index_dir = root / "index"
    report = DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [root / "docs"], workers=1
    )
    assert len(report.indexed) == 4, report
    token_file = TokenFile(root / "tokens.json")
    tokens = {
        name: token_file.add(name, role, [root / "docs" / folder for folder in folders])[1]
        for name, (role, folders) in TOKENS.items()
    }
    return KnowledgeBase(root, files, index_dir, token_file.path, tokens)


@pytest.fixture(scope="module")
def server(kb, tiny_qa_model_dir):
    live = start_server(server_config(kb.index_dir, tiny_qa_model_dir, kb.tokens_file))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def ids(server, kb) -> dict[str, str]:
    """File ids by the knowledge base's names (as the admin lists them)."""
    with server.client(kb.tokens["admin"]) as client:
        listed = client.get("/v1/files").json()["files"]
    # Sources read relative to the indexed folder (docs/hr/...), never as server paths.
    by_source = {entry["source"]: entry["id"] for entry in listed}
    return {name: by_source[path.relative_to(kb.root).as_posix()] for name, path in kb.files.items()}


def as_user(server, kb, user):
    token = {"none": None, "wrong": "sqa_not-a-token"}.get(user, kb.tokens.get(user))
    return server.client(token)


# -- health, auth ------------------------------------------------------------------------------------


def test_health_needs_no_token_and_readiness_reports_loaded_models(server):
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "detail": None}
        assert client.get("/readyz").status_code == 200


def endpoint_calls(ids):
    """(method, path, json body, files) of every endpoint, with the files of the legal folder."""
    contract = ids["contract"]
    policy = ids["policy"]
    return {
        "me": ("GET", "/v1/me", None),
        "ask": ("POST", "/v1/ask", {"question": "How many vacation days?"}),
        "search": ("POST", "/v1/search", {"query": "vacation days"}),
        "files": ("GET", "/v1/files", None),
        "page": ("GET", f"/v1/files/{policy}/pages/1", None),
        "png": ("GET", f"/v1/files/{policy}/pages/1.png?width=200", None),
        "raw": ("GET", f"/v1/files/{policy}/raw", None),
        "legal-page": ("GET", f"/v1/files/{contract}/pages/1", None),
        "legal-raw": ("GET", f"/v1/files/{contract}/raw", None),
        "metrics": ("GET", "/metrics", None),
        "export": ("GET", "/v1/feedback/export", None),
        "job": ("GET", "/v1/jobs/unknown", None),
        "delete-unknown": ("DELETE", "/v1/files/0000000000000000", None),
    }


# Expected status per (endpoint, user): unlisted endpoints are read endpoints (200 for every token).
EXPECTED = {
    "legal-page": {"hr": 404, "hr-admin": 404},
    "legal-raw": {"hr": 404, "hr-admin": 404},
    "export": {"reader": 403, "hr": 403, "admin": 200, "hr-admin": 200},
    "job": {"reader": 403, "hr": 403, "admin": 404, "hr-admin": 404},
    "delete-unknown": {"reader": 403, "hr": 403, "admin": 404, "hr-admin": 404},
}


@pytest.mark.parametrize("user", ["none", "wrong", "reader", "admin", "hr", "hr-admin"])
def test_auth_matrix(server, kb, ids, user):
    with as_user(server, kb, user) as client:
        for name, (method, path, body) in endpoint_calls(ids).items():
            response = client.request(method, path, json=body)
            if user in ("none", "wrong"):
                expected = 401
            else:
                expected = EXPECTED.get(name, {}).get(user, 200)
            assert response.status_code == expected, (name, user, response.text)
            if expected >= 400:
                error = response.json()
                assert set(error) == {"error", "detail"} and error["detail"], (name, error)
            if expected == 401:
                assert response.headers["www-authenticate"] == "Bearer"


def test_me_tells_the_role_and_scope(server, kb):
    with as_user(server, kb, "hr") as client:
        me = client.get("/v1/me").json()
    assert me == {"name": "hr", "role": "read", "scope": ["docs/hr"], "auth": True}


def test_a_revoked_token_stops_working_and_a_new_one_works_without_restart(server, kb):
    tokens = TokenFile(kb.tokens_file)
    _, fresh = tokens.add("temporary", "read")
    with server.client(fresh) as client:
        assert client.get("/v1/me").status_code == 200
        tokens.revoke("temporary")
        assert client.get("/v1/me").status_code == 401


# -- questions ---------------------------------------------------------------------------------------


def test_ask_answers_with_page_offsets_ids_and_sources(server, kb, ids):
    with as_user(server, kb, "reader") as client:
        body = client.post("/v1/ask", json={"question": "How many weeks of parental leave?", "top_k": 3}).json()
    assert body["question"] == "How many weeks of parental leave?"
    answers = body["answers"]
    assert 1 <= len(answers) <= 3
    known_ids = set(ids.values())
    for answer in answers:
        assert set(answer) >= {"text", "score", "source", "name", "file_id", "page", "start", "end", "context",
                               "answer_start_in_context", "answer_end_in_context", "sources", "highlight"}
        page_text = read_pages(kb.root / answer["source"])[answer["page"] - 1]
        assert same_text(page_text[answer["start"] : answer["end"]], answer["text"])
        context = answer["context"]
        assert context[answer["answer_start_in_context"] : answer["answer_end_in_context"]] == answer["text"]
        assert answer["file_id"] in known_ids
        assert answer["name"] == Path(answer["source"]).name
        assert answer["sources"][0]["file_id"] == answer["file_id"]
        if answer["source"].endswith(".md"):
            assert answer["highlight"] == []
    scores = [answer["score"] for answer in answers]
    assert scores == sorted(scores, reverse=True)
    assert all(answer["confidence"] is None for answer in answers)  # no answer calibration in this index
    assert [answer["evidence"]["ranking_sum"] for answer in answers] == sorted(
        (answer["evidence"]["ranking_sum"] for answer in answers), reverse=True
    )


def test_highlight_boxes_hold_exactly_the_answer_as_pdfium_reads_the_page(server, kb):
    import pypdfium2 as pdfium

    questions = ["How many weeks of parental leave?", "When does the office open?", "What does the cafeteria serve?"]
    checked = 0
    with as_user(server, kb, "reader") as client:
        for question in questions:
            for answer in client.post("/v1/ask", json={"question": question, "top_k": 5}).json()["answers"]:
                if not answer["source"].endswith(".pdf"):
                    continue
                boxes = answer["highlight"]
                assert boxes and all(box["page"] == answer["page"] for box in boxes)
                document = pdfium.PdfDocument(kb.root / answer["source"])
                try:
                    textpage = document[answer["page"] - 1].get_textpage()
                    inside = " ".join(textpage.get_text_bounded(b["x0"], b["y0"], b["x1"], b["y1"]) for b in boxes)
                finally:
                    document.close()
                assert " ".join(inside.split()) == " ".join(answer["text"].split()), answer
                checked += 1
    assert checked >= 5


def test_search_finds_the_page_that_talks_about_it(server, kb, ids):
    with as_user(server, kb, "reader") as client:
        passages = client.post("/v1/search", json={"query": "parental leave weeks", "top_k": 2}).json()["passages"]
    assert passages[0]["file_id"] == ids["policy"] and passages[0]["page"] == 2
    assert "parental leave" in passages[0]["text"]


def test_search_gives_passages_in_the_reranked_order_with_both_scores(server, kb, tiny_qa_model_dir, tiny_reranker_dir,
                                                                     tmp_path):
    index_copy = Path(shutil.copytree(kb.index_dir, tmp_path / "index"))  # a second server, its own index
    reranking = start_server(server_config(index_copy, tiny_qa_model_dir, kb.tokens_file, reranker=tiny_reranker_dir))
    query = {"query": "parental leave weeks", "top_k": 4}
    try:
        with as_user(reranking, kb, "reader") as client:
            reranked = client.post("/v1/search", json=query).json()["passages"]
    finally:
        reranking.stop()
    with as_user(server, kb, "reader") as client:
        plain = client.post("/v1/search", json=query).json()["passages"]

    assert len(reranked) == 4
    assert all(isinstance(p["rerank_score"], float) and isinstance(p["retrieval_score"], float) for p in reranked)
    assert [p["score"] for p in reranked] == sorted((p["score"] for p in reranked), reverse=True)
    assert all(p["rerank_score"] is None and p["retrieval_score"] is None for p in plain)  # no reranker loaded
    assert all(isinstance(p["similarity"], float) for p in plain + reranked)


def test_scope_applies_inside_retrieval_and_top_k_still_fills(server, kb):
    hr = "docs/hr"  # the scope folder as users see sources: relative to the indexed folder
    with as_user(server, kb, "hr") as client:
        # The contract is the best match for this query; the scoped token must not see it, and its
        # top_k must fill from the files it may read.
        passages = client.post("/v1/search", json={"query": "supplier penalty late deliveries", "top_k": 4}).json()
        answers = client.post("/v1/ask", json={"question": "What penalty does the supplier pay?", "top_k": 10}).json()
    assert len(passages["passages"]) == 4
    assert all(p["source"].startswith(hr + "/") for p in passages["passages"])
    assert answers["answers"] and all(a["source"].startswith(hr + "/") for a in answers["answers"])
    assert all(place["source"].startswith(hr + "/") for a in answers["answers"] for place in a["sources"])
    with as_user(server, kb, "reader") as client:
        unscoped = client.post("/v1/search", json={"query": "supplier penalty late deliveries", "top_k": 1}).json()
    assert "legal" in unscoped["passages"][0]["source"]


def test_scoped_listing_shows_only_files_in_scope(server, kb):
    with as_user(server, kb, "hr") as client:
        listed = client.get("/v1/files").json()["files"]
    assert sorted(entry["name"] for entry in listed) == ["handbook.pdf", "onboarding.md", "vacation_policy.pdf"]
    entry = next(e for e in listed if e["name"] == "vacation_policy.pdf")
    assert entry["pages"] == 2 and entry["chunks"] >= 1 and entry["file_type"] == "pdf" and entry["indexed_at"]


def test_filters_and_retrieval_modes_reach_the_search(server, kb, ids):
    page_two = {"field": "meta.page", "operator": "==", "value": 2}
    with as_user(server, kb, "reader") as client:
        filtered = client.post("/v1/search", json={"query": "vacation", "filters": page_two, "top_k": 5}).json()
        keyword = client.post("/v1/search", json={"query": "cafeteria lunch", "retrieval": "keyword"}).json()
    assert filtered["passages"] and all(p["page"] == 2 for p in filtered["passages"])
    # BM25 scores are unbounded, fused hybrid scores lie in 0..1: the mode reached the retriever.
    assert keyword["passages"][0]["file_id"] == ids["handbook"] and keyword["passages"][0]["score"] > 1.0


def test_source_filters_take_sources_as_users_see_them(server, kb, ids):
    shown = "docs/legal/supplier_contract.pdf"
    one_file = {"field": "meta.source", "operator": "==", "value": shown}
    folder = {"field": "meta.source", "operator": "under", "value": "docs/hr"}
    listed = {"field": "meta.source", "operator": "in", "value": [shown, "docs/hr/onboarding.md"]}
    with as_user(server, kb, "reader") as client:
        by_file = client.post("/v1/search", json={"query": "vacation days", "filters": one_file, "top_k": 5}).json()
        by_folder = client.post("/v1/search", json={"query": "supplier penalty", "filters": folder, "top_k": 5}).json()
        by_list = client.post("/v1/search", json={"query": "lunch penalty", "filters": listed, "top_k": 10}).json()
        asked = client.post("/v1/ask", json={"question": "What penalty?", "filters": one_file}).json()
    assert by_file["passages"] and {p["source"] for p in by_file["passages"]} == {shown}
    assert by_folder["passages"] and all(p["source"].startswith("docs/hr/") for p in by_folder["passages"])
    assert {p["source"] for p in by_list["passages"]} == {shown, "docs/hr/onboarding.md"}
    assert asked["answers"] and {a["source"] for a in asked["answers"]} == {shown}
    with as_user(server, kb, "hr") as client:  # a shown source outside the token's scope finds nothing
        scoped = client.post("/v1/search", json={"query": "supplier penalty", "filters": one_file}).json()
    assert scoped["passages"] == []


# -- limits and malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"question": "x" * 2001}, 422),
        ({"question": ""}, 422),
        ({"question": "ok?", "top_k": 51}, 422),
        ({"question": "ok?", "top_k": 0}, 422),
        ({"question": "ok?", "passages": 51}, 422),
        ({"question": "ok?", "threshold": 1.5}, 422),
        ({"question": "ok?", "threshold": "automatic"}, 422),
        ({"question": "ok?", "threshold": "auto"}, 422),  # this index has no answer calibration
        ({"question": "ok?", "retrieval": "magic"}, 422),
        ({"question": "ok?", "topk": 3}, 422),
        ({"question": "ok?", "filters": {"field": "meta.page", "operator": "~", "value": 1}}, 422),
        ({"question": "ok?", "filters": {"field": "meta.source", "operator": "under", "value": "/"}}, 422),
        ({"question": ["a", "list"]}, 422),
    ],
)
def test_bad_requests_get_a_clear_4xx(server, kb, body, status):
    with as_user(server, kb, "reader") as client:
        response = client.post("/v1/ask", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == "invalid_request" and response.json()["detail"]


def test_malformed_json_and_oversized_bodies(server, kb):
    with as_user(server, kb, "reader") as client:
        broken = client.post("/v1/ask", content=b'{"question": "unterminated', headers={"content-type": "application/json"})
        huge = client.post("/v1/ask", content=b'{"question": "' + b"a" * (1024 * 1024 + 10) + b'"}',
                           headers={"content-type": "application/json"})
        chunked = client.post("/v1/ask", content=iter([b'{"question": "', b"a" * (1024 * 1024), b'"}']),
                              headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"] == "malformed_json"
    assert huge.status_code == 413 and huge.json()["error"] == "too_large"
    assert chunked.status_code == 413


def test_unknown_routes_and_methods_answer_in_the_error_shape(server, kb):
    with as_user(server, kb, "reader") as client:
        missing = client.get("/v1/nothing")
        wrong_method = client.put("/v1/ask", json={})
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error", "detail"}


def test_every_response_carries_the_security_headers(server, kb, ids):
    with as_user(server, kb, "reader") as client:
        responses = [client.get("/"), client.get("/static/app.js"), client.get("/v1/files"),
                     client.get("/v1/nothing"), client.post("/v1/ask", json={})]
    with server.client() as anonymous:
        responses += [anonymous.get("/v1/files"), anonymous.get("/healthz")]
    for response in responses:
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


# -- pages and files ---------------------------------------------------------------------------------


def test_page_geometry_image_and_raw_file(server, kb, ids):
    from io import BytesIO

    from PIL import Image

    with as_user(server, kb, "reader") as client:
        geometry = client.get(f"/v1/files/{ids['policy']}/pages/2").json()
        png = client.get(f"/v1/files/{ids['policy']}/pages/2.png", params={"width": 306})
        raw = client.get(f"/v1/files/{ids['policy']}/raw")
        past_end = client.get(f"/v1/files/{ids['policy']}/pages/3.png")
        text_page = client.get(f"/v1/files/{ids['notes']}/pages/1.png")
        too_wide = client.get(f"/v1/files/{ids['policy']}/pages/1.png", params={"width": 100_000})
    assert geometry["pages"] == 2 and (geometry["width"], geometry["height"]) == (612, 792)
    assert geometry["rotation"] == 0 and geometry["box"]["x1"] - geometry["box"]["x0"] == 612
    assert png.headers["content-type"] == "image/png"
    assert Image.open(BytesIO(png.content)).size == (306, 396)
    assert raw.content == kb.files["policy"].read_bytes()
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert "vacation_policy.pdf" in raw.headers["content-disposition"]
    assert past_end.status_code == 404 and text_page.status_code == 404 and too_wide.status_code == 422


# -- feedback ----------------------------------------------------------------------------------------


def test_feedback_export_is_read_back_by_spanqa_eval(server, kb, tmp_path, tiny_qa_model_dir, capsys):
    from spanqa.cli import main

    question = "How many weeks of parental leave?"
    with as_user(server, kb, "reader") as client:
        answer = client.post("/v1/ask", json={"question": question, "top_k": 1}).json()["answers"][0]
        place = {key: answer[key] for key in ("file_id", "page", "start", "end", "text")}
        created = client.post("/v1/feedback", json={"question": question, "answer": place, "correct": True})
        wrong = client.post("/v1/feedback", json={"question": "Other?", "answer": place, "correct": False})
        shifted = {**place, "start": place["start"] + 1}
        mismatch = client.post("/v1/feedback", json={"question": question, "answer": shifted, "correct": True})
        unknown = client.post("/v1/feedback", json={"question": question,
                                                    "answer": {**place, "file_id": "0" * 16}, "correct": True})
    assert created.status_code == 201 and wrong.status_code == 201
    assert created.json()["id"] != wrong.json()["id"]
    assert mismatch.status_code == 422 and unknown.status_code == 404
    with as_user(server, kb, "admin") as client:
        exported = client.get("/v1/feedback/export")
    assert exported.headers["content-disposition"].startswith("attachment;")
    squad = exported.json()
    questions = [qa for article in squad["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    assert [qa["question"] for qa in questions] == [question]  # the wrong one is not exported
    paragraph = squad["data"][0]["paragraphs"][0]
    gold = paragraph["qas"][0]["answers"][0]
    assert paragraph["context"][gold["answer_start"] :].startswith(gold["text"])
    assert same_text(gold["text"], answer["text"])

    export_file = tmp_path / "feedback.json"
    export_file.write_text(json.dumps(squad), encoding="utf-8")
    capsys.readouterr()
    assert main(["eval", str(export_file), "--reader-only", "--reader", str(tiny_qa_model_dir), "--device", "cpu",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 1


# -- the description -----------------------------------------------------------------------------------


def test_openapi_describes_every_route_with_its_models(server):
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [("/v1/ask", "post"), ("/v1/search", "post"), ("/v1/files", "get"), ("/v1/files", "post"),
                         ("/v1/files/{file_id}", "delete"), ("/v1/jobs/{job_id}", "get"),
                         ("/v1/files/{file_id}/pages/{page}", "get"), ("/v1/files/{file_id}/pages/{page}.png", "get"),
                         ("/v1/files/{file_id}/raw", "get"), ("/v1/feedback", "post"), ("/v1/feedback/export", "get"),
                         ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"), ("/v1/me", "get")]:
        operation = paths[path][method]
        success = next(code for code in operation["responses"] if code.startswith("2"))
        assert operation["responses"][success].get("content"), (path, method)
        if path not in ("/healthz", "/readyz"):
            assert operation.get("security") == [{"HTTPBearer": []}], (path, method)
    schemas = spec["components"]["schemas"]
    answer = schemas["AnswerBody"]["properties"]
    assert {"highlight", "file_id", "sources", "answer_start_in_context"} <= set(answer)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    from openapi_spec_validator import validate

    validate(spec)  # a valid OpenAPI document, by an independent validator
