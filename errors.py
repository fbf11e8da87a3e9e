"""The one error family of spanqa. Each message names the bad value and how to fix it."""

from __future__ import annotations

import errno
from pathlib import Path


class SpanQAError(Exception):
    """Base class of every error spanqa raises on purpose."""


class ConfigError(SpanQAError, ValueError):
    """An option has a value spanqa cannot use (bad top_k, unknown device, ...)."""


class IndexNotFoundError(SpanQAError):
    """The index directory does not exist or holds no spanqa index."""

    def __init__(self, index_dir: str | Path):
        self.index_dir = Path(index_dir)
        super().__init__(
            f"no spanqa index at '{self.index_dir}': build one first with "
            f"`spanqa index PATH... --index {self.index_dir}`"
        )


class IndexMismatchError(SpanQAError):
    """The index was built with settings (embedder, format) that differ from the ones asked for."""


class IndexBusyError(SpanQAError):
    """Another process is writing to the index (one writer at a time; readers are never blocked)."""


class StorageError(SpanQAError):
    """A write to disk failed: the disk (or the user's quota) is full, or the device reported an I/O
    error. Nothing committed before is lost; the same operation succeeds again once there is space.
    `full` tells a full disk (HTTP 507) from another I/O failure (HTTP 503)."""

    def __init__(self, what: str, cause: BaseException):
        self.full = is_disk_full(cause)
        self.cause = cause
        why = "the disk is full" if self.full else f"the disk reported an error ({_plain_cause(cause)})"
        fix = "free some space and try again" if self.full else "check the disk and try again"
        super().__init__(f"{what}: {why}; nothing committed before is lost: {fix}")


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
STORAGE_ERRNOS = DISK_FULL_ERRNOS | {errno.EIO, errno.EROFS, errno.EFBIG}
# SQLite's messages for SQLITE_FULL and SQLITE_IOERR (sqlite3 carries no errno).
SQLITE_FULL_MESSAGES = ("database or disk is full",)
SQLITE_IO_MESSAGES = ("disk i/o error", "attempt to write a readonly database")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (an OSError or a sqlite3 error) says the disk or quota is full."""
    if isinstance(error, OSError):
        return error.errno in DISK_FULL_ERRNOS
    return any(message in str(error).lower() for message in SQLITE_FULL_MESSAGES)


def is_storage_failure(error: BaseException) -> bool:
    """Whether `error` is the disk failing a write (full, quota, I/O error), not a bug or bad input."""
    if isinstance(error, StorageError):
        return True
    if isinstance(error, OSError):
        return error.errno in STORAGE_ERRNOS
    text = str(error).lower()
    return type(error).__module__ == "sqlite3" and any(m in text for m in SQLITE_FULL_MESSAGES + SQLITE_IO_MESSAGES)


def _plain_cause(cause: BaseException) -> str:
    # The OS's words without the file name (a server path must not reach users).
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause).split(":")[0] or type(cause).__name__


class ClusterError(SpanQAError):
    """Indexing on a Ray cluster could not start or stopped (no connection, the pipeline failed).
    What was committed before stays in the index; running the same command again resumes."""


class ChunkNotFoundError(SpanQAError, LookupError):
    """A passage names an indexed chunk that is no longer in the index (its file was indexed again,
    changed or removed since the passage was found)."""

    def __init__(self, chunk_ids: list[str], index_dir: str | Path):
        self.chunk_ids = list(chunk_ids)
        self.index_dir = Path(index_dir)
        more = f" (and {len(self.chunk_ids) - 1} more)" if len(self.chunk_ids) > 1 else ""
        super().__init__(
            f"chunk {self.chunk_ids[0]}{more} is no longer in the index at '{self.index_dir}' (its file was "
            "indexed again, changed or removed since the passage was found): search again and read the new passages"
        )


class ModelLoadError(SpanQAError):
    """A model could not be loaded from the hub id or local directory given."""

    @classmethod
    def from_cause(cls, what: str, model: str, cause: BaseException) -> "ModelLoadError":
        """The error for `model` (`what`: "embedder", "reader model") failing with `cause`, saying how
        to fix it."""
        reason = str(cause).strip().rstrip(".") or type(cause).__name__
        return cls(
            f"cannot load {what} '{model}': {reason}. A hub id needs network access on first use "
            "(later runs read the local cache); offline, pass the path of a local model directory"
        )


class DocumentError(SpanQAError):
    """One input file cannot be indexed; `reason` says why in a few words a user can act on."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_positive_int(name: str, value: object, hint: str = "") -> int:
    """`value` when it is a whole number >= 1 (not a bool); else a ConfigError naming `name`, the value and `hint`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be a whole number >= 1" + (f" {hint}" if hint else ""))
    return value
