"""Metadata users attach when indexing (`DocumentQA.index(meta=...)`, `spanqa index --meta/--meta-file`):
on every chunk of its file, filterable, part of the "file unchanged?" decision, checked with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanqa import DocumentQA
from spanqa.chunk_meta import ChunkMeta
from spanqa.cli import main
from spanqa.errors import ConfigError
from spanqa.indexing import FaissDocumentStore
from spanqa.indexing.ingest.file_meta import parse_meta_option

FERRY = {
    "north.txt": "The north ferry leaves the harbour at seven. The north ferry carries forty cars.\n",
    "south.txt": "The south ferry leaves the harbour at nine. The south ferry carries twelve cars.\n",
}


def write(folder: Path, texts: dict[str, str]) -> dict[str, Path]:
    paths = {}
    for name, text in texts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths[name] = path.resolve()
    return paths


def extras(index_dir: Path) -> dict[str, list[dict]]:
    """Each indexed file's name with the `extra` of each of its chunks."""
    found: dict[str, list[dict]] = {}
    for document in FaissDocumentStore.open(index_dir).filter_documents():
        meta = ChunkMeta.from_meta(document.meta)
        found.setdefault(Path(meta.source).name, []).append(meta.extra)
    return found


def tag_is(value) -> dict:
    return {"field": "meta.tag", "operator": "==", "value": value}


def test_files_indexed_with_different_tags_are_told_apart_by_filters(tmp_path, minilm_dir, tiny_qa_model_dir):
    paths = write(tmp_path / "docs", FERRY)
    index = str(tmp_path / "kb")
    common = ["--index", index, "--embedder", str(minilm_dir), "--device", "cpu", "--embedder-precision", "float32",
              "--json"]
    assert main(["index", str(paths["north.txt"]), "--meta", "tag=x", "--meta", "year=2023", *common]) == 0
    assert main(["index", str(paths["south.txt"]), "--meta", "tag=y", "--meta", "year=2024", *common]) == 0
    assert extras(Path(index)) == {"north.txt": [{"tag": "x", "year": 2023}], "south.txt": [{"tag": "y", "year": 2024}]}

    qa = DocumentQA(index, reader=str(tiny_qa_model_dir), device="cpu")
    question = "When does the ferry leave the harbour?"
    assert {p.source for p in qa.search(question, top_k=10)} == {str(paths["north.txt"]), str(paths["south.txt"])}
    assert {p.source for p in qa.search(question, top_k=10, filters=tag_is("x"))} == {str(paths["north.txt"])}
    assert {p.source for p in qa.search(question, top_k=10, filters=tag_is("y"))} == {str(paths["south.txt"])}
    assert qa.search(question, top_k=10, filters=tag_is("nope")) == []
    newer = {"field": "meta.year", "operator": ">=", "value": 2024}
    assert {p.source for p in qa.search(question, top_k=10, filters=newer)} == {str(paths["south.txt"])}
    answers = qa.ask(question, top_k=5, filters=tag_is("x"))
    assert answers and {place.source for a in answers for place in a.sources} == {str(paths["north.txt"])}


def test_changed_metadata_of_an_unchanged_file_rewrites_its_chunks(tmp_path, minilm_dir):
    paths = write(tmp_path / "docs", FERRY)
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu", embedder_precision="float32")
    qa.index(tmp_path / "docs", meta={"tag": "x"})
    chunks_before = extras(qa.index_dir)
    assert chunks_before == {"north.txt": [{"tag": "x"}], "south.txt": [{"tag": "x"}]}

    # Per-file metadata from a function of the path; the same text, so only the metadata changed.
    report = qa.index(tmp_path / "docs", meta=lambda path: {"tag": path.stem, "dept": "ferries"})
    assert sorted(Path(f.source).name for f in report.indexed) == ["north.txt", "south.txt"]
    assert extras(qa.index_dir) == {
        "north.txt": [{"tag": "north", "dept": "ferries"}], "south.txt": [{"tag": "south", "dept": "ferries"}],
    }
    assert [p.source for p in qa.search("ferry", top_k=10, filters=tag_is("south"))] == [str(paths["south.txt"])]
    assert qa.search("ferry", top_k=10, filters=tag_is("x")) == []

    # Without metadata the chunks lose it again.
    qa.index(tmp_path / "docs")
    assert extras(qa.index_dir) == {"north.txt": [{}], "south.txt": [{}]}


def test_an_unchanged_file_with_unchanged_metadata_is_not_parsed_again(tmp_path, minilm_dir, parsed_names):
    write(tmp_path / "docs", FERRY)
    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu", embedder_precision="float32")
    qa.index(tmp_path / "docs", meta={"tag": "x"})
    parsed = parsed_names
    parsed.clear()
    qa.index(tmp_path / "docs", meta={"tag": "x"})
    assert parsed == []
    qa.index(tmp_path / "docs", meta=lambda path: {"tag": "x" if path.stem == "north" else "changed"})
    assert parsed == ["south.txt"]


def test_meta_file_maps_paths_folders_and_globs_and_overrides_meta(tmp_path, minilm_dir):
    write(tmp_path / "docs", {"a.txt": "Alpha text.\n", "b.md": "# Beta\n\nBeta text.\n",
                              "sub/deep/c.md": "# Gamma\n\nGamma text.\n", "other/d.txt": "Delta text.\n"})
    meta_file = tmp_path / "docs" / "meta.json"
    meta_file.write_text(json.dumps({
        "*.txt": {"kind": "text"},
        "sub/**/*.md": {"kind": "deep markdown", "tag": ["deep", "gamma"]},
        "other": {"team": "delta"},
        "a.txt": {"tag": "first"},
    }), encoding="utf-8")
    code = main(["index", str(tmp_path / "docs"), "--index", str(tmp_path / "kb"), "--embedder", str(minilm_dir),
                 "--device", "cpu", "--embedder-precision", "float32", "--meta", "kind=default", "--meta", "n=1.5",
                 "--meta-file", str(meta_file), "--json"])
    assert code == 0
    assert extras(tmp_path / "kb") == {
        "a.txt": [{"kind": "text", "n": 1.5, "tag": "first"}],
        "b.md": [{"kind": "default", "n": 1.5}],
        "c.md": [{"kind": "deep markdown", "n": 1.5, "tag": ["deep", "gamma"]}],
        "d.txt": [{"kind": "default", "n": 1.5, "team": "delta"}],
    }


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("page=3", "'page' is spanqa's own chunk metadata"),
        ("dept.name=hr", "'dept.name' is not a name"),
        ("similarity=1", "'similarity' is spanqa's own"),
        ("no-equals-sign", "is not KEY=VALUE"),
    ],
)
def test_a_bad_meta_option_is_a_usage_error_naming_it(tmp_path, capsys, option, message):
    with pytest.raises(SystemExit) as exited:
        main(["index", str(tmp_path), "--index", str(tmp_path / "kb"), "--meta", option])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_meta_file_or_meta_value_is_a_clear_error_and_writes_nothing(tmp_path, minilm_dir, capsys):
    path = tmp_path / "a.txt"
    path.write_text("Alpha.\n", encoding="utf-8")
    bad_file = tmp_path / "meta.json"
    bad_file.write_text(json.dumps({"a.txt": {"owner": {"name": "x"}}}), encoding="utf-8")
    code = main(["index", str(path), "--index", str(tmp_path / "kb"), "--meta-file", str(bad_file)])
    assert code == 1
    err = capsys.readouterr().err
    assert "'a.txt'" in err and "'owner'" in err and "give a string, number" in err

    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    with pytest.raises(ConfigError, match="'tags' holds"):
        qa.index(path, meta={"tags": ["ok", {"no": 1}]})
    with pytest.raises(ConfigError, match=f"metadata of {path}: .*'start' is spanqa's own"):
        qa.index(path, meta=lambda p: {"start": 1})
    assert not FaissDocumentStore.exists(tmp_path / "kb")


@pytest.mark.parametrize(
    ("option", "value"),
    [("n=2", 2), ("n=-1.5", -1.5), ("n=true", True), ("n=null", None), ("n=hello world", "hello world"),
     ("n=", ""), ("n=NaN", "NaN"), ('n="quoted"', '"quoted"'), ("n=[1,2]", "[1,2]"), ("n=a=b", "a=b")],
)
def test_meta_option_values_are_json_scalars_or_text(option, value):
    assert parse_meta_option(option) == ("n", value)
