"""What a drill does when a plan halts (:class:`HaltPolicy`) and how fresh its proof must be (:class:`HistoryPolicy`).

Both read as a drill file writes them: ``on_halt: fail`` or ``{continue: RetryFailedStep, max: 2}`` (options in any
case and spacing), ``history: {max_age: 90d, rto_regression: 25%}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, field_validator, model_serializer, model_validator
from pydantic_core import PydanticCustomError

from vaodrill.spec.durations import DurationField, spec_duration
from vaodrill.spec.strict import StrictModel, WholeNumber, show_value
from vaodrill.vao.models import ContinueOption

CONTINUE_OPTIONS: tuple[str, ...] = tuple(option.value for option in ContinueOption)


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in " _-")


_OPTION_BY_SQUASHED = {_squash(option): option for option in CONTINUE_OPTIONS}


class HaltPolicy(StrictModel):
    """What to do when a plan halts: ``fail`` (default), or answer with Continue up to ``max`` times.

    ``continue_with`` is None for ``fail``. Build one with ``HaltPolicy()`` (fail) or
    ``HaltPolicy(continue_with="RetryFailedStep", max=2)``.
    """

    continue_with: ContinueOption | None = Field(default=None, alias="continue")
    max: Annotated[int, WholeNumber] = Field(default=1, ge=1, le=10)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data.strip().lower() == "fail":
                return {}
            raise PydanticCustomError(
                "halt_policy", f"expected 'fail' or {{continue: <option>, max: N}}, got {show_value(data)}"
            )
        if isinstance(data, Mapping) and "max" in data and not {"continue", "continue_with"} & set(data):
            raise PydanticCustomError("halt_policy", "'max' needs 'continue: <option>'")
        return data

    @field_validator("continue_with", mode="before")
    @classmethod
    def _option(cls, value: Any) -> Any:
        option = _OPTION_BY_SQUASHED.get(_squash(value)) if isinstance(value, str) else None
        if option is None:
            raise PydanticCustomError(
                "halt_option",
                f"unknown continue option {show_value(value)} (expected one of {', '.join(CONTINUE_OPTIONS)})",
            )
        return option

    @property
    def is_fail(self) -> bool:
        return self.continue_with is None

    @model_serializer
    def _dump(self) -> str | dict[str, Any]:
        return "fail" if self.continue_with is None else {"continue": self.continue_with.value, "max": self.max}

    def __str__(self) -> str:
        return "fail" if self.continue_with is None else f"continue {self.continue_with.value} (max {self.max})"


class HistoryPolicy(StrictModel):
    """How fresh a drill's proof must be and what counts as an RTO regression (``vaodrill history --check``).

    ``max_age``: a plan whose last passed drill is older is overdue (default 365d: DORA wants a yearly test).
    ``rto_regression``: a plan whose last passed RTO exceeds the median of its five passed drills before it by
    more than this many percent (``25%`` or ``25``) has regressed; unset: not checked.
    """

    max_age: DurationField = Field(default="365d", validate_default=True)
    rto_regression: float | None = Field(default=None, gt=0, le=1000)

    @field_validator("max_age")
    @classmethod
    def _max_age_range(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise PydanticCustomError("duration_range", f"must be at least 1d, got {spec_duration(value)}")
        return value

    @field_validator("rto_regression", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().removesuffix("%").strip()
            try:
                return float(text)
            except ValueError:
                raise PydanticCustomError("percent", f"a percentage like 25%, got {show_value(value)}") from None
        if isinstance(value, bool):
            raise PydanticCustomError("percent", f"a percentage like 25%, got {show_value(value)}")
        return value


__all__ = ["CONTINUE_OPTIONS", "HaltPolicy", "HistoryPolicy"]
