"""The int8 fast embedder: its pure parts without a model, then parity with sentence-transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from haystack import Document

from spanqa.errors import ConfigError
from spanqa.indexing.retrieval.embedding import (
    EmbeddingSettings,
    Int8DocumentEmbedder,
    Int8SentenceEncoder,
    Int8TextEmbedder,
    choose_precision,
    length_batches,
    pool,
    quantised_model_path,
    read_sentence_model_layout,
)

SENTENCES = [
    "The bicycle company was founded in Portland in 1987 by two machinists.",
    "Employees accrue fifteen days of paid leave per year.",
    "Form 1040-NR is filed by nonresident aliens with income from sources in the United States.",
    "The Federal Register publishes rules, proposed rules and notices of federal agencies.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "short",
]


def write_model_layout(directory: Path, modules: list[str], pooling: dict, max_seq_length: int | None = 128) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"Transformer": "", "Pooling": "1_Pooling", "Normalize": "2_Normalize", "Dense": "2_Dense"}
    entries = [
        {"idx": i, "name": str(i), "path": paths[kind], "type": f"sentence_transformers.models.{kind}"}
        for i, kind in enumerate(modules)
    ]
    (directory / "modules.json").write_text(json.dumps(entries))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 8, **pooling}))
    if max_seq_length is not None:
        (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    return directory


MEAN = {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False}
CLS = {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}


# -- model layout ----------------------------------------------------------------------------------


def test_layout_of_a_mean_pooled_normalised_model(tmp_path):
    layout = read_sentence_model_layout(write_model_layout(tmp_path, ["Transformer", "Pooling", "Normalize"], MEAN))
    assert (layout.pooling, layout.normalize, layout.max_seq_length) == ("mean", True, 128)


def test_layout_of_a_cls_pooled_model_without_normalisation_or_length(tmp_path):
    layout = read_sentence_model_layout(write_model_layout(tmp_path, ["Transformer", "Pooling"], CLS, None))
    assert (layout.pooling, layout.normalize, layout.max_seq_length) == ("cls", False, 256)


@pytest.mark.parametrize(
    "modules, pooling, words",
    [
        (["Transformer", "Pooling", "Dense", "Normalize"], MEAN, "Dense"),
        (["Transformer", "Pooling"], {"pooling_mode_max_tokens": True}, "pooling_mode_max_tokens"),
        (["Transformer", "Pooling"], {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, "pools with"),
        (["Pooling", "Transformer"], MEAN, "supports Transformer"),
    ],
)
def test_layouts_the_fast_embedder_cannot_run_are_config_errors(tmp_path, modules, pooling, words):
    with pytest.raises(ConfigError, match=words) as error:
        read_sentence_model_layout(write_model_layout(tmp_path, modules, pooling))
    assert "float32" in str(error.value)


def test_a_directory_without_modules_json_is_not_a_sentence_model(tmp_path):
    with pytest.raises(ConfigError, match="modules.json"):
        read_sentence_model_layout(tmp_path)


# -- pooling and batching ----------------------------------------------------------------------------


def test_mean_pooling_ignores_padding_and_normalises():
    hidden = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 2.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert np.allclose(pool(hidden, mask, "mean", normalize=False), [[2.0, 2.0], [0.0, 2.0]])
    unit = pool(hidden, mask, "mean", normalize=True)
    assert np.allclose(unit, [[2 ** -0.5, 2 ** -0.5], [0.0, 1.0]])


def test_cls_pooling_takes_the_first_token():
    hidden = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    assert np.allclose(pool(hidden, np.ones((2, 3)), "cls", normalize=False), [[0, 1], [6, 7]])


def test_length_batches_cover_every_text_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 200, size=300)]
    batches = length_batches(lengths, batch_tokens=1000, max_batch=16)
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # ascending: little padding
    for batch in batches:
        assert len(batch) <= 16
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 1000


def test_a_text_longer_than_the_budget_gets_a_batch_of_its_own():
    assert length_batches([5, 500, 6], batch_tokens=100, max_batch=8) == [[0, 2], [1]]


# -- settings ----------------------------------------------------------------------------------------


def test_embedding_settings_round_trip_and_old_indexes_read_as_float32_uncut():
    settings = EmbeddingSettings(precision="int8", max_tokens=128)
    assert EmbeddingSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert EmbeddingSettings.from_dict(None) == EmbeddingSettings(precision="float32", max_tokens=None)
    with pytest.raises(ConfigError, match="'int4'"):
        EmbeddingSettings(precision="int4", max_tokens=None)
    with pytest.raises(ConfigError, match="embed_max_tokens=0"):
        EmbeddingSettings(precision="int8", max_tokens=0)


def test_choose_precision(tmp_path, minilm_dir):
    assert choose_precision("float32", str(minilm_dir), "cpu") == "float32"
    assert choose_precision("int8", str(minilm_dir), "cuda:0") == "int8"  # asked for: kept
    assert choose_precision("auto", str(minilm_dir), "cuda:0") == "float32"
    assert choose_precision("auto", str(minilm_dir), "cpu") == "int8"
    assert choose_precision("auto", str(tmp_path), "cpu") == "float32"  # not a model int8 can run
    with pytest.raises(ConfigError, match="embedder_precision='half'"):
        choose_precision("half", str(minilm_dir), "cpu")


# -- the model ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder(minilm_dir) -> Int8SentenceEncoder:
    pytest.importorskip("onnxruntime")
    return Int8SentenceEncoder(str(minilm_dir), threads=1)


def test_int8_vectors_match_sentence_transformers(encoder, minilm_dir):
    from sentence_transformers import SentenceTransformer

    exact = SentenceTransformer(str(minilm_dir), device="cpu").encode(SENTENCES, normalize_embeddings=True)
    fast = encoder.encode(SENTENCES)
    assert fast.shape == exact.shape and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() > 0.97 and cosines.mean() > 0.985, cosines
    # Each sentence is still nearest to its own exact vector: rankings survive quantisation.
    assert list((fast @ exact.T).argmax(axis=1)) == list(range(len(SENTENCES)))


def test_vectors_come_back_in_input_order_whatever_the_batching(encoder):
    alone = np.stack([encoder.encode([text])[0] for text in SENTENCES])
    together = encoder.encode(SENTENCES)
    # Activations are quantised per batch, so batch mates move a vector a little (cosine ~0.99).
    assert list((together @ alone.T).argmax(axis=1)) == list(range(len(SENTENCES)))
    assert ((alone * together).sum(axis=1) > 0.97).all()
    assert encoder.encode([]).shape == (0, encoder.dimension)


def test_max_tokens_cuts_what_the_embedder_reads(minilm_dir):
    pytest.importorskip("onnxruntime")
    short = Int8SentenceEncoder(str(minilm_dir), threads=1, max_tokens=12)
    text = SENTENCES[2]
    longer = text + " Every later word lies beyond the cut and changes nothing."
    assert np.array_equal(short.encode([text]), short.encode([longer]))
    full = Int8SentenceEncoder(str(minilm_dir), threads=1)
    assert not np.allclose(full.encode([text]), full.encode([longer]))


def test_the_quantised_model_is_cached_per_model(encoder, tmp_path):
    cached = quantised_model_path(encoder.layout, Path(encoder.model_path).parent.parent)
    assert cached == Path(encoder.model_path)  # found, not exported again
    stamp = cached.stat().st_mtime_ns
    assert quantised_model_path(encoder.layout, cached.parent.parent).stat().st_mtime_ns == stamp


def test_components_embed_and_round_trip(minilm_dir):
    pytest.importorskip("onnxruntime")
    documents = Int8DocumentEmbedder(model=str(minilm_dir), max_tokens=64)
    with pytest.raises(ConfigError, match="warm_up"):
        documents.run([Document(content="x")])
    documents.warm_up()
    out = documents.run([Document(content=text, meta={"n": i}) for i, text in enumerate(SENTENCES)])["documents"]
    assert [d.meta["n"] for d in out] == list(range(len(SENTENCES)))
    assert all(len(d.embedding) == 384 for d in out)
    text = Int8TextEmbedder(model=str(minilm_dir), max_tokens=64)
    text.warm_up()
    question = np.array(text.run("When was the bicycle company founded?")["embedding"])
    assert int(np.argmax([question @ np.array(d.embedding) for d in out])) == 0
    for component in (documents, text):
        again = type(component).from_dict(component.to_dict())
        assert again.to_dict() == component.to_dict()
    assert documents.to_dict()["init_parameters"]["max_tokens"] == 64


def test_the_text_embedder_runs_on_the_threads_it_is_given(minilm_dir):
    pytest.importorskip("onnxruntime")
    single = Int8TextEmbedder(model=str(minilm_dir), max_tokens=64, threads=1)
    single.warm_up()
    assert single.encoder.session.get_session_options().intra_op_num_threads == 1
    assert Int8TextEmbedder.from_dict(single.to_dict()).threads == 1
    default = Int8TextEmbedder(model=str(minilm_dir), max_tokens=64)
    default.warm_up()
    question = "When was the bicycle company founded?"
    np.testing.assert_allclose(single.run(question)["embedding"], default.run(question)["embedding"], atol=1e-5)
    with pytest.raises(ConfigError, match="threads"):
        Int8TextEmbedder(model=str(minilm_dir), threads=0)


def test_an_export_that_does_not_reproduce_the_model_is_refused(minilm_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    import torch
    from transformers import AutoModel

    from spanqa.indexing.retrieval.embedding import _check_export, _export_transformer

    exported = tmp_path / "model.onnx"
    _export_transformer(Path(minilm_dir), exported)  # checks itself: passes for the real model
    names = ["input_ids", "attention_mask"]
    other = AutoModel.from_pretrained(str(minilm_dir), attn_implementation="eager").eval()
    with torch.no_grad():
        other.encoder.layer[0].output.dense.weight.mul_(1.5)  # not the graph that was exported
    with pytest.raises(ConfigError, match="faithfully"):
        _check_export(other, names, exported)


def test_a_hub_id_fetches_only_what_the_int8_embedder_reads(tmp_path, monkeypatch):
    import huggingface_hub

    from spanqa.indexing.retrieval.embedding import resolve_model_directory

    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert resolve_model_directory("org/model") == tmp_path
    # No safetensors weights in the snapshot: the PyTorch weights are fetched too, nothing else.
    assert [patterns for _, patterns in calls] == [
        ["*.json", "*.txt", "*.model", "*.safetensors"],
        ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model.bin"],
    ]
    calls.clear()
    (tmp_path / "model.safetensors").write_bytes(b"")
    resolve_model_directory("org/model")
    assert len(calls) == 1
    assert resolve_model_directory(str(tmp_path)) == tmp_path  # a local directory as it is
    assert len(calls) == 1


def test_the_float32_embedder_reads_the_same_cut(minilm_dir):
    from spanqa.indexing.retrieval.embedders import make_document_embedder, make_text_embedder

    settings = EmbeddingSettings(precision="float32", max_tokens=12)
    text = SENTENCES[2]
    longer = text + " Every later word lies beyond the cut and changes nothing."
    documents = make_document_embedder(str(minilm_dir), "cpu", settings)
    documents.warm_up()
    first, second = documents.run([Document(content=text), Document(content=longer)])["documents"]
    assert np.allclose(first.embedding, second.embedding, atol=1e-6)
    question = make_text_embedder(str(minilm_dir), "cpu", settings)
    question.warm_up()
    assert np.allclose(question.run(longer)["embedding"], first.embedding, atol=1e-5)
