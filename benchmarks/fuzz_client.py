"""Fuzz the VAO client with generated server answers and print the outcomes.

Each case is a generated server (status, headers, body: huge, trickling, deep, compressed, broken; and a good
or generated login answer) served in process by a real ASGI app; the client calls one operation against it.
Every case must end in a parsed result or a one-line VaoError within its deadline (``tests/test_client_fuzz.py``
runs the same cases, fewer of them). Usage: python benchmarks/fuzz_client.py [N] (default 2000)
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package of this checkout

from tests.test_client_fuzz import CAP, DEADLINE, Case, cases, run_case


def main(count: int) -> None:
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    slowest: tuple[float, str, str] = (0.0, "", "")
    failures: list[str] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(cases)
    def one(case: Case) -> None:
        nonlocal slowest
        try:
            outcome = asyncio.run(run_case(case))
        except AssertionError as exc:  # a broken promise: keep going, report it
            failures.append(f"{case.describe()}: {exc}")
            outcomes["BROKEN PROMISE"] += 1
            return
        outcomes[outcome.kind] += 1
        examples.setdefault(outcome.kind, outcome.message)
        if outcome.seconds > slowest[0]:
            slowest = (outcome.seconds, case.describe(), outcome.message)

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    total = sum(outcomes.values())
    print(f"{total} generated server answers in {elapsed:.1f} s (deadline {DEADLINE:g} s, size cap {CAP // 1024} KiB)")
    for kind, n in outcomes.most_common():
        print(f"  {kind:<18} {n:>5} {n / total:6.1%}  e.g. {examples[kind][:110] or '-'}")
    seconds, case, message = slowest
    print(f"slowest: {seconds:.3f} s  {case}")
    print(f"         -> {message or 'parsed'}")
    for failure in failures[:10]:
        print(f"FAILED: {failure}")
    if failures or total < count:
        sys.exit(1)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
