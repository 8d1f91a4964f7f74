"""The input of the commands that read events from a file (`quote`, `adjust --dry-run`).

JSON Lines split on "\n" only (a U+2028 inside a string is text, not a line break), or one
pretty-printed object. Each line is judged alone: a bad one is named by its number, and the good
ones are still answered, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pydantic_core import from_json

_JSON_BLANKS = b" \t\r"
"""The whitespace JSON allows around a value (besides the newline that ends a line)."""


@dataclass(frozen=True, slots=True)
class InvalidLine:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def documents(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, JSON text) for each object: JSON Lines, or one pretty-printed object."""
    stripped = raw.strip(_JSON_BLANKS + b"\n")
    if stripped.startswith(b"{") and b"\n" in stripped and _is_single_document(stripped):
        yield raw.count(b"\n", 0, raw.index(b"{")) + 1, stripped
        return
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if line.strip(_JSON_BLANKS):
            yield number, line


def not_utf8(error: UnicodeDecodeError) -> str:
    return f"not UTF-8 text ({error.reason} at byte {error.start})"


def _is_single_document(text: bytes) -> bool:
    try:
        from_json(text)  # pydantic-core's parser: linear, and bounded in depth (no RecursionError)
    except ValueError:
        return False  # JSON Lines stop parsing at the second object: "trailing characters"
    return True
