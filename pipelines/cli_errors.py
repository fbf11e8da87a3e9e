"""The one line the `spanqa` command prints for an error that stops it, instead of a traceback.

spanqa's own errors say what is wrong and how to fix it; a database error says the index may be
damaged and how to check it; a failing disk or file says which and why; anything else is named by
its type and message, with the traceback shown when SPANQA_DEBUG=1.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import traceback

from spanqa.errors import SpanQAError, StorageError, is_storage_failure

DEBUG_VARIABLE = "SPANQA_DEBUG"


def debugging() -> bool:
    """Whether SPANQA_DEBUG asks for tracebacks (set, and not "", "0", "false" or "no")."""
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def report_error(exc: BaseException, index: str | None) -> int:
    """Prints `exc` to stderr as `spanqa: error: ...` (the traceback first with SPANQA_DEBUG=1) and
    returns the exit status, 1. `index` is the --index the command was given, if any."""
    if debugging():
        traceback.print_exception(exc)
    print(f"spanqa: error: {error_line(exc, index)}", file=sys.stderr)
    return 1


def error_line(exc: BaseException, index: str | None) -> str:
    if isinstance(exc, SpanQAError):
        return str(exc)
    if is_storage_failure(exc):
        return _one_line(str(StorageError("the command stopped", exc)))
    if isinstance(exc, sqlite3.Error):
        return _database_error(exc, index)
    if isinstance(exc, OSError):
        return _file_error(exc)
    return _one_line(
        f"unexpected {type(exc).__name__}: {exc} (run with {DEBUG_VARIABLE}=1 for the traceback)"
    )


def _database_error(exc: sqlite3.Error, index: str | None) -> str:
    check = f"run `spanqa check --index {index if index is not None else 'DIR'}`"
    reason = f"{type(exc).__name__}: {exc}"
    if "locked" in str(exc).lower() or "busy" in str(exc).lower():
        return _one_line(
            f"the index's database stayed locked by another process ({reason}): wait for it to finish and "
            f"try again; if no other spanqa uses the index, it may be damaged: {check}"
        )
    return _one_line(f"the index's database failed ({reason}): the index may be damaged: {check}")


def _file_error(exc: OSError) -> str:
    name = f" '{exc.filename}'" if exc.filename is not None else ""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return _one_line(f"permission denied{name}: check who owns it and its mode, or run as that user")
    if exc.errno == errno.ENOENT:
        return _one_line(f"no such file or folder{name}")
    return _one_line(f"{exc.strerror or type(exc).__name__}{name}")


def _one_line(text: str) -> str:
    return " ".join(text.split())
