"""Crash safety: writers SIGKILLed at random moments leave an index holding whole batches only,
consistent between SQLite and FAISS, searchable, and resumable; readers never see half a batch."""

from __future__ import annotations

import concurrent.futures
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from crash_writer import batch_vectors, committed_batches, expected_contents

from spanqa.indexing.store.faiss_store import FaissDocumentStore

WRITER = Path(__file__).with_name("crash_writer.py")
BATCH_SIZE = 300
LINE_TIMEOUT_S = 300  # a writer that prints nothing for this long has hung: fail instead of waiting forever


class Writers:
    """The crash_writer process that forks writers on demand; its output lines are read by a thread
    into a queue, so a test can wait for a writer's next commit or its exit."""

    def __init__(self, index_dir: Path, batches: int, index_type: str):
        environment = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), str(index_dir), str(batches), str(BATCH_SIZE), index_type],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next_line() == "ready"

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("closed")

    def next_line(self) -> str:
        return self.lines.get(timeout=LINE_TIMEOUT_S)

    def start(self) -> int:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return int(self.next_line())

    def next_commit(self) -> int | None:
        """Waits for the writer's next commit; None if it exits first (its status is kept for `status`)."""
        line = self.next_line()
        if line.startswith("exit"):
            self._exit = line
            return None
        return int(line.split()[1])

    def status(self) -> int:
        line = getattr(self, "_exit", None)
        self._exit = None
        while line is None or not line.startswith("exit"):
            line = self.next_line()
        return int(line.split()[1])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def check_index(index_dir: Path, batches_total: int) -> int:
    """Whole batches only, SQLite and FAISS agreeing, a query answered; returns the batch count."""
    if not FaissDocumentStore.exists(index_dir):
        return 0  # killed while the first writer created it: no index yet, and nothing half-made counts as one
    store = FaissDocumentStore.open(index_dir)
    batches = committed_batches(store, BATCH_SIZE)
    contents = {doc.id: doc.content for doc in store.filter_documents()}
    assert contents == expected_contents(batches, BATCH_SIZE), f"not a batch boundary ({len(contents)} documents)"
    assert store.count_documents() == len(contents)
    assert store.verify() == []
    if batches > 0:
        last = batches - 1
        query = batch_vectors(last, BATCH_SIZE)[5]
        best = store.search(query.tolist(), top_k=3)[0]
        assert best.id == f"b{last}-5" and best.score == pytest.approx(1.0, abs=1e-4)
        page_two = store.search(query.tolist(), top_k=5, filters={"field": "meta.page", "operator": "==", "value": 2})
        assert len(page_two) == 5 and all(doc.meta["page"] == 2 for doc in page_two)
    # Every segment the commit names is there; files of an interrupted commit wait for the next writer.
    files = {p.name for p in index_dir.iterdir() if p.name.startswith("segment.")}
    named = {name for name, _, _, _ in store.segments}
    assert named <= files and len(files - named) <= 4, (sorted(files), sorted(named))
    store.close()
    assert batches <= batches_total
    return batches


def seconds_per_batch(scratch_dir: Path, index_type: str, batches: int = 8) -> float:
    """How long one batch (write + commit) takes a writer on this machine, start-up included."""
    writers = Writers(scratch_dir, batches, index_type)
    try:
        started = time.monotonic()
        writers.start()
        assert writers.status() == 0
        return (time.monotonic() - started) / batches
    finally:
        writers.close()


def kill_and_resume(index_dir: Path, index_type: str, kills: int, batches_total: int, batches_per_kill: float) -> set[int]:
    """Kills a writer `kills` times, each after a random delay of up to `batches_per_kill` batches'
    time on this machine (so kills spread over the run however fast the machine is)."""
    max_delay_s = batches_per_kill * seconds_per_batch(index_dir.with_name(index_dir.name + "-calibration"), index_type)
    rng = random.Random(1234)
    writers = Writers(index_dir, batches_total, index_type)
    seen = set()
    try:
        for _ in range(kills):
            pid = writers.start()
            # Half the kills wait for a commit of this run first, so the run makes progress whatever
            # the machine's load; the others may land while the writer opens the index and resumes.
            if rng.random() < 0.5:
                writers.next_commit()
            time.sleep(rng.uniform(0.0, max_delay_s))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = writers.status()
            assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, f"writer failed with status {status}"
            seen.add(check_index(index_dir, batches_total))
        # Resuming finishes the job.
        writers.start()
        assert writers.status() == 0
        assert check_index(index_dir, batches_total) == batches_total
    finally:
        writers.close()
    return seen


def test_writers_killed_at_random_moments_leave_whole_batches_and_resume(tmp_path):
    seen = kill_and_resume(tmp_path / "index", "flat", kills=40, batches_total=40, batches_per_kill=2.0)
    assert len(seen) > 5  # the kills landed at many different points of the run


@pytest.mark.slow
@pytest.mark.parametrize(("index_type", "kills"), [("flat", 300), ("hnsw", 120), ("ivf", 120)])
def test_many_kills_at_random_moments(tmp_path, index_type, kills):
    # ivf: the index turns from flat to IVF at batch 34 (10,000 vectors), inside the killed runs.
    seen = kill_and_resume(tmp_path / "index", index_type, kills=kills, batches_total=80, batches_per_kill=2.0)
    # The kills landed at many points of the run (fewer distinct ones where commits are slower).
    assert len(seen) > 10


def test_a_reader_polling_during_writes_only_sees_whole_batches(tmp_path):
    index_dir = tmp_path / "index"
    writers = Writers(index_dir, 12, "flat")
    waiter = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        writers.start()
        # The writer's exit status arrives in the background; polling stops once it has, so a writer
        # that fails or dies ends the test instead of hanging it (no clock involved).
        finished = waiter.submit(writers.status)
        while not FaissDocumentStore.exists(index_dir) and not finished.done():
            time.sleep(0.01)
        assert FaissDocumentStore.exists(index_dir), f"writer exited with {finished.result()} before creating the index"
        reader = FaissDocumentStore.open(index_dir)
        seen = set()
        while True:
            last_look = finished.done()  # once the writer is done, one more snapshot: the final one
            # One call reads one snapshot: it must be exactly the state after some whole batch.
            contents = {doc.id: doc.content for doc in reader.filter_documents()}
            batches = len({doc_id.split("-")[0] for doc_id in contents if doc_id.endswith("-2")})
            assert contents == expected_contents(batches, BATCH_SIZE), f"{len(contents)} documents"
            if batches > 0:
                # Commits only add documents here, so a later snapshot has at least as many.
                assert len(reader.search(np.ones(64).tolist(), top_k=10)) == 10
            seen.add(batches)
            if last_look:
                break
        assert finished.result() == 0
        assert max(seen) == 12
        assert len(seen) > 2
    finally:
        waiter.shutdown(wait=False)
        writers.close()
