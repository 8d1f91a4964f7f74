"""No module of the product or its benchmark grows past about 250 lines: a module that needs more
holds more than one responsibility, and a reader should find each in a file of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "schemas", "bench")
MAX_LINES = 250


def _modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts  # a migration is a record of the past, one per change
    )


def test_every_package_has_modules_to_measure() -> None:
    measured = {path.relative_to(ROOT).parts[0] for path in _modules()}
    assert measured == set(PACKAGES)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_module_stays_within_the_line_budget(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by responsibility"
