"""The worker's own credit notes as invoice apps show them: display numbers, and their order."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.outputs import IssuedCreditNote
from worker.domain.errors import DomainError
from worker.domain.never_twice import credit_note_display_number, number_in_order


@pytest.mark.parametrize(
    ("reseller", "number", "shown"),
    [
        ("acme", 42, "CN-acme-000042"),
        ("acme", 1, "CN-acme-000001"),
        ("res-7", 999_999, "CN-res-7-999999"),
        ("acme", 1_234_567, "CN-acme-1234567"),  # grows, never cut to six digits
    ],
)
def test_display_number_names_the_reseller_and_pads_the_number(
    reseller: str, number: int, shown: str
) -> None:
    assert credit_note_display_number(reseller, number) == shown


@pytest.mark.parametrize("number", [0, -1])
def test_display_number_refuses_a_number_below_one(number: int) -> None:
    with pytest.raises(DomainError, match="start at 1"):
        credit_note_display_number("acme", number)


@given(st.integers(1, 10**12), st.integers(1, 10**12))
def test_display_numbers_differ_exactly_when_the_numbers_do(first: int, second: int) -> None:
    assert (credit_note_display_number("r", first) == credit_note_display_number("r", second)) == (
        first == second
    )


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=40), st.integers(1, 1000))
def test_numbers_follow_the_order_read_counting_on_per_reseller(resellers: list[str], start: int) -> None:
    first = {"a": start, "b": 1, "c": 7}
    numbers = number_in_order(resellers, first)
    for reseller, begins in first.items():
        own = [number for number, whose in zip(numbers, resellers, strict=True) if whose == reseller]
        assert own == list(range(begins, begins + len(own)))


def test_a_batch_of_one_reseller_is_numbered_in_the_order_read() -> None:
    assert number_in_order(["r", "r", "r"], {"r": 41}) == [41, 42, 43]


NOW = datetime(2026, 12, 2, tzinfo=UTC)


def test_own_note_must_carry_its_display_number_reason_and_tax() -> None:
    with pytest.raises(ValidationError, match="display_number"):
        IssuedCreditNote(credit_note_id="cn-1", number=42, amount="10.00", issued_at=NOW)
    note = IssuedCreditNote(
        credit_note_id="cn-1",
        number=42,
        amount="10.00",
        issued_at=NOW,
        display_number="CN-acme-000042",
        reason="customer asked",
        amounts_include_tax=True,
    )
    assert note.model_dump(mode="json")["display_number"] == "CN-acme-000042"


def test_operators_note_has_no_display_number_of_ours() -> None:
    with pytest.raises(ValidationError, match="display_number"):
        IssuedCreditNote(
            credit_note_id="INV-1", number=None, amount="10.00", issued_at=None, display_number="CN-x-000001"
        )
    chosen = IssuedCreditNote(credit_note_id="INV-1", number=None, amount="10.00", issued_at=None)
    assert (chosen.display_number, chosen.reason, chosen.amounts_include_tax) == (None, None, None)
