"""The `spanqa` command: JSON shapes, readable output, and errors without tracebacks."""

from __future__ import annotations

import argparse
import errno
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from spanqa import paths
from spanqa.cli import build_parser, handler, main
from spanqa.errors import StorageError
from spanqa.indexing import read_pages
from spanqa.indexing.formats.cleaning import same_text
from spanqa.pipelines import cli_run
from spanqa.pipelines import indexing as indexing_module


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory, sample_data_dir, minilm_dir):
    index_dir = tmp_path_factory.mktemp("cli") / "index"
    code = main(["index", str(sample_data_dir), "--index", str(index_dir), "--embedder", str(minilm_dir),
                 "--device", "cpu", "--json"])
    assert code == 0
    return index_dir


def test_index_json_report(tmp_path, sample_data_dir, minilm_dir, capsys):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a pdf at all")
    code = main(["index", str(sample_data_dir / "greenhouse_notes.md"), str(bad), "--index", str(tmp_path / "kb"),
                 "--embedder", str(minilm_dir), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert set(report) == {"indexed", "skipped", "chunk_count", "removed"}
    assert [Path(f["source"]).name for f in report["indexed"]] == ["greenhouse_notes.md"]
    assert report["indexed"][0]["chunks"] == report["chunk_count"] > 0
    assert [Path(s["source"]).name for s in report["skipped"]] == ["bad.pdf"]
    assert report["skipped"][0]["reason"]


@pytest.mark.parametrize(
    "options, recorded",
    [
        (["--embedder-precision", "float32", "--embed-max-tokens", "all"],
         {"precision": "float32", "max_tokens": None}),
        (["--embedder-precision", "int8", "--embed-max-tokens", "64"], {"precision": "int8", "max_tokens": 64}),
    ],
)
def test_index_embedding_options_are_recorded(tmp_path, sample_data_dir, minilm_dir, options, recorded, capsys):
    index_dir = tmp_path / "kb"
    code = main(["index", str(sample_data_dir / "greenhouse_notes.md"), "--index", str(index_dir),
                 "--embedder", str(minilm_dir), "--device", "cpu", "--json", *options])
    assert code == 0
    assert json.loads((index_dir / "manifest.json").read_text())["embedding"] == recorded
    capsys.readouterr()
    assert main(["search", "greenhouse", "--index", str(index_dir), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passages"]


def test_index_rejects_a_bad_embed_max_tokens(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["index", "x", "--index", str(tmp_path / "kb"), "--embed-max-tokens", "0"])
    assert exit_.value.code == 2
    assert "--embed-max-tokens" in capsys.readouterr().err


def test_index_human_report_names_each_skipped_file(tmp_path, minilm_dir, capsys):
    bad = tmp_path / "scan.pdf"
    bad.write_bytes(b"")
    code = main(["index", str(bad), "--index", str(tmp_path / "kb"), "--embedder", str(minilm_dir)])
    out = capsys.readouterr().out
    assert code == 1  # nothing could be indexed
    assert "skipped" in out and "scan.pdf" in out and "empty" in out
    assert "indexed 0 file(s)" in out


def test_ask_json_shape_and_offsets(cli_index, tiny_qa_model_dir, capsys):
    question = "How tall is the Skarv Point lighthouse?"
    code = main(["ask", question, "--index", str(cli_index), "--reader", str(tiny_qa_model_dir), "--top-k", "3",
                 "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["question"] == question
    assert 1 <= len(payload["answers"]) <= 3
    for answer in payload["answers"]:
        assert set(answer) == {
            "text", "score", "source", "page", "start", "end", "context", "sources", "confidence", "evidence"
        }
        assert answer["confidence"] is None  # the index has no answer calibration
        assert set(answer["evidence"]) == {"ranking_sum", "margin", "passages", "similarity", "logit_sum", "passages_read"}
        assert answer["sources"][0] == {k: answer[k] for k in ("source", "page", "start", "end")}
        assert answer["page"] >= 1
        page_text = read_pages(Path(answer["source"]))[answer["page"] - 1]
        assert same_text(page_text[answer["start"] : answer["end"]], answer["text"])  # text is the span, cleaned
        assert answer["text"] in answer["context"]


def test_ask_human_output_marks_the_answer(cli_index, tiny_qa_model_dir, capsys):
    code = main(["ask", "Who founded Aurora Bicycle Works?", "--index", str(cli_index),
                 "--reader", str(tiny_qa_model_dir), "--top-k", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("1. ")
    assert "page " in out and "**" in out


def test_search_json_shape(cli_index, capsys):
    code = main(["search", "vacation days for employees", "--index", str(cli_index), "--top-k", "2", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["query"] == "vacation days for employees"
    assert len(payload["passages"]) == 2
    for passage in payload["passages"]:
        assert set(passage) == {"text", "score", "source", "page", "start", "end", "chunk_id", "similarity",
                                "rerank_score", "retrieval_score"}
        assert -1.0 <= passage["similarity"] <= 1.0
        page_text = read_pages(Path(passage["source"]))[passage["page"] - 1]
        assert same_text(page_text[passage["start"] : passage["end"]], passage["text"])


def test_search_with_a_different_embedder_is_refused(cli_index, tmp_path, capsys):
    code = main(["search", "anything", "--index", str(cli_index), "--embedder", "some-org/another-embedder"])
    err = capsys.readouterr().err
    assert code == 1
    assert "built with embedder" in err


def _subcommands(parser, words=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*words, name), sub
                yield from _subcommands(sub, (*words, name))


def test_every_command_names_a_handler_that_exists():
    commands = dict(_subcommands(build_parser()))
    assert {"index", "ask", "search", "remove", "list", "compact", "check", "backup", "eval", "calibrate",
            "serve", "token"} <= {words[0] for words in commands}
    for words, sub in commands.items():
        reference = sub.get_default("handler")
        if reference is None:  # `token add`: its parent's
            continue
        assert callable(handler(reference)), words


def test_every_device_option_takes_a_cuda_device_with_an_index():
    # Before: choices auto|cpu|cuda refused cuda:1, which the models' code takes.
    parser = build_parser()
    taking = [words for words, sub in _subcommands(parser)
              if any("--device" in action.option_strings for action in sub._actions)]
    assert {("index",), ("ask",), ("search",), ("eval",), ("calibrate",), ("serve",)} <= set(taking)
    positional = {"index": ["a.pdf"], "ask": ["Who?"], "search": ["what"], "eval": ["q.json"],
                  "calibrate": ["q.json"], "train": ["q.json", "--out", "trained"]}
    for (command,) in taking:
        args = parser.parse_args([command, *positional.get(command, []), "--index", "kb", "--device", "cuda:1"])
        assert args.device == "cuda:1"


def test_help_loads_no_model_library():
    # The handlers' modules (torch, Haystack, FastAPI) are imported only for the command that runs.
    probe = ("import sys; from spanqa.cli import build_parser; build_parser().format_help(); "
             "heavy = [m for m in ('torch', 'haystack', 'transformers', 'fastapi', 'faiss') if m in sys.modules]; "
             "print(heavy)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spanqa.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_missing_index_exits_nonzero_without_traceback(tmp_path):
    result = _run_cli("ask", "Who?", "--index", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "no spanqa index" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", "Who?"])  # --index missing
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["ask", "Who?", "--index", str(tmp_path), "--top-k", "0"])
    assert exit_info.value.code == 2
    assert "whole number" in capsys.readouterr().err


def test_threshold_one_leaves_no_answer(cli_index, tiny_qa_model_dir, capsys):
    code = main(["ask", "Who founded Aurora Bicycle Works?", "--index", str(cli_index),
                 "--reader", str(tiny_qa_model_dir), "--threshold", "1", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["answers"] == []


def test_reader_options_reach_the_reader(cli_index, tiny_qa_model_dir, capsys):
    code = main(["ask", "Who founded Aurora Bicycle Works?", "--index", str(cli_index),
                 "--reader", str(tiny_qa_model_dir), "--max-answer-length", "1", "--passages", "2",
                 "--max-seq-length", "128", "--doc-stride", "32", "--top-k", "10", "--json"])
    answers = json.loads(capsys.readouterr().out)["answers"]
    assert code == 0 and answers
    for answer in answers:  # one token widened to its whole word: never two words
        assert len(answer["text"].split()) == 1, answer["text"]
    # Each sample page is one chunk, so two passages read means answers from two pages at most.
    assert len({(a["source"], a["page"]) for a in answers}) <= 2


def test_bad_window_settings_are_reported_without_traceback(cli_index, tiny_qa_model_dir, capsys):
    code = main(["ask", "Who?", "--index", str(cli_index), "--reader", str(tiny_qa_model_dir),
                 "--max-seq-length", "64", "--doc-stride", "64"])
    assert code == 1
    assert "doc_stride" in capsys.readouterr().err


def test_fast_mode_and_retrieval_options_reach_the_pipeline(cli_index, tiny_qa_model_dir, capsys):
    question = "Who founded Aurora Bicycle Works?"
    exact = main(["ask", question, "--index", str(cli_index), "--reader", str(tiny_qa_model_dir), "--json",
                  "--retrieval", "keyword"])
    exact_answers = json.loads(capsys.readouterr().out)["answers"]
    fast = main(["ask", question, "--index", str(cli_index), "--reader", str(tiny_qa_model_dir), "--json",
                 "--retrieval", "keyword", "--fast"])
    fast_answers = json.loads(capsys.readouterr().out)["answers"]

    assert exact == fast == 0 and exact_answers and fast_answers
    # int8 scores differ from float32 ones: the flag reached the reader
    assert [a["score"] for a in fast_answers] != [a["score"] for a in exact_answers]
    scores = {}
    for mode in ("keyword", "dense"):
        assert main(["search", "Aurora founded", "--index", str(cli_index), "--retrieval", mode, "--json"]) == 0
        scores[mode] = [p["score"] for p in json.loads(capsys.readouterr().out)["passages"]]
    assert scores["keyword"] and scores["dense"] and scores["keyword"] != scores["dense"]
    with pytest.raises(SystemExit):
        main(["search", "x", "--index", str(cli_index), "--dense-weight", "2"])


def test_compact_rewrites_the_segments_as_one_and_answers_stay(tmp_path, sample_data_dir, minilm_dir, capsys):
    index_dir = tmp_path / "kb"
    files = [path for path in sorted(sample_data_dir.iterdir()) if path.suffix in (".pdf", ".md")]
    for file in files:  # one run, one commit, one segment per file
        assert main(["index", str(file), "--index", str(index_dir), "--embedder", str(minilm_dir), "--device", "cpu"]) == 0
    assert main(["remove", str(files[0]), "--index", str(index_dir)]) == 0
    # All of that file's segment deleted: the removal's commit dropped it (max_deleted_share).
    assert len([p for p in index_dir.iterdir() if p.name.startswith("segment.")]) == len(files) - 1
    capsys.readouterr()
    assert main(["search", "greenhouse", "--index", str(index_dir), "--device", "cpu", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["passages"]
    assert main(["compact", "--index", str(index_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments_merged"] == len(files) - 1
    assert len([p for p in index_dir.iterdir() if p.name.startswith("segment.")]) == 1
    assert main(["search", "greenhouse", "--index", str(index_dir), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passages"] == before


def test_index_with_shards_writes_a_sharded_index_that_list_and_search_read(tmp_path, sample_data_dir, minilm_dir, capsys):
    index_dir = tmp_path / "kb"
    assert main(["index", str(sample_data_dir), "--index", str(index_dir), "--embedder", str(minilm_dir),
                 "--device", "cpu", "--shards", "2"]) == 0
    assert sorted(p.name for p in index_dir.iterdir()) == ["shard-0", "shard-1", "shards.json"]
    capsys.readouterr()
    assert main(["list", "--index", str(index_dir), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["files"]) == 3
    assert main(["search", "lighthouse", "--index", str(index_dir), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passages"]


# -- errors a new user meets (issue 24) --------------------------------------------------------------


@pytest.mark.parametrize("option", ["--reader", "--embedder"])
@pytest.mark.parametrize("value", ["/no/such/dir", "./no-such-dir", "../no/such", "~/no-such-spanqa-model", "a/b/c"])
def test_a_model_path_that_is_not_there_says_so_before_anything_loads(tmp_path, sample_data_dir, monkeypatch, capsys,
                                                                      option, value):
    # Before: "Repo id must be in the form 'repo_name' or 'namespace/repo_name'", from the hub.
    monkeypatch.setattr(indexing_module, "make_document_embedder", _never_called)
    code = main(["index", str(sample_data_dir / "greenhouse_notes.md"), "--index", str(tmp_path / "kb"), option, value])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (f"spanqa: error: no such directory '{value}' ({option} takes a hub id like org/name or a local "
                   "model directory)\n")
    assert not (tmp_path / "kb").exists()


def test_a_model_path_that_is_a_file_says_so(tmp_path, capsys):
    file = tmp_path / "model.onnx"
    file.write_bytes(b"onnx")
    assert main(["ask", "Who?", "--index", str(tmp_path / "kb"), "--reader", str(file)]) == 1
    assert f"'{file}' is a file, not a model directory (--reader takes" in capsys.readouterr().err


def test_a_hub_id_is_left_to_the_hub():
    assert paths.model_reference("org/name") == "org/name"
    assert paths.model_reference("distilbert-base-uncased") == "distilbert-base-uncased"


def _never_called(*args, **kwargs):
    raise AssertionError("a model was loaded before the paths were checked")


def test_index_checks_every_path_before_any_model_loads(tmp_path, sample_data_dir, monkeypatch, capsys):
    # Before: offline, the embedder's hub error came first; with one good path, it was indexed.
    monkeypatch.setattr(indexing_module, "make_document_embedder", _never_called)
    index_dir = tmp_path / "kb"
    assert main(["index", "/no/such/path", "--index", str(index_dir)]) == 1
    assert capsys.readouterr().err == "spanqa: error: no such file or folder '/no/such/path': nothing was indexed\n"
    good = str(sample_data_dir / "greenhouse_notes.md")
    assert main(["index", good, str(tmp_path / "gone.pdf"), "/no/such", "--index", str(index_dir)]) == 1
    err = capsys.readouterr().err
    assert f"no such file or folder '{tmp_path / 'gone.pdf'}', '/no/such': nothing was indexed" in err
    assert not index_dir.exists()


def _raising(exc: BaseException):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (sqlite3.IntegrityError("UNIQUE constraint failed: chunks.doc_id"),
         "the index's database failed (IntegrityError: UNIQUE constraint failed: chunks.doc_id): the index may be "
         "damaged: run `spanqa check --index KB`"),
        (sqlite3.OperationalError("database is locked"),
         "the index's database stayed locked by another process (OperationalError: database is locked): wait for it "
         "to finish and try again; if no other spanqa uses the index, it may be damaged: run `spanqa check --index KB`"),
        (sqlite3.DatabaseError("database disk image is malformed"),
         "the index's database failed (DatabaseError: database disk image is malformed): the index may be damaged: "
         "run `spanqa check --index KB`"),
        (sqlite3.OperationalError("database or disk is full"), "the disk is full"),
        (OSError(errno.ENOSPC, "No space left on device", "/kb/segment.tmp"), "the disk is full"),
        (OSError(errno.EACCES, "Permission denied", "/kb/chunks.sqlite"),
         "permission denied '/kb/chunks.sqlite': check who owns it and its mode, or run as that user"),
        (StorageError("cannot commit to the index", OSError(errno.EIO, "Input/output error")),
         "cannot commit to the index: the disk reported an error (Input/output error)"),
        (RuntimeError("something\nbroke"),
         "unexpected RuntimeError: something broke (run with SPANQA_DEBUG=1 for the traceback)"),
    ],
)
def test_errors_are_one_plain_line_without_a_traceback(tmp_path, monkeypatch, capsys, exc, expected):
    monkeypatch.delenv("SPANQA_DEBUG", raising=False)
    monkeypatch.setattr(cli_run, "run_list", _raising(exc))
    assert main(["list", "--index", "KB"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spanqa: error: ") and expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_spanqa_debug_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setenv("SPANQA_DEBUG", "1")
    monkeypatch.setattr(cli_run, "run_list", _raising(sqlite3.IntegrityError("UNIQUE constraint failed")))
    assert main(["list", "--index", "KB"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("run `spanqa check --index KB`")


def test_a_damaged_index_database_is_one_line_from_the_real_command(tmp_path):
    from haystack import Document

    from spanqa.indexing.store.faiss_store import FaissDocumentStore

    store = FaissDocumentStore.create(tmp_path / "kb", embedder="test/e", dimension=4)
    store.write_documents([Document(id=f"d{i}", content=f"text {i}", meta={"source": "/a.md", "page": 1},
                                    embedding=[1.0, 0.0, 0.0, float(i)]) for i in range(20)])
    store.close()
    database = tmp_path / "kb" / "chunks.sqlite"
    data = bytearray(database.read_bytes())
    data[4096::7] = b"\xab" * len(data[4096::7])
    database.write_bytes(bytes(data))
    result = _run_cli("list", "--index", str(tmp_path / "kb"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert f"the index may be damaged: run `spanqa check --index {tmp_path / 'kb'}`" in result.stderr
