"""Files written whole or not at all: a temporary file, fsync, rename, fsync of the folder.

A crash leaves either the old file or the new one under the name, and at most a `.NAME.*.tmp`
leftover that the store's next writer removes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: Path, data: bytes) -> None:
    write_with(path, lambda temp_name: Path(temp_name).write_bytes(data))


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_with(path: Path, write: Callable[[str], Any]) -> None:
    """`write(temp_name)` fills a temporary file beside `path`, which then becomes `path`, durably."""
    file_descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(file_descriptor)
    try:
        write(temp_name)
        fsync_file(Path(temp_name))
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def is_leftover(name: str) -> bool:
    """Whether `name` is a temporary file of an interrupted `write_with`."""
    return name.startswith(".") and name.endswith(".tmp")


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory: Path) -> None:
    # Makes the renames themselves durable; not every platform lets a directory be opened for this.
    try:
        directory_descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_descriptor)
    except OSError:
        pass
    finally:
        os.close(directory_descriptor)


def remove_if_owner_ended(folder: Path, pid: str) -> None:
    """Removes `folder`, left by the process `pid` (its digits; anything else is kept), when that
    process no longer runs: one killed mid-work leaves its staging or scratch folder behind. A live
    process's folder, another user's included, stays."""
    if not pid.isdigit():
        return
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        shutil.rmtree(folder, ignore_errors=True)
    except OSError:
        pass  # alive, another user's
