"""Files and folders only their owner can read (issue 24): an index, its service database and the
uploads hold the text of every document in them, so they are made 0600 (folders 0700) whatever the
process umask, and an index made before is tightened when a writer opens it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
# SQLite's side files of a database in WAL mode (created with the database file's mode).
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_opener(path: str | os.PathLike, flags: int) -> int:
    """An `open(..., opener=private_opener)` whose file is 0600, whatever the umask, new or not (a
    file another user owns keeps its mode: that is theirs to set)."""
    descriptor = os.open(path, flags, PRIVATE_FILE)
    with suppress(OSError):
        os.fchmod(descriptor, PRIVATE_FILE)
    return descriptor


def create_private_file(path: Path) -> None:
    """Creates `path` empty and 0600 when it is missing, so that SQLite, opening it next, keeps that
    mode for it and gives it to its -wal and -shm files (sqlite3.connect would make it 0644)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    finally:
        os.close(descriptor)


def private_folder(path: Path) -> Path:
    """`path` (with its parents) made when missing, itself 0700 whatever the umask; an existing
    folder keeps its mode (it may be one the user made for more than this)."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_FOLDER)
    return path


def tighten(paths: Iterable[Path]) -> None:
    """Takes every permission of group and others off the existing `paths` (files 0600, folders 0700
    at most). Paths that are missing, or that this user may not change, are left as they are."""
    for path in paths:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
        except OSError:
            continue


def tighten_index(index_dir: Path) -> None:
    """The files directly in an index folder (database, side files, segments, manifest): an index
    made before files were private becomes private when a writer opens it."""
    try:
        entries = [entry for entry in index_dir.iterdir() if entry.is_file()]
    except OSError:
        return
    tighten(entries)


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database file and its side files."""
    return [path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)]
