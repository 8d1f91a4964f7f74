"""`refund-worker audit`: every account whose stored balance disagrees with its ledger, as a table or
as JSON Lines, and a closing summary line. The statements are worker/db/audit.py's; here they are run
against DATABASE_URL and their problems printed. Exit statuses are the command's (entrypoints/cli.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from worker.db.audit import AuditSummary, Problem, ProblemKind, accounts_checked, audit_ledger

APPLICATION_NAME = "refund-worker audit"
"""How the audit's session shows in pg_stat_activity."""

CONNECT_TIMEOUT_SECONDS = 10.0
"""A database that does not answer at all is reported after this long, not asyncpg's 60 s."""

PIPE_WIDTH = 200
"""Columns when stdout is not a terminal and COLUMNS is unset: one table row per problem."""


class AuditFailed(Exception):
    """The audit could not run to its end; the message is one line for a person."""


def problem_json(problem: Problem) -> dict[str, Any]:
    """One JSON Lines object: the account's key fields, what each table says, and the problem."""
    account = problem.account
    return {
        **account.key,
        "problem": problem.kind.value,
        "stored_balance_minor": account.stored_balance_minor,
        "stored_version": account.stored_version,
        "ledger_sum_minor": account.ledger_sum_minor,
        "ledger_last_version": account.ledger_last_version,
        "ledger_entries": account.ledger_entries,
        "at_version": problem.at_version,
    }


def summary_line(summary: AuditSummary) -> str:
    if not summary.problems:
        return f"audit: {summary.accounts_checked} accounts checked, every balance agrees with its ledger"
    return (
        f"audit: {summary.accounts_checked} accounts checked, {summary.problems} problems "
        f"in {summary.accounts_with_problems} accounts"
    )


async def run_audit(
    database_url: str, connect_args: Mapping[str, Any], report: Callable[[Problem], None]
) -> AuditSummary:
    """Run the audit, handing each problem to `report` as it arrives; AuditFailed when it cannot."""
    from worker.config.settings import redacted
    from worker.engine.failures import FailureKind, classify, driver_brief
    from worker.engine.runtime import create_engine

    args = {"timeout": CONNECT_TIMEOUT_SECONDS, **connect_args}
    args["server_settings"] = {"application_name": APPLICATION_NAME, **args.get("server_settings", {})}
    try:
        engine = create_engine(database_url, pool_size=1, connect_args=args)
    except Exception as error:  # noqa: BLE001 - a URL SQLAlchemy cannot read (a bad port, say)
        raise AuditFailed(f"cannot audit: DATABASE_URL={redacted(database_url)!r}: {error}") from None
    problems, accounts, missing = 0, set[tuple[str, ...]](), 0
    try:
        async with engine.connect() as conn:
            async for problem in audit_ledger(conn):
                problems += 1
                accounts.add(tuple(map(str, problem.account.key.values())))
                missing += problem.kind is ProblemKind.BALANCE_MISSING
                report(problem)
            checked = await accounts_checked(conn, missing)
    except Exception as error:  # noqa: BLE001 - one line, no traceback, whatever the database said
        where = redacted(database_url)
        if _server_state(error) in SCHEMA_MISSING_STATES:
            message = (
                f"cannot audit {where}: {driver_brief(error)} (not the worker's database, or not migrated)"
            )
        elif classify(error) is FailureKind.INFRASTRUCTURE:
            message = f"cannot audit: the database at {where} is unreachable ({driver_brief(error)})"
        else:
            message = f"cannot audit {where}: {driver_brief(error)}"
        raise AuditFailed(" ".join(message.split())) from None
    finally:
        await engine.dispose()
    return AuditSummary(checked, problems, len(accounts))


SCHEMA_MISSING_STATES = frozenset({"42P01", "42703"})
"""undefined_table, undefined_column: the database answered, but has not the tables audited."""


def _server_state(error: BaseException) -> str | None:
    """The SQLSTATE the server answered with, beneath SQLAlchemy's and the driver's wrapping."""
    for inner in (getattr(error, "orig", None), getattr(getattr(error, "orig", None), "__cause__", None)):
        if isinstance(state := getattr(inner, "sqlstate", None), str):
            return state
    return None


def audit_as_json(database_url: str, connect_args: Mapping[str, Any], out: TextIO) -> AuditSummary:
    """JSON Lines on `out` as the problems arrive, the summary line on stderr (stdout stays JSON)."""

    def write(problem: Problem) -> None:
        out.write(json.dumps(problem_json(problem)) + "\n")

    summary = asyncio.run(run_audit(database_url, connect_args, write))
    out.flush()
    sys.stderr.write(summary_line(summary) + "\n")
    return summary


def audit_as_table(database_url: str, connect_args: Mapping[str, Any]) -> AuditSummary:
    """A table of the problems (when there are any), then the summary line, on stdout."""
    found: list[Problem] = []
    summary = asyncio.run(run_audit(database_url, connect_args, found.append))
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    console = Console(width=PIPE_WIDTH if piped else None, highlight=False)
    if found:
        console.print(problems_table(found))
    console.print(summary_line(summary), markup=False, highlight=False)
    return summary


def problems_table(problems: list[Problem]) -> Table:
    """One row per problem; every value goes in as Text, never as markup (a key like `[bold]`)."""
    headers = [*problems[0].account.key, "problem", "stored balance", "stored version"]
    headers += ["ledger sum", "ledger last version", "ledger entries", "at version"]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for header in headers:
        numeric = header.startswith(("stored", "ledger", "at "))
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    for problem in problems:
        values = problem_json(problem).values()
        table.add_row(*(Text("-" if value is None else str(value)) for value in values))
    return table
