"""The service when things break behind a request: a bug in a route, a full disk under a write, an
index found damaged. Each answers with its status, the security headers and a plain reason; a
kept-alive connection survives a 500; /readyz fails for an index that fails its check."""

from __future__ import annotations

import errno
import socket

import pytest
from service_harness import server_config, start_server, write_knowledge_base

from spanqa.errors import StorageError
from spanqa.indexing.store.faiss_store import FaissDocumentStore


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    root = tmp_path_factory.mktemp("failures-kb")
    write_knowledge_base(root / "docs")
    index_dir = root / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([root / "docs"], workers=1)
    return index_dir


@pytest.fixture(scope="module")
def server(index_dir, tiny_qa_model_dir):
    live = start_server(server_config(index_dir, tiny_qa_model_dir))
    yield live
    live.stop()


def exchange(connection: socket.socket, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET on a kept-alive raw connection: status, headers, body."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection instead of answering {path}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = connection.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def test_a_bug_in_a_route_answers_500_with_headers_and_keeps_the_connection(server, monkeypatch):
    def broken():
        raise RuntimeError("a bug at /srv/secret/path")

    monkeypatch.setattr(server.state.catalog, "snapshot", broken)
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        status, headers, body = exchange(connection, "/v1/files")
        assert status == 500
        assert b"the server failed to answer" in body and b"/srv/secret" not in body
        assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
        assert headers.get("connection", "").lower() != "close"
        monkeypatch.undo()
        status, _, _ = exchange(connection, "/v1/files")  # the same connection, still open
        assert status == 200


def test_a_full_disk_under_a_deletion_answers_507_and_changes_nothing(server):
    with server.client() as client:
        files = client.get("/v1/files").json()["files"]
        writer = server.state.writer
        remove = writer._remove_file

        def full(source):
            raise StorageError("cannot commit to the index", OSError(errno.ENOSPC, "No space left on device", source))

        writer._remove_file = full
        try:
            response = client.delete(f"/v1/files/{files[0]['id']}")
        finally:
            writer._remove_file = remove
        assert response.status_code == 507
        assert response.json()["error"] == "insufficient_storage"
        assert "the disk is full" in response.json()["detail"] and str(server.state.config.index_dir) not in response.text
        assert "content-security-policy" in response.headers
        assert client.get("/v1/files").json()["files"] == files
        assert client.get("/readyz").status_code == 200


def test_an_index_found_inconsistent_fails_readyz_with_the_way_out(tmp_path, index_dir, tiny_qa_model_dir):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(index_dir, damaged)
    store = FaissDocumentStore.open(damaged)
    segment = store.segments[0][0]
    store.close()
    (damaged / segment).unlink()
    live = start_server(server_config(damaged, tiny_qa_model_dir))
    try:
        with live.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "failed"
            assert "--repair" in ready.json()["detail"] and "is missing" in ready.json()["detail"]
            assert str(tmp_path) not in ready.text
    finally:
        live.stop()
