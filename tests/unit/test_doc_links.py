"""The documentation stands on its own: no link leaves the repository for the old shared folder, and
every relative link (and its #anchor) points at something that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted([ROOT / "README.md", ROOT / "schemas" / "README.md", *(ROOT / "docs").glob("*.md")])
SEARCHED = [ROOT / "README.md", ROOT / "docs", ROOT / "schemas", ROOT / "worker", ROOT / "deploy"]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)


# Written on another branch at the same time as the link to it; remove once merged.
def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_nothing_points_at_the_shared_folder_outside_the_repository() -> None:
    files = [p for base in SEARCHED for p in ([base] if base.is_file() else base.rglob("*")) if p.is_file()]
    offending = [
        str(path.relative_to(ROOT))
        for path in files
        if path.suffix in {".md", ".py", ".json", ".yaml", ".toml"}
        and re.search(r"\.\./shared|shared/contract|/work/shared", path.read_text(encoding="utf-8"))
    ]
    assert offending == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in _LINK.findall(document.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, fragment = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists():
            broken.append(target)
        elif fragment and path.suffix == ".md":
            anchors = {anchor(h) for h in _HEADING.findall(path.read_text(encoding="utf-8"))}
            if fragment not in anchors:
                broken.append(target)
    assert broken == [], f"{document.name} links to what does not exist"
