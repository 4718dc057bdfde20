"""The README and docs/ hold together: the README's drill is a valid spec, every docs/ page is linked from the
README, every relative link and image resolves, and nothing points at a file outside the repository."""

import re
import subprocess
from pathlib import Path

import pytest

from vaodrill.spec.loader import parse_spec

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target), without the anchor


def test_the_readme_is_a_front_door_that_links_every_docs_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    linked = {(ROOT / target).resolve() for target in LINK.findall(text)}
    assert {page.resolve() for page in PAGES} <= linked, "docs/ pages not linked from the README"


def test_the_readmes_drill_is_a_valid_spec() -> None:
    (example,) = re.findall(r"## A drill\n\n```yaml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    spec = parse_spec(example)
    assert [step.plan for step in spec.plans] == ["Core Network", "Active Directory", "SQL Tier", "Reporting"]


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.name}: {missing}"


def test_nothing_points_outside_the_repository() -> None:
    found = subprocess.run(
        ["git", "grep", "-n", "-e", "shared/vao", "-e", "vao-v2-api", "--", ".", ":!tests/test_docs.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 1, found.stdout  # git grep: 1 means no match
