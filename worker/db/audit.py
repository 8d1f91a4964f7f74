"""The ledger audit behind `refund-worker audit`: the append-only ledger is the truth, and every stored
balance must be what its ledger says (docs/contract.md, section 5).

Two set-based statements, whatever the size of the tables: one pass over the ledger (one sort by key
and version, feeding a running sum and a grouped aggregate), fully joined with the balances, returns
only the accounts that disagree; a count of the balances says how many were checked. Both run in one
read-only REPEATABLE READ transaction, so they see the same snapshot, and the problems are streamed
from a server-side cursor: no per-account round trip, nothing held in memory but the rows in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.schema.balances import account_balances, balance_ledger

KEY_COLUMNS: tuple[str, ...] = ("reseller_id", "account_id", "currency")
"""An account's key in both tables, in order (the reseller first: ids are unique within it alone)."""

DESCRIPTIVE_COLUMNS: tuple[str, ...] = tuple(
    name for name in ("reseller_id",) if name in account_balances.c and name not in KEY_COLUMNS
)
"""Shown beside the key, from the stored balance, while they are not part of the key."""

READ_ONLY_SNAPSHOT = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

STREAM_ROWS = 1000
"""Rows fetched from the cursor at a time. The problems come in key order: only they are sorted."""


class ProblemKind(StrEnum):
    BALANCE_MISMATCH = "balance_mismatch"
    """The stored balance is not the sum of the ledger's deltas."""
    VERSION_MISMATCH = "version_mismatch"
    """The stored balance_version is not the ledger's last version."""
    VERSION_GAP = "version_gap"
    """The ledger's versions are not 1, 2, ..., n: `at_version` is the first one missing."""
    RUNNING_BALANCE_MISMATCH = "running_balance_mismatch"
    """A ledger row's balance is not the sum of the deltas up to it: `at_version` is the first such row."""
    BALANCE_MISSING = "balance_missing"
    """The ledger has rows for an account with no stored balance."""


@dataclass(frozen=True, slots=True)
class AccountAudit:
    """One account as both tables see it. `stored_*` are None when there is no balance row, the
    `ledger_*` sum 0 and last version None when there are no ledger rows."""

    key: Mapping[str, str]
    """KEY_COLUMNS, then DESCRIPTIVE_COLUMNS (None when not known: no balance row)."""
    stored_balance_minor: int | None
    stored_version: int | None
    ledger_sum_minor: int
    ledger_last_version: int | None
    ledger_entries: int
    first_missing_version: int | None
    first_wrong_running_version: int | None


@dataclass(frozen=True, slots=True)
class Problem:
    account: AccountAudit
    kind: ProblemKind
    at_version: int | None = None


@dataclass(frozen=True, slots=True)
class AuditSummary:
    accounts_checked: int
    problems: int
    accounts_with_problems: int


def problems_of(account: AccountAudit) -> list[Problem]:
    """Each way the account disagrees with its ledger; [] when it agrees."""
    found: list[Problem] = []
    if account.stored_balance_minor is None or account.stored_version is None:
        found.append(Problem(account, ProblemKind.BALANCE_MISSING))
    else:
        if account.stored_balance_minor != account.ledger_sum_minor:
            found.append(Problem(account, ProblemKind.BALANCE_MISMATCH))
        if account.stored_version != (account.ledger_last_version or 0):
            found.append(Problem(account, ProblemKind.VERSION_MISMATCH))
    if account.first_missing_version is not None:
        found.append(Problem(account, ProblemKind.VERSION_GAP, account.first_missing_version))
    if account.first_wrong_running_version is not None:
        found.append(
            Problem(account, ProblemKind.RUNNING_BALANCE_MISMATCH, account.first_wrong_running_version)
        )
    return found


def disagreeing_accounts() -> Select[tuple[object, ...]]:
    """The accounts whose balance row and ledger disagree in any way `problems_of` names."""
    ledger = balance_ledger
    key = [ledger.c[name] for name in KEY_COLUMNS]
    entries = select(
        *key,
        ledger.c.balance_version,
        ledger.c.delta_minor,
        ledger.c.balance_minor,
        func.sum(ledger.c.delta_minor)
        .over(partition_by=key, order_by=ledger.c.balance_version, rows=(None, 0))
        .label("running_minor"),
        func.count()
        .over(partition_by=key, order_by=ledger.c.balance_version, rows=(None, 0))
        .label("position"),
    ).subquery("entries")
    per_account = (
        select(
            *(entries.c[name] for name in KEY_COLUMNS),
            func.count().label("entries"),
            func.sum(entries.c.delta_minor).label("ledger_sum"),
            func.max(entries.c.balance_version).label("last_version"),
            func.min(entries.c.position)
            .filter(entries.c.balance_version != entries.c.position)
            .label("first_missing"),
            func.min(entries.c.balance_version)
            .filter(entries.c.balance_minor != entries.c.running_minor)
            .label("first_wrong_running"),
        )
        .group_by(*(entries.c[name] for name in KEY_COLUMNS))
        .subquery("ledger")
    )
    stored = account_balances
    ledger_sum = func.coalesce(per_account.c.ledger_sum, 0)
    last_version = func.coalesce(per_account.c.last_version, 0)
    disagrees: list[ColumnElement[bool]] = [
        stored.c[KEY_COLUMNS[0]].is_(None),
        stored.c.balance_minor != ledger_sum,
        stored.c.balance_version != last_version,
        per_account.c.first_missing.is_not(None),
        per_account.c.first_wrong_running.is_not(None),
    ]
    joined = stored.join(
        per_account, and_(*(stored.c[name] == per_account.c[name] for name in KEY_COLUMNS)), full=True
    )
    return (
        select(
            *(func.coalesce(stored.c[name], per_account.c[name]).label(name) for name in KEY_COLUMNS),
            *(stored.c[name] for name in DESCRIPTIVE_COLUMNS),
            stored.c.balance_minor.label("stored_balance"),
            stored.c.balance_version.label("stored_version"),
            ledger_sum.label("ledger_sum"),
            per_account.c.last_version,
            func.coalesce(per_account.c.entries, literal(0)).label("entries"),
            per_account.c.first_missing,
            per_account.c.first_wrong_running,
        )
        .select_from(joined)
        .where(or_(*disagrees))
        .order_by(*(func.coalesce(stored.c[name], per_account.c[name]) for name in KEY_COLUMNS))
    )


async def audit_ledger(conn: AsyncConnection) -> AsyncIterator[Problem]:
    """Stream every problem; the caller's transaction must be new: it is made a read-only snapshot."""
    await conn.execute(READ_ONLY_SNAPSHOT)
    rows = await conn.stream(disagreeing_accounts().execution_options(yield_per=STREAM_ROWS))
    named = (*KEY_COLUMNS, *DESCRIPTIVE_COLUMNS)
    async for row in rows:
        values = row._mapping
        account = AccountAudit(
            key={name: values[name] for name in named},
            stored_balance_minor=values["stored_balance"],
            stored_version=values["stored_version"],
            ledger_sum_minor=int(values["ledger_sum"]),  # numeric: a sum of BIGINTs may pass BIGINT
            ledger_last_version=values["last_version"],
            ledger_entries=values["entries"],
            first_missing_version=values["first_missing"],
            first_wrong_running_version=values["first_wrong_running"],
        )
        for problem in problems_of(account):
            yield problem


async def accounts_checked(conn: AsyncConnection, missing_balances: int) -> int:
    """The stored balances, plus the accounts only the ledger knows (each a BALANCE_MISSING found),
    counted in the audit's snapshot: call it after `audit_ledger`, in the same transaction."""
    stored = await conn.scalar(select(func.count()).select_from(account_balances))
    return int(stored or 0) + missing_balances
