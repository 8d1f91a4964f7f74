"""The demo's third act: its requests are valid and pick the outcomes they name by the simulator's
rule, it knows when each is answered, and its table says what the worker published."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from schemas.events import validate_data
from schemas.money import money_minor
from schemas.money_refunds import MoneyRefundRequested, SettlementStatus
from schemas.topics import Topic
from worker.entrypoints.demo_adjustments import Refunded
from worker.entrypoints.demo_money import DemoMoneyRefund, MoneyAnswers, demo_money_refunds, money_table
from worker.entrypoints.payment_service.answers import simulated_answer

REFUNDED = Refunded("ref-1", "acc-demo", "res-demo", "SGD")


def requests(currency: str = "SGD") -> list[DemoMoneyRefund]:
    return demo_money_refunds("r1", Refunded("ref-1", "acc-demo", "res-demo", currency))


@pytest.mark.parametrize("currency", ["SGD", "JPY", "BHD"])
def test_every_request_is_a_valid_money_refund_of_the_refunded_account(currency: str) -> None:
    for request in requests(currency):
        data = validate_data(MoneyRefundRequested, request.data)
        assert (data.account_id, data.reseller_id, data.payment.currency) == (
            "acc-demo",
            "res-demo",
            currency,
        )
    assert len({request.ce_id for request in requests()}) == len(requests())


@pytest.mark.parametrize("currency", ["SGD", "JPY"])
def test_the_amounts_pick_success_failure_and_silence_by_the_simulators_rule(currency: str) -> None:
    outcomes = []
    for request in requests(currency)[:3]:
        data = validate_data(MoneyRefundRequested, request.data)
        answer = simulated_answer("id", data.method, money_minor(data.amount, currency))
        outcomes.append(None if answer is None else answer.status)
    assert outcomes == [SettlementStatus.SUCCEEDED, SettlementStatus.FAILED, None]
    assert [request.answered for request in requests(currency)] == [True, True, False, True]


def test_only_the_failing_charge_back_takes_the_money_from_the_credits() -> None:
    assert [request.data["from_balance"] for request in requests()] == [False, True, False, False]


def update(request: DemoMoneyRefund, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": request.ce_id,
        "instruction_id": f"ins-{request.ce_id}",
        "status": status,
        "from_balance": request.data["from_balance"],
        "detail": f"{status} detail",
        **fields,
    }


def credits(request: DemoMoneyRefund, cause: str, delta: str, balance: str) -> dict[str, Any]:
    return {
        "instruction_id": f"ins-{request.ce_id}",
        "cause": cause,
        "delta": delta,
        "balance": balance,
        "currency": "SGD",
    }


def all_answered() -> tuple[list[DemoMoneyRefund], MoneyAnswers]:
    succeeds, fails, silent, refused = requests()
    answers = MoneyAnswers()
    for request in (succeeds, fails, silent):
        answers.read(Topic.MONEY_REFUND_UPDATED, update(request, "instructed"))
    answers.read(Topic.CREDITS_UPDATED, credits(fails, "money_refund", "-10.13", "22.37"))
    answers.read(Topic.MONEY_REFUND_UPDATED, update(succeeds, "succeeded"))
    answers.read(Topic.MONEY_REFUND_UPDATED, update(fails, "failed", detail="card expired"))
    answers.read(Topic.CREDITS_UPDATED, credits(fails, "money_refund_failed", "10.13", "32.50"))
    rejected = {"request_id": refused.ce_id, "reason_code": "method_not_allowed", "detail": "retail"}
    answers.read(Topic.ADJUSTMENT_REJECTED, rejected)
    return [succeeds, fails, silent, refused], answers


def test_a_request_is_done_once_rejected_settled_with_its_credits_back_or_instructed_if_never_answered() -> (
    None
):
    succeeds, fails, silent, refused = requests()
    answers = MoneyAnswers()
    assert not any(answers.done(request) for request in (succeeds, fails, silent, refused))
    for request in (succeeds, fails, silent):
        answers.read(Topic.MONEY_REFUND_UPDATED, update(request, "instructed"))
    assert [answers.done(r) for r in (succeeds, fails, silent)] == [False, False, True]
    answers.read(Topic.MONEY_REFUND_UPDATED, update(succeeds, "succeeded"))
    answers.read(Topic.MONEY_REFUND_UPDATED, update(fails, "failed"))
    answers.read(Topic.CREDITS_UPDATED, credits(fails, "money_refund", "-10.13", "22.37"))
    assert [answers.done(r) for r in (succeeds, fails)] == [True, False]
    answers.read(Topic.CREDITS_UPDATED, credits(fails, "money_refund_failed", "10.13", "32.50"))
    assert answers.done(fails)
    _, complete = all_answered()
    assert complete.done(refused)


def test_the_table_shows_each_outcome_and_the_credits_taken_and_given_back() -> None:
    console = Console(width=220, record=True)
    console.print(money_table(*all_answered()))
    text = console.export_text()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 4}
    succeeds, fails, silent, refused = (rows[r.case] for r in requests())
    assert "succeeded" in succeeds
    assert "failed" in fails
    assert "-10.13 SGD, then 10.13 SGD (balance 32.50 SGD)" in fails
    assert "card expired" in fails
    assert "waiting for the payment service" in silent
    assert "rejected" in refused
    assert "method_not_allowed" in refused
