"""Incremental sync: files tracked by path and hash; `index --sync`, `remove`, `list`, and filters,
through the Python API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanqa import DocumentQA
from spanqa.cli import main
from spanqa.errors import ConfigError
from spanqa.indexing.store.faiss_store import FaissDocumentStore

TEXTS = {
    "alpha.md": "# Alpha\n\nThe alpha valve opens at dawn and closes at dusk.\n",
    "beta.txt": "The beta pump moves forty litres of water per minute.\n",
    "sub/gamma.md": "# Gamma\n\nThe gamma tower was painted blue in 1931.\n",
}


def write_tree(folder: Path, texts: dict[str, str]) -> None:
    for name, text in texts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


def contents_by_source(index_dir: Path) -> dict[str, list[str]]:
    by_source: dict[str, list[str]] = {}
    for document in FaissDocumentStore.open(index_dir).filter_documents():
        by_source.setdefault(Path(document.meta["source"]).name, []).append(document.content)
    return by_source


def test_sync_skips_unchanged_reindexes_changed_and_removes_deleted_files(tmp_path, minilm_dir, tiny_qa_model_dir):
    folder = tmp_path / "docs"
    write_tree(folder, TEXTS)
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu")
    first = qa.index(folder, sync=True)
    assert sorted(Path(f.source).name for f in first.indexed) == ["alpha.md", "beta.txt", "gamma.md"]
    assert first.removed == []
    listed = {Path(f.source).name: f for f in qa.files()}
    assert set(listed) == {"alpha.md", "beta.txt", "gamma.md"} and all(f.chunks >= 1 and f.pages == 1 for f in listed.values())

    (folder / "beta.txt").write_text("The beta pump was replaced by a silent turbine.\n", encoding="utf-8")
    (folder / "sub" / "gamma.md").unlink()
    (folder / "delta.txt").write_text("Delta is the fourth letter.\n", encoding="utf-8")
    second = qa.index(folder, sync=True)
    assert [Path(source).name for source in second.removed] == ["gamma.md"]
    relisted = {Path(f.source).name: f for f in qa.files()}
    assert set(relisted) == {"alpha.md", "beta.txt", "delta.txt"}
    assert relisted["alpha.md"] == listed["alpha.md"]  # unchanged: not indexed again
    assert relisted["beta.txt"].sha256 != listed["beta.txt"].sha256
    contents = contents_by_source(qa.index_dir)
    assert "gamma.md" not in contents
    assert all("silent turbine" in text for text in contents["beta.txt"])
    assert FaissDocumentStore.open(qa.index_dir).verify() == []

    # Without --sync a deleted file stays indexed.
    (folder / "delta.txt").unlink()
    assert qa.index(folder).removed == []
    assert "delta.txt" in {Path(f.source).name for f in qa.files()}


def test_remove_and_filters_through_the_api(tmp_path, minilm_dir, tiny_qa_model_dir):
    folder = tmp_path / "docs"
    write_tree(folder, TEXTS)
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu")
    qa.index(folder)
    only_beta = {"field": "meta.source", "operator": "==", "value": str(folder / "beta.txt")}
    passages = qa.search("When was the tower painted?", top_k=3, filters=only_beta)
    assert [Path(p.source).name for p in passages] == ["beta.txt"]
    markdown = {"field": "meta.file_type", "operator": "==", "value": "md"}
    assert {Path(p.source).name for p in qa.search("water", top_k=5, filters=markdown)} == {"alpha.md", "gamma.md"}
    answers = qa.ask("What colour was the tower painted?", filters=only_beta)
    assert all(Path(a.source).name == "beta.txt" for a in answers)
    with pytest.raises(ConfigError):
        qa.search("water", filters={"field": "meta.page", "operator": "=~", "value": 1})

    removed = qa.remove([folder / "sub"])
    assert [Path(f.source).name for f in removed] == ["gamma.md"]
    assert {Path(f.source).name for f in qa.files()} == {"alpha.md", "beta.txt"}
    assert {Path(p.source).name for p in qa.search("tower painted blue", top_k=10)} == {"alpha.md", "beta.txt"}
    assert qa.remove([folder / "never-indexed.md"]) == []


def test_cli_sync_list_remove_and_file_filter(tmp_path, minilm_dir, capsys):
    folder = tmp_path / "docs"
    write_tree(folder, TEXTS)
    index = str(tmp_path / "kb")
    assert main(["index", str(folder), "--sync", "--index", index, "--embedder", str(minilm_dir), "--json"]) == 0
    capsys.readouterr()
    (folder / "alpha.md").unlink()
    assert main(["index", str(folder), "--sync", "--index", index, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [Path(source).name for source in report["removed"]] == ["alpha.md"]

    assert main(["list", "--index", index, "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [Path(f["source"]).name for f in files] == ["beta.txt", "gamma.md"]
    assert set(files[0]) == {"source", "sha256", "pages", "chunks", "indexed_at"}

    assert main(["search", "pump", "--index", index, "--file", str(folder / "sub" / "gamma.md"), "--json"]) == 0
    passages = json.loads(capsys.readouterr().out)["passages"]
    assert passages and all(Path(p["source"]).name == "gamma.md" for p in passages)
    assert main(["search", "pump", "--index", index, "--page", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passages"] == []  # every file here has one page

    assert main(["remove", str(folder / "beta.txt"), str(folder / "nothing.md"), "--index", index]) == 1
    out = capsys.readouterr().out
    assert "removed" in out and "beta.txt" in out and "not in the index" in out
    assert main(["list", "--index", index]) == 0
    assert "1 file(s)" in capsys.readouterr().out
    assert main(["search", "x", "--index", index, "--filter", "{not json"]) == 1
    assert "--filter" in capsys.readouterr().err
