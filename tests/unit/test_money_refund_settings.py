"""MONEY_REFUND_TIMEOUT_HOURS (contract section 9): 72 by default, fractions allowed, above zero."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.unit.exact_settings import exact_settings
from worker.domain.money_refund_facts import DEFAULT_MONEY_REFUND_TIMEOUT_HOURS, SettlementTimeout


def test_the_money_refund_timeout_is_72_hours_by_default() -> None:
    assert exact_settings({}).money_refund_timeout_hours == DEFAULT_MONEY_REFUND_TIMEOUT_HOURS == 72


def test_the_money_refund_timeout_takes_fractions_of_hours() -> None:
    hours = exact_settings({"MONEY_REFUND_TIMEOUT_HOURS": "0.001"}).money_refund_timeout_hours
    assert SettlementTimeout(hours).delta.total_seconds() == pytest.approx(3.6)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_money_refund_timeout_not_above_zero_or_not_a_number_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="money_refund_timeout_hours"):
        exact_settings({"MONEY_REFUND_TIMEOUT_HOURS": value})
