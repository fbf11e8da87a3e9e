"""Haystack metadata filters as SQL over the store's `chunks` table, so a search can be restricted to
the matching chunk ids before FAISS ranks them.

Filter syntax is Haystack's: a comparison `{"field": "meta.page", "operator": "==", "value": 3}` or a
logical node `{"operator": "AND" | "OR" | "NOT", "conditions": [...]}` (NOT: not all of them).
Fields: `id`, `content`, `meta.KEY` (nested: `meta.a.b`). Operators: `==`, `!=`, `>`, `>=`, `<`,
`<=`, `in`, `not in`. Semantics follow `haystack.utils.filters.document_matches_filter`: a missing
field equals None, `!=` and `not in` match it, ordering comparisons never do; strings are ordered
only as ISO dates (compared as instants, via SQLite's julianday()).

Metadata values are indexed (`chunk_database.chunk_meta`: one row per value, by key and value, and
by key and number for ordering), so a comparison on a top-level key (`meta.department`,
`meta.year`, `meta.tags`) with a value reads that index instead of every chunk's JSON; comparisons
with None, nested keys and positional keys (`chunk_database.UNINDEXED_META`) read the JSON.

Two operators are spanqa's own. `contains` (value: a scalar, or a list meaning any of them) matches
a list field holding that value (`{"field": "meta.tags", "operator": "contains", "value": "hr"}`),
or a scalar field equal to it: tags are lists, and Haystack's `==` compares a list as a whole.
And `under` (value: a path, or a list of paths) matches a string field
that is one of those paths or lies below one of them as a folder (`/kb/hr` matches `/kb/hr` and
`/kb/hr/a.pdf`, not `/kb/hrx.pdf`). On `meta.source` it reads the indexed column by range, so
a server can confine a user to folders inside every search (spanqa.service scopes).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from spanqa.errors import ConfigError
from spanqa.indexing.chunk_database import UNINDEXED_META

COMPARISONS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in", "under", "contains")
LOGICAL = ("AND", "OR", "NOT")


def filter_sql(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause (without the keyword) and its parameters for `filters`."""
    params: list[Any] = []
    return _node(filters, params), params


def _node(node: Any, params: list[Any]) -> str:
    if not isinstance(node, dict) or "operator" not in node:
        raise ConfigError(
            f"a filter must be a dict with an 'operator', got {node!r}: e.g. "
            '{"field": "meta.page", "operator": "==", "value": 3}'
        )
    operator = node["operator"]
    if "conditions" in node:
        if operator not in LOGICAL:
            raise ConfigError(f"logical filter operator must be one of {', '.join(LOGICAL)}, got {operator!r}")
        conditions = node["conditions"]
        if not isinstance(conditions, list):
            raise ConfigError(f"'conditions' of a {operator} filter must be a list, got {conditions!r}")
        parts = [_node(condition, params) for condition in conditions]
        every = "(" + " AND ".join(parts) + ")" if parts else "1"
        if operator == "AND":
            return every
        if operator == "NOT":
            return f"(NOT {every})"
        return "(" + " OR ".join(parts) + ")" if parts else "0"
    if "field" not in node or "value" not in node:
        raise ConfigError(f"a comparison filter needs 'field', 'operator' and 'value', got {node!r}")
    if operator not in COMPARISONS:
        raise ConfigError(f"filter operator must be one of {', '.join(COMPARISONS)}, got {operator!r}")
    value = node["value"]
    expression = _field(node["field"])
    strings = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if node["field"] == "meta.source" and operator in ("==", "!=", "in", "not in", "under") and strings:
        # The indexed `source` column holds meta.source whenever it is a string (else NULL), so
        # string comparisons on it match the same rows without reading every row's JSON.
        expression = "source"
    key = _indexed_key(node["field"])
    if operator == "contains":
        return _contains(node["field"], key, value, params)
    if key is not None and _indexable(operator, value):
        return _indexed_comparison(key, operator, value, params)
    whole = isinstance(value, int) and not isinstance(value, bool)
    whole = whole or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if node["field"] == "meta.page" and whole:
        # Likewise the indexed `page` column holds meta.page whenever it is an integer (chunks always
        # have one): a page filter reads the index, not 1M JSON objects (seconds at that size).
        expression = "page"
    return _comparison(expression, operator, value, params)


def check_iso_date(operator: str, value: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"filter operator '{operator}' compares strings only as ISO dates, got {value!r}: "
            "write the date as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[+HH:MM]"
        ) from None


def _indexed_key(field: Any) -> str | None:
    """The `chunk_meta` key a field reads, or None when the field is not indexed there."""
    if not isinstance(field, str) or not field.startswith("meta."):
        return None
    key = field[len("meta.") :]
    if key == "" or "." in key or key in UNINDEXED_META:
        return None
    return key


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))  # bool is an int


def _indexable(operator: str, value: Any) -> bool:
    if operator in ("in", "not in"):
        return isinstance(value, list) and len(value) > 0 and all(_is_scalar(item) for item in value)
    if operator in ("==", "!="):
        return _is_scalar(value)
    if operator in (">", ">=", "<", "<="):
        return _is_scalar(value) and not isinstance(value, bool)
    return False


def _contains(field: str, key: str | None, value: Any, params: list[Any]) -> str:
    values = value if isinstance(value, list) else [value]
    if not values or not all(_is_scalar(item) for item in values):
        raise ConfigError(
            f"filter operator 'contains' needs a value or a list of values (strings or numbers), got {value!r}: "
            'e.g. {"field": "meta.tags", "operator": "contains", "value": "finance"}'
        )
    holes = ", ".join("?" * len(values))
    if key is not None:
        params.append(key)
        params.extend(values)
        return f"(chunks.id IN (SELECT id FROM chunk_meta WHERE key = ? AND value IN ({holes})))"
    expression = _field(field)  # checks the field
    params.extend(values)
    if not field.startswith("meta."):
        return f"({expression} IN ({holes}))"  # id or content: a scalar
    # Not indexed (a nested or positional key): the field's items, or the field itself when a scalar.
    return f"(EXISTS (SELECT 1 FROM json_each(meta, {_meta_path(field)}) WHERE json_each.value IN ({holes})))"


def _indexed_comparison(key: str, operator: str, value: Any, params: list[Any]) -> str:
    """A comparison as a set of chunk ids read from the `chunk_meta` index (an uncorrelated subquery:
    SQLite runs it once). A list-valued field matches as a whole, as in Haystack: its items (rows
    with `listed` = 1) never equal a scalar."""
    if operator in ("==", "!=", "in", "not in"):
        values = value if isinstance(value, list) else [value]
        params.append(key)
        params.extend(values)
        holes = ", ".join("?" * len(values))
        matching = f"(SELECT id FROM chunk_meta WHERE key = ? AND listed = 0 AND value IN ({holes}))"
        # A missing field equals None: it is "!=" any value and "not in" any list without None.
        return f"(chunks.id {'IN' if operator in ('==', 'in') else 'NOT IN'} {matching})"
    if isinstance(value, str):
        check_iso_date(operator, value)
        kind, bound = "typeof(value) = 'text'", "julianday(?)"
    else:
        kind, bound = "typeof(value) IN ('integer', 'real')", "?"
    params.extend([key, value])
    return f"(chunks.id IN (SELECT id FROM chunk_meta WHERE key = ? AND listed = 0 AND {kind} AND number {operator} {bound}))"


def _field(field: Any) -> str:
    if field == "id":
        return "doc_id"
    if field == "content":
        return "content"
    if isinstance(field, str) and field.startswith("meta.") and len(field) > len("meta."):
        return f"json_extract(meta, {_meta_path(field)})"
    raise ConfigError(f"filter field must be 'id', 'content' or 'meta.NAME', got {field!r}")


def _meta_path(field: str) -> str:
    """The JSON path of a `meta.NAME` field as a SQL string literal."""
    path = "$" + "".join("." + json.dumps(part) for part in field[len("meta.") :].split("."))
    # The path is built from JSON-quoted names, so it is safe to inline as a SQL string literal.
    return "'" + path.replace("'", "''") + "'"


def _scalar(value: Any, params: list[Any]) -> str:
    if isinstance(value, (list, dict)):
        params.append(json.dumps(value))
        return "json(?)"
    params.append(value)
    return "?"


def _comparable(expression: str, value: Any) -> str:
    # Lists and dicts come back from json_extract as minified JSON text; compare them as such.
    return f"json({expression})" if isinstance(value, (list, dict)) else expression


def _under(expression: str, value: Any, params: list[Any]) -> str:
    folders = value if isinstance(value, list) else [value]
    if not folders or not all(isinstance(folder, str) and folder.strip("/") != "" for folder in folders):
        raise ConfigError(
            f"filter operator 'under' needs a path or a list of paths (not the root), got {value!r}: "
            'e.g. {"field": "meta.source", "operator": "under", "value": "/kb/hr"}'
        )
    parts = []
    for folder in folders:
        folder = folder.rstrip("/")
        # Everything below `folder/` sorts in [folder + "/", folder + "0"): "0" follows "/" in
        # code point order, so the range reads an index on the column instead of every row.
        params += [folder, folder + "/", folder + "0"]
        parts.append(f"({expression} = ? OR ({expression} >= ? AND {expression} < ?))")
    return "(" + " OR ".join(parts) + ")"


def _comparison(expression: str, operator: str, value: Any, params: list[Any]) -> str:
    if operator == "under":
        return _under(expression, value, params)
    if operator == "==":
        if value is None:
            return f"({expression} IS NULL)"
        return f"({_comparable(expression, value)} = {_scalar(value, params)})"
    if operator == "!=":
        if value is None:
            return f"({expression} IS NOT NULL)"
        return f"({expression} IS NULL OR {_comparable(expression, value)} != {_scalar(value, params)})"
    if operator in ("in", "not in"):
        if not isinstance(value, list):
            raise ConfigError(f"filter operator '{operator}' needs a list value, got {value!r}")
        present = [item for item in value if item is not None]
        holes = ", ".join(_scalar(item, params) for item in present)
        member = f"{expression} IN ({holes})" if present else "0"
        if None in value:
            member = f"({member} OR {expression} IS NULL)"
        if operator == "in":
            return f"({member})"
        return f"(NOT ({member}) OR ({expression} IS NULL AND {'0' if None in value else '1'}))"
    # Ordering: never matches None; strings only as ISO dates; numbers only with numbers.
    if value is None:
        return "0"
    if isinstance(value, (list, dict)):
        raise ConfigError(f"filter operator '{operator}' cannot compare with a list or dict, got {value!r}")
    symbol = operator
    if isinstance(value, str):
        check_iso_date(operator, value)
        params.append(value)
        return f"(julianday({expression}) {symbol} julianday(?))"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"filter operator '{operator}' needs a number or an ISO date, got {value!r}")
    params.append(value)
    return f"(typeof({expression}) IN ('integer', 'real') AND {expression} {symbol} ?)"
