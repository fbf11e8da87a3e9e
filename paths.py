"""Paths a user gives spanqa, normalised in one place: `user_path` for index folders, files and
roots; `model_reference` for a model option, which is either a hub id or a local directory.

Plain Python, no third-party imports: the lowest layer, beside errors and settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from spanqa.errors import ModelLoadError


def user_path(path: str | os.PathLike[str]) -> Path:
    """A path as a user wrote it (`~/kb`, `../docs`, `index/`), made absolute: the user's home
    expanded, then resolved against the working directory (symbolic links followed, as the index
    records its files). Every index folder, file and root a user names goes through here."""
    return Path(path).expanduser().resolve()


def indexed_under(source: str, path: str | os.PathLike[str]) -> bool:
    """Whether the indexed `source` (an absolute path) is the file `path` or lies below the folder `path`."""
    root = str(user_path(path))
    return source == root or source.startswith(root.rstrip("/") + "/")


def model_reference(model: str, option: str = "the model") -> str:
    """A hub id stays as it is; a local directory becomes its absolute path, so the index can name it.
    A value that can only be a path (see `looks_like_path`) and is no directory is a ModelLoadError
    saying so (the hub would answer that it is not a valid repo id); `option` names the setting."""
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return str(user_path(candidate))
    if looks_like_path(str(model)):
        what = f"'{model}' is a file, not a model directory" if candidate.exists() else f"no such directory '{model}'"
        raise ModelLoadError(f"{what} ({option} takes a hub id like org/name or a local model directory)")
    return model


def looks_like_path(model: str) -> bool:
    """Whether a model name can only be a path: absolute, ./ ../ ~, a Windows drive, or more than one
    "/" (a hub id is NAME or ORG/NAME)."""
    return (
        model.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or model in (".", "..")
        or model.count("/") > 1
        or "\\" in model
        or (len(model) > 1 and model[0].isalpha() and model[1] == ":")
    )
