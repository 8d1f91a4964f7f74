"""The pure part of a batch of adjustments (worker/adjustments/plan.py): what it reads, the facts
each account is judged on, and the rows and events of its decisions, in input order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.adjustments import BalanceAdjustmentRequested
from tests.integration.harness import adjustment_data
from worker.adjustments.commands import AdjustmentCommand, AdjustmentResult, Outcome, adjustment_request
from worker.adjustments.plan import (
    StoredFacts,
    account_facts,
    balance_keys,
    decide_batch,
    plan_rows,
    target_keys,
    transaction_keys,
)
from worker.domain.account_facts import EntryFacts, EntryKind, TransactionFacts
from worker.domain.adjustment_requests import Applied, RefusalCode, Refused
from worker.domain.money import Currency, Money
from worker.domain.policy import RefundMethod
from worker.engine.outbox import derived_id

NOW = datetime(2021, 5, 3, 6, 20, tzinfo=UTC)
SGD = Currency.of("SGD")


def command(
    ce_id: str, kind: str, account: str = "acc-1", reseller: str = "res-1", **fields: Any
) -> AdjustmentCommand:
    requested = BalanceAdjustmentRequested.model_validate(adjustment_data(account, reseller, kind, **fields))
    return AdjustmentCommand(adjustment_request(ce_id, requested), b"digest")


def decided(commands: list[AdjustmentCommand], stored: StoredFacts) -> tuple[list[AdjustmentResult], Any]:
    decisions, after = decide_batch([c.request for c in commands], stored)
    results = []
    for c in commands:
        decision = decisions[(c.request.reseller_id, c.request.adjustment_id)]
        outcome = Outcome.APPLIED if isinstance(decision, Applied) else Outcome.REJECTED
        results.append(AdjustmentResult(c, outcome, decision))
    return results, after


def test_balances_are_locked_once_each_in_key_order() -> None:
    requests = [
        command("a", "credit", account="acc-2").request,
        command("b", "credit", account="acc-1", currency="USD").request,
        command("c", "credit", account="acc-1").request,
        command("d", "credit", account="acc-2").request,
    ]
    assert balance_keys(requests) == [
        ("res-1", "acc-1", "SGD"),
        ("res-1", "acc-1", "USD"),
        ("res-1", "acc-2", "SGD"),
    ]


def test_reversals_look_up_their_targets_and_the_transactions_those_refunded() -> None:
    requests = [
        command("a", "reversal", reverses="adj-9").request,
        command(
            "b", "transaction_refund", transaction={"transaction_id": "txn-2", "amount": "45.00"}
        ).request,
        command("c", "credit").request,
    ]
    entry = EntryFacts(EntryKind.TRANSACTION_REFUND, SGD, 500, transaction_id="txn-1")
    assert target_keys(requests) == [("res-1", "adj-9")]
    assert transaction_keys(requests, {("res-1", "adj-9"): ("acc-1", entry)}) == [
        ("res-1", "acc-1", "txn-1"),
        ("res-1", "acc-1", "txn-2"),
    ]


def test_what_another_account_or_reseller_holds_is_no_fact_of_this_account() -> None:
    entry = EntryFacts(EntryKind.CREDIT, SGD, 500)
    stored = StoredFacts(
        balances={("res-1", "acc-1", "SGD"): (700, 3), ("res-1", "acc-2", "SGD"): (100, 1)},
        entries={("res-1", "adj-own"): ("acc-1", entry), ("res-1", "adj-theirs"): ("acc-2", entry)},
        transactions={("res-2", "acc-1", "txn-1"): TransactionFacts(Money(100, SGD))},
    )
    facts = account_facts(("res-1", "acc-1"), stored)
    assert dict(facts.balances) == {SGD: 700}
    assert set(facts.entries) == {"adj-own"}
    assert not facts.transactions
    results, _ = decided([command("r", "reversal", reverses="adj-theirs")], stored)
    assert isinstance(results[0].decision, Refused)
    assert results[0].decision.code is RefusalCode.UNKNOWN_TARGET


def test_applied_changes_take_the_next_versions_of_their_balance_in_input_order() -> None:
    stored = StoredFacts(balances={("res-1", "acc-1", "SGD"): (700, 3)})
    commands = [
        command("a", "credit", amount="1.00"),
        command("b", "correction", amount="-100.00"),
        command("c", "correction", amount="-2.00"),
        command("d", "credit", account="acc-2", amount="3.00"),
    ]
    results, after = decided(commands, stored)
    rows = plan_rows(results, stored, after, NOW)

    assert [(r["adjustment_id"], r["balance_version"], r["balance_minor"]) for r in rows.adjustments] == [
        ("a", 4, 800),
        ("c", 5, 600),
        ("d", 1, 300),
    ]
    assert rows.balance_changes == {
        ("res-1", "acc-1", "SGD"): [100, -200],
        ("res-1", "acc-2", "SGD"): [300],
    }
    assert rows.balances_before == {("res-1", "acc-1", "SGD"): (700, 3), ("res-1", "acc-2", "SGD"): (0, 0)}
    assert [row["ce_id"] for row in rows.inbox] == ["a", "b", "c", "d"]
    assert [event.topic for event in rows.events] == [
        "balance-adjusted",
        "credits-updated",
        "adjustment-rejected",
        "balance-adjusted",
        "credits-updated",
        "balance-adjusted",
        "credits-updated",
    ]
    assert rows.events[2].event_id == derived_id("res-1", "b", "adjustment-rejected")


def test_a_ledger_entry_names_its_adjustment_and_what_it_refunds_or_reverses() -> None:
    refund = EntryFacts(EntryKind.TERMINATION_REFUND, SGD, 12000, method=RefundMethod.ACCOUNT_CREDIT)
    stored = StoredFacts(
        balances={("res-1", "acc-1", "SGD"): (12000, 1)}, entries={("res-1", "ref-1"): ("acc-1", refund)}
    )
    commands = [
        command(
            "t",
            "transaction_refund",
            amount="20.00",
            transaction={"transaction_id": "txn-1", "amount": "45.00"},
        ),
        command("r", "reversal", reverses="ref-1"),
    ]
    results, after = decided(commands, stored)
    rows = plan_rows(results, stored, after, NOW)

    picked = [
        {
            k: row[k]
            for k in (
                "adjustment_id",
                "kind",
                "cause",
                "transaction_id",
                "reverses",
                "refund_id",
                "delta_minor",
            )
        }
        for row in rows.ledger
    ]
    assert picked == [
        {
            "adjustment_id": "t",
            "kind": "transaction_refund",
            "cause": "transaction_refund",
            "transaction_id": "txn-1",
            "reverses": None,
            "refund_id": None,
            "delta_minor": 2000,
        },
        {
            "adjustment_id": "r",
            "kind": "reversal",
            "cause": "reversal",
            "transaction_id": None,
            "reverses": "ref-1",
            "refund_id": "ref-1",
            "delta_minor": -12000,
        },
    ]
    assert rows.ledger[0]["event_id"] == derived_id("res-1", "t", "credits-updated")
    assert [(t["transaction_id"], t["amount_minor"], t["refunded_minor"]) for t in rows.transactions] == [
        ("txn-1", 4500, 2000)
    ]


def test_redeliveries_write_nothing() -> None:
    results = [
        AdjustmentResult(command("a", "credit"), Outcome.DUPLICATE),
        AdjustmentResult(command("b", "credit"), Outcome.CONFLICT),
    ]
    rows = plan_rows(results, StoredFacts(), {}, NOW)
    assert (rows.inbox, rows.adjustments, rows.ledger, rows.events, rows.balance_changes) == (
        [],
        [],
        [],
        [],
        {},
    )
