"""A full disk or a failing device never corrupts an index: every write of a commit, a merge, a
compaction, a quantizer training, a settings change and an index's creation is failed in turn
(tests/fault_writer.py under the LD_PRELOAD shim of tests/faults/failwrite.c), and each time the
index still reads its last commit, is sound, and takes the next commit once space returns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "fault_writer.py"


def inject(shim: Path, work: Path, index_type: str, operation: str, error: str, mode: str, stride: int = 1) -> dict:
    environment = {**os.environ, "LD_PRELOAD": str(shim), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(work), index_type, operation, error, mode, str(stride)],
        capture_output=True, text=True, env=environment, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("index_type", "operation", "error", "mode", "stride"),
    [
        ("flat", "commit", "ENOSPC", "persistent", 1),  # adds, deletes, overwrites, merges three segments
        ("flat", "compact", "EIO", "transient", 1),
        ("flat", "settings", "ENOSPC", "transient", 1),
        ("ivf", "quantizer", "ENOSPC", "persistent", 3),
        ("flat", "create", "ENOSPC", "persistent", 5),
    ],
)
def test_each_failed_write_leaves_the_last_commit_and_the_next_commit_works(
    failwrite_shim, tmp_path, index_type, operation, error, mode, stride
):
    outcome = inject(failwrite_shim, tmp_path, index_type, operation, error, mode, stride)
    assert outcome["writes"] > 5  # the operation was seen writing: the faults landed in it
    assert outcome["failed"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["persistent", "transient"])
@pytest.mark.parametrize("error", ["ENOSPC", "EIO"])
@pytest.mark.parametrize(
    ("index_type", "operation"),
    [("flat", "commit"), ("hnsw", "commit"), ("flat", "compact"), ("ivf", "quantizer"), ("flat", "settings"),
     ("flat", "create")],
)
def test_every_write_of_every_operation_under_every_fault(failwrite_shim, tmp_path, index_type, operation, error, mode):
    outcome = inject(failwrite_shim, tmp_path, index_type, operation, error, mode)
    assert outcome["failed"] > 0
