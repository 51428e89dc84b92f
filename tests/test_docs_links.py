"""Relative links in the README and docs/ point at files inside this repository."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [
    REPO / "README.md",
    *sorted((REPO / "docs").rglob("*.md")),
    *sorted((REPO / "benchmarks").glob("*.md")),
]
KNOWN: set[str] = set()  # docs allowed to link outside the repository (none)
CASES = [
    pytest.param(d, id=str(d.relative_to(REPO)), marks=pytest.mark.xfail(reason="links outside the repo"))
    if str(d.relative_to(REPO)) in KNOWN
    else pytest.param(d, id=str(d.relative_to(REPO)))
    for d in DOCS
]
LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)|`(\.\./[^`\s]+)`")  # [text](path) and `../path`


@pytest.mark.parametrize("doc", CASES)
def test_relative_links_stay_in_the_repo(doc):
    bad = []
    for m in LINK.finditer(doc.read_text()):
        target = m.group(1) or m.group(2)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path = (doc.parent / target).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            bad.append(target)
    assert not bad, f"{doc.relative_to(REPO)} links outside the repository or to missing files: {bad}"
