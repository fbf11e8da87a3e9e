"""Access tokens of the service: who may ask, who may change the index, and which files each one sees.

A tokens file is JSON, `{"version": 1, "tokens": [{"name", "role", "scope", "sha256", "created_at"}]}`.
Only the SHA-256 of each token is stored: a token is 32 random bytes, so a plain hash is as hard to
reverse as the token is to guess, and no slow password hash is needed. The token itself is shown once,
when it is made. The file is rewritten atomically (temporary file, fsync, rename) under an advisory
lock, and a running server reads it again whenever its size or modification time changes, so tokens
added or revoked with `spanqa token` take effect without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanqa.errors import ConfigError
from spanqa.file_modes import private_opener
from spanqa.paths import user_path
from spanqa.service.database import now_utc

ROLES = ("read", "admin")
TOKEN_PREFIX = "sqa_"
FILE_VERSION = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a token's name, role and scope (folders it may see; empty: everything)."""

    name: str
    role: str
    scope: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_see(self, source: str) -> bool:
        """Whether the indexed file `source` (an absolute path) lies inside this principal's scope."""
        if not self.scope:
            return True
        return any(source == folder or source.startswith(folder.rstrip("/") + "/") for folder in self.scope)

    def scope_filter(self) -> dict[str, Any] | None:
        """The scope as a store filter, applied inside retrieval (None: no restriction)."""
        if not self.scope:
            return None
        return {"field": "meta.source", "operator": "under", "value": list(self.scope)}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "scope": list(self.scope)}


@dataclass(frozen=True)
class TokenRecord:
    """A stored token: everything but the token itself."""

    name: str
    role: str
    scope: tuple[str, ...]
    sha256: str
    created_at: str

    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.scope)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "role": self.role, "scope": list(self.scope),
            "sha256": self.sha256, "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> TokenRecord:
        try:
            record = cls(
                name=str(data["name"]), role=str(data["role"]), scope=tuple(str(s) for s in data.get("scope", [])),
                sha256=str(data["sha256"]), created_at=str(data.get("created_at", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"the tokens file '{path}' has a malformed entry {data!r}: fix or remove it") from exc
        if record.role not in ROLES or re.fullmatch(r"[0-9a-f]{64}", record.sha256) is None:
            raise ConfigError(f"the tokens file '{path}' has a malformed entry for {record.name!r}: fix or remove it")
        return record


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(
            f"token name {name!r} must be 1-64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r} must be one of {', '.join(ROLES)}")
    return role


def scope_paths(paths: list[str | Path] | tuple[str | Path, ...]) -> tuple[str, ...]:
    """Scope folders as the absolute paths indexed files are stored under."""
    resolved = []
    for path in paths:
        text = str(path)
        if text.strip() == "":
            raise ConfigError("a --scope path is empty: give a folder or file path")
        absolute = str(user_path(text))
        if absolute == "/":
            raise ConfigError("--scope / is everything: leave --scope out for a token that sees every file")
        resolved.append(absolute)
    return tuple(dict.fromkeys(resolved))


class TokenFile:
    """The tokens file at `path`: add, list and revoke tokens; authenticate a presented token."""

    def __init__(self, path: str | Path):
        self.path = user_path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) of the loaded file
        self._records: tuple[TokenRecord, ...] = ()

    # -- the file ------------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialises writers (two `spanqa token add` at once) with a lock file beside the tokens file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a", opener=private_opener) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> list[TokenRecord]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the tokens file '{self.path}': {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ConfigError(f"the tokens file '{self.path}' is not a spanqa tokens file ({{\"tokens\": [...]}})")
        return [TokenRecord.from_json(entry, self.path) for entry in data["tokens"]]

    def _write(self, records: list[TokenRecord]) -> None:
        payload = json.dumps({"version": FILE_VERSION, "tokens": [r.to_json() for r in records]}, indent=2)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        # Owner-only from the start: the hashes are not secrets, but the scopes and names are nobody else's.
        descriptor = private_opener(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(payload + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    # -- managing tokens -----------------------------------------------------------------------

    def add(self, name: str, role: str, scope: list[str | Path] | tuple[str | Path, ...] = ()) -> tuple[TokenRecord, str]:
        """A new token: its record (stored) and the token itself (shown once, never stored)."""
        check_name(name)
        check_role(role)
        folders = scope_paths(scope)
        with self._exclusive():
            records = self._read()
            if any(record.name == name for record in records):
                raise ConfigError(f"a token named {name!r} exists in '{self.path}': revoke it first or pick another name")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            record = TokenRecord(
                name=name, role=role, scope=folders, sha256=token_digest(token),
                created_at=now_utc(),
            )
            self._write(records + [record])
        return record, token

    def revoke(self, name: str) -> TokenRecord:
        with self._exclusive():
            records = self._read()
            kept = [record for record in records if record.name != name]
            if len(kept) == len(records):
                raise ConfigError(f"no token named {name!r} in '{self.path}' (spanqa token list shows the names)")
            self._write(kept)
        return next(record for record in records if record.name == name)

    def records(self) -> list[TokenRecord]:
        return self._read()

    # -- authenticating ------------------------------------------------------------------------

    def _current(self) -> tuple[TokenRecord, ...]:
        """The records, read again when the file changed since the last read."""
        try:
            status = self.path.stat()
            seen = (status.st_ino, status.st_size, status.st_mtime_ns)
        except FileNotFoundError:
            seen = None
        with self._lock:
            if seen != self._seen:
                # A file being replaced mid-read keeps the last good records rather than locking everyone out.
                try:
                    self._records = tuple(self._read())
                    self._seen = seen
                except ConfigError:
                    if self._seen is None and not self._records:
                        raise
            return self._records

    def authenticate(self, token: str) -> Principal | None:
        """The principal `token` belongs to, or None. Every stored hash is compared in constant time."""
        digest = token_digest(token)
        found = None
        for record in self._current():
            if hmac.compare_digest(digest, record.sha256):
                found = record
        return None if found is None else found.principal()

    def principal_named(self, name: str) -> Principal | None:
        """The principal of the token named `name` as the file holds it now (None: no such token)."""
        found = [record for record in self._current() if record.name == name]
        return found[-1].principal() if found else None

    def check_readable(self) -> None:
        """Raises ConfigError now (at server start) if the file cannot be used."""
        self._current()
