"""Fuzz the drill-spec loader: generated specs, counted by outcome, with the slowest case.

Usage: python benchmarks/fuzz_specs.py [--count 10000] [--seed 1]

Each case is one of: a valid spec with its data mutated (a value replaced, a key dropped or added, a list
item doubled), a valid spec's YAML text mutated character by character, a random JSON or YAML document, or a
hostile shape (alias bomb, deep nesting, huge numbers, long names). The loader may answer only with a
``DrillSpec`` or a ``SpecError`` of one line; anything else is counted as ``other`` and the script exits 1.
The generators take a ``random.Random``, so tests drive them from hypothesis (``st.randoms()``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import yaml

from vaodrill.spec.loader import SpecError, parse_spec
from vaodrill.spec.model import CONTINUE_OPTIONS

_WORDS = ["Core Network", "Active Directory", "SQL Tier", "App Tier", "Web Tier", "Reporting", "ERP", "Mail"]
_DURATIONS = [
    "45s",
    "90m",
    "6h",
    "2d",
    "1w",
    "1h30m",
    "PT6H",
    "P1DT2H",
    600,
    0.5,
    "0s",
    "-1h",
    "1x",
    "P1M",
    "999999999999999999999w",
    "100000000w",
    "3650d",
    "3651d",
    "1e400",
    "0.0000001s",
    "9" * 150,
]
_ALPHABET = "ab Z09:-_[]{},&*!|>'\"#%@`?\n\t\\/.+=~\u00e9\u2028\x00\x85\ufeff\ud7ff"
_YAML_BITS = [
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!int ",
    "!!str ",
    "!!binary ",
    "!!set ",
    "<<: ",
    "? ",
    "|\n",
    ">\n",
    "'",
    '"',
    "#",
    "\n",
    "  ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "!!python/object ",
]


def random_scalar(rng: random.Random) -> Any:
    """A scalar of a type, size or range a spec field might not expect."""
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice([0, 1, -1, 3, 10, 1000, 1001, 2**31, 2**63 - 1, 2**63, 10**30, -(10**20)])
    if choice == 3:
        return rng.choice([0.5, -0.0, 1e32, 1e308, float("inf"), float("-inf"), float("nan"), 3.0])
    if choice == 4:
        return rng.choice(_DURATIONS)
    if choice == 5:
        return rng.choice(["latest", "fail", "drill", "failover", "UTC", "Europe/Berlin", "Mars/Base", "sunday 02:00"])
    if choice == 6:
        return rng.choice(
            [
                "2026-11-01T02:00:00+01:00",
                "2026-11-01T02:00 Europe/Berlin",
                "0001-01-01T00:00+14:00",
                "9999-12-31T23:59:59-14:00",
                "2200-01-01",
                "1969-12-31T23:59:59Z",
                "not a date",
            ]
        )
    if choice == 7:
        return rng.choice(_WORDS)
    if choice == 8:
        return "x" * rng.choice([0, 199, 200, 201, 5000, 100_000])
    if choice == 9:
        return rng.choice(CONTINUE_OPTIONS) if rng.random() < 0.5 else "retry failed vm"
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(1, 20)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A scalar, or (less often the deeper it goes) a list or mapping of random values."""
    kind = rng.randrange(10) if depth < 4 else 0
    if kind == 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 9:
        keys = ["plan", "after", "ago", "at", "tz", "seed", "random_within", "continue", "max", "last", "start_of"]
        return {
            rng.choice(keys) if rng.random() < 0.7 else random_scalar(rng): random_value(rng, depth + 1)
            for _ in range(rng.randrange(4))
        }
    return random_scalar(rng)


def random_rule(rng: random.Random) -> Any:
    return rng.choice(
        [
            "latest",
            {"ago": rng.choice(["6h", "1d", "30m"])},
            {"at": "2026-11-01T02:00:00+01:00"},
            {"at": "2026-11-01T02:00", "tz": "Europe/Berlin"},
            {"last": rng.choice(["sunday 02:00", "daily 23:30"])},
            {"start_of": rng.choice(["day", "week", "month"])},
            {"random_within": "7d", "seed": rng.randrange(2**40)},
        ]
    )


def valid_spec(rng: random.Random) -> dict[str, Any]:
    """A valid drill of 1-8 plans with a random DAG and optional keys."""
    names = rng.sample(_WORDS, rng.randrange(1, len(_WORDS) + 1))
    plans: list[Any] = []
    for i, name in enumerate(names):
        step: dict[str, Any] = {"plan": name}
        deps = [n for n in names[:i] if rng.random() < 0.4]
        if deps:
            step["after"] = deps
        if rng.random() < 0.3:
            step["restore_point"] = random_rule(rng)
        if rng.random() < 0.2:
            step["rto_target"] = rng.choice(["45m", "2h"])
        if rng.random() < 0.2:
            step["timeout"] = rng.choice(["2h", "90m"])
        if rng.random() < 0.2:
            step["on_halt"] = {"continue": rng.choice(CONTINUE_OPTIONS), "max": rng.randrange(1, 11)}
        plans.append(name if len(step) == 1 and rng.random() < 0.5 else step)
    spec: dict[str, Any] = {"name": "fuzz-drill", "plans": plans}
    optional = {
        "description": "generated",
        "mode": rng.choice(["drill", "failover"]),
        "timezone": rng.choice(["UTC", "Europe/Berlin", "America/New_York"]),
        "restore_point": random_rule(rng),
        "max_parallel": rng.randrange(1, len(plans) + 1),
        "poll_interval": rng.choice(["1s", "10s", 0.05]),
        "give_up_after": rng.choice(["10s", "5m", "24h"]),
        "on_halt": "fail",
    }
    spec.update({key: value for key, value in optional.items() if rng.random() < 0.4})
    return spec


def _containers(data: Any) -> list[Any]:
    found = [data] if isinstance(data, dict | list) and data else []
    children = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
    for child in children:
        found += _containers(child)
    return found


def mutate_data(rng: random.Random, data: Any) -> Any:
    """1-3 structural changes anywhere in ``data`` (changed in place; also returned)."""
    for _ in range(rng.randrange(1, 4)):
        target = rng.choice(_containers(data) or [data])
        if isinstance(target, dict):
            key = rng.choice(list(target))
            action = rng.randrange(4)
            if action == 0:
                target[key] = random_value(rng)
            elif action == 1 and len(target) > 1:
                del target[key]
            elif action == 2:
                target[rng.choice(["nmae", "plans", "after", "seed", "extra", "give_up_after"])] = random_value(rng)
            else:
                target[key] = [target[key]] * rng.randrange(2, 4)
        elif isinstance(target, list):
            index = rng.randrange(len(target))
            if rng.random() < 0.5:
                target[index] = random_value(rng)
            else:
                target.insert(index, target[index])
    return data


def dump(rng: random.Random, data: Any) -> str:
    """YAML (block or flow) or JSON text of ``data``."""
    if rng.random() < 0.3:
        return json.dumps(data, default=str)
    return yaml.safe_dump(data, default_flow_style=rng.random() < 0.3, allow_unicode=True, sort_keys=False)


def mutate_text(rng: random.Random, text: str) -> str:
    """1-5 edits: characters or YAML tokens inserted, deleted or replaced, lines doubled or swapped."""
    for _ in range(rng.randrange(1, 6)):
        pos = rng.randrange(len(text) + 1)
        action = rng.randrange(5)
        if action == 0:
            text = text[:pos] + rng.choice(_YAML_BITS) + text[pos:]
        elif action == 1:
            text = text[:pos] + text[pos + rng.randrange(1, 8) :]
        elif action == 2:
            text = text[:pos] + rng.choice(_ALPHABET) + text[pos + 1 :]
        else:
            lines = text.splitlines(keepends=True)
            if len(lines) > 1:
                i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
                if action == 3:
                    lines.insert(i, lines[j])
                else:
                    lines[i], lines[j] = lines[j], lines[i]
                text = "".join(lines)
    return text


def hostile(rng: random.Random) -> str:
    """A shape from issue 9's table, with random sizes."""
    choice = rng.randrange(7)
    if choice == 0:  # billion laughs, optionally inside restore_point: {ago: ...}
        width, levels = rng.randrange(3, 12), rng.randrange(3, 12)
        lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
        tail = (
            f"plans:\n  - plan: A\n    restore_point: {{ago: *l{levels - 1}}}\n"
            if rng.random() < 0.5
            else (f"plans: [A]\ndescription: *l{levels - 1}\n")
        )
        return "\n".join(lines) + "\nname: x\n" + tail
    if choice == 1:  # deep nesting
        depth = rng.choice([63, 64, 65, 1000, 5000, 10_000])
        inner = "[" * depth + "]" * depth if rng.random() < 0.5 else "{a: " * depth + "1" + "}" * depth
        return f"name: x\nplans: [A]\ndescription: {inner}\n"
    if choice == 2:  # huge numbers where numbers go
        number = rng.choice(["9" * rng.randrange(20, 6000), "1e32", "1.0e+32", "0x" + "f" * 300, "1:" * 100 + "1"])
        field = rng.choice(
            [
                "max_parallel: {}",
                "poll_interval: {}",
                "restore_point: {{random_within: 7d, seed: {}}}",
                "on_halt: {{continue: RetryFailedStep, max: {}}}",
                "restore_point: {{ago: {}}}",
            ]
        )
        return f"name: x\n{field.format(number)}\nplans: [A, B]\n"
    if choice == 3:  # overflowing durations
        duration = rng.choice(["999999999999999999999w", "100000000w", "P99999999999999999999D", "1e308"])
        field = rng.choice(["poll_interval", "give_up_after", "plans[0].timeout", "ago", "random_within"])
        if field == "plans[0].timeout":
            return f"name: x\nplans: [{{plan: A, timeout: {duration}}}]\n"
        if field in {"ago", "random_within"}:
            return f"name: x\nrestore_point: {{{field}: {duration}}}\nplans: [A]\n"
        return f"name: x\n{field}: {duration}\nplans: [A]\n"
    if choice == 4:  # long names, many plans, long after lists
        size = rng.choice([200, 201, 10_000, 1_000_000])
        return rng.choice(
            [
                f"name: x\nplans: [{'a' * size}]\n",
                f"name: {'a' * size}\nplans: [A]\n",
                f"name: x\ndescription: {'d' * size}\nplans: [A]\n",
            ]
        )
    if choice == 5:
        count = rng.choice([999, 1000, 1001, 5000])
        return "name: x\nplans:\n" + "".join(f"  - p{i}\n" for i in range(count))
    return (
        f"name: x\nrestore_point: {{at: {rng.choice(['0000-01-01', '0001-01-01 00:00:00', '9999-12-31'])}}}\n"
        "plans: [A]\n"
    )


def random_document(rng: random.Random) -> str:
    data = random_value(rng)
    if rng.random() < 0.5:
        data = {"name": "x", "plans": [random_value(rng)], **({"k": data} if rng.random() < 0.5 else {})}
    return dump(rng, data)


CASES: dict[str, Callable[[random.Random], str]] = {
    "mutated data": lambda rng: dump(rng, mutate_data(rng, valid_spec(rng))),
    "mutated text": lambda rng: mutate_text(rng, dump(rng, valid_spec(rng))),
    "random document": random_document,
    "hostile": hostile,
    "valid": lambda rng: dump(rng, valid_spec(rng)),
}


def generate(rng: random.Random) -> tuple[str, str]:
    """``(case kind, YAML text)``."""
    kind = rng.choices(list(CASES), weights=[30, 30, 15, 15, 10])[0]
    return kind, CASES[kind](rng)


def outcome(text: str) -> str:
    """``loaded``, ``SpecError:<kind>`` or ``other:<exception>`` (also for a SpecError that is not one line)."""
    try:
        parse_spec(text, "fuzz.yaml")
    except SpecError as exc:
        message = str(exc)
        if "\n" in message or "\r" in message or len(message) > 1000:
            return "other:SpecError not on one short line"
        return f"SpecError:{exc.kind}"
    except Exception as exc:  # counting them is the point
        return f"other:{type(exc).__name__}: {str(exc)[:100]}"
    return "loaded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts: Counter[str] = Counter()
    by_case: Counter[str] = Counter()
    slowest = (0.0, "", "")
    started = time.perf_counter()
    for _ in range(args.count):
        kind, text = generate(rng)
        begin = time.perf_counter()
        result = outcome(text)
        elapsed = time.perf_counter() - begin
        counts[result] += 1
        by_case[kind] += 1
        if elapsed > slowest[0]:
            slowest = (elapsed, kind, f"{len(text)} chars, {result}: {text[:60]!r}")
    total = time.perf_counter() - started
    print(
        f"{args.count} specs in {total:.1f} s (seed {args.seed}); cases: "
        + ", ".join(f"{kind} {n}" for kind, n in by_case.most_common())
    )
    for result, n in sorted(counts.items(), key=lambda item: (not item[0].startswith("loaded"), -item[1])):
        print(f"{n:7d}  {result}")
    print(f"slowest: {slowest[0] * 1000:.0f} ms, {slowest[1]}, {slowest[2]}")
    others = sum(n for result, n in counts.items() if result.startswith("other"))
    print("other exceptions:", others)
    return 1 if others else 0


if __name__ == "__main__":
    sys.exit(main())
