"""The int8 ONNX cache (spanqa.onnx_cache): the reader's fast mode, the int8 reranker and the int8
embedder are built once per model, loaded from the cache afterwards with the same outputs, and an
unsound entry or an unwritable cache costs a rebuild, never a failed load."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from spanqa import onnx_cache  # noqa: E402
from spanqa.indexing.retrieval import embedding  # noqa: E402
from spanqa.reader import PassageReranker, fast_mode, load_qa_model, prepare_qa_model, reranker  # noqa: E402
from spanqa.reader.forward import probe_batch  # noqa: E402

PAIRS = (["When does the ferry leave?", "How tall is the tower?"], ["The ferry leaves at six.", "It is forty metres."])


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("SPANQA_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def exports(monkeypatch) -> dict[str, int]:
    """How many times each int8 path exported a torch model to ONNX, from now on in the test."""
    counts = {"reader": 0, "reranker": 0, "embedder": 0}
    for kind, module in (("reader", fast_mode), ("reranker", reranker), ("embedder", embedding)):
        original = module.export_onnx

        def counting(*args, _kind=kind, _original=original, **kwargs):
            counts[_kind] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, "export_onnx", counting)
    return counts


@pytest.fixture
def model_dir(tiny_qa_model_dir, tmp_path) -> Path:
    """A copy of the tiny QA model this test may change."""
    return Path(shutil.copytree(tiny_qa_model_dir, tmp_path / "model"))


def reader_logits(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    loaded = load_qa_model(str(model_dir), "cpu", fast=True)
    assert loaded.fast
    return loaded.logits(probe_batch(int(loaded.config.vocab_size), 0))


def entries(cache_dir: Path, kind: str) -> list[Path]:
    return sorted((cache_dir / onnx_cache.CACHE_FOLDER).glob(f"{kind}-*.onnx"))


# -- the reader's fast mode ------------------------------------------------------------------------------

def test_the_second_load_builds_nothing_and_gives_the_same_logits(model_dir, cache_dir, exports):
    first = reader_logits(model_dir)
    assert exports["reader"] == 1
    again = reader_logits(model_dir)
    assert exports["reader"] == 1  # loaded from the cache
    assert [path.name[:7] for path in entries(cache_dir, "reader")] == ["reader-"]
    for built, cached in zip(first, again, strict=True):
        np.testing.assert_array_equal(built, cached)


def test_a_cached_fast_reader_loads_without_its_float_model(model_dir, cache_dir, monkeypatch):
    from transformers import AutoModelForQuestionAnswering

    built = load_qa_model(str(model_dir), "cpu", fast=True)
    assert built.model is not None  # the first load needs the model to build the int8 graph

    def no_float_model(*args, **kwargs):
        raise AssertionError("the float model was loaded although its int8 graph is cached")

    monkeypatch.setattr(AutoModelForQuestionAnswering, "from_pretrained", no_float_model)
    cached = load_qa_model(str(model_dir), "cpu", fast=True)

    assert cached.model is None and cached.fast
    assert cached.input_names == built.input_names
    assert cached.config.max_position_embeddings == built.config.max_position_embeddings
    probe = probe_batch(int(built.config.vocab_size), 0)
    for fresh, again in zip(built.logits(probe), cached.logits(probe), strict=True):
        np.testing.assert_array_equal(fresh, again)


def test_the_cached_graph_gives_the_logits_of_one_built_afresh(model_dir, cache_dir, exports):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    cached = reader_logits(model_dir)
    reader_logits(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    fresh = prepare_qa_model(tokenizer, model, "cpu", fast=True)  # no folder: built without the cache
    assert exports["reader"] == 2
    for built, loaded in zip(fresh.logits(probe_batch(int(model.config.vocab_size), 0)), cached, strict=True):
        np.testing.assert_array_equal(built, loaded)


def test_a_model_without_files_is_built_at_every_load_and_not_cached(tiny_qa_model_dir, cache_dir, exports):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_qa_model_dir))
    prepare_qa_model(tokenizer, model, "cpu", fast=True)
    prepare_qa_model(tokenizer, model, "cpu", fast=True)
    assert exports["reader"] == 2
    assert not cache_dir.exists()


def test_a_changed_model_file_gets_a_new_entry_even_with_its_size_and_time_kept(model_dir, cache_dir, exports):
    reader_logits(model_dir)
    weights = model_dir / "model.safetensors"
    before = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-4] ^= 1  # the lowest mantissa bit of the last weight: the same size, another model
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    reader_logits(model_dir)
    assert exports["reader"] == 2
    assert len(entries(cache_dir, "reader")) == 2


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def remove_sidecar(path: Path) -> None:
    onnx_cache.sidecar_path(path).unlink()


def replace_with_a_file_onnx_runtime_cannot_load(path: Path) -> None:
    """Not an ONNX model, with a sidecar that matches it: only ONNX Runtime can tell."""
    path.write_bytes(b"not an onnx model")
    sidecar = onnx_cache.sidecar_path(path)
    recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    recorded.update(bytes=17, sha256=hashlib.sha256(b"not an onnx model").hexdigest())
    sidecar.write_text(json.dumps(recorded), encoding="utf-8")


@pytest.mark.parametrize(
    "spoil", [flip_a_byte, truncate, remove_sidecar, replace_with_a_file_onnx_runtime_cannot_load],
    ids=["flipped", "truncated", "no-sidecar", "unloadable"],
)
def test_an_unsound_entry_is_rebuilt_and_the_load_succeeds(model_dir, cache_dir, exports, caplog, spoil):
    first = reader_logits(model_dir)
    (entry,) = entries(cache_dir, "reader")
    spoil(entry)
    with caplog.at_level(logging.WARNING, logger="spanqa.onnx_cache"):
        again = reader_logits(model_dir)
    assert exports["reader"] == 2
    assert "rebuilding" in caplog.text
    for built, rebuilt in zip(first, again, strict=True):
        np.testing.assert_array_equal(built, rebuilt)
    reader_logits(model_dir)  # the rebuilt entry is sound
    assert exports["reader"] == 2
    assert entries(cache_dir, "reader") == [entry]


def test_an_unwritable_cache_still_loads_and_warns_once(model_dir, tmp_path, monkeypatch, exports, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    # No folder can be made below a file, whoever runs the test (root ignores a read-only mode).
    monkeypatch.setenv("SPANQA_CACHE_DIR", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="spanqa.onnx_cache"):
        first = reader_logits(model_dir)
        again = reader_logits(model_dir)
    assert exports["reader"] == 2  # built at each load, as without a cache
    assert caplog.text.count("cannot write the int8 model cache") == 1
    for built, rebuilt in zip(first, again, strict=True):
        np.testing.assert_array_equal(built, rebuilt)


def test_cache_files_are_owner_only(model_dir, cache_dir):
    reader_logits(model_dir)
    folder = cache_dir / onnx_cache.CACHE_FOLDER
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (entry,) = entries(cache_dir, "reader")
    for path in (entry, onnx_cache.sidecar_path(entry), folder / onnx_cache.FILE_HASHES):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# -- the key -----------------------------------------------------------------------------------------------

def test_keys_differ_across_onnx_runtime_versions(model_dir, cache_dir, exports, monkeypatch):
    build = onnx_cache.Int8Build("reader", "test-format", model_dir, {"alpha": 0.7})
    key = onnx_cache.build_key(build, None)
    installed = importlib.metadata.version

    def other_onnx_runtime(name):
        return "0.0.1-other" if name == "onnxruntime" else installed(name)

    monkeypatch.setattr(onnx_cache.importlib.metadata, "version", other_onnx_runtime)
    other = onnx_cache.build_key(build, None)
    assert other["versions"]["onnxruntime"] == "0.0.1-other"
    folder = cache_dir / onnx_cache.CACHE_FOLDER
    assert onnx_cache.entry_path(folder, key) != onnx_cache.entry_path(folder, other)
    reader_logits(model_dir)
    monkeypatch.setattr(onnx_cache.importlib.metadata, "version", installed)
    reader_logits(model_dir)
    assert exports["reader"] == 2  # one entry per ONNX Runtime version
    assert len(entries(cache_dir, "reader")) == 2


def test_keys_differ_by_kind_format_and_settings(model_dir):
    base = onnx_cache.Int8Build("reader", "f1", model_dir, {"alpha": 0.7})
    folder = Path("/cache")
    names = {
        onnx_cache.entry_path(folder, onnx_cache.build_key(build, None)).name
        for build in (
            base,
            onnx_cache.Int8Build("reranker", "f1", model_dir, {"alpha": 0.7}),
            onnx_cache.Int8Build("reader", "f2", model_dir, {"alpha": 0.7}),
            onnx_cache.Int8Build("reader", "f1", model_dir, {"alpha": 0.8}),
        )
    }
    assert len(names) == 4


def test_unchanged_model_files_are_hashed_once(model_dir, tmp_path, monkeypatch):
    hashes_file = tmp_path / "hashes" / "file-hashes.json"
    first = onnx_cache.model_files_digest(model_dir, hashes_file)
    read = []
    original = onnx_cache._file_sha256
    monkeypatch.setattr(onnx_cache, "_file_sha256", lambda path: read.append(path) or original(path))
    assert onnx_cache.model_files_digest(model_dir, hashes_file) == first
    assert read == []
    (model_dir / "config.json").write_text("{}", encoding="utf-8")
    assert onnx_cache.model_files_digest(model_dir, hashes_file) != first
    assert [path.name for path in read] == ["config.json"]
    assert onnx_cache.model_files_digest(model_dir, None) == onnx_cache.model_files_digest(model_dir, hashes_file)


def test_a_hub_id_is_keyed_by_the_snapshot_transformers_loaded(tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = tmp_path / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    cached = {"org/model": str(snapshot / "config.json")}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: cached.get(repo))
    assert onnx_cache.model_source_directory("org/model") == snapshot
    assert onnx_cache.model_source_directory("org/not-downloaded") is None
    assert onnx_cache.model_source_directory(str(tmp_path)) == tmp_path  # a local directory as it is


# -- the reranker and the embedder ------------------------------------------------------------------------

def test_the_int8_reranker_is_built_once_and_scores_the_same(tiny_reranker_dir, cache_dir, exports):
    scores = []
    for _ in range(2):
        model = PassageReranker(str(tiny_reranker_dir), device="cpu", precision="int8")
        scores.append(model.score_pairs(*PAIRS))
    assert exports["reranker"] == 1
    assert len(entries(cache_dir, "reranker")) == 1
    np.testing.assert_array_equal(scores[0], scores[1])


def test_the_int8_reranker_is_keyed_by_its_token_limit(tiny_reranker_dir, cache_dir, exports):
    for max_tokens in (128, 256):
        PassageReranker(str(tiny_reranker_dir), device="cpu", precision="int8", max_tokens=max_tokens).warm_up()
    assert exports["reranker"] == 2
    assert len(entries(cache_dir, "reranker")) == 2


def test_the_int8_embedder_is_built_once_and_embeds_the_same(minilm_dir, cache_dir, exports):
    vectors = []
    for _ in range(2):
        encoder = embedding.Int8SentenceEncoder(str(minilm_dir), threads=1)
        vectors.append(encoder.encode(PAIRS[1]))
    assert exports["embedder"] == 1
    assert [Path(encoder.model_path)] == entries(cache_dir, "embedder")
    np.testing.assert_array_equal(vectors[0], vectors[1])


# -- the cache itself, with any builder ---------------------------------------------------------------------

def test_concurrent_builders_of_one_entry_leave_it_sound(model_dir, tmp_path):
    """Two loads missing the same entry both build it; each gets its model and the entry stays whole."""
    import threading

    both_building = threading.Barrier(2)
    build = onnx_cache.Int8Build("test", "f1", model_dir, {})

    def make(target: Path) -> None:
        both_building.wait(timeout=60)  # neither stores before the other has started building
        target.write_bytes(b"the built model")

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(onnx_cache.load_or_build(build, make, bytes, tmp_path)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [loaded.value for loaded in results] == [b"the built model"] * 2
    (path,) = {loaded.path for loaded in results}
    recorded = json.loads(onnx_cache.sidecar_path(path).read_text(encoding="utf-8"))
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert sorted(entry.name for entry in path.parent.iterdir()) == sorted(
        [path.name, onnx_cache.sidecar_path(path).name, onnx_cache.FILE_HASHES]
    )  # no temporary file left behind
    again = onnx_cache.load_or_build(build, lambda target: pytest.fail("built again"), bytes, tmp_path)
    assert again.value == b"the built model" and again.path == path
