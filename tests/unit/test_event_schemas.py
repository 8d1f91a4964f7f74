"""The data models of the contract's events: what inputs refuse (naming the field), accept, and give the
policy; what outputs write, with the contract's field names exactly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.errors import InvalidEventData, NotJson
from schemas.events import (
    INPUT_MODELS,
    OUTPUT_MODELS,
    CreditNoteRequest,
    CreditsCause,
    CreditsUpdated,
    IssuedCreditNote,
    NoRefundReason,
    RefundIssued,
    RefundMethod,
    RejectionReason,
    Rule,
    SubscriptionExpired,
    SubscriptionRenewed,
    SubscriptionTerminated,
    TerminationCause,
    TerminationRejected,
    TerminationRequested,
    encode_data,
    message_key,
    validate_data,
)
from schemas.topics import (
    INPUT_TOPICS,
    NOT_YET_SERVED,
    OUTPUT_TOPICS,
    TOPICS,
    CeType,
    Topic,
    dead_letter_topic,
    spec_of,
)

ABSENT = object()
"""Marks a field to leave out of a payload."""

ISSUED_AT = datetime(2021, 4, 17, 2, 0, tzinfo=UTC)


def request(**changes: Any) -> bytes:
    """A valid termination-requested payload (the seed's yearly example), with `changes` applied."""
    data: dict[str, Any] = {
        "subscription_id": "sub-1",
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "product": "Cloud PBX",
        "cycle_start": "2021-04-01",
        "cycle_months": 12,
        "amount_paid": "120.00",
        "currency": "SGD",
        "timezone": "Asia/Singapore",
        "is_trial": False,
        "allow_refund": True,
        "requested_at": "2021-04-17T09:30:00+08:00",
        "requested_by": "operator@res-1",
        "reason": "moving to another provider",
        "credit_note": None,
    }
    data.update(changes)
    return json.dumps({name: value for name, value in data.items() if value is not ABSENT}).encode()


def refusal(payload: bytes, model: type[TerminationRequested] = TerminationRequested) -> InvalidEventData:
    with pytest.raises(InvalidEventData) as caught:
        validate_data(model, payload)
    return caught.value


def assert_refused_at(payload: bytes, field: str, *words: str) -> None:
    """Refused, with the error at `field` (dotted for nested) and its message containing `words`."""
    error = refusal(payload)
    fields = {".".join(str(part) for part in detail["loc"]): detail["msg"] for detail in error.errors}
    assert field in fields, f"expected an error at {field}, got {fields}"
    assert field in str(error)
    for word in words:
        assert word in fields[field]


# --- inputs: refusals, each naming its field -------------------------------------------------------


def test_refuses_unknown_currency() -> None:
    assert_refused_at(request(currency="XYZ"), "currency", "ISO 4217")


def test_refuses_currency_without_minor_unit() -> None:
    assert_refused_at(request(currency="XAU"), "currency", "minor unit")


def test_refuses_lowercase_currency_code() -> None:
    assert_refused_at(request(currency="sgd"), "currency")


def test_refuses_negative_amount_paid() -> None:
    assert_refused_at(request(amount_paid="-1.00"), "amount_paid", "non-negative")


def test_refuses_amount_paid_more_precise_than_the_currency() -> None:
    assert_refused_at(request(amount_paid="120.001"), "amount_paid", "3 decimal places", "SGD has 2")


def test_refuses_fraction_digits_on_jpy_amounts() -> None:
    assert_refused_at(request(currency="JPY", amount_paid="1200.5"), "amount_paid", "JPY has 0")


def test_refuses_amount_paid_as_a_json_number() -> None:
    assert_refused_at(request(amount_paid=120.0), "amount_paid", "string")


def test_refuses_absurdly_long_amount_paid() -> None:
    assert_refused_at(request(amount_paid="1" * 5000), "amount_paid", "at most")


@pytest.mark.parametrize("reason", ["", "   ", "\t\n"], ids=["empty", "spaces", "whitespace"])
def test_refuses_empty_or_blank_reason(reason: str) -> None:
    assert_refused_at(request(reason=reason), "reason")


def test_refuses_missing_reason() -> None:
    assert_refused_at(request(reason=ABSENT), "reason", "required")


def test_refuses_naive_requested_at() -> None:
    assert_refused_at(request(requested_at="2021-04-17T09:30:00"), "requested_at", "offset")


@pytest.mark.parametrize(
    "timestamp",
    ["2021-04-17", "1618623000", "2021-04-17T09:30:00+0800", "17/04/2021 09:30 +08:00"],
    ids=["date-only", "epoch-text", "offset-without-colon", "not-iso"],
)
def test_refuses_requested_at_that_is_not_rfc3339(timestamp: str) -> None:
    assert_refused_at(request(requested_at=timestamp), "requested_at", "RFC 3339")


def test_refuses_requested_at_as_an_epoch_number() -> None:
    assert_refused_at(request(requested_at=1618623000), "requested_at", "RFC 3339")


def test_refuses_impossible_cycle_start() -> None:
    assert_refused_at(request(cycle_start="2021-02-30"), "cycle_start", "day value is outside")


@pytest.mark.parametrize("text", ["2021-4-1", "20210401", "2021-04-01T00:00:00Z"])
def test_refuses_cycle_start_not_written_yyyy_mm_dd(text: str) -> None:
    assert_refused_at(request(cycle_start=text), "cycle_start", "YYYY-MM-DD")


@pytest.mark.parametrize("months", [0, -12])
def test_refuses_cycle_months_below_one(months: int) -> None:
    assert_refused_at(request(cycle_months=months), "cycle_months", "greater than or equal to 1")


@pytest.mark.parametrize(
    "months", [True, 1.5, 12.0, "12", None], ids=["bool", "fraction", "float", "text", "null"]
)
def test_refuses_cycle_months_that_is_not_an_integer(months: object) -> None:
    assert_refused_at(request(cycle_months=months), "cycle_months", "integer")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "utc", "Asia/Singapore ", "", "../etc/passwd"])
def test_refuses_non_iana_timezone(zone: str) -> None:
    assert_refused_at(request(timezone=zone), "timezone", "IANA")


@pytest.mark.parametrize("flag", ["true", 1, "yes"])
def test_refuses_allow_refund_that_is_not_a_json_boolean(flag: object) -> None:
    assert_refused_at(request(allow_refund=flag), "allow_refund", "boolean")


def test_refuses_missing_allow_refund() -> None:
    assert_refused_at(request(allow_refund=ABSENT), "allow_refund", "required")


@pytest.mark.parametrize("note_id", ["", "  "])
def test_refuses_credit_note_with_empty_id(note_id: str) -> None:
    payload = request(credit_note={"credit_note_id": note_id, "amount": "10.00"})
    assert_refused_at(payload, "credit_note.credit_note_id")


@pytest.mark.parametrize("amount", ["-5.00", "10.001", "ten", ""])
def test_refuses_credit_note_with_invalid_amount(amount: str) -> None:
    assert_refused_at(request(credit_note={"credit_note_id": "CN-7", "amount": amount}), "credit_note.amount")


def test_reads_credit_note_amount_in_the_subscription_currency() -> None:
    # "1.500" is fine in KWD (3 digits) but one digit too many in SGD.
    assert_refused_at(
        request(credit_note={"credit_note_id": "CN-7", "amount": "1.500"}), "credit_note.amount"
    )


def test_refuses_credit_note_without_amount() -> None:
    assert_refused_at(request(credit_note={"credit_note_id": "CN-7"}), "credit_note.amount", "required")


def test_reports_every_bad_field_at_once() -> None:
    error = refusal(request(cycle_months=0, reason=" ", requested_at="2021-04-17T09:30:00"))
    assert {detail["loc"] for detail in error.errors} == {("cycle_months",), ("reason",), ("requested_at",)}


def test_reports_every_bad_amount_at_once() -> None:
    # Amounts are read with the currency once every field is well-formed, so they are reported together.
    error = refusal(request(amount_paid="1.234", credit_note={"credit_note_id": "CN-1", "amount": "-1"}))
    assert {detail["loc"] for detail in error.errors} == {("amount_paid",), ("credit_note", "amount")}


def test_refuses_text_that_is_not_json_as_not_json() -> None:
    with pytest.raises(NotJson, match="not JSON"):
        validate_data(TerminationRequested, b"{not json")


def test_refuses_a_json_array_naming_the_whole_data() -> None:
    error = refusal(b"[]")
    assert "(data)" in str(error)


def test_refuses_expiry_without_offset() -> None:
    payload = {
        "subscription_id": "s",
        "account_id": "a",
        "reseller_id": "r",
        "expired_at": "2021-05-01T00:00:00",
    }
    with pytest.raises(InvalidEventData, match="expired_at"):
        validate_data(SubscriptionExpired, json.dumps(payload))


# --- inputs: what is accepted (the terms the rules get from it: tests/unit/test_wire_to_domain.py) ------


def test_accepts_the_seed_example_as_written() -> None:
    data = validate_data(TerminationRequested, request())
    assert (data.cycle_start, data.cycle_months, data.amount_paid, data.currency) == (
        date(2021, 4, 1),
        12,
        "120.00",
        "SGD",
    )
    assert data.requested_at == datetime(2021, 4, 17, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    assert (data.allow_refund, data.timezone, data.is_trial, data.credit_note) == (
        True,
        "Asia/Singapore",
        False,
        None,
    )


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("SGD", "120"), ("SGD", "120.5"), ("JPY", "1200"), ("KWD", "1.500"), ("KWD", "0.75"), ("CLF", "1.2345")],
)
def test_accepts_amounts_with_at_most_the_currencys_digits(currency: str, amount: str) -> None:
    payload = request(
        currency=currency, amount_paid=amount, credit_note={"credit_note_id": "CN-9", "amount": amount}
    )
    data = validate_data(TerminationRequested, payload)
    assert (data.amount_paid, data.credit_note) == (
        amount,
        CreditNoteRequest(credit_note_id="CN-9", amount=amount),
    )


def test_defaults_timezone_trial_product_and_credit_note_when_absent() -> None:
    payload = request(timezone=ABSENT, is_trial=ABSENT, product=ABSENT, credit_note=ABSENT)
    data = validate_data(TerminationRequested, payload)
    assert (data.timezone, data.is_trial, data.product, data.credit_note) == ("UTC", False, None, None)


def test_reads_null_optional_fields_as_absent() -> None:
    data = validate_data(TerminationRequested, request(timezone=None, is_trial=None, product=None))
    assert (data.timezone, data.is_trial, data.product) == ("UTC", False, None)


def test_ignores_fields_producers_add_beyond_the_contract() -> None:
    data = validate_data(TerminationRequested, request(portal_version="7.2", channel={"web": True}))
    assert "portal_version" not in data.model_dump()


@pytest.mark.parametrize("amount", ["0", "500.00"])
def test_keeps_zero_or_oversized_credit_notes_for_the_rules_to_reject(amount: str) -> None:
    # credit_note_invalid is a rule's answer (termination-rejected), not a malformed message.
    data = validate_data(
        TerminationRequested, request(credit_note={"credit_note_id": "CN-1", "amount": amount})
    )
    assert data.credit_note == CreditNoteRequest(credit_note_id="CN-1", amount=amount)


def test_validates_a_decoded_object_like_its_json_text() -> None:
    from_text = validate_data(TerminationRequested, request())
    assert validate_data(TerminationRequested, json.loads(request())) == from_text


def test_accepts_expiry_and_renewal_events() -> None:
    ids = {"subscription_id": "sub-1", "account_id": "acc-1", "reseller_id": "res-1"}
    expired = validate_data(SubscriptionExpired, json.dumps({**ids, "expired_at": "2021-05-01T00:00:00Z"}))
    renewed = validate_data(
        SubscriptionRenewed, json.dumps({**ids, "renewed_at": "2021-05-02T08:00:00+08:00"})
    )
    assert expired.expired_at == datetime(2021, 5, 1, tzinfo=UTC)
    assert renewed.renewed_at == datetime(2021, 5, 2, tzinfo=UTC)


# --- outputs: the contract's names, exact money, refused inconsistencies ---------------------------


def refund_issued(**changes: Any) -> RefundIssued:
    fields: dict[str, Any] = {
        "refund_id": "rf-1",
        "request_id": "ce-1",
        "subscription_id": "sub-1",
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "amount": "110.00",
        "currency": "SGD",
        "method": RefundMethod.ACCOUNT_CREDIT,
        "rule": Rule.UNUSED_MONTHS,
        "months_refunded": 11,
        "cycle_months": 12,
        "policy_amount": "110.00",
        "credit_note": IssuedCreditNote(
            credit_note_id="cn-1",
            number=42,
            amount="110.00",
            issued_at=ISSUED_AT,
            display_number="CN-res-1-000042",
            reason="customer asked",
            amounts_include_tax=True,
        ),
        "issued_at": ISSUED_AT,
    }
    return RefundIssued(**{**fields, **changes})


def terminated(**changes: Any) -> SubscriptionTerminated:
    fields: dict[str, Any] = {
        "request_id": "ce-1",
        "subscription_id": "sub-1",
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "terminated_at": ISSUED_AT,
        "cause": TerminationCause.CUSTOMER_REQUEST,
        "refund_amount": "110.00",
        "currency": "SGD",
        "rule": Rule.UNUSED_MONTHS,
        "no_refund_reason": None,
    }
    return SubscriptionTerminated(**{**fields, **changes})


def wire(
    data: RefundIssued | CreditsUpdated | SubscriptionTerminated | TerminationRejected,
) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(encode_data(data))
    return decoded


def test_refund_issued_carries_exactly_the_contract_fields() -> None:
    body = wire(refund_issued())
    assert list(body) == [
        "refund_id",
        "request_id",
        "subscription_id",
        "account_id",
        "reseller_id",
        "amount",
        "currency",
        "method",
        "rule",
        "months_refunded",
        "cycle_months",
        "policy_amount",
        "credit_note",
        "issued_at",
        "auto_linked",
        "credit_notes",
    ]
    assert body["credit_note"] == {
        "credit_note_id": "cn-1",
        "number": 42,
        "amount": "110.00",
        "issued_at": "2021-04-17T02:00:00Z",
        "display_number": "CN-res-1-000042",
        "reason": "customer asked",
        "amounts_include_tax": True,
    }
    assert (body["method"], body["rule"], body["amount"]) == ("account_credit", "unused_months", "110.00")


def test_refund_by_the_operators_credit_note_leaves_unknown_number_and_date_null() -> None:
    note = IssuedCreditNote(credit_note_id="CN-7", number=None, amount="50.00", issued_at=None)
    body = wire(
        refund_issued(
            method=RefundMethod.CREDIT_NOTE, rule=Rule.CREDIT_NOTE, amount="50.00", credit_note=note
        )
    )
    assert body["credit_note"] == {
        "credit_note_id": "CN-7",
        "number": None,
        "amount": "50.00",
        "issued_at": None,
        "display_number": None,
        "reason": None,
        "amounts_include_tax": None,
    }


def test_credits_updated_carries_exactly_the_contract_fields() -> None:
    update = CreditsUpdated(
        account_id="acc-1",
        reseller_id="res-1",
        currency="KWD",
        delta="1.500",
        balance="3.250",
        balance_version=2,
        cause=CreditsCause.REFUND,
        refund_id="rf-1",
        updated_at=datetime(2021, 4, 17, 10, 0, tzinfo=timezone(timedelta(hours=8))),
    )
    assert wire(update) == {
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "currency": "KWD",
        "delta": "1.500",
        "balance": "3.250",
        "balance_version": 2,
        "cause": "refund",
        "refund_id": "rf-1",
        "updated_at": "2021-04-17T10:00:00+08:00",
        "instruction_id": None,
        "adjustment_id": None,
    }


def test_subscription_terminated_carries_exactly_the_contract_fields() -> None:
    assert wire(terminated(currency="JPY", refund_amount="1100")) == {
        "request_id": "ce-1",
        "subscription_id": "sub-1",
        "account_id": "acc-1",
        "reseller_id": "res-1",
        "terminated_at": "2021-04-17T02:00:00Z",
        "cause": "customer_request",
        "refund_amount": "1100",
        "currency": "JPY",
        "rule": "unused_months",
        "no_refund_reason": None,
    }


def test_expiry_termination_has_no_request_currency_or_refund() -> None:
    expiry = terminated(
        request_id=None,
        cause=TerminationCause.EXPIRED,
        refund_amount="0",
        currency=None,
        rule=None,
        no_refund_reason=NoRefundReason.EXPIRED,
    )
    body = wire(expiry)
    assert (body["request_id"], body["refund_amount"], body["currency"], body["rule"]) == (
        None,
        "0",
        None,
        None,
    )
    assert (body["cause"], body["no_refund_reason"]) == ("expired", "expired")


def test_termination_without_refund_writes_zero_in_the_currency_digits() -> None:
    body = wire(terminated(refund_amount="0.00", rule=None, no_refund_reason=NoRefundReason.OUTSIDE_CYCLE))
    assert (body["refund_amount"], body["no_refund_reason"]) == ("0.00", "outside_cycle")


def test_termination_rejected_carries_exactly_the_contract_fields() -> None:
    rejected = TerminationRejected(
        request_id="ce-2",
        subscription_id="sub-1",
        account_id="acc-1",
        reason_code=RejectionReason.ALREADY_TERMINATED,
        detail="terminated on 2021-04-17 by ce-1",
    )
    assert wire(rejected) == {
        "request_id": "ce-2",
        "subscription_id": "sub-1",
        "account_id": "acc-1",
        "reason_code": "already_terminated",
        "detail": "terminated on 2021-04-17 by ce-1",
    }


def test_output_enums_are_the_contracts_values() -> None:
    assert [cause.value for cause in TerminationCause] == ["customer_request", "expired"]
    assert [reason.value for reason in RejectionReason] == [
        "already_terminated",
        "credit_note_already_used",
        "credit_note_invalid",
        "account_mismatch",
    ]


def test_outputs_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="refund_amount"):
        refund_issued(refund_amount="1.00")


@pytest.mark.parametrize(
    ("currency", "amount"), [("SGD", "110"), ("SGD", "110.0"), ("JPY", "1100.00"), ("KWD", "1.5")]
)
def test_outputs_refuse_money_without_exactly_the_currency_digits(currency: str, amount: str) -> None:
    with pytest.raises(ValidationError, match="amount") as caught:
        refund_issued(currency=currency, amount=amount, policy_amount=amount)
    assert "decimal" in str(caught.value)


def test_refund_issued_refuses_a_zero_refund() -> None:
    with pytest.raises(ValidationError, match="above zero"):
        refund_issued(amount="0.00")


def test_refund_issued_refuses_a_rule_that_does_not_go_with_its_method() -> None:
    with pytest.raises(ValidationError, match="rule"):
        refund_issued(method=RefundMethod.CREDIT_NOTE, rule=Rule.UNUSED_MONTHS)


def test_termination_refuses_a_refund_with_a_no_refund_reason() -> None:
    with pytest.raises(ValidationError, match="no_refund_reason"):
        terminated(no_refund_reason=NoRefundReason.OUTSIDE_CYCLE)


def test_termination_without_currency_refuses_any_amount_but_zero() -> None:
    with pytest.raises(ValidationError, match="refund_amount"):
        terminated(currency=None, refund_amount="0.00", rule=None, no_refund_reason=NoRefundReason.EXPIRED)


def test_outputs_refuse_naive_timestamps() -> None:
    with pytest.raises(ValidationError, match="issued_at"):
        refund_issued(issued_at=datetime(2021, 4, 17, 2, 0))


# --- topics -----------------------------------------------------------------------------------


def test_topics_carry_the_contracts_types_and_keys() -> None:
    assert {(str(spec.topic), str(spec.ce_type), spec.key_field) for spec in TOPICS.values()} == {
        ("termination-requested", "subscription.termination.requested.v1", "subscription_id"),
        ("subscription-expired", "subscription.expired.v1", "subscription_id"),
        ("subscription-renewed", "subscription.renewed.v1", "subscription_id"),
        ("refund-issued", "refund.issued.v1", "subscription_id"),
        ("credits-updated", "credits.updated.v1", "account_id"),
        ("subscription-terminated", "subscription.terminated.v1", "subscription_id"),
        ("termination-rejected", "subscription.termination.rejected.v1", "subscription_id"),
        ("balance-adjustment-requested", "account.adjustment.requested.v1", "account_id"),
        ("balance-adjusted", "account.balance.adjusted.v1", "account_id"),
        ("adjustment-rejected", "account.adjustment.rejected.v1", "account_id"),
        ("money-refund-requested", "account.money_refund.requested.v1", "account_id"),
        ("payment-refund-instructed", "payment.refund.instructed.v1", "account_id"),
        ("payment-refund-settled", "payment.refund.settled.v1", "account_id"),
        ("money-refund-updated", "account.money_refund.updated.v1", "account_id"),
        ("credit-note-issued", "invoice.credit_note.issued.v1", "subscription_id"),
        ("refund-conflict-detected", "billing.refund.conflict.v1", "subscription_id"),
    }


def test_every_topic_has_a_data_model_and_inputs_and_outputs_do_not_overlap() -> None:
    assert set(INPUT_MODELS) == set(INPUT_TOPICS) | {t for t in NOT_YET_SERVED if TOPICS[t].is_input}
    assert set(OUTPUT_MODELS) == set(OUTPUT_TOPICS) | {t for t in NOT_YET_SERVED if not TOPICS[t].is_input}
    assert not set(INPUT_TOPICS) & set(OUTPUT_TOPICS)
    assert not NOT_YET_SERVED & {*INPUT_TOPICS, *OUTPUT_TOPICS}, "a topic not served yet is read or written"


def test_dead_letters_go_to_the_topic_name_with_dlt_suffix() -> None:
    assert dead_letter_topic(Topic.TERMINATION_REQUESTED) == "termination-requested-dlt"
    assert spec_of("subscription-expired").dead_letter_topic == "subscription-expired-dlt"


def test_unknown_topic_name_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="refunds-issued"):
        spec_of("refunds-issued")


def test_message_key_is_the_topics_key_field() -> None:
    update = CreditsUpdated(
        account_id="acc-9",
        reseller_id="res-1",
        currency="SGD",
        delta="1.00",
        balance="1.00",
        balance_version=1,
        cause=CreditsCause.REFUND,
        refund_id="rf-1",
        updated_at=ISSUED_AT,
    )
    assert message_key(update) == b"acc-9"
    assert message_key(refund_issued()) == b"sub-1"
    assert TOPICS[Topic.CREDITS_UPDATED].ce_type is CeType.CREDITS_UPDATED
