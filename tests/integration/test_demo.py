"""The README's first command: the demo's three tables, read back from what the worker published."""

from __future__ import annotations

import pytest
from rich.console import Console

from tests.integration.harness import running_worker, unique, worker_settings
from worker.entrypoints.demo import run_demo

pytestmark = pytest.mark.slow


async def test_demo_shows_the_seed_terminations_money_refunds_and_one_adjustment_of_each_kind(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    console = Console(record=True, width=250)
    # A group of its own: this worker leaving must not hold up the next test's rejoin of the shared one.
    settings = worker_settings(
        kafka_bootstrap, database_url, kafka_group_settings, consumer_group=unique("refund-worker-demo")
    )
    async with running_worker(settings):
        await run_demo(kafka_bootstrap, console, wait_seconds=90, group_settings=kafka_group_settings)
    text = console.export_text()

    terminations, rest = text.split("Money back to the customer through the payment service")
    money, adjustments = rest.split("An operator adjusts the account's credits")
    assert "no answer" not in terminations
    assert terminations.count("no second effect") == 1
    assert "already_terminated" in terminations
    assert "credit_note_already_used" in terminations
    money_rows = _rows(money)
    assert " succeeded " in money_rows["charge back of a card payment: succeeds"]
    failed = money_rows["charge back out of the credits, ends in 13: fails"]
    assert " failed " in failed
    assert "-10.13 " in failed  # the credits taken,
    assert ", then 10.13 " in failed  # then given back
    assert "waiting for the payment service" in money_rows["charge back ending in 99: never answered"]
    assert "method_not_allowed: " in money_rows["cancel payment for a retail account"]
    rows = _rows(adjustments)
    applied = [case for case, line in rows.items() if "applied" in line]
    assert {case.split(":")[0] for case in applied} == {
        "credit",
        "transaction refund",
        "reversal",
        "correction",
    }
    assert "exceeds_refundable: " in rows["transaction refund: 30.00 more of it"]
    assert "forbidden: " in rows["credit by a clerk without Finance"]


def _rows(table: str) -> dict[str, str]:
    """A rich table's body rows by their first cell."""
    return {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 5}
