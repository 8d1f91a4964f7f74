"""The data models of contract section 8 (operator adjustments), and how a request reaches the rules:
what the request refuses as malformed (naming the field) and what it leaves to the rules, what the
answers write, and credits-updated's adjustment causes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.adjustments import (
    AdjustmentKind,
    AdjustmentRejected,
    AdjustmentRejectionReason,
    BalanceAdjusted,
    BalanceAdjustmentRequested,
)
from schemas.errors import InvalidEventData
from schemas.events import CreditsCause, CreditsUpdated, encode_data, message_key, validate_data
from schemas.examples import EXAMPLES
from schemas.limits import (
    ID_MAX_LENGTH,
    MONEY_MAX_LENGTH,
    NAME_MAX_LENGTH,
    PERMISSIONS_MAX_ITEMS,
    REASON_MAX_LENGTH,
)
from schemas.outputs import ADJUSTMENT_CAUSES
from schemas.topics import Topic
from worker.adjustments.commands import adjustment_request, signed_minor, signed_text
from worker.domain import account_facts, adjustment_requests
from worker.domain.errors import InvalidAmount
from worker.domain.money import Currency, Money

ABSENT = object()
SGD = Currency.of("SGD")
AT = datetime(2021, 5, 3, 6, 20, tzinfo=UTC)


def request_data(**changes: Any) -> dict[str, Any]:
    data = {**EXAMPLES[Topic.BALANCE_ADJUSTMENT_REQUESTED].data, **changes}
    return {name: value for name, value in data.items() if value is not ABSENT}


def validated(**changes: Any) -> BalanceAdjustmentRequested:
    return validate_data(BalanceAdjustmentRequested, json.dumps(request_data(**changes)))


def refused_fields(**changes: Any) -> list[tuple[str | int, ...]]:
    with pytest.raises(InvalidEventData) as caught:
        validated(**changes)
    return [tuple(error["loc"]) for error in caught.value.errors]


# --- the request ----------------------------------------------------------------------------------


def test_the_example_request_reads_as_a_transaction_refund_in_minor_units() -> None:
    request = adjustment_request("adj-1", validated())
    assert (request.kind, request.amount, request.currency) == (
        account_facts.AdjustmentKind.TRANSACTION_REFUND,
        2000,
        SGD,
    )
    assert request.transaction == adjustment_requests.Transaction(
        "txn-88412", Money(4500, SGD), "SIP minutes, April"
    )
    assert request.actor == adjustment_requests.Actor(
        "finance@res-b3.example", "res-b3", frozenset({"finance:manage"})
    )


def test_a_structured_mode_object_gives_the_same_request_as_the_json_text() -> None:
    from_object = validate_data(BalanceAdjustmentRequested, request_data())
    assert from_object == validated()
    assert from_object.kind is AdjustmentKind.TRANSACTION_REFUND


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "refund"}, ("kind",)),
        ({"kind": "credit", "amount": None}, ("amount",)),
        ({"kind": "correction", "amount": ABSENT}, ("amount",)),
        ({"transaction": None}, ("transaction",)),
        ({"kind": "reversal", "reverses": None}, ("reverses",)),
        ({"amount": "20,00"}, ("amount",)),
        ({"amount": 20}, ("amount",)),
        ({"transaction": {"transaction_id": "t", "amount": "-45.00"}}, ("transaction", "amount")),
        ({"actor": {"id": "f", "reseller_id": "res-b3"}}, ("actor", "permissions")),
        (
            {"actor": {"id": "f", "reseller_id": "res-b3", "permissions": ["x"] * 101}},
            ("actor", "permissions"),
        ),
        ({"reason": " "}, ("reason",)),
        ({"currency": "XXX"}, ("currency",)),
    ],
)
def test_a_malformed_request_is_refused_naming_its_field(
    changes: dict[str, Any], field: tuple[str, ...]
) -> None:
    assert field in refused_fields(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "credit", "amount": "0.00"},
        {"kind": "credit", "amount": "-5.00"},
        {"kind": "correction", "amount": "0"},
        {"amount": "999.00"},
        {"actor": {"id": "clerk", "reseller_id": "res-x", "permissions": []}},
    ],
)
def test_what_the_rules_refuse_is_well_formed_data_not_a_dead_letter(changes: dict[str, Any]) -> None:
    assert validated(**changes).kind in AdjustmentKind


def nested(path: str, value: Any) -> dict[str, Any]:
    """The example request with the field at `path` ("actor.id") set to `value`."""
    data: dict[str, Any] = json.loads(json.dumps(request_data()))
    *parents, name = path.split(".")
    node = data
    for parent in parents:
        node = node[parent]
    node[name] = value
    return data


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("account_id", ID_MAX_LENGTH),
        ("reseller_id", ID_MAX_LENGTH),
        ("transaction.transaction_id", ID_MAX_LENGTH),
        ("transaction.description", NAME_MAX_LENGTH),
        ("actor.id", NAME_MAX_LENGTH),
        ("actor.reseller_id", ID_MAX_LENGTH),
        ("reason", REASON_MAX_LENGTH),
    ],
)
def test_a_text_at_its_limit_is_accepted_and_one_character_more_refused(path: str, limit: int) -> None:
    validate_data(BalanceAdjustmentRequested, json.dumps(nested(path, "é" * limit)))
    with pytest.raises(InvalidEventData) as caught:
        validate_data(BalanceAdjustmentRequested, json.dumps(nested(path, "é" * (limit + 1))))
    assert {".".join(map(str, error["loc"])) for error in caught.value.errors} == {path}


def test_amounts_permissions_and_targets_are_bounded() -> None:
    assert ("amount",) in refused_fields(amount="1" * (MONEY_MAX_LENGTH + 1))
    assert ("reverses",) in refused_fields(kind="reversal", reverses="r" * (ID_MAX_LENGTH + 1))
    permissions = ["finance:manage"] * PERMISSIONS_MAX_ITEMS
    validated(actor={**request_data()["actor"], "permissions": permissions})
    assert ("actor", "permissions", 0) in refused_fields(
        actor={**request_data()["actor"], "permissions": ["a\x00"]}
    )


def test_a_reversal_needs_no_amount_and_ignores_one() -> None:
    for amount in (None, ABSENT, "-1.234"):
        request = adjustment_request("r", validated(kind="reversal", amount=amount, reverses="adj-0"))
        assert (request.amount, request.reverses) == (None, "adj-0")


def test_what_a_kind_does_not_use_is_dropped() -> None:
    request = adjustment_request("c", validated(kind="credit", reverses="adj-0"))
    assert (request.transaction, request.reverses) == (None, None)


def test_more_digits_than_the_currency_has_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidAmount, match=r"^amount: '20\.001' has 3 decimal places but SGD has 2"):
        adjustment_request("a", validated(amount="20.001"))
    with pytest.raises(InvalidAmount, match=r"^transaction\.amount: "):
        adjustment_request("a", validated(transaction={"transaction_id": "t", "amount": "1.999"}))


@pytest.mark.parametrize(
    ("text", "minor", "written"),
    [("-5.00", -500, "-5.00"), ("5", 500, "5.00"), ("-0.01", -1, "-0.01"), ("-0", 0, "0.00")],
)
def test_signed_money_is_read_in_minor_units_and_written_with_the_currencys_digits(
    text: str, minor: int, written: str
) -> None:
    assert signed_minor(text, SGD, "amount") == minor
    assert signed_text(minor, SGD) == written


def test_the_kinds_and_codes_are_the_domains() -> None:
    assert {kind.value for kind in AdjustmentKind} == {kind.value for kind in account_facts.AdjustmentKind}
    assert {code.value for code in AdjustmentRejectionReason} == {
        code.value for code in adjustment_requests.RefusalCode
    }
    assert {cause.value for cause in ADJUSTMENT_CAUSES} == {kind.value for kind in AdjustmentKind}


# --- the answers ----------------------------------------------------------------------------------


def adjusted(**changes: Any) -> BalanceAdjusted:
    values = {**EXAMPLES[Topic.BALANCE_ADJUSTED].data, "applied_at": AT, **changes}
    return BalanceAdjusted(**values)


def test_balance_adjusted_writes_the_contracts_fields_keyed_by_account() -> None:
    event = adjusted()
    assert json.loads(encode_data(event)) == {
        **EXAMPLES[Topic.BALANCE_ADJUSTED].data,
        "applied_at": "2021-05-03T06:20:00Z",
    }
    assert message_key(event) == b"acc-1002"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"delta": "-20.00"}, "delta"),
        ({"kind": "correction", "delta": "0.00", "transaction_id": None}, "delta"),
        ({"balance": "-0.01"}, "balance"),
        ({"transaction_id": None}, "transaction_id"),
        ({"kind": "credit"}, "transaction_id"),
        ({"kind": "reversal", "delta": "-20.00"}, "reverses"),
        ({"reverses": "adj-0"}, "reverses"),
        ({"delta": "20,00"}, "delta"),
        ({"delta": "20.0"}, "delta"),
        ({"balance": "45.001"}, "balance"),
    ],
)
def test_balance_adjusted_refuses_what_no_adjustment_publishes(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        adjusted(**changes)
    assert field in {error["loc"][0] for error in caught.value.errors()}


def test_the_reversal_of_a_transaction_refund_names_the_transaction_and_what_it_reverses() -> None:
    event = adjusted(kind="reversal", delta="-20.00", balance="125.50", reverses="adj-0")
    assert (event.transaction_id, event.reverses) == ("txn-88412", "adj-0")


def test_adjustment_rejected_names_the_request_and_why() -> None:
    rejected = AdjustmentRejected(**EXAMPLES[Topic.ADJUSTMENT_REJECTED].data)
    assert rejected.reason_code is AdjustmentRejectionReason.EXCEEDS_REFUNDABLE
    with pytest.raises(ValidationError, match="reason_code"):
        AdjustmentRejected(**{**EXAMPLES[Topic.ADJUSTMENT_REJECTED].data, "reason_code": "nope"})


# --- credits-updated ------------------------------------------------------------------------------


def credits(**changes: Any) -> CreditsUpdated:
    values: dict[str, Any] = {
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "currency": "SGD",
        "delta": "20.00",
        "balance": "145.50",
        "balance_version": 4,
        "cause": CreditsCause.TRANSACTION_REFUND,
        "refund_id": None,
        "updated_at": AT,
        "adjustment_id": "adj-1",
        **changes,
    }
    return CreditsUpdated(**values)


@pytest.mark.parametrize("cause", sorted(ADJUSTMENT_CAUSES))
def test_a_change_caused_by_an_adjustment_names_the_adjustment(cause: CreditsCause) -> None:
    assert credits(cause=cause).adjustment_id == "adj-1"
    with pytest.raises(ValidationError, match="adjustment_id"):
        credits(cause=cause, adjustment_id=None)


def test_the_reversal_of_a_termination_refund_names_both() -> None:
    change = credits(cause=CreditsCause.REVERSAL, delta="-110.00", balance="15.50", refund_id="rf-1")
    assert (change.refund_id, change.adjustment_id) == ("rf-1", "adj-1")


def test_a_refunds_change_names_no_adjustment_and_an_adjustment_no_refund_but_a_reversal() -> None:
    with pytest.raises(ValidationError, match="adjustment_id"):
        credits(cause=CreditsCause.REFUND, refund_id="rf-1")
    with pytest.raises(ValidationError, match="refund_id"):
        credits(cause=CreditsCause.CREDIT, refund_id="rf-1")
    assert credits(cause=CreditsCause.REFUND, refund_id="rf-1", adjustment_id=None).adjustment_id is None
