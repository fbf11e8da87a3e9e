"""Checks a metadata filter (Haystack syntax, see `spanqa.indexing.store.filters`) before it becomes SQL:
every bad part is a ConfigError naming it and the fix, and every filter that passes compiles to a
statement SQLite can run.

Nesting, comparisons and values are capped (`defaults.FILTER_MAX_DEPTH`, `FILTER_MAX_CONDITIONS`,
`FILTER_MAX_VALUES`), so no filter reaches Python's recursion limit, SQLite's expression depth
(1000), its parser stack or its bound-variable limit (32766 by default). Values are what SQLite can
bind: integers within 64 bits, finite floats, strings that are valid UTF-8. Before counting, an OR
of `==` / `in` (or `contains`) comparisons on one field becomes one `in` (`contains`) over all
their values, and an AND (or NOT) of `!=` / `not in` on one field one `not in`: a long OR of
equalities is one indexed lookup, not thousands of subqueries.
"""

from __future__ import annotations

import math
import reprlib
from datetime import datetime
from typing import Any

from spanqa import defaults
from spanqa.errors import ConfigError

COMPARISONS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in", "under", "contains")
LOGICAL = ("AND", "OR", "NOT")
ORDERING = (">", ">=", "<", "<=")
# Fields spanqa stores as one value per chunk: a list never equals them (use `in`).
SCALAR_FIELDS = ("id", "content", "meta.source", "meta.page")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Comparisons merged per logical operator: (operators merged, the operator they become).
MERGED = {"OR": ((("==", "in"), "in"), (("contains",), "contains")), "AND": ((("!=", "not in"), "not in"),)}
MERGED["NOT"] = MERGED["AND"]  # NOT: not all of its conditions, which are ANDed

_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 5, 4, 60, 60
EXAMPLE = '{"field": "meta.page", "operator": "==", "value": 3}'


def shown(value: Any) -> str:
    """`value` as a short repr for a message (a filter can be deep and long)."""
    return _SHORT.repr(value)


def checked_filter(filters: Any) -> dict[str, Any]:
    """`filters` checked and with mergeable comparisons merged (a new dict; `filters` is unchanged)."""
    node = _checked(filters, 0)
    conditions, values = _size(node)
    if conditions > defaults.FILTER_MAX_CONDITIONS:
        raise ConfigError(
            f"the filter has {conditions} conditions, more than the {defaults.FILTER_MAX_CONDITIONS} allowed: "
            "put the values compared with one field in one 'in' (or 'not in') list"
        )
    if values > defaults.FILTER_MAX_VALUES:
        raise ConfigError(
            f"the filter lists {values} values, more than the {defaults.FILTER_MAX_VALUES} allowed: narrow it, "
            "e.g. to folders with 'under' or to tags with 'contains'"
        )
    return node


def check_iso_date(operator: str, value: str) -> None:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"filter operator '{operator}' compares strings only as ISO dates, got {shown(value)}: "
            "write the date as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[+HH:MM]"
        ) from None


def _checked(node: Any, depth: int) -> dict[str, Any]:
    if not isinstance(node, dict) or "operator" not in node:
        raise ConfigError(f"a filter must be a dict with an 'operator', got {shown(node)}: e.g. {EXAMPLE}")
    operator = node["operator"]
    if "conditions" not in node:
        return _comparison(node)
    if not isinstance(operator, str) or operator not in LOGICAL:
        raise ConfigError(f"logical filter operator must be one of {', '.join(LOGICAL)}, got {shown(operator)}")
    if depth >= defaults.FILTER_MAX_DEPTH:
        raise ConfigError(
            f"the filter nests AND/OR/NOT more than {defaults.FILTER_MAX_DEPTH} levels deep: flatten it "
            "(an AND inside an AND is one AND over all their conditions; likewise OR)"
        )
    conditions = node["conditions"]
    if not isinstance(conditions, list):
        raise ConfigError(f"'conditions' of a {operator} filter must be a list, got {shown(conditions)}")
    checked = [_checked(condition, depth + 1) for condition in conditions]
    return {"operator": operator, "conditions": _merged(operator, checked)}


def _comparison(node: dict[str, Any]) -> dict[str, Any]:
    if "field" not in node or "value" not in node:
        raise ConfigError(f"a comparison filter needs 'field', 'operator' and 'value', got {shown(node)}: e.g. {EXAMPLE}")
    operator, field, value = node["operator"], node["field"], node["value"]
    if not isinstance(operator, str) or operator not in COMPARISONS:
        raise ConfigError(f"filter operator must be one of {', '.join(COMPARISONS)}, got {shown(operator)}")
    valid_field = field in ("id", "content") or (isinstance(field, str) and field.startswith("meta.") and field != "meta.")
    if not valid_field:
        raise ConfigError(f"filter field must be 'id', 'content' or 'meta.NAME', got {shown(field)}")
    _check_text(field, "filter field")
    _check_value(field, operator, value)
    return {"field": field, "operator": operator, "value": value}


def _check_value(field: str, operator: str, value: Any) -> None:
    where = f"filter operator '{operator}' on {field}"
    if operator in ("==", "!="):
        if isinstance(value, (list, dict)) and field in SCALAR_FIELDS:
            raise ConfigError(
                f"{where} compares with one value, got {shown(value)}: to match any of several values use 'in'"
            )
        _check_json(where, value, 0)
    elif operator in ORDERING:
        if isinstance(value, str):
            _check_text(value, where)
            check_iso_date(operator, value)
        elif value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{where} needs a number or an ISO date, got {shown(value)}")
        else:
            _check_scalar(where, value)
    elif operator in ("in", "not in"):
        if not isinstance(value, list):
            raise ConfigError(f"{where} needs a list value, got {shown(value)}: e.g. [\"a\", \"b\"]")
        for item in value:
            if item is not None and not _is_scalar(item):
                raise ConfigError(f"{where}: list items must be strings, numbers, booleans or null, got {shown(item)}")
            _check_scalar(where, item)
    elif operator == "contains":
        values = value if isinstance(value, list) else [value]
        if not values or not all(_is_scalar(item) for item in values):
            raise ConfigError(
                f"{where} needs a value or a list of values (strings or numbers), got {shown(value)}: "
                'e.g. {"field": "meta.tags", "operator": "contains", "value": "finance"}'
            )
        for item in values:
            _check_scalar(where, item)
    else:  # under
        folders = value if isinstance(value, list) else [value]
        if not folders or not all(isinstance(folder, str) and folder.strip("/") != "" for folder in folders):
            raise ConfigError(
                f"{where} needs a path or a list of paths (not the root), got {shown(value)}: "
                'e.g. {"field": "meta.source", "operator": "under", "value": "/kb/hr"}'
            )
        for folder in folders:
            _check_text(folder, where)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))  # bool is an int


def _check_scalar(where: str, value: Any) -> None:
    """A value SQLite can bind as it is: an int within 64 bits, a finite float, UTF-8 text."""
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise ConfigError(
            f"{where}: {shown(value)} is outside the 64-bit integer range the index stores "
            f"({INT64_MIN} .. {INT64_MAX}): compare with a smaller number"
        )
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value} is not a finite number: compare with a finite number")


def _check_json(where: str, value: Any, depth: int) -> None:
    """A value compared as JSON text (a list or dict compares as a whole): JSON all the way down."""
    if depth > defaults.FILTER_MAX_DEPTH:
        raise ConfigError(f"{where}: the value nests lists or dicts more than {defaults.FILTER_MAX_DEPTH} levels deep")
    if isinstance(value, list):
        for item in value:
            _check_json(where, item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: dict keys in a value must be strings, got {shown(key)}")
            _check_text(key, where)
            _check_json(where, item, depth + 1)
    elif value is not None and not _is_scalar(value):
        raise ConfigError(f"{where}: values must be strings, numbers, booleans, null, lists or dicts, got {shown(value)}")
    else:
        _check_scalar(where, value)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: {shown(text)} is not valid text (it holds a lone surrogate): send UTF-8 text") from None


def _mergeable(node: dict[str, Any]) -> list[Any] | None:
    """The values of a comparison that can join others of its field in one list, or None."""
    if "conditions" in node:
        return None
    value = node["value"]
    if node["operator"] in ("==", "!=") and _is_scalar(value):
        return [value]
    if node["operator"] in ("in", "not in") and isinstance(value, list) and value and all(_is_scalar(v) for v in value):
        return list(value)
    if node["operator"] == "contains":
        return list(value) if isinstance(value, list) else [value]
    return None


def _merged(operator: str, conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`conditions` of an `operator` node with the comparisons on one field that mean "any of these
    values" (OR) or "none of these values" (AND, NOT) merged into one comparison."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    order: list[Any] = []
    for condition in conditions:
        values = _mergeable(condition)
        into = next((to for sources, to in MERGED[operator] if condition["operator"] in sources), None) if values else None
        if into is None:
            order.append(condition)
            continue
        key = (condition["field"], into)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(condition)
    merged = []
    for entry in order:
        if isinstance(entry, dict):
            merged.append(entry)
        elif len(groups[entry]) == 1:
            merged.append(groups[entry][0])
        else:
            values = [value for condition in groups[entry] for value in _mergeable(condition)]
            merged.append({"field": entry[0], "operator": entry[1], "value": values})
    return merged


def _size(node: dict[str, Any]) -> tuple[int, int]:
    """(conditions, values) of a checked filter: every node counts as a condition, every item of a
    list value (or a scalar value) as a value."""
    if "conditions" in node:
        sizes = [_size(condition) for condition in node["conditions"]]
        return 1 + sum(size[0] for size in sizes), sum(size[1] for size in sizes)
    value = node["value"]
    return 1, len(value) if isinstance(value, list) and node["operator"] not in ("==", "!=") else 1
