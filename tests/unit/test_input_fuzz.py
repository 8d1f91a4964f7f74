"""Thousands of mutated messages on every input topic, interleaved with valid ones (a seeded
generator, tests/fuzz_messages.py): every valid one is read right, every broken one is poison with
a reason and a dead letter the broker takes, none takes long; and `quote` given the same lines
answers the good ones in order and names exactly the bad ones, exit 2, no traceback."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from schemas.inputs import TerminationRequested
from schemas.topics import Topic
from tests.fuzz_messages import Case, Generator
from tests.headers import header
from worker.adjustments.commands import signed_minor
from worker.dlq.recoverer import EXCEPTION_MESSAGE, dead_letter, fit_for_broker, record_size
from worker.domain.money import Currency, Money
from worker.domain.policy import RefundPolicy
from worker.engine.failures import FailureKind, classify, failure_reason
from worker.engine.parsing import (
    adjustment_command,
    credit_note_command,
    expiry_command,
    money_refund_command,
    renewal_command,
    settlement_command,
    termination_command,
)
from worker.engine.records import Headers, InboundRecord
from worker.entrypoints.cli import app
from worker.entrypoints.quote import quote, quote_input
from worker.money_refunds.commands import instruction_id

SEED = 20261202
COUNT = 3000
POISON_REASONS = {"not_json", "invalid_envelope", "invalid_data"}
SLOWEST_SECONDS = 0.5
PARSERS: dict[Topic, Callable[[InboundRecord], Any]] = {
    Topic.TERMINATION_REQUESTED: termination_command,
    Topic.SUBSCRIPTION_EXPIRED: expiry_command,
    Topic.SUBSCRIPTION_RENEWED: renewal_command,
    Topic.BALANCE_ADJUSTMENT_REQUESTED: adjustment_command,
    Topic.CREDIT_NOTE_ISSUED: credit_note_command,
    Topic.MONEY_REFUND_REQUESTED: money_refund_command,
    Topic.PAYMENT_REFUND_SETTLED: settlement_command,
}
POLICY = RefundPolicy(window_days=14)

CASES = Generator(SEED).cases(COUNT)


def record_of(case: Case, offset: int) -> InboundRecord:
    message = case.message
    headers: Headers = tuple(message.headers)  # null header values too, as aiokafka gives them
    return InboundRecord(
        message.topic.value, 0, offset, message.key, message.value, headers, 1_700_000_000_000
    )


def assert_read_right(command: Any, case: Case) -> None:
    data = case.data
    assert data is not None
    if case.message.topic is Topic.BALANCE_ADJUSTMENT_REQUESTED:
        assert_adjustment_read_right(command.request, case.ce_id, data)
        return
    if case.message.topic is Topic.MONEY_REFUND_REQUESTED:
        assert_money_refund_read_right(command.request, case.ce_id, data)
        return
    if case.message.topic is Topic.PAYMENT_REFUND_SETTLED:
        settlement = command.settlement
        assert command.ce_id == case.ce_id
        assert (settlement.instruction_id, settlement.reseller_id, settlement.account_id) == (
            data["instruction_id"],
            data["reseller_id"],
            data["account_id"],
        )
        assert (settlement.status.value, settlement.detail) == (data["status"], data["detail"])
        assert settlement.settled_at == datetime.fromisoformat(data["settled_at"])
        return
    if case.message.topic is Topic.CREDIT_NOTE_ISSUED:
        note = command.note
        assert (command.ce_id, note.credit_note_id, note.subscription_id, note.number) == (
            case.ce_id,
            data["credit_note_id"],
            data["subscription_id"],
            data["number"],
        )
        assert note.amount == Money.parse(data["amount"], Currency.of(data["currency"]))
        assert note.issued_at == datetime.fromisoformat(data["issued_at"])
        return
    ids = (command.subscription_id, command.account_id, command.reseller_id)
    assert ids == (data["subscription_id"], data["account_id"], data["reseller_id"])
    topic = case.message.topic
    if topic is Topic.TERMINATION_REQUESTED:
        assert command.request_id == case.ce_id
        terms = command.terms
        assert terms.amount_paid == Money.parse(data["amount_paid"], Currency.of(data["currency"]))
        assert terms.requested_at == datetime.fromisoformat(data["requested_at"])
        assert (terms.cycle.start.isoformat(), terms.cycle.months) == (
            data["cycle_start"],
            data["cycle_months"],
        )
        assert terms.timezone == (data.get("timezone") or "UTC")
        assert (command.requested_by, command.reason) == (data["requested_by"], data["reason"])
    else:
        field = "expired_at" if topic is Topic.SUBSCRIPTION_EXPIRED else "renewed_at"
        assert command.ce_id == case.ce_id
        assert getattr(command, field) == datetime.fromisoformat(data[field])


def assert_adjustment_read_right(request: Any, ce_id: str | None, data: dict[str, Any]) -> None:
    assert request.adjustment_id == ce_id
    assert (request.account_id, request.reseller_id) == (data["account_id"], data["reseller_id"])
    assert (request.kind.value, request.currency.code) == (data["kind"], data["currency"])
    assert (request.reason, request.actor.id) == (data["reason"], data["actor"]["id"])
    assert request.requested_at == datetime.fromisoformat(data["requested_at"])
    if data["amount"] is not None:
        assert request.amount == signed_minor(data["amount"], Currency.of(data["currency"]), "amount")


def assert_money_refund_read_right(request: Any, ce_id: str | None, data: dict[str, Any]) -> None:
    currency = Currency.of(data["payment"]["currency"])
    assert request.request_id == ce_id
    assert request.instruction_id == instruction_id(data["reseller_id"], request.request_id)
    assert (request.account_id, request.reseller_id) == (data["account_id"], data["reseller_id"])
    assert (request.account_type.value, request.method.value) == (data["account_type"], data["method"])
    assert request.payment.payment_id == data["payment"]["payment_id"]
    assert request.payment.amount == Money.parse(data["payment"]["amount"], currency)
    assert request.amount == Money.parse(data["amount"], currency).minor
    assert (request.from_balance, request.reason) == (data["from_balance"], data["reason"])
    assert request.requested_at == datetime.fromisoformat(data["requested_at"])


def parsed(case: Case, record: InboundRecord) -> tuple[Any, Exception | None]:
    """The command, or whatever the parser raised (the property is about every exception)."""
    try:
        return PARSERS[case.message.topic](record), None
    except Exception as error:  # noqa: BLE001
        return None, error


def test_every_broken_message_is_poison_with_a_reason_and_every_valid_one_is_read_right() -> None:
    refused: Counter[str] = Counter()
    slowest = 0.0
    for offset, case in enumerate(CASES):
        record = record_of(case, offset)
        started = time.perf_counter()
        command, error = parsed(case, record)
        if error is None:
            assert case.valid, f"case {offset} ({case.mutation}) was accepted: {case.message}"
            assert_read_right(command, case)
        else:
            assert not case.valid, f"case {offset} ({case.mutation}) refused: {error}"
            assert classify(error) is FailureKind.POISON, f"case {offset} ({case.mutation}): {error!r}"
            reason = failure_reason(error)
            assert reason in POISON_REASONS, f"case {offset} ({case.mutation}): {reason}"
            letter, _ = fit_for_broker(dead_letter(record, error, group="fuzz", reason=reason))
            assert record_size(letter) <= 1_000_000
            assert 0 < len(header(letter.headers, EXCEPTION_MESSAGE)) <= 4096
            refused[case.mutation] += 1
        slowest = max(slowest, time.perf_counter() - started)

    assert slowest < SLOWEST_SECONDS
    assert sum(case.valid for case in CASES) > COUNT // 4
    assert len(refused) == 21, f"every mutation was tried: {sorted(refused)}"  # see Generator._mutations


def quote_lines() -> list[tuple[bytes, Case]]:
    """The values of the binary-mode termination requests that fit on one line."""
    return [
        (case.message.value, case)
        for case in CASES
        if case.message.topic is Topic.TERMINATION_REQUESTED
        and "structured" not in case.mutation
        and case.message.value is not None
        and b"\n" not in case.message.value
        and case.message.value.strip(b" \t\r")
    ]


def test_quote_answers_the_good_lines_in_order_and_names_exactly_the_bad_ones() -> None:
    lines = quote_lines()
    quotes = quote_input(b"\n".join(value for value, _ in lines), POLICY)

    good = [case for _, case in lines if case.data_valid]
    expected = [
        quote(TerminationRequested.model_validate_json(case.message.value or b""), POLICY) for case in good
    ]
    bad_lines = [number for number, (_, case) in enumerate(lines, start=1) if not case.data_valid]
    assert quotes.decisions == expected
    assert [problem.line for problem in quotes.problems] == bad_lines
    assert len(good) > 100
    assert len(bad_lines) > 100


def test_the_quote_command_exits_2_without_a_traceback_on_the_same_lines(tmp_path: Path) -> None:
    lines = quote_lines()
    source = tmp_path / "fuzz.jsonl"
    source.write_bytes(b"\n".join(value for value, _ in lines))

    result = CliRunner().invoke(app, ["quote", str(source)])

    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == sum(case.data_valid for _, case in lines)
    assert result.stderr.count("\nline ") == sum(not case.data_valid for _, case in lines)
