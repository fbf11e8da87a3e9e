"""How the service shows server paths to users: relative to what was indexed, never absolute.

An indexed file keeps its absolute path on the server (the store's `source`, the file's id is
derived from it); a user sees its display form (`display_source`):

- an upload, `<uploads>/<folder…>/<sha256>.<type>`, shows as `folder/…/name`, the name it was
  uploaded under (`name` alone at the top level);
- a file under an indexed root folder R (`store.roots()`: the paths indexing runs were given)
  shows as `R's name/relative/path`; the deepest such root wins; a root that is a file shows as its
  name;
- a file under no known root (an index made before roots were recorded) shows as its name.

`redact` applies the same rule to every path of the server's folders inside a message (an error's
detail, a job's reason), and shows any other absolute path by its last name, so no server path
leaves in a response.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

# The characters a path in a message ends before (whitespace, quotes), and the punctuation a
# sentence may put right after a path ("duplicate of /a/b.pdf.", "'/a/b': ...").
_PATH_TAIL = r"[^\s'\"`]*"
_TRAILING = ".,;:!?)]}>"
# Any absolute path of two names or more (not preceded by a word, a dot, a colon or a slash, so
# URLs and relative paths are left alone), except the API's own routes.
_ANY_PATH = re.compile(r"(?<![\w.~:/\\-])/(?!v1/|static/)[^\s'\"`/]+(?:/[^\s'\"`/]+)+/?")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _relative(path: str, folder: str) -> tuple[str, ...]:
    return tuple(part for part in path[len(folder.rstrip("/")) :].split("/") if part)


def _name(path: str) -> str:
    return PurePosixPath(path).name


def display_source(
    source: str, roots: Iterable[str], uploads_dir: str | None, upload_names: Mapping[str, str]
) -> str:
    """`source` (an absolute server path) as a user sees it; see the module docstring."""
    if uploads_dir is not None and _under(source, uploads_dir):
        parts = _relative(source, uploads_dir)
        if not parts:
            return _name(uploads_dir)
        return "/".join((*parts[:-1], upload_names.get(source, parts[-1])))
    deepest = max((root for root in roots if _under(source, root)), key=len, default=None)
    if deepest is None:
        return _name(source)
    head = _name(deepest)
    return "/".join(part for part in (head, *_relative(source, deepest)) if part) or _name(source)


def display_scope(
    entry: str, roots: Iterable[str], uploads_dir: str | None, upload_names: Mapping[str, str]
) -> str:
    """A token's scope entry (an absolute folder or file) as the token sees it: the same rule."""
    return display_source(entry, roots, uploads_dir, upload_names)


def redact(
    text: str, roots: Iterable[str], uploads_dir: str | None, upload_names: Mapping[str, str],
    index_dir: str | None = None,
) -> str:
    """`text` with every server path in its display form: paths under the index folder, the uploads
    folder or a root (longest first) by `display_source` (the index folder counting as a root), any
    other absolute path by its last name."""
    known = [root for root in roots if root.strip("/")]
    folders = sorted({*known, *(f for f in (index_dir, uploads_dir) if f is not None and f.strip("/"))},
                     key=len, reverse=True)
    shown_roots = known + ([index_dir] if index_dir is not None and index_dir.strip("/") else [])
    if folders:
        prefixes = "|".join(re.escape(folder.rstrip("/")) for folder in folders)
        pattern = re.compile(rf"(?<![\w.~/\\-])(?:{prefixes})(?![^/\s'\"`{re.escape(_TRAILING)}]){_PATH_TAIL}")

        def shown(match: re.Match) -> str:
            path, trailing = _split_trailing(match.group(0))
            return display_source(path, shown_roots, uploads_dir, upload_names) + trailing

        text = pattern.sub(shown, text)

    def named(match: re.Match) -> str:
        path, trailing = _split_trailing(match.group(0))
        return _name(path.rstrip("/")) + trailing

    return _ANY_PATH.sub(named, text)


def _split_trailing(path: str) -> tuple[str, str]:
    stripped = path.rstrip(_TRAILING)
    return stripped, path[len(stripped) :]


@dataclass(frozen=True)
class PathView:
    """What the service needs to show paths: the index's roots, its folders, the uploads' names."""

    roots: tuple[str, ...] = ()
    uploads_dir: str | None = None
    index_dir: str | None = None
    upload_names: Mapping[str, str] = field(default_factory=dict)

    def source(self, source: str) -> str:
        return display_source(source, self.roots, self.uploads_dir, self.upload_names)

    def scope(self, entries: Iterable[str]) -> list[str]:
        return [display_scope(entry, self.roots, self.uploads_dir, self.upload_names) for entry in entries]

    def redact(self, text: str) -> str:
        return redact(text, self.roots, self.uploads_dir, self.upload_names, self.index_dir)

    def folders(self, shown: str) -> list[str]:
        """The server folders a folder shown as `shown` stands for (a root's name and a path under it;
        an upload folder)."""
        parts = [part for part in shown.strip("/").split("/") if part not in ("", ".", "..")]
        if not parts:
            return []
        found = [
            "/".join((root.rstrip("/"), *parts[1:])) for root in self.roots if _name(root) == parts[0]
        ]
        if self.uploads_dir is not None:
            found.append("/".join((self.uploads_dir.rstrip("/"), *parts)))
        return found


SOURCE_OPERATORS = ("==", "!=", "in", "not in")


def server_filters(filters: Any, sources_shown: Callable[[str], list[str]], folders_shown: Callable[[str], list[str]]) -> Any:
    """`filters` (Haystack syntax) with every `meta.source` value a user wrote in the form users see
    turned into the server paths it stands for, so that a filter on a `source` taken from an answer
    works: `sources_shown(value)` gives the server paths of the files shown as `value`,
    `folders_shown(value)` the server folders a shown folder stands for (for `under`). A value that
    stands for nothing is kept as it is (a server path, or a file that is not there: matches nothing
    new). Anything malformed is left for the filter checks to refuse."""
    if not isinstance(filters, dict):
        return filters
    if "conditions" in filters and isinstance(filters["conditions"], list):
        return {**filters, "conditions": [server_filters(c, sources_shown, folders_shown) for c in filters["conditions"]]}
    if filters.get("field") != "meta.source" or "value" not in filters:
        return filters
    operator, value = filters.get("operator"), filters["value"]
    translate = folders_shown if operator == "under" else sources_shown if operator in SOURCE_OPERATORS else None
    values = value if isinstance(value, list) else [value]
    if translate is None or not values or not all(isinstance(v, str) for v in values):
        return filters
    translated = list(dict.fromkeys(server for v in values for server in (translate(v) or [v])))
    if isinstance(value, list) or operator == "under":
        return {**filters, "value": translated}
    if len(translated) == 1:
        return {**filters, "value": translated[0]}
    return {**filters, "operator": "in" if operator == "==" else "not in", "value": translated}
