"""Owner-only files (issue 24): an index, the service's database and the uploads are 0600 (folders
0700) whatever the umask, and an index or service database made 0644 before is tightened when a
writer opens it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from haystack import Document
from service_harness import server_config, start_server, wait_for_job

from spanqa.indexing.store.faiss_store import FaissDocumentStore
from spanqa.service.database import ServiceDatabase
from spanqa.service.tokens import TokenFile


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def shared_with_others(folder: Path) -> list[str]:
    """Every file under `folder` that group or others may read or write, with its mode."""
    return [f"{oct(mode(path))} {path}" for path in sorted(folder.rglob("*")) if path.is_file() and mode(path) & 0o077]


@pytest.fixture
def umask_022():
    """The umask most systems give: files 0644 unless spanqa says otherwise."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def served(tmp_path, umask_022, minilm_dir, tiny_qa_model_dir):
    from spanqa.pipelines.api import DocumentQA

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "hours.md").write_text("# Hours\n\nThe library opens at nine every weekday.\n", encoding="utf-8")
    (docs / "maps.txt").write_text("The archive keeps seven thousand maps.\n", encoding="utf-8")
    index_dir = tmp_path / "index"
    DocumentQA(index_dir, embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([docs], workers=1)
    tokens = TokenFile(tmp_path / "tokens.json")
    admin = tokens.add("admin", "admin")[1]
    live = start_server(server_config(index_dir, tiny_qa_model_dir, tokens.path))
    yield live, admin, index_dir, tmp_path
    live.stop()


def test_index_service_database_and_uploads_are_owner_only(served):
    # Before: chunks.sqlite, service.sqlite and stored uploads were 0644.
    live, admin, index_dir, root = served
    with live.client(admin) as client:
        response = client.post("/v1/files", files={"files": ("ferry.txt", b"The ferry leaves at six.", "text/plain")})
        assert response.status_code == 202, response.text
        assert wait_for_job(client, response.json()["job"])["status"] == "done"
        # Asked while the server runs: the databases' -wal and -shm files are there too.
        names = {path.name for path in index_dir.rglob("*")}
        assert {"chunks.sqlite-wal", "service.sqlite", "service.sqlite-wal"} <= names, names
        assert any(path.suffix == ".txt" for path in (index_dir / "uploads").rglob("*"))
        assert shared_with_others(index_dir) == []
    assert mode(index_dir) == 0o700 and mode(index_dir / "uploads") == 0o700
    assert shared_with_others(root / "docs") != []  # the umask was 022: the modes above are spanqa's doing
    assert mode(root / "tokens.json") == 0o600 and mode(root / "tokens.json.lock") == 0o600


def test_a_new_sharded_index_is_owner_only(tmp_path, umask_022):
    from spanqa.indexing.store.shards import ShardedStore

    ShardedStore.create(tmp_path / "kb", 2, embedder="test/e", dimension=4).close()
    assert mode(tmp_path / "kb") == 0o700 and mode(tmp_path / "kb" / "shard-1") == 0o700
    assert shared_with_others(tmp_path / "kb") == []


def documents(count: int, start: int = 0) -> list[Document]:
    return [Document(id=f"d{i}", content=f"text {i}", meta={"source": f"/kb/{i}.md", "page": 1},
                     embedding=[1.0, 0.0, 0.0, float(i)]) for i in range(start, start + count)]


def test_an_index_made_0644_before_is_tightened_when_a_writer_opens_it(tmp_path, umask_022):
    store = FaissDocumentStore.create(tmp_path / "kb", embedder="test/e", dimension=4)
    store.write_documents(documents(5))
    store.close()
    for path in (tmp_path / "kb").iterdir():
        path.chmod(0o644)  # as an older spanqa left them
    reader = FaissDocumentStore.open(tmp_path / "kb")
    assert reader.count_documents() == 5
    assert shared_with_others(tmp_path / "kb") != []  # reading changes nothing
    reader.write_documents(documents(3, start=5))
    assert shared_with_others(tmp_path / "kb") == []
    reader.close()


def test_a_service_database_made_0644_before_is_tightened(tmp_path, umask_022):
    ServiceDatabase(tmp_path).close()
    assert mode(tmp_path / "service.sqlite") == 0o600
    (tmp_path / "service.sqlite").chmod(0o644)
    database = ServiceDatabase(tmp_path)
    assert shared_with_others(tmp_path) == []
    database.close()
