"""The drill file's pydantic groundwork: frozen models that name an unknown key with a suggestion, values shown
as a YAML user wrote them, and a validation error as one place and one problem."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

__all__ = ["StrictModel", "did_you_mean", "show_value", "validation_problem"]

_HINT_BUDGET = 1_000_000  # characters x characters difflib may compare for one did-you-mean hint


def show_value(value: object) -> str:
    """A value as a YAML user would recognise it, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 200:  # str() of a huge int is slow, then refused
        return "a very large number"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:56] + "..."


def whole_number(value: Any) -> Any:
    """pydantic's lax int takes ``true`` as 1; in a drill file that is always a mistake."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", f"expected a whole number, got {show_value(value)}")
    return value


#: An ``int`` field that refuses ``true``/``false`` (see :func:`whole_number`).
WholeNumber = BeforeValidator(whole_number)


def did_you_mean(word: str, choices: Sequence[str], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'X'?)`` or ""; difflib is quadratic, so long words among many choices get no guess."""
    affordable = len(word) * sum(len(choice) for choice in choices) <= _HINT_BUDGET
    close = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff) if affordable else []
    if not close:
        close = [c for c in choices if c.casefold() == word.casefold()][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


@cache
def _keys_of(model: type[BaseModel]) -> tuple[frozenset[str], list[str]]:
    """A model's accepted keys (names and aliases) and the ones to suggest; cached, as pydantic's lookup is slow."""
    fields = model.model_fields
    known = frozenset(fields) | {f.alias for f in fields.values() if f.alias}
    return known, sorted(f.alias or n for n, f in fields.items())


class StrictModel(BaseModel):
    """Frozen, no unknown keys, and an unknown key is reported with a did-you-mean hint.

    pydantic's own ``extra="forbid"`` error cannot suggest the right key; this check runs first so it can.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known, choices = _keys_of(cls)
            unknown = [k for k in data if k not in known]
            if unknown:
                key = unknown[0]
                hint = did_you_mean(str(key), choices)
                more = f" (+{len(unknown) - 1} more)" if len(unknown) > 1 else ""
                raise PydanticCustomError(
                    "unknown_key", f"unknown key {show_value(key)}{hint}{more}", {"key": str(key)}
                )
        return data


def validation_problem(exc: ValidationError) -> tuple[str, str]:
    """``(location, problem)`` for the first error of ``exc``, as one line; ``(+N more)`` if there are more.

    Location is ``plans[2].restore_point`` style ("" for the top level). Union tags pydantic puts into
    locations (``restore_point.ago.ago``) are dropped. Shared by ``parse_rule`` and ``vaodrill.spec.model``.
    """
    errors = exc.errors(include_url=False)
    # A list whose only item failed also reports "too short": an echo of the item's error, not a second one.
    errors = [
        e
        for e in errors
        if not (e["type"] == "too_short" and any(o["loc"][: len(e["loc"])] == e["loc"] != o["loc"] for o in errors))
    ] or errors
    first = errors[0]
    loc = _location(first["loc"])
    message = _message(first)
    if first["type"] == "missing":
        loc, message = _location(first["loc"][:-1]), f"missing key {str(first['loc'][-1])!r}"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    return loc, message


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("rule:"):  # "rule:ago" etc. are tags of the RestorePointRule union
            out += f".{part}" if out else part
    return out


def _message(error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {show_value(value)}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}
        limit = next(iter(ctx.values()))
        return f"must be {bound[kind]} {limit}, got {show_value(value)}"
    if kind in {"int_type", "int_parsing", "int_parsing_size", "int_from_float"}:
        return f"expected a whole number, got {show_value(value)}"
    if kind in {"string_type"}:
        return f"expected a string, got {show_value(value)} (quote it in YAML)"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"expected a mapping, got {show_value(value)}"
    if kind in {"list_type", "tuple_type"}:
        return f"expected a list, got {show_value(value)}"
    if kind == "too_short":
        return "must not be empty"
    msg = error["msg"]
    msg = msg.removeprefix("Value error, ").replace("Input should be", "expected")
    return msg[:1].lower() + msg[1:]
