"""Paths a user gives are normalised in one place (spanqa.paths): `~` and relative index folders
name the same index wherever they are used again."""

from __future__ import annotations

from pathlib import Path

import pytest

from spanqa import DocumentQA
from spanqa.errors import ModelLoadError
from spanqa.paths import indexed_under, model_reference, user_path
from spanqa.service.state import ServerConfig


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


def test_user_path_expands_home_and_makes_relative_paths_absolute(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert user_path("~/kb") == home / "kb"
    assert user_path("kb/../index") == tmp_path / "index"
    assert user_path(Path("docs")) == tmp_path / "docs"


def test_an_index_under_home_reopens_by_the_same_name(home, tmp_path, monkeypatch, minilm_dir, tiny_qa_model_dir):
    # Before: the first DocumentQA("~/kb") indexed into $HOME/kb, the second looked for ./~/kb
    # (IndexNotFoundError).
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("The lighthouse lamp was replaced in 2003 by the harbor board.\n", encoding="utf-8")
    DocumentQA("~/kb", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index([notes])

    again = DocumentQA("~/kb", reader=str(tiny_qa_model_dir), device="cpu")

    assert again.index_dir == home / "kb"
    assert [stored.source for stored in again.files()] == [str(notes)]
    assert "2003" in again.search("When was the lamp replaced?", top_k=1)[0].text
    assert not (tmp_path / "~").exists()


def test_files_under_a_folder_given_with_home(home):
    source = str(home / "docs" / "a.txt")
    assert indexed_under(source, "~/docs")
    assert indexed_under(source, "~/docs/a.txt")
    assert not indexed_under(source, "~/doc")


def test_a_model_directory_becomes_its_absolute_path_and_a_hub_id_stays(home, tmp_path, monkeypatch):
    (home / "models" / "reader").mkdir(parents=True)
    monkeypatch.chdir(home)
    assert model_reference("~/models/reader") == str(home / "models" / "reader")
    assert model_reference("models/reader") == str(home / "models" / "reader")
    assert model_reference("org/name") == "org/name"
    with pytest.raises(ModelLoadError, match="no such directory '~/models/writer'"):
        model_reference("~/models/writer", "reader")


def test_the_servers_folders_are_absolute(home):
    config = ServerConfig(index_dir="~/kb", tokens_file="~/tokens.json", uploads_dir="~/uploads")
    assert (config.index_dir, config.tokens_file, config.uploads) == (
        home / "kb", home / "tokens.json", home / "uploads"
    )
    assert ServerConfig(index_dir="~/kb").uploads == home / "kb" / "uploads"
