"""What the commands read from their arguments: a drill spec, an instant, a date, the history policies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vaodrill.app.console import UserError


def load_spec_file(path: Path) -> Any:
    from vaodrill.spec.loader import load_spec

    return load_spec(path)


def parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    import pendulum

    try:
        parsed = pendulum.parse(value)
    except Exception:
        raise UserError(f"--now: not an ISO 8601 instant: {value!r}") from None
    if not isinstance(parsed, datetime):
        raise UserError(f"--now: not an instant: {value!r}")
    return parsed


def since_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"--since: not a date: {value!r} (e.g. 2026-01-31 or 2026-01-31T12:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def history_policies(paths: list[Path]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Each drill spec's history policy and plans, from files or folders of *.yaml."""
    files = [f for p in paths for f in (sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p])]
    specs = [load_spec_file(f) for f in files]
    return {s.name: s.history for s in specs}, {s.name: [step.plan for step in s.plans] for s in specs}
