"""The on-disk cache of the int8 ONNX models (the reader's fast mode, the int8 reranker, the int8
embedder): each is built once per model and build, then loaded from the cache.

An entry is `<cache>/onnx-int8/<kind>-<key>.onnx` with its sidecar `<kind>-<key>.json` (the sha256
and size of the .onnx bytes, and what the key was made of). The key hashes the model files'
contents, the versions of the packages that make or read the graph, the kind's format version and
every build setting that changes the graph, so a changed model, setting or package gets a new entry.
Both files are written atomically (the .onnx first, its sidecar after); a load checks the bytes
against the sidecar, and an entry that is truncated, corrupt, without its sidecar or that ONNX
Runtime cannot load is removed and rebuilt, with a warning. A cache folder that cannot be written
(a read-only home) costs the build at every load, as without a cache, and one warning.

A model without files on disk (built in memory) has nothing to key by: it is built every time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from spanqa.atomic_files import is_leftover, write_atomically, write_json_atomically
from spanqa.file_modes import private_folder
from spanqa.paths import user_path

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_FOLDER = "onnx-int8"
# (path, size, mtime, ctime, inode) -> sha256 of the model files already hashed: a warm load stats
# the files instead of reading them (hashing DistilBERT's 260 MB costs 0.2 s on the 2-core machine of
# bench/README.md). The ctime is the kernel's: restoring a file's mtime after a change leaves it moved.
FILE_HASHES = "file-hashes.json"
# The packages whose version changes the built graph: spanqa (the build code), ONNX Runtime (the
# quantiser, and the runtime reading the file), onnx, torch (the exporter), transformers (the models' code).
VERSIONED_PACKAGES = ("spanqa", "onnxruntime", "onnx", "torch", "transformers")
# A temporary file of a writer killed mid-write is removed by a later writer once this old.
LEFTOVER_SECONDS = 3600
# What the int8 embedder reads of a hub repository: configs, tokenizer, weights. Not the rest (the
# all-MiniLM-L6-v2 repository also holds ONNX, OpenVINO, TensorFlow and Rust copies of the model).
HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors"]

_warned_folders: set[Path] = set()


@dataclass(frozen=True)
class Int8Build:
    """What one int8 ONNX model is built from, which is what its cache entry is keyed by."""

    kind: str  # "reader", "reranker", "embedder": the entry's name starts with it
    format_version: str  # the kind's build format: bumped when its export or quantisation changes
    source_dir: Path | None  # the model's files; None: a model in memory only, built without caching
    settings: Mapping[str, Any]  # every other setting that changes the graph (JSON values)


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """What `load_or_build` opened, and the cache entry it came from or went to (None: not cached)."""

    value: T
    path: Path | None


def cache_directory() -> Path:
    """`SPANQA_CACHE_DIR`, else ~/.cache/spanqa."""
    configured = os.environ.get("SPANQA_CACHE_DIR")
    return Path.home() / ".cache" / "spanqa" if configured is None or configured == "" else user_path(configured)


def resolve_model_directory(model: str) -> Path:
    """A local directory as is; a hub id through the hub's local cache (downloaded when online)."""
    path = user_path(model)
    if path.is_dir():
        return path
    # huggingface_hub (a dependency of transformers) is needed for a hub id only.
    from huggingface_hub import snapshot_download

    directory = Path(snapshot_download(model, allow_patterns=HUB_FILES))
    if not any(directory.glob("*.safetensors")):
        directory = Path(snapshot_download(model, allow_patterns=[*HUB_FILES, "pytorch_model.bin"]))
    return directory


def model_source_directory(model: str) -> Path | None:
    """The folder holding the files of `model` (a local directory or a hub id) that transformers
    loaded: the directory itself, or the snapshot of the hub's local cache, looked up there without
    the network; None when that cache holds no snapshot of it."""
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return user_path(candidate)
    # huggingface_hub (a dependency of transformers) is needed for a hub id only.
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def package_versions() -> dict[str, str]:
    """The installed version of each of VERSIONED_PACKAGES ("not installed" for one that is not)."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def model_files_digest(directory: Path, hashes_file: Path | None) -> str:
    """One sha256 of the names and contents of every file below `directory` (hidden ones aside);
    `hashes_file` remembers each file's hash, so an unchanged file is not read again."""
    known = _read_hashes(hashes_file)
    updated = dict(known)
    digest = hashlib.sha256()
    files = sorted(
        path for path in directory.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )
    for path in files:
        real = path.resolve()  # a hub snapshot's files are links to its blobs
        stat = real.stat()
        stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        remembered = known.get(str(real))
        if remembered is not None and remembered[:4] == stamp:
            file_hash = remembered[4]
        else:
            file_hash = _file_sha256(real)
            updated[str(real)] = [*stamp, file_hash]
        digest.update(f"{path.relative_to(directory).as_posix()}\0{file_hash}\n".encode())
    if hashes_file is not None and updated != known:
        _write_hashes(hashes_file, updated)
    return digest.hexdigest()


def build_key(build: Int8Build, hashes_file: Path | None) -> dict[str, Any]:
    """What a cache entry is keyed by (recorded in its sidecar): the model files' digest, the package
    versions, the kind's format and its build settings."""
    if build.source_dir is None:
        raise ValueError(f"the {build.kind} model has no files to key a cache entry by")
    return {
        "kind": build.kind,
        "format": build.format_version,
        "versions": package_versions(),
        "settings": dict(build.settings),
        "model_files": model_files_digest(build.source_dir, hashes_file),
    }


def entry_path(folder: Path, key: dict[str, Any]) -> Path:
    """The .onnx file of the entry `key` names in the cache `folder`."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return folder / f"{key['kind']}-{name}.onnx"


def load_or_build(
    build: Int8Build,
    make: Callable[[Path], None],
    open_model: Callable[[bytes], T],
    cache_dir: Path | None = None,
) -> Loaded[T]:
    """`open_model` of the int8 model `build` describes: from its cache entry in `cache_dir` (None:
    `cache_directory()`) when there is a sound one, else from `make(target)`, which writes the model
    at `target` (its folder, a temporary one, may hold intermediate files), then cached."""
    if build.source_dir is None:
        return Loaded(_make_and_open(make, open_model)[1], None)
    folder = (cache_directory() if cache_dir is None else cache_dir) / CACHE_FOLDER
    try:
        key = build_key(build, folder / FILE_HASHES)
    except OSError as error:  # a model file that cannot be read (it loaded without it): nothing to key by
        logger.warning(
            "cannot read the files of %s to key its int8 model (%s): building it uncached", build.source_dir, error
        )
        return Loaded(_make_and_open(make, open_model)[1], None)
    path = entry_path(folder, key)
    value = _open_entry(path, open_model)
    if value is not None:
        return Loaded(value, path)
    data, value = _make_and_open(make, open_model)
    try:
        _store(path, data, key)
    except OSError as error:
        _warn_unwritable(folder, error)
        return Loaded(value, None)
    return Loaded(value, path)


def load_cached(build: Int8Build, open_model: Callable[[bytes], T], cache_dir: Path | None = None) -> T | None:
    """`open_model` of the cache entry of `build` when there is a sound one, without building
    anything (None: none yet, an unsound one, removed, or a model without files to key by)."""
    if build.source_dir is None:
        return None
    folder = (cache_directory() if cache_dir is None else cache_dir) / CACHE_FOLDER
    try:
        key = build_key(build, folder / FILE_HASHES)
    except OSError:  # unreadable model files: load_or_build says so when it builds
        return None
    return _open_entry(entry_path(folder, key), open_model)


def sidecar_path(path: Path) -> Path:
    """The sidecar of the entry `path`: its checksum and what its key was made of."""
    return path.with_suffix(".json")


def _make_and_open(make: Callable[[Path], None], open_model: Callable[[bytes], T]) -> tuple[bytes, T]:
    with tempfile.TemporaryDirectory(prefix="spanqa-onnx-") as work:
        target = Path(work) / "model-int8.onnx"
        make(target)
        data = target.read_bytes()
    return data, open_model(data)


def _open_entry(path: Path, open_model: Callable[[bytes], T]) -> T | None:
    """The entry at `path` opened; None when there is none, or when it was unsound (then removed)."""
    try:
        if not path.is_file():
            return None
        data = path.read_bytes()
        problem = _entry_problem(path, data)
    except OSError as error:  # an unreadable cache folder: the build's store will say so
        logger.debug("cannot read the cached int8 model %s: %s", path, error)
        return None
    if problem is None:
        try:
            return open_model(data)
        except Exception as error:  # noqa: BLE001 - ONNX Runtime raises its own types for a bad file
            problem = f"not loadable by ONNX Runtime ({type(error).__name__}: {error})"
    logger.warning("the cached int8 model %s is %s: removing and rebuilding it", path, problem)
    for stale in (path, sidecar_path(path)):
        try:
            stale.unlink(missing_ok=True)
        except OSError:
            pass
    return None


def _entry_problem(path: Path, data: bytes) -> str | None:
    """What is wrong with the entry's bytes `data` by its sidecar; None: nothing."""
    try:
        recorded = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        size, checksum = int(recorded["bytes"]), str(recorded["sha256"])
    except FileNotFoundError:
        return "without its checksum file"
    except (ValueError, KeyError, TypeError):
        return "recorded in an unreadable checksum file"
    if len(data) != size:
        return f"truncated ({len(data)} of {size} bytes)"
    if hashlib.sha256(data).hexdigest() != checksum:
        return "corrupt (its bytes do not match their checksum)"
    return None


def _store(path: Path, data: bytes, key: dict[str, Any]) -> None:
    """The entry's .onnx, then its sidecar, each written atomically (owner-only)."""
    private_folder(path.parent)
    _remove_leftovers(path.parent)
    write_atomically(path, data)
    sidecar = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "key": key}
    write_json_atomically(sidecar_path(path), sidecar)


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of writers killed mid-write, once they are surely not being written."""
    cutoff = time.time() - LEFTOVER_SECONDS
    for entry in folder.iterdir():
        try:
            if is_leftover(entry.name) and entry.stat().st_mtime < cutoff:
                entry.unlink()
        except OSError:
            continue


def _warn_unwritable(folder: Path, error: OSError) -> None:
    if folder in _warned_folders:
        return
    _warned_folders.add(folder)
    logger.warning(
        "cannot write the int8 model cache in %s (%s): int8 models are built at every load; set "
        "SPANQA_CACHE_DIR to a writable folder to build each once",
        folder, error,
    )


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:  # hashlib.file_digest is Python 3.11's; spanqa runs on 3.10
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_hashes(hashes_file: Path | None) -> dict[str, list[Any]]:
    if hashes_file is None:
        return {}
    try:
        data = json.loads(hashes_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, unreadable or torn: every file is hashed again
        return {}
    if not isinstance(data, dict):
        return {}
    return {path: value for path, value in data.items() if isinstance(value, list) and len(value) == 5}


def _write_hashes(hashes_file: Path, hashes: dict[str, list[Any]]) -> None:
    """The remembered hashes, less those of files that are gone; not written when the folder is not
    writable (the next load hashes again)."""
    kept = {path: value for path, value in hashes.items() if os.path.exists(path)}
    try:
        private_folder(hashes_file.parent)
        write_json_atomically(hashes_file, kept)
    except OSError as error:
        logger.debug("cannot remember the model files' hashes in %s: %s", hashes_file, error)
