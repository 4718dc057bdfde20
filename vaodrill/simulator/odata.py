"""The OData query subset of docs/vao-api.md, section 1 (``$filter``, ``$orderby``, ``$top``, ``$skip``) and section 5
(``$select``, ``$format``).

``$select`` is a comma-separated list of property names (or ``*``); ``$format`` may only ask for JSON
(``json``, ``application/json``, ``text/json``), the one format the simulator speaks.

``$filter`` supports ``<property> eq|ne <literal>`` clauses joined by ``and``; literals are single-quoted
strings (``''`` escapes a quote), ``true``/``false``, ``null`` and integers. Option names, property names,
operators and string comparisons are case-sensitive, as in OData. Anything outside the subset is a 400 with a
message that says what is supported, so a client cannot silently rely on a feature the simulator ignores.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import BadRequest

T = TypeVar("T")

OPTIONS = ("$filter", "$orderby", "$top", "$skip", "$select", "$format")
SINGLE_OPTIONS = ("$select", "$format")
"""The options a single-entity GET takes (the others act on collections)."""

JSON_FORMATS = frozenset({"json", "application/json", "text/json"})

PROPERTY_TYPES: dict[str, type] = {
    **dict.fromkeys(
        (
            "name",
            "id",
            "description",
            "contactName",
            "contactEmail",
            "contactTel",
            "planState",
            "planStateDetails",
            "scheduleType",
            "scheduleAfter",
            "scheduleAfterPlanName",
            "scheduleTime",
            "siteScopeId",
        ),
        str,
    ),
    "planInUse": bool,
    "scheduleEnabled": bool,
    "targetRPO": int,
    "targetRTO": int,
}
"""Filterable and sortable properties of a failover plan, with their JSON types."""

SELECTABLE = frozenset({*PROPERTY_TYPES, "_links"})

_EDM = {str: "Edm.String", bool: "Edm.Boolean", int: "Edm.Int32", type(None): "null"}

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>-?\d+)|(?P<other>\S))")

_SUBSET = "only '<property> eq|ne <literal>' clauses joined by 'and' are supported"


@dataclass(frozen=True)
class Clause:
    prop: str
    negate: bool
    value: str | bool | int | None

    def matches(self, item: Mapping[str, Any]) -> bool:
        equal = item.get(self.prop) == self.value and type(item.get(self.prop)) is type(self.value)
        return equal != self.negate


@dataclass(frozen=True)
class Query:
    """A parsed query; :meth:`apply` filters, sorts and pages rows through a view of each."""

    clauses: tuple[Clause, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()  # (property, descending)
    top: int | None = None
    skip: int = 0
    select: tuple[str, ...] | None = None  # None: every property

    def project(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` with only the ``$select``-ed properties, in the order asked for."""
        if self.select is None:
            return item
        return {prop: item[prop] for prop in self.select if prop in item}

    def apply(self, rows: Sequence[T], view: Callable[[T], Mapping[str, Any]]) -> list[T]:
        views = [(row, view(row)) for row in rows]
        kept = [(row, v) for row, v in views if all(c.matches(v) for c in self.clauses)]
        for prop, descending in reversed(self.order):  # stable sorts, last key first

            def key(pair: tuple[T, Mapping[str, Any]], prop: str = prop) -> tuple[int, Any]:
                return _sort_key(pair[1].get(prop))

            kept.sort(key=key, reverse=descending)
        paged = kept[self.skip :]
        if self.top is not None:
            paged = paged[: self.top]
        return [row for row, _ in paged]


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)  # nulls first in ascending order, as OData does


def parse_query(params: Sequence[tuple[str, str]], *, allowed: Sequence[str] = OPTIONS) -> Query:
    """Parse the OData options among the query parameters (given as key/value pairs, repeats kept)."""
    seen: dict[str, str] = {}
    for key, value in params:
        if not key.startswith("$"):
            continue
        if key not in allowed:
            raise BadRequest(
                f"The query parameter '{key}' is not supported here (supported: {', '.join(allowed)}; "
                "option names are case-sensitive)."
            )
        if key in seen:
            raise BadRequest(f"The query option '{key}' is given more than once.")
        seen[key] = value
    if "$format" in seen:
        _check_format(seen["$format"])
    return Query(
        clauses=_parse_filter(seen["$filter"]) if "$filter" in seen else (),
        order=_parse_orderby(seen["$orderby"]) if "$orderby" in seen else (),
        top=_parse_count("$top", seen["$top"]) if "$top" in seen else None,
        skip=_parse_count("$skip", seen["$skip"]) if "$skip" in seen else 0,
        select=_parse_select(seen["$select"]) if "$select" in seen else None,
    )


def _check_format(value: str) -> None:
    if value.strip().lower() not in JSON_FORMATS:
        raise BadRequest(f"Invalid $format '{value}': the simulator answers JSON only (use $format=json).")


def _parse_select(text: str) -> tuple[str, ...] | None:
    names = [part.strip() for part in text.split(",")]
    if names == ["*"]:
        return None
    for name in names:
        if name not in SELECTABLE:
            raise BadRequest(
                f"Invalid $select '{text}': could not find a property named '{name}' on a failover "
                "plan (use comma-separated names, or *)."
            )
    return tuple(dict.fromkeys(names))


def _parse_count(option: str, raw: str) -> int:
    if not re.fullmatch(r"\d{1,9}", raw.strip()):
        raise BadRequest(f"Invalid value for {option}: '{raw}' (expected a non-negative integer).")
    return int(raw)


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            raise BadRequest(f"Invalid $filter '{text}': {_SUBSET}.")
        kind = m.lastgroup or "other"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(kind: str, raw: str, text: str) -> str | bool | int | None:
    if kind == "str":
        return raw[1:-1].replace("''", "'")
    if kind == "num":
        return int(raw)
    if kind == "word" and raw in ("true", "false"):
        return raw == "true"
    if kind == "word" and raw == "null":
        return None
    raise BadRequest(f"Invalid $filter '{text}': '{raw}' is not a literal (use 'text', true, false, null or 42).")


def _parse_filter(text: str) -> tuple[Clause, ...]:
    tokens = _tokens(text)
    if not tokens:
        raise BadRequest("Invalid $filter: the expression is empty.")
    clauses = []
    i = 0
    while True:
        if i + 3 > len(tokens):
            raise BadRequest(f"Invalid $filter '{text}': the expression ends too early; {_SUBSET}.")
        (pkind, prop), (okind, op), (lkind, lraw) = tokens[i : i + 3]
        if pkind != "word" or okind != "word":
            raise BadRequest(f"Invalid $filter '{text}': {_SUBSET}.")
        if prop not in PROPERTY_TYPES:
            raise BadRequest(f"Invalid $filter '{text}': could not find a property named '{prop}' on a failover plan.")
        if op not in ("eq", "ne"):
            raise BadRequest(f"Invalid $filter '{text}': operator '{op}' is not supported; {_SUBSET}.")
        value = _literal(lkind, lraw, text)
        expected = PROPERTY_TYPES[prop]
        nullable = expected is str
        if not (type(value) is expected or (value is None and nullable)):
            raise BadRequest(
                f"Invalid $filter '{text}': a binary operator with incompatible types was detected: "
                f"found operand types '{_EDM[expected]}' and '{_EDM[type(value)]}' for operator '{op}'."
            )
        clauses.append(Clause(prop, op == "ne", value))
        i += 3
        if i == len(tokens):
            return tuple(clauses)
        if tokens[i] != ("word", "and"):
            raise BadRequest(f"Invalid $filter '{text}': unexpected '{tokens[i][1]}'; {_SUBSET}.")
        i += 1


def _parse_orderby(text: str) -> tuple[tuple[str, bool], ...]:
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise BadRequest(f"Invalid $orderby '{text}': expected '<property> [asc|desc]' separated by commas.")
        if words[0] not in PROPERTY_TYPES:
            raise BadRequest(f"Invalid $orderby '{text}': could not find a property named '{words[0]}'.")
        order.append((words[0], len(words) == 2 and words[1] == "desc"))
    return tuple(order)
