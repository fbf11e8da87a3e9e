"""Metadata users attach to files when indexing (tags, departments, dates, numbers): checked, and
resolved to each file's dict, from `DocumentQA.index(meta=...)` or `spanqa index --meta/--meta-file`.

Every chunk of a file carries its metadata as flat keys beside the chunk's own (see `chunk_meta`),
so a filter reads it as `meta.KEY`. Keys are names (letters, digits, `_`, `-`; no `.`, which
filters read as nesting) other than ChunkMeta's own; values are JSON scalars or lists of them
(a list: several tags).
"""

from __future__ import annotations

import glob
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spanqa.chunk_meta import RESERVED_KEYS
from spanqa.errors import ConfigError
from spanqa.paths import user_path

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
SCALARS = (str, int, float, bool, type(None))

# What `DocumentQA.index(meta=...)` takes: one dict for every file, or a function of the file's path.
FileMeta = Mapping[str, Any] | Callable[[Path], Mapping[str, Any]]


def _check_value(key: str, value: Any, where: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: the value of '{key}' is {value!r}: give a finite number")
    if isinstance(value, SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            if not isinstance(item, SCALARS) or (isinstance(item, float) and not math.isfinite(item)):
                raise ConfigError(
                    f"{where}: the list of '{key}' holds {item!r}: list items must be strings, numbers, "
                    "true/false or null"
                )
        return list(value)
    raise ConfigError(
        f"{where}: the value of '{key}' is {value!r} ({type(value).__name__}): give a string, number, "
        "true/false, null or a list of those"
    )


def check_meta(meta: Any, where: str = "metadata") -> dict[str, Any]:
    """`meta` as a plain dict when its keys and values can be attached to chunks; else a ConfigError
    naming the bad key or value (`where` says whose metadata it is) and the fix."""
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{where} must be a JSON object / dict of KEY: VALUE, got {meta!r}")
    checked: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or KEY.fullmatch(key) is None:
            raise ConfigError(
                f"{where}: key {key!r} is not a name: use letters, digits, '_' and '-', starting with a letter "
                "or '_' (no '.': filters read meta.a.b as nesting)"
            )
        if key in RESERVED_KEYS:
            raise ConfigError(
                f"{where}: key '{key}' is spanqa's own chunk metadata ({', '.join(sorted(RESERVED_KEYS))}): "
                f"choose another name, e.g. 'doc_{key}'"
            )
        checked[key] = _check_value(key, value, where)
    return checked


def meta_for(meta: FileMeta | None) -> Callable[[Path], dict[str, Any]]:
    """The checked metadata of each file: `meta` itself for every file, or what `meta(path)` returns."""
    if meta is None:
        return lambda path: {}
    if callable(meta):
        return lambda path: check_meta(meta(path), f"metadata of {path}")
    fixed = check_meta(meta)
    return lambda path: dict(fixed)


def parse_meta_option(text: str) -> tuple[str, Any]:
    """A `--meta KEY=VALUE`: VALUE is a JSON number, true/false or null when it parses as one, else the string."""
    key, separator, raw = text.partition("=")
    if not separator:
        raise ConfigError(f"--meta {text!r} is not KEY=VALUE: write e.g. --meta department=hr")
    key = key.strip()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    # Only numbers, true/false and null are read as JSON: anything else (a quoted string, a list,
    # NaN) is the text as written.
    if not isinstance(value, (int, float, bool, type(None))) or (isinstance(value, float) and not math.isfinite(value)):
        value = raw
    check_meta({key: value}, f"--meta {text}")
    return key, value


def gathered(options: list[tuple[str, Any]] | None) -> dict[str, Any] | None:
    """Repeated `--meta` options (parsed) as one dict; a key given several times is the list of its
    values (`--meta tag=hr --meta tag=policy`: two tags)."""
    if options is None:
        return None
    meta: dict[str, Any] = {}
    for key, value in options:
        if key in meta:
            previous = meta[key]
            meta[key] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            meta[key] = value
    return meta


class MetaFile:
    """A `--meta-file` JSON object mapping file paths, folders (every file below) or glob patterns
    (relative to the JSON file's folder; `**` for any depth) to metadata. A file matched by several
    entries gets them all, later entries' keys overriding earlier ones'."""

    def __init__(self, path: str | Path):
        self.path = user_path(path)
        try:
            mapping = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the metadata file '{self.path}': {exc}") from exc
        if not isinstance(mapping, dict):
            raise ConfigError(
                f"the metadata file '{self.path}' must hold one JSON object: "
                '{"reports/*.pdf": {"department": "finance"}, "memo.txt": {"tag": ["hr", "policy"]}}'
            )
        folder = self.path.resolve().parent
        # Patterns are expanded once, here: (files matched, folders matched, metadata) per entry.
        self.entries: list[tuple[set[str], list[str], dict[str, Any]]] = []
        for pattern, meta in mapping.items():
            checked = check_meta(meta, f"the metadata file '{self.path}', entry {pattern!r}")
            found = [Path(match).resolve() for match in glob.glob(str(folder / Path(pattern).expanduser()), recursive=True)]
            files = {str(match) for match in found if not match.is_dir()}
            folders = [str(match).rstrip("/") + "/" for match in found if match.is_dir()]
            self.entries.append((files, folders, checked))

    def __call__(self, path: Path) -> dict[str, Any]:
        resolved = str(Path(path).resolve())
        meta: dict[str, Any] = {}
        for files, folders, entry in self.entries:
            if resolved in files or any(resolved.startswith(folder) for folder in folders):
                meta.update(entry)
        return meta


def combined(run_meta: Mapping[str, Any] | None, meta_file: MetaFile | None) -> FileMeta | None:
    """`--meta` for every file with a `--meta-file`'s entries added (overriding the same keys)."""
    if meta_file is None:
        return run_meta
    base = {} if run_meta is None else dict(run_meta)
    return lambda path: {**base, **meta_file(path)}
