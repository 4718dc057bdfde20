"""One idea per module: no product module over 500 lines, no function over 60 lines.

The product is every module of ``vaodrill/``, ``flows/`` and ``tasks/``. A function's length runs from its ``def``
(decorators excluded) to its last line, nested functions included; a nested function is measured on its own too.
``EXCEPTIONS`` lists what is still over while its owner splits it; the test fails as well when an exception is no
longer needed, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vaodrill", "flows", "tasks")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

#: What may still be over while its owner splits it: a module path, or ``path:qualified.function``, relative to the
#: repository root. Empty: nothing is.
EXCEPTIONS: frozenset[str] = frozenset()


def oversized() -> set[str]:
    """Every module and function over its limit, each with its length."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            if len(text.splitlines()) > MAX_MODULE_LINES:
                found.add(name)
            found.update(f"{name}:{qualname}" for qualname in _long_functions(ast.parse(text)))
    return found


def _long_functions(tree: ast.AST, prefix: str = "") -> list[str]:
    long: list[str] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualname = f"{prefix}{node.name}"
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if not isinstance(node, ast.ClassDef) and length > MAX_FUNCTION_LINES:
                long.append(qualname)
            long.extend(_long_functions(node, f"{qualname}."))
        else:
            long.extend(_long_functions(node, prefix))
    return long


def test_no_module_or_function_is_too_long() -> None:
    over = oversized() - EXCEPTIONS
    assert not over, f"over {MAX_MODULE_LINES} lines (module) or {MAX_FUNCTION_LINES} lines (function): {sorted(over)}"


def test_every_exception_is_still_needed() -> None:
    unneeded = EXCEPTIONS - oversized()
    assert not unneeded, f"no longer over its limit, remove from EXCEPTIONS: {sorted(unneeded)}"
