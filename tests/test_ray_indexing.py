"""Indexing on Ray (`spanqa index --ray`) gives what local indexing gives: the same files, chunks,
texts, ids and metadata, vectors equal up to float noise, the same per-file statuses; a run stopped
part way resumes; a worker node lost mid-run costs no file and no index. Without --ray, nothing
imports Ray.

The local Ray instance binds to the loopback address and declares 4 CPUs (this machine has 2 cores:
Ray Data's resource budget needs room for the parse tasks beside an embedder actor). The test parsers
live in tests/parse_jobs.py: Ray workers (PYTHONPATH holds tests/) and their parse processes
import it to run them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from parse_jobs import marked_parse, marks_of, misbehaving_parse
from pdf_factory import write_corrupt_pdf

from spanqa import DocumentQA
from spanqa.cli import main
from spanqa.errors import ClusterError, ConfigError
from spanqa.indexing.ingest.ray_ingest import RaySettings
from spanqa.indexing.ingest.workers import ParsePool

TESTS_DIR = Path(__file__).resolve().parent

FERRY = (
    "The ferry to Skarv Point leaves the north quay every hour from seven in the morning. "
    "Tickets are sold at the harbour office, which opens at half past six. "
)


def worker_env(**env_vars: str) -> dict:
    paths = [str(TESTS_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths), **env_vars}}


def loopback_only(ray) -> None:
    # tests/conftest.py sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported.
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, include_dashboard=False, runtime_env=worker_env())
    loopback_only(ray)
    yield ray
    ray.shutdown()


def marked_notes(tmp_path: Path, monkeypatch, openings: dict[str, str]) -> Path:
    """A docs/ folder of notes (each its opening and the ferry text), parsed by `marked_parse`,
    which leaves a mark per parse (which files were parsed, on which node)."""
    from spanqa.indexing.ingest import indexer as ingest

    monkeypatch.setattr(ingest, "ParsePool", functools.partial(ParsePool, job=marked_parse))
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, opening in openings.items():
        (docs / name).write_text(opening + FERRY, encoding="utf-8")
    return docs


def index_contents(index_dir: Path) -> dict:
    """Everything an index holds: files, chunks (text, metadata), settings, and the vectors, read
    back one coordinate at a time (the similarity to each unit axis)."""
    from spanqa.indexing import FaissDocumentStore

    store = FaissDocumentStore.open(index_dir)
    try:
        documents = {document.id: document for document in store.filter_documents()}
        ids = sorted(documents)
        axes = np.eye(store.dimension, dtype=np.float32)
        columns = [store.similarities(axis, ids) for axis in axes]
        return {
            "files": sorted((f.source, f.sha256, f.pages, f.chunks) for f in store.files()),
            "chunks": {i: (documents[i].content, documents[i].meta) for i in ids},
            "settings": (store.embedder, store.embedding, store.chunking, store.index_type),
            "vectors": np.array([[column[i] for column in columns] for i in ids], dtype=np.float32),
        }
    finally:
        store.close()


# -- without Ray ------------------------------------------------------------------------------------


def test_indexing_without_ray_never_imports_it(tmp_path, minilm_dir):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ferry.txt").write_text(FERRY, encoding="utf-8")
    script = (
        "import sys\n"
        "from spanqa.cli import main\n"
        f"code = main(['index', {str(tmp_path / 'docs')!r}, '--index', {str(tmp_path / 'kb')!r},"
        f" '--embedder', {str(minilm_dir)!r}, '--device', 'cpu', '--json'])\n"
        "assert code == 0, code\n"
        "print(sorted(name for name in sys.modules if name == 'ray' or name.startswith('ray.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "kb" / "manifest.json").is_file()


@pytest.mark.parametrize("value", [5, "", "   ", 1.5])
def test_a_bad_ray_option_is_a_config_error(value):
    with pytest.raises(ConfigError, match="ray="):
        RaySettings.from_option(value)


def test_ray_options():
    assert RaySettings.from_option(None) is None and RaySettings.from_option(False) is None
    assert RaySettings.from_option(True) == RaySettings.from_option("local") == RaySettings()
    assert RaySettings.from_option(" head:6379 ").address == "head:6379"
    with pytest.raises(ConfigError, match="embed_batch_files=0"):
        RaySettings(embed_batch_files=0)


@pytest.mark.parametrize(
    ("resources", "precision", "gpu", "actor_cpus", "max_actors"),
    [
        ({"CPU": 2}, "int8", False, 1, 1),  # a 2-core machine: one actor of one CPU, one CPU parses
        ({"CPU": 8}, "int8", False, 2, 2),  # two 4-CPU nodes: half the CPUs embed
        ({"CPU": 64}, "float32", False, 2, 16),
        ({"CPU": 32, "GPU": 4}, "float32", True, 1, 4),  # one actor per GPU
        ({"CPU": 32, "GPU": 4}, "int8", False, 2, 8),  # an int8 index embeds on CPUs, as locally
    ],
)
def test_the_embedder_pool_is_sized_to_the_cluster(resources, precision, gpu, actor_cpus, max_actors):
    from spanqa.indexing.ingest.ray_ingest import EmbedderPlan
    from spanqa.indexing.retrieval.embedding import EmbeddingSettings
    from spanqa.ray_cluster import uses_gpus

    embedding = EmbeddingSettings(precision=precision, max_tokens=96)
    plan = EmbedderPlan.sized("model", embedding, resources, uses_gpus("auto", resources), RaySettings())
    assert (plan.gpu, plan.actor_cpus, plan.max_actors) == (gpu, actor_cpus, max_actors)
    capped = EmbedderPlan.sized("model", embedding, resources, plan.gpu, RaySettings(max_embed_actors=1))
    assert capped.max_actors == 1


def test_the_device_names_where_the_cluster_embeds():
    from spanqa.ray_cluster import uses_gpus

    assert uses_gpus("auto", {"CPU": 4, "GPU": 1}) and uses_gpus("cuda", {"GPU": 2})
    assert not uses_gpus("cpu", {"CPU": 4, "GPU": 1}) and not uses_gpus("auto", {"CPU": 4})
    with pytest.raises(ConfigError, match="the Ray cluster has no GPUs"):
        uses_gpus("cuda", {"CPU": 4})


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    from spanqa.ray_cluster import ray_connection

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(ConfigError, match=r"pip install 'spanqa\[ray\]'"), ray_connection(None, "indexing"):
        pass


def test_an_unreachable_cluster_is_a_clear_error_at_once(tmp_path, minilm_dir, monkeypatch):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is connected to Ray already: its connection would be used")
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "ferry.txt").write_text(FERRY, encoding="utf-8")

    def no_connecting(*args, **kwargs):
        raise AssertionError("ray.init was called: Ray retries an unreachable address for minutes")

    # "At once": the address is found unreachable before Ray is asked to connect.
    monkeypatch.setattr(ray, "init", no_connecting)
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at '127.0.0.1:{port}'.*ray start --head"):
        DocumentQA(tmp_path / "kb", embedder=str(minilm_dir)).index(tmp_path / "ferry.txt", ray=f"127.0.0.1:{port}")
    assert not (tmp_path / "kb").exists()


@pytest.mark.parametrize(
    ("shards", "alive", "driver", "expected"),
    [
        (1, ["n2", "n1", "n3"], "n3", ["n3"]),  # one index: written where the driver runs
        (3, ["n2", "n1", "n3"], "n3", ["n3", "n1", "n2"]),  # a shard per node, the driver's first
        (5, ["n1", "n2"], "n2", ["n2", "n1", "n2", "n1", "n2"]),  # more shards than nodes: round again
    ],
)
def test_shard_writers_go_round_the_nodes_the_drivers_first(shards, alive, driver, expected):
    from spanqa.indexing.ingest.ray_writers import writer_nodes

    assert writer_nodes(shards, alive, driver) == expected


def test_cli_ray_before_the_paths_is_an_error_naming_the_fix(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "more").mkdir()
    code = main(["index", "--index", str(tmp_path / "kb"), "--ray", str(tmp_path / "docs"), str(tmp_path / "more")])
    assert code == 1
    assert "give --ray after the paths" in capsys.readouterr().err
    assert not (tmp_path / "kb").exists()


# -- on a local Ray instance ------------------------------------------------------------------------


def test_sample_documents_through_ray_equal_local_indexing(tmp_path, ray_local, sample_data_dir, minilm_dir,
                                                           tiny_qa_model_dir, capsys):
    options = dict(embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu")
    local = DocumentQA(tmp_path / "local", **options).index(sample_data_dir)
    code = main(["index", str(sample_data_dir), "--index", str(tmp_path / "ray"), "--embedder", str(minilm_dir),
                 "--reader", str(tiny_qa_model_dir), "--device", "cpu", "--json", "--ray"])
    assert code == 0
    through_ray = json.loads(capsys.readouterr().out)
    assert through_ray == {**local.to_json(), "removed": []}
    assert len(local.indexed) == 3 and local.skipped == []

    expected, got = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    assert got["files"] == expected["files"]
    assert got["chunks"] == expected["chunks"]  # ids, texts, offsets, metadata
    assert got["settings"] == expected["settings"] and expected["settings"][1]["precision"] == "int8"
    # The int8 embedder quantises activations per forward pass, so a vector depends on the chunks
    # embedded with it, and local indexing embeds files as they come in: vectors agree as two local
    # runs' do (float32 vectors agree to float noise: the next test).
    cosines = np.sum(got["vectors"] * expected["vectors"], axis=1)
    assert cosines.min() > 0.98
    # The Ray-built index answers like any other.
    passages = DocumentQA(tmp_path / "ray", **options).search("How tall is the lighthouse tower?", top_k=1)
    assert passages[0].source.endswith("harbor_lighthouse_report.pdf")

    # Unchanged files are kept: nothing is parsed again.
    again = DocumentQA(tmp_path / "ray", **options).index(sample_data_dir, ray=True)
    assert again.to_json() == local.to_json()


def test_float32_vectors_through_ray_equal_local_ones(tmp_path, ray_local, sample_data_dir, minilm_dir,
                                                      tiny_qa_model_dir):
    options = dict(embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu", embedder_precision="float32")
    local = DocumentQA(tmp_path / "local", **options).index(sample_data_dir)
    through_ray = DocumentQA(tmp_path / "ray", **options).index(sample_data_dir, ray=True)
    assert through_ray == local
    expected, got = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    assert got["chunks"] == expected["chunks"] and got["settings"] == expected["settings"]
    assert expected["settings"][1]["precision"] == "float32"
    assert np.abs(got["vectors"] - expected["vectors"]).max() < 1e-5


def test_a_sharded_index_through_ray_equals_local_sharded_indexing(tmp_path, ray_local, sample_data_dir, minilm_dir,
                                                                  tiny_qa_model_dir):
    options = dict(embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu", embedder_precision="float32",
                   shards=2)
    local = DocumentQA(tmp_path / "local", **options).index(sample_data_dir)
    through_ray = DocumentQA(tmp_path / "ray", **options).index(sample_data_dir, ray=True)
    assert through_ray == local
    for shard in ("shard-0", "shard-1"):
        expected, got = index_contents(tmp_path / "local" / shard), index_contents(tmp_path / "ray" / shard)
        assert got["files"] == expected["files"] and got["chunks"] == expected["chunks"]
        # A shard may hold none of the three files: the paths decide.
        assert np.abs(got["vectors"] - expected["vectors"]).max(initial=0.0) < 1e-5
    # Each file is in the shard its path hashes to, in both.
    placed = [len(index_contents(tmp_path / "ray" / shard)["files"]) for shard in ("shard-0", "shard-1")]
    assert sum(placed) == len(local.indexed) == 3


@pytest.mark.gpu
def test_the_clusters_gpu_embeds_as_a_local_gpu_does(tmp_path, ray_local, sample_data_dir, minilm_dir, tiny_qa_model_dir):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or ray_local.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("needs a CUDA GPU that torch and Ray see")
    options = dict(embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="auto")
    local = DocumentQA(tmp_path / "local", **options).index(sample_data_dir)
    through_ray = DocumentQA(tmp_path / "ray", **options).index(sample_data_dir, ray=True)
    assert through_ray == local
    expected, got = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    assert got["chunks"] == expected["chunks"] and got["settings"] == expected["settings"]
    assert expected["settings"][1]["precision"] == "float32"  # a GPU embeds a new index in float32
    assert np.abs(got["vectors"] - expected["vectors"]).max() < 1e-3


def test_bad_files_get_the_same_status_through_ray(tmp_path, ray_local, minilm_dir, monkeypatch):
    from spanqa.indexing.ingest import indexer as ingest

    monkeypatch.setattr(ingest, "ParsePool", functools.partial(ParsePool, job=misbehaving_parse))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text(FERRY, encoding="utf-8")
    write_corrupt_pdf(docs / "corrupt.pdf")
    (docs / "empty.pdf").write_bytes(b"")
    for name in ("hang.txt", "segfault.txt", "hog.txt"):
        (docs / name).write_text(f"{name}: {FERRY}", encoding="utf-8")
    options = dict(timeout_s=3.0, memory_mb=1024)

    local = DocumentQA(tmp_path / "local", embedder=str(minilm_dir), device="cpu").index(docs, **options)
    through_ray = DocumentQA(tmp_path / "ray", embedder=str(minilm_dir), device="cpu").index(docs, ray=True, **options)

    reasons = {Path(f.source).name: f.reason for f in through_ray.skipped}
    assert reasons == {Path(f.source).name: f.reason for f in local.skipped}
    assert reasons["hang.txt"] == "timed out after 3 s"
    assert reasons["segfault.txt"] == "parser crashed (SIGSEGV)"
    assert reasons["hog.txt"] == "out of memory (limit 1024 MB)"
    assert reasons["empty.pdf"] == "empty file (0 bytes)"
    assert reasons["corrupt.pdf"].startswith("corrupt PDF: ")
    assert [Path(f.source).name for f in through_ray.indexed] == ["good.txt"]
    assert through_ray.to_json() == local.to_json()
    # One chunk, embedded alone on both sides: the same int8 vector.
    expected, got = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    assert got["chunks"] == expected["chunks"]
    assert np.abs(got["vectors"] - expected["vectors"]).max() < 1e-5


def test_a_new_index_without_ocr_through_ray_records_its_settings(tmp_path, ray_local, minilm_dir):
    # Without OCR the run keeps the OCR engine an index records: a new index has none to keep.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.txt").write_text(FERRY, encoding="utf-8")
    report = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu").index(docs, ray=True, ocr="off")
    assert [Path(f.source).name for f in report.indexed] == ["ferry.txt"]
    settings = index_contents(tmp_path / "kb")["settings"]
    assert settings[2]["ocr"] is None


def test_a_ray_run_stopped_after_a_commit_resumes_where_it_stopped(tmp_path, ray_local, minilm_dir, monkeypatch):
    names = [f"note{n}.txt" for n in range(8)]
    docs = marked_notes(tmp_path, monkeypatch, {name: f"Note {n}. " for n, name in enumerate(names)})
    reported: list[str] = []

    def stop_after_the_first_commit(source: str) -> None:
        reported.append(Path(source).name)
        raise KeyboardInterrupt

    qa = DocumentQA(tmp_path / "kb", embedder=str(minilm_dir), device="cpu")
    with pytest.raises(KeyboardInterrupt):
        qa.index(docs, ray=RaySettings(embed_batch_files=1), on_file_done=stop_after_the_first_commit)
    assert len(reported) == 1
    # The writers commit on the cluster, so batches committed while the driver stopped are kept too;
    # the index holds whole files only.
    stored = DocumentQA(tmp_path / "kb").files()
    assert set(reported) <= {Path(f.source).name for f in stored}
    assert all(f.chunks == 1 for f in stored)

    for mark in (docs / ".parsed").glob("*"):
        mark.unlink()
    report = qa.index(docs, ray=True)
    assert sorted(Path(f.source).name for f in report.indexed) == names
    # The files committed before the stop were kept, not parsed again.
    assert [name for name, _ in marks_of(docs)] == sorted(set(names) - {Path(f.source).name for f in stored})


def test_a_writer_placed_on_a_node_that_is_gone_is_placed_again_on_one_that_is_there(tmp_path, ray_local, monkeypatch):
    from spanqa.indexing import FaissDocumentStore
    from spanqa.indexing.ingest.ray_writers import ShardWriters

    for name in ("shard-0", "shard-1"):
        FaissDocumentStore.create(tmp_path / name, embedder="e", dimension=4).close()
    here = ray_local.get_runtime_context().get_node_id()
    gone = "ab" * (len(here) // 2)  # a node the cluster lost, still listed alive
    nodes = ray_local.nodes
    monkeypatch.setattr(ray_local, "nodes", lambda: [*nodes(), {"NodeID": gone, "Alive": True}])
    writers = ShardWriters.start(ray_local, [tmp_path / "shard-0", tmp_path / "shard-1"], {}, None)
    try:
        assert writers.nodes == [here, here]  # as the writers answered
    finally:
        writers.stop()


def test_a_writer_that_cannot_open_its_shard_stops_the_run_naming_the_shared_file_system(tmp_path, ray_local):
    from spanqa.indexing.ingest.ray_writers import ShardWriters

    with pytest.raises(ClusterError, match=r"writer of shard 0 cannot start.*IndexNotFoundError.*same path on every node"):
        ShardWriters.start(ray_local, [tmp_path / "not-an-index"], {}, None)


@pytest.mark.slow
def test_the_shared_pdfs_through_ray_equal_local_indexing(tmp_path, ray_local, shared_data_dir, minilm_dir):
    pdf_dir = shared_data_dir / "pdfs"
    entries = json.loads((pdf_dir / "manifest.json").read_text(encoding="utf-8"))
    passwords = {Path(entry["file"]).name: entry["password"] for entry in entries if entry.get("password")}
    reader = shared_data_dir / "models" / "distilbert-base-cased-distilled-squad-arch"
    options = dict(embedder=str(minilm_dir), reader=str(reader), device="cpu", embedder_precision="float32")
    local = DocumentQA(tmp_path / "local", **options).index([pdf_dir], passwords=passwords)
    through_ray = DocumentQA(tmp_path / "ray", **options).index([pdf_dir], passwords=passwords, ray=True)
    assert through_ray == local  # the same statuses (OCR'd scans, encrypted, malformed files) and counts
    assert len(local.indexed) + len(local.skipped) == len(entries) and any(f.ocr_pages for f in local.indexed)
    expected, got = index_contents(tmp_path / "local"), index_contents(tmp_path / "ray")
    assert got["files"] == expected["files"] and got["settings"] == expected["settings"]
    assert got["chunks"] == expected["chunks"]
    assert np.abs(got["vectors"] - expected["vectors"]).max() < 1e-5


# -- a simulated two-node cluster ---------------------------------------------------------------------
# Last in the file: these replace the module's local Ray instance with a cluster of their own.


@contextlib.contextmanager
def two_node_cluster(**env_vars: str):
    """A head and a worker node on this machine (4 logical CPUs each), this process connected to it;
    yields (ray, the cluster, the worker node)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=4)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, runtime_env=worker_env(**env_vars))
        loopback_only(ray)
        assert len(ray.nodes()) == 2
        yield ray, cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_each_shard_is_written_on_a_node_of_its_own(tmp_path, minilm_dir, tiny_qa_model_dir, monkeypatch):
    from spanqa.indexing.ingest.ray_writers import ShardWriters

    names = [f"note{n:02d}.txt" for n in range(16)]
    docs = marked_notes(tmp_path, monkeypatch, {name: f"Note {n}: the ferry leaves at {n} o'clock. " for n, name in enumerate(names)})
    placed: list[list[str]] = []
    stop = ShardWriters.stop

    def note_where_the_writers_ran(writers: ShardWriters) -> None:
        placed.append(list(writers.nodes))  # each writer's own answer when it started
        stop(writers)

    monkeypatch.setattr(ShardWriters, "stop", note_where_the_writers_ran)
    options = dict(embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu", embedder_precision="float32",
                   shards=2)
    with two_node_cluster() as (ray, _, _):
        driver_node = ray.get_runtime_context().get_node_id()
        through_ray = DocumentQA(tmp_path / "ray", **options).index(docs, ray=True)
    [ran_on] = placed
    assert ran_on[0] == driver_node and len(set(ran_on)) == 2  # shard 0 beside the driver, shard 1 on the other node

    local = DocumentQA(tmp_path / "local", **options).index(docs)
    assert through_ray == local and len(local.indexed) == len(names)
    for shard in ("shard-0", "shard-1"):
        expected, got = index_contents(tmp_path / "local" / shard), index_contents(tmp_path / "ray" / shard)
        # 16 files spread by the hash of their paths: both shards hold some (all in one: 2 in 65,536).
        assert got["files"] and got["files"] == expected["files"] and got["chunks"] == expected["chunks"]
        assert np.abs(got["vectors"] - expected["vectors"]).max() < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 2])
def test_a_worker_node_lost_mid_run_costs_no_file_and_no_index(tmp_path, minilm_dir, tiny_qa_model_dir, monkeypatch,
                                                              shards):
    names = [f"note{n:02d}.txt" for n in range(16)]
    docs = marked_notes(
        tmp_path, monkeypatch, {name: f"Note {n}: the ferry leaves at {n} o'clock. " for n, name in enumerate(names)}
    )
    # Each parse takes 2 s, so files are still parsing on both nodes when the first batch commits.
    with two_node_cluster(SPANQA_TEST_PARSE_DELAY_S="2") as (ray, cluster, worker):
        worker_node = str(worker.all_processes["raylet"][0].process.pid)
        killed: list[str] = []

        def kill_the_worker_node(source: str) -> None:
            if not killed:
                killed.append(source)
                cluster.remove_node(worker, allow_graceful=False)

        # With 2 shards the worker node also holds shard-1's writer: its commits are lost with it.
        options = dict(embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu", shards=shards)
        qa = DocumentQA(tmp_path / "kb", **options)
        try:
            report = qa.index(docs, ray=RaySettings(embed_batch_files=2), on_file_done=kill_the_worker_node)
        except ClusterError as error:  # the other allowed outcome: a clear message, the index intact
            assert "run the same command again" in str(error)
            report = None
        assert killed
        assert worker_node in {node for _, node in marks_of(docs)}  # the lost node had parsed files

        # The index opens, holds whole files only, and answers.
        qa = DocumentQA(tmp_path / "kb", **options)
        stored = qa.files()
        assert stored
        for stored_file in stored:
            chunks = qa.search("ferry", top_k=50, filters={"field": "meta.source", "operator": "==",
                                                            "value": stored_file.source})
            assert len(chunks) == stored_file.chunks
        assert qa.search("When does the ferry leave?", top_k=1)
        if report is not None:
            assert sorted(Path(f.source).name for f in report.indexed) == names and report.skipped == []

        # A re-run on the node left (every shard's writer on it) completes the index and parses
        # only what was not committed.
        committed = {Path(f.source).name for f in stored}
        for mark in (docs / ".parsed").glob("*"):
            mark.unlink()
        again = qa.index(docs, ray=True)
        assert sorted(Path(f.source).name for f in again.indexed) == names and again.skipped == []
        assert sorted(name for name, _ in marks_of(docs)) == sorted(set(names) - committed)
        assert len(qa.files()) == len(names)
