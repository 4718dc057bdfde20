"""The suite's warning filter (pyproject.toml): a warning raised by vaodrill's own code fails its test."""

import warnings
from collections.abc import Callable
from typing import cast

import pytest


def warner(module: str) -> Callable[[], None]:
    """A function whose warnings Python attributes to ``module``, as it does for a function defined there."""
    namespace: dict[str, object] = {"__name__": module, "warnings": warnings}
    exec("def warn():\n    warnings.warn('something is off', UserWarning)\n", namespace)
    return cast(Callable[[], None], namespace["warn"])


@pytest.mark.parametrize("module", ["vaodrill.engine.drill", "vaodrill", "flows.dr_drill", "tasks.vao"])
def test_a_warning_from_our_code_is_an_error(module: str) -> None:
    with pytest.raises(UserWarning, match="something is off"):
        warner(module)()


@pytest.mark.parametrize("module", ["prefect.flows", "vaodrillish", "tests.test_warnings"])
def test_a_warning_from_elsewhere_is_only_a_warning(module: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warner(module)()
    assert [str(w.message) for w in caught] == ["something is off"]
