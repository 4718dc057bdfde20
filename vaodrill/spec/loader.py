"""Reading a drill file: the file, its YAML and the validation errors, each as one ``SpecError`` line.

``load_spec``/``parse_spec`` raise ``SpecError`` whose ``str()`` is one line naming the file, the place and the
problem (``demo.yaml: plans[1].after: 'Core Netwrk' is not a plan of this drill``); the YAML line, when known,
is in ``SpecError.line``. ``spec.model_dump()`` gives YAML-safe data that parses back to an equal spec.

Limits. A drill file is hostile input until proven otherwise: each limit below turns what would be a hang, a
huge allocation or a traceback into one ``SpecError`` within a fraction of a second.

* the file: a regular file (not a FIFO, device or directory) of at most ``MAX_FILE_BYTES`` (1 MiB), read with
  that bound, in UTF-8;
* the YAML: nested at most ``MAX_DEPTH`` (64) levels, at most ``MAX_NODES`` (30,000) values where an alias
  counts as everything it stands for (so an alias bomb is refused before it is expanded; a 1,000-plan drill
  with every key set has about 19,000 values), numbers and dates at most 100 characters;
* the drill: at most ``MAX_PLANS`` (1,000) plans, ``after`` lists at most as long; plan names at most
  ``MAX_PLAN_NAME`` (200) characters without control characters; the drill name at most 100 characters; the
  description at most ``MAX_DESCRIPTION`` (4,000); ``max_parallel`` from 1 to the number of plans;
* values: durations at most 10 years, ``poll_interval`` from 0.05 s (for the simulator; use seconds against a
  real VAO) to 1 h, ``give_up_after`` from 10 s to 24 h, ``at`` dates in the years 1970 to 2199, seeds
  0 to 2**63-1 (see ``vaodrill.spec.durations`` and ``vaodrill.spec.restore_points``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any, cast

import yaml
from pydantic import ValidationError
from yaml._yaml import CParser  # libyaml; PyYAML's wheels ship it

from vaodrill.errors import one_line
from vaodrill.spec.model import DrillSpec, SpecIssue, format_loc
from vaodrill.spec.strict import show_value, validation_problem

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "SpecError", "load_spec", "parse_spec"]

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 30_000


class SpecError(ValueError):
    """A drill file problem; ``str()`` is one line: ``<source>: <location>: <problem>``.

    ``source`` is the file name (or ``<string>``), ``location`` like ``plans[2].restore_point`` or
    ``line 4`` (empty at the top level), ``line`` the 1-based YAML line when known. ``kind`` sorts problems for
    callers that count them: ``file``, ``too_large``, ``yaml``, ``limit`` (depth, size, aliases), or the
    validation error's type (``unknown_key``, ``value_error``, ``too_many_plans``...). The problem is cut to
    ``MAX_PROBLEM`` characters: a hostile value must not turn into a megabyte of error text.
    """

    MAX_PROBLEM = 500

    def __init__(
        self,
        problem: str,
        *,
        source: str | None = None,
        location: str = "",
        line: int | None = None,
        kind: str = "invalid",
    ) -> None:
        problem = " ".join(problem.splitlines())
        if len(problem) > self.MAX_PROBLEM:
            problem = problem[: self.MAX_PROBLEM - 3] + "..."
        self.problem, self.kind = problem, kind
        self.source, self.location, self.line = source, location, line
        message = ": ".join(part for part in (source, location, self.problem) if part)
        super().__init__(" ".join(message.splitlines()))  # a file name may hold a newline too


class _LimitError(yaml.composer.ComposerError):
    """A document deeper or larger than the loader allows."""


class _ScalarError(yaml.constructor.ConstructorError):
    """A number, boolean or date that cannot be built; reported at its key path, like a validation error."""


class _Loader(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """libyaml's parser, PyYAML's composer with limits, the safe constructor without duplicate keys.

    libyaml parses 1 MiB in a fraction of a second where PyYAML's pure parser needs many seconds. Composing
    stays in Python so each node is counted before anything is built: an alias counts as every value it stands
    for, so an alias bomb is refused after a few hundred events instead of being expanded, and nesting is
    refused at ``MAX_DEPTH`` instead of exhausting the stack.
    """

    def __init__(self, text: str) -> None:
        CParser.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._sizes: dict[str, int] = {}  # anchor -> how many values it stands for

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        anchor = getattr(event, "anchor", None)
        mark = getattr(event, "start_mark", None)
        if isinstance(event, yaml.AliasEvent):
            size = self._sizes.get(anchor) if anchor is not None else None
            if size is None and anchor in self.anchors:
                problem = f"alias *{one_line(str(anchor), 40)} refers to a value containing it"
                raise _LimitError(None, None, problem, mark)
            self._count(size or 0, mark, f"aliases expand to more than {MAX_NODES} values")
            return super().compose_node(parent, index)  # an undefined alias is PyYAML's error
        if self._depth >= MAX_DEPTH:
            raise _LimitError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._count(1, mark, f"more than {MAX_NODES} values")
        before = self._nodes
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if anchor is not None:
            self._sizes[anchor] = self._nodes - before + 1
        return node

    def _count(self, nodes: int, mark: Any, problem: str) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise _LimitError(None, None, problem, mark)


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    """Refuse duplicate keys (plain PyYAML silently keeps the last one)."""
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen  # a set key is looked up as a frozenset, but cannot be added
            seen.add(key)
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"duplicate key {show_value(key)}", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=deep)


# cast: the stubs only admit PyYAML's own loader classes here
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, cast(Any, _mapping_without_duplicates))

_MAX_SCALAR_TEXT = 100  # numbers, booleans, dates: int() of a long digit string is slow, then refused


def _checked_scalar(tag: str, what: str) -> Callable[[_Loader, yaml.ScalarNode], Any]:
    """PyYAML's constructor for ``tag``, with a length bound and its ValueError & co. as YAML errors."""
    construct = yaml.constructor.SafeConstructor.yaml_constructors[tag]

    def checked(loader: _Loader, node: yaml.ScalarNode) -> Any:
        text = node.value if isinstance(node.value, str) else ""
        if len(text) > _MAX_SCALAR_TEXT:
            raise _ScalarError(
                None, None, f"{what} of {len(text)} characters (at most {_MAX_SCALAR_TEXT})", node.start_mark
            )
        try:
            return construct(loader, node)
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError):  # e.g. !!int x, year 0
            raise _ScalarError(None, None, f"invalid {what} {show_value(text)}", node.start_mark) from None

    return checked


for _tag, _what in (("int", "integer"), ("float", "number"), ("bool", "boolean"), ("timestamp", "date")):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", cast(Any, _checked_scalar(f"tag:yaml.org,2002:{_tag}", _what)))


def _read_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The document's root node (for error lines) and its data; ``SpecError`` on bad or oversized YAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        try:
            return root, None if root is None else loader.construct_document(root)
        except _ScalarError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else None
            where = _path_of(root, exc.problem_mark) or (f"line {line}" if line else "")
            raise SpecError(
                exc.problem or "invalid value", source=source, location=where, line=line, kind="yaml_value"
            ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        where = f"line {line}" if line else ""
        if isinstance(exc, _LimitError):
            raise SpecError(
                exc.problem or "too large", source=source, location=where, line=line, kind="limit"
            ) from None
        what = exc.problem or exc.context or "unreadable"
        raise SpecError(f"invalid YAML ({what})", source=source, location=where, line=line, kind="yaml") from None
    except yaml.reader.ReaderError as exc:
        problem = f"invalid YAML ({exc.reason}: #x{exc.character:04x} at character {exc.position})"
        raise SpecError(problem, source=source, kind="yaml") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML ({exc})", source=source, kind="yaml") from None
    finally:
        loader.dispose()


def _path_of(root: yaml.Node | None, mark: Any) -> str:
    """``plans[2].restore_point.seed`` for the scalar node starting at ``mark``; "" if not found."""
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())] if root is not None and mark else []
    seen: set[int] = set()  # aliases share nodes: visit each once
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and node.start_mark.index == mark.index:
            return format_loc(path)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                label = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack += [(key, (*path, label)), (value, (*path, label))]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(child, (*path, i)) for i, child in enumerate(node.value)]
    return ""


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest YAML key or item on ``loc`` (pydantic's error location)."""
    node = root
    if node is None:
        return None
    line = node.start_mark.line
    for part in loc:
        if isinstance(part, str) and part.startswith("rule:"):
            continue
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = [(key, value) for key, value in node.value if getattr(key, "value", None) == part]
            if not match:
                break
            line, node = match[0][0].start_mark.line, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line + 1


def _from_validation_error(exc: ValidationError, root: yaml.Node | None, source: str) -> SpecError:
    first = exc.errors(include_url=False)[0]
    location, problem = validation_problem(exc)
    raw_loc: tuple[int | str, ...] = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    if first["type"] == "unknown_key":
        raw_loc = (*raw_loc, ctx["key"])
    issue = ctx.get("error")
    if isinstance(issue, SpecIssue):
        extra = problem[len(str(issue)) :]  # the "(+N more)" suffix, if any
        location, problem, raw_loc = format_loc(issue.loc), issue.problem + extra, issue.loc
    return SpecError(problem, source=source, location=location, line=_line_of(root, raw_loc), kind=first["type"])


def parse_spec(text: str, source: str = "<string>") -> DrillSpec:
    """Parse and validate a drill from YAML text; ``SpecError`` (one line) on any problem."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(f"larger than {MAX_FILE_BYTES} bytes (1 MiB)", source=source, kind="too_large")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError("not UTF-8 text (a lone surrogate)", source=source, kind="file") from None
    root, data = _read_yaml(text, source)
    if data is None:
        raise SpecError("empty drill file", source=source, kind="empty")
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping (name, plans, ...) at the top level, got {show_value(data)}",
            source=source,
            line=1,
            kind="top_level",
        )
    try:
        return DrillSpec.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, root, source) from None


def load_spec(path: str | os.PathLike[str]) -> DrillSpec:
    """Read and validate a drill file; ``SpecError`` names the file in every message."""
    name = os.fspath(path)
    return parse_spec(_read_drill_file(name), source=name)


_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_drill_file(name: str) -> str:
    """The text of a regular file of at most ``MAX_FILE_BYTES``.

    Opened without blocking and checked on the open descriptor (no race with a swapped file), so a FIFO
    cannot hang the open; read with a bound, so an endless file (/dev/zero, /proc) cannot fill memory.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise SpecError(f"no such drill file: {name}", kind="file") from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a drill file", source=name, kind="file") from None
    except OSError as exc:
        raise SpecError(f"cannot read ({exc.strerror or exc})", source=name, kind="file") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = next((text for test, text in _FILE_TYPES if test(info.st_mode)), "not a regular file")
            raise SpecError(f"is {what}, not a drill file", source=name, kind="file")
        if info.st_size > MAX_FILE_BYTES:
            raise SpecError(f"larger than {MAX_FILE_BYTES} bytes (1 MiB)", source=name, kind="too_large")
        data = b""
        while len(data) <= MAX_FILE_BYTES:  # the size may lie (procfs) or grow meanwhile
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise SpecError(f"cannot read ({exc.strerror or exc})", source=name, kind="file") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"larger than {MAX_FILE_BYTES} bytes (1 MiB)", source=name, kind="too_large")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", source=name, kind="file") from None
