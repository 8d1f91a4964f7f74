"""An account's available credits: the balance and its version, changed one delta at a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class BalanceCursor:
    """Walks an account's changes in order, giving each its own balance and version (the version
    starts at 1 and counts the changes of that account and currency)."""

    balance: int
    version: int

    def apply(self, delta: int) -> tuple[int, int]:
        self.balance += delta
        self.version += 1
        return self.balance, self.version
