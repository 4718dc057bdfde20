"""The layers of vaodrill, read from the source: every import goes down, and no two modules import each other.

Order, top to bottom: ``app`` (the command line) → ``flows`` → ``tasks`` → ``engine`` → ``report`` → ``spec`` →
``vao`` → the base (``errors``, ``journal``, the root package). The engine builds and writes the report (a run's
result is the report model), so the engine imports ``report`` and ``report`` never imports the engine. ``simulator``
stands in for a VAO server: only ``app`` starts it, and it may read ``vao.models`` only.

``flows`` and ``tasks`` are imported as ``vaodrill_prefect.flows`` and ``vaodrill_prefect.tasks`` (the names an
installed wheel has): read here under their folders' names, never imported by those alone (a second module copy).
Every ``import`` and ``from ... import`` of each module of ``vaodrill/``, ``flows/`` and ``tasks/`` counts for the
order, wherever it is written (function bodies and ``TYPE_CHECKING`` blocks too). For cycles, the imports that count
are those outside function bodies (module level, ``if``/``try``/``TYPE_CHECKING`` blocks included): the ones a module
needs before it can be read at all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vaodrill", "flows", "tasks")

#: Layer → the layers its modules may import (its own included).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "app": frozenset({"app", "flows", "tasks", "engine", "report", "spec", "vao", "base", "simulator"}),
    "flows": frozenset({"flows", "tasks", "engine", "report", "spec", "vao", "base"}),
    "tasks": frozenset({"tasks", "engine", "report", "spec", "vao", "base"}),
    "engine": frozenset({"engine", "report", "spec", "vao", "base"}),
    "report": frozenset({"report", "spec", "vao", "base"}),
    "spec": frozenset({"spec", "vao", "base"}),
    "vao": frozenset({"vao", "base"}),
    "base": frozenset({"base"}),
    "simulator": frozenset({"simulator"}),
}
#: Single modules a layer may import beyond MAY_IMPORT.
ALSO: dict[str, frozenset[str]] = {"simulator": frozenset({"vaodrill.vao.models"})}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the vaodrill/flows/tasks module imported
    line: int
    top: bool  # outside any function body
    written: str = ""  # the name as the import writes it


#: The package the adapters are imported by: ``vaodrill_prefect.flows`` is the folder ``flows/``.
ADAPTERS = "vaodrill_prefect."


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "vaodrill":
        return parts[0]
    if len(parts) > 1 and parts[1] in MAY_IMPORT:
        return parts[1]
    return "base"  # vaodrill, vaodrill.errors, vaodrill.journal


def _walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, top
        inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inner)


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[Import]:
    is_package = path.name == "__init__.py"
    for node, top in _walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), True):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from vaodrill.engine import progress`` imports the module vaodrill.engine.progress
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}".removeprefix(ADAPTERS) in known else base for a in node.names
            ]
        for written in dict.fromkeys(names):
            name = written.removeprefix(ADAPTERS)
            if name.split(".")[0] in PACKAGES:
                yield Import(module, name, node.lineno, top, written)


@cache
def graph() -> list[Import]:
    known = modules()
    return [i for module, path in known.items() for i in imports(module, path, known)]


def test_every_package_is_read() -> None:
    found = modules()
    assert {
        "vaodrill.app.cli",
        "vaodrill.engine.drill",
        "vaodrill.report.model",
        "vaodrill.spec.model",
        "vaodrill.vao.client",
        "vaodrill.errors",
        "flows.drill",
        "tasks.vao",
    } <= found.keys()
    assert {layer(m) for m in found} == set(MAY_IMPORT)
    # the reading sees function-local imports: the CLI imports most of its commands' code inside them
    assert any(not i.top and i.module == "vaodrill.app.cli" for i in graph())


def test_the_adapters_are_imported_by_one_name() -> None:
    """``vaodrill_prefect.flows.drill``, never ``flows.drill``: one module, one ``dr_drill``, one ``VaoServer``."""
    assert {i.written.split(".")[0] for i in graph() if layer(i.target) in ("flows", "tasks")} <= {"vaodrill_prefect"}
    assert (ROOT / "vaodrill_prefect" / "flows" / "drill.py").resolve() == (ROOT / "flows" / "drill.py").resolve()


def test_imports_go_down_only() -> None:
    wrong = [
        f"{i.module} (line {i.line}) imports {i.target}: the {layer(i.module)} layer may import only "
        f"{', '.join(sorted(MAY_IMPORT[layer(i.module)] | ALSO.get(layer(i.module), frozenset())))}"
        for i in graph()
        if layer(i.target) not in MAY_IMPORT[layer(i.module)] and i.target not in ALSO.get(layer(i.module), frozenset())
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for i in graph():
        if i.top and i.target != i.module:
            edges.setdefault(i.module, set()).add(i.target)
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(edges.get(module, ())):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(edges):
        if module not in done:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
