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

Every filter is checked first (`spanqa.indexing.store.filter_checks`): a bad one is a ConfigError naming
the bad part, and the size of one is capped so that the SQL always runs.
"""

from __future__ import annotations

import functools
import heapq
import json
import sqlite3
from typing import Any, NamedTuple

from spanqa.errors import ConfigError
from spanqa.indexing.store.chunk_database import UNINDEXED_META
from spanqa.indexing.store.filter_checks import COMPARISONS, LOGICAL, check_iso_date, checked_filter

__all__ = ["COMPARISONS", "LOGICAL", "check_iso_date", "filter_sql"]

# Bound variables the statement around a filter uses itself (keyword search: the query's words).
OWN_PARAMETERS = 64
# SQLite's parser stack (YYSTACKDEPTH: 100 entries; it grows since 3.46) less what the statement
# around the clause and the estimate's error take. Measured on SQLite 3.40 with chains of each
# operator and comparison: the least need that overflowed it was 71; the filters within
# FILTER_MAX_DEPTH and FILTER_MAX_CONDITIONS tried (32 levels of 30 conditions, trees) needed 51.
PARSER_BUDGET = 60
LEAF_NEED = 2  # parser entries a comparison needs beyond its parentheses


def filter_sql(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause (without the keyword) and its parameters for `filters`; a ConfigError naming
    the bad part for a filter that is wrong or too large (`filter_checks`)."""
    part = _node(checked_filter(filters), negated=False)
    if len(part.params) + OWN_PARAMETERS > _variable_limit():
        raise ConfigError(
            f"the filter needs {len(part.params)} values bound, more than this SQLite allows "
            f"({_variable_limit() - OWN_PARAMETERS}): put fewer values in its lists"
        )
    if part.need > PARSER_BUDGET:
        raise ConfigError(
            "the filter nests too deeply for SQLite to read: flatten it (an AND inside an AND is one AND "
            "over all their conditions; likewise OR) or use fewer levels of AND/OR/NOT"
        )
    return part.sql, part.params


@functools.cache
def _variable_limit() -> int:
    """SQLite's limit on bound variables in one statement (32766 by default since 3.32, 999 before)."""
    connection = sqlite3.connect(":memory:")
    try:
        if hasattr(connection, "getlimit"):  # Python 3.11+
            return connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    finally:
        connection.close()


class Part(NamedTuple):
    """A piece of the WHERE clause: its SQL, its parameters in order, and the entries of SQLite's
    parser stack (100 in SQLite 3.40; it grows since 3.46) it needs beyond where it starts."""

    need: int
    sql: str
    params: list[Any]


def _leaf(sql: str, params: list[Any]) -> Part:
    depth = deepest = 0
    for character in sql:  # a comparison's own parentheses (its subqueries) hold parser entries
        depth += (character == "(") - (character == ")")
        deepest = max(deepest, depth)
    return Part(deepest + LEAF_NEED, sql, params)


def _joined(parts: list[Part], word: str) -> Part:
    """`parts` joined by AND or OR in the tree the parser needs fewest entries for. The parser holds
    one entry ("(") while it reads the left side of "(A AND B)", three ("(", A, AND) for the right:
    like Huffman's code, the two least needy parts are joined first, the needier one on the left.
    Parts that need alike end up in a balanced tree, so SQLite's expression depth (1000) grows with
    the logarithm of their number (a chain of 1000 ORs is 1000 deep), and along any path within the
    tree the need falls with each level (so the depth stays below the budget checked)."""
    if not parts:
        return Part(0, "1" if word == "AND" else "0", [])  # all of none: true; any of none: false
    heap = [(part.need, order, part) for order, part in enumerate(parts)]
    heapq.heapify(heap)
    order = len(parts)
    while len(heap) > 1:
        _, _, less = heapq.heappop(heap)
        _, _, more = heapq.heappop(heap)
        need = max(1 + more.need, 3 + less.need)
        heapq.heappush(heap, (need, order, Part(need, f"({more.sql} {word} {less.sql})", more.params + less.params)))
        order += 1
    return heap[0][2]


# The operator an AND or OR node is, negated or not (De Morgan's laws hold in SQL's logic with NULL).
EFFECTIVE = {("AND", False): "AND", ("AND", True): "OR", ("OR", False): "OR", ("OR", True): "AND"}


def _node(node: dict[str, Any], negated: bool) -> Part:
    """A checked filter node (`filter_checks.checked_filter`), or its negation, as SQL."""
    if "conditions" in node:
        return _joined(*_logical(node, negated))
    params: list[Any] = []
    comparison = _comparison_node(node, params)
    return _leaf(f"(NOT {comparison})" if negated else comparison, params)


def _logical(node: dict[str, Any], negated: bool) -> tuple[list[Part], str]:
    """A logical node as parts to join by AND or OR, NOTs pushed down to the comparisons and nested
    nodes of the same operator spliced in: SQLite's parser overflowed on 450 nested ANDs, and on 20
    NOTs, each of which held two entries."""
    operator = node["operator"]
    if operator == "NOT":  # not all of them
        operator, negated = "AND", not negated
    word = EFFECTIVE[(operator, negated)]
    parts = []
    for condition in node["conditions"]:
        if "conditions" not in condition:
            parts.append(_node(condition, negated))
            continue
        inner_parts, inner = _logical(condition, negated)
        if inner == word:
            parts.extend(inner_parts)
        else:
            parts.append(_joined(inner_parts, inner))
    return parts, word


def _comparison_node(node: dict[str, Any], params: list[Any]) -> str:
    operator = node["operator"]
    field, value = node["field"], node["value"]
    if isinstance(value, (list, dict)) and operator in ("==", "!="):
        return _whole(field, operator, value, params)  # a meta field: `filter_checks` refuses the others
    expression = _field(field)
    strings = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if field == "meta.source" and operator in ("==", "!=", "in", "not in", "under") and strings:
        # The indexed `source` column holds meta.source whenever it is a string (else NULL), so
        # string comparisons on it match the same rows without reading every row's JSON.
        expression = "source"
    key = _indexed_key(field)
    if operator == "contains":
        return _contains(field, key, value, params)
    if key is not None and _indexable(operator, value):
        return _indexed_comparison(key, operator, value, params)
    whole = isinstance(value, int) and not isinstance(value, bool)
    whole = whole or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if field == "meta.page" and whole:
        # Likewise the indexed `page` column holds meta.page whenever it is an integer (chunks always
        # have one): a page filter reads the index, not 1M JSON objects (seconds at that size).
        expression = "page"
    return _comparison(expression, operator, value, params)


def _indexed_key(field: str) -> str | None:
    """The `chunk_meta` key a field reads, or None when the field is not indexed there."""
    if not field.startswith("meta."):
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
    holes = ", ".join("?" * len(values))
    if key is not None:
        params.append(key)
        params.extend(values)
        return f"(chunks.id IN (SELECT id FROM chunk_meta WHERE key = ? AND value IN ({holes})))"
    expression = _field(field)
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
        kind, bound = "typeof(value) = 'text'", "julianday(?)"
    else:
        kind, bound = "typeof(value) IN ('integer', 'real')", "?"
    params.extend([key, value])
    return f"(chunks.id IN (SELECT id FROM chunk_meta WHERE key = ? AND listed = 0 AND {kind} AND number {operator} {bound}))"


def _field(field: str) -> str:
    if field == "id":
        return "doc_id"
    if field == "content":
        return "content"
    return f"json_extract(meta, {_meta_path(field)})"


def _meta_path(field: str) -> str:
    """The JSON path of a `meta.NAME` field as a SQL string literal."""
    path = "$" + "".join("." + json.dumps(part) for part in field[len("meta.") :].split("."))
    # The path is built from JSON-quoted names, so it is safe to inline as a SQL string literal.
    return "'" + path.replace("'", "''") + "'"


def _whole(field: str, operator: str, value: list | dict, params: list[Any]) -> str:
    """A meta field compared with a list or dict as a whole, as in Haystack. json_extract gives an
    array or object as minified JSON text (a string field stays text: not compared as JSON)."""
    path = _meta_path(field)
    params.append(json.dumps(value))
    # A missing field is NULL: coalesce makes it unequal (so "!=" matches it, as None != a list).
    equal = f"(coalesce(json_type(meta, {path}), '') IN ('array', 'object') AND json_extract(meta, {path}) = json(?))"
    return equal if operator == "==" else f"(NOT {equal})"


def _under(expression: str, value: Any, params: list[Any]) -> str:
    folders = [folder.rstrip("/") for folder in (value if isinstance(value, list) else [value])]
    if expression == "source":
        # The indexed column: the folders as one JSON list, each looked up by range in the index
        # (an OR of 10,000 ranges took SQLite 20 s to plan; this reads them in milliseconds).
        params += [json.dumps(folders)] * 2
        return (
            "(source IN (SELECT value FROM json_each(?)) OR chunks.id IN (SELECT inside.id FROM json_each(?) AS "
            "folder, chunks AS inside WHERE inside.source >= folder.value || '/' AND inside.source < folder.value || '0'))"
        )
    parts = []
    for folder in folders:
        # Everything below `folder/` sorts in [folder + "/", folder + "0"): "0" follows "/" in
        # code point order, so the range reads an index on the column instead of every row.
        params += [folder, folder + "/", folder + "0"]
        parts.append(f"({expression} = ? OR ({expression} >= ? AND {expression} < ?))")
    return _balanced(parts)


def _balanced(parts: list[str]) -> str:
    """`parts` ORed as a balanced tree: SQLite's expression depth grows with the logarithm of their
    number (a chain of 1000 ORs is 1000 deep)."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(parts[:middle])} OR {_balanced(parts[middle:])})"


def _comparison(expression: str, operator: str, value: Any, params: list[Any]) -> str:
    if operator == "under":
        return _under(expression, value, params)
    if operator == "==":
        if value is None:
            return f"({expression} IS NULL)"
        params.append(value)
        return f"({expression} = ?)"
    if operator == "!=":
        if value is None:
            return f"({expression} IS NOT NULL)"
        params.append(value)
        return f"({expression} IS NULL OR {expression} != ?)"
    if operator in ("in", "not in"):
        present = [item for item in value if item is not None]
        params.extend(present)
        member = f"{expression} IN ({', '.join('?' * len(present))})" if present else "0"
        if None in value:
            member = f"({member} OR {expression} IS NULL)"
        if operator == "in":
            return f"({member})"
        return f"(NOT ({member}) OR ({expression} IS NULL AND {'0' if None in value else '1'}))"
    # Ordering: never matches None; strings only as ISO dates; numbers only with numbers.
    if value is None:
        return "0"
    params.append(value)
    if isinstance(value, str):
        return f"(julianday({expression}) {operator} julianday(?))"
    return f"(typeof({expression}) IN ('integer', 'real') AND {expression} {operator} ?)"
