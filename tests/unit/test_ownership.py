"""A subscription belongs to one account within its reseller (worker/domain/ownership.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from worker.domain.money import Currency, Money
from worker.domain.never_twice import History, Rejection, RejectionCode, judge_request
from worker.domain.ownership import AccountMismatch, account_mismatch, require_owner
from worker.domain.policy import Cycle, TerminationTerms


def test_a_subscription_not_known_yet_belongs_to_whichever_account_names_it() -> None:
    assert account_mismatch("sub-1", "acc-1", None) is None
    require_owner("sub-1", "acc-1", None)


def test_the_account_it_is_known_under_may_name_it_again() -> None:
    assert account_mismatch("sub-1", "acc-1", "acc-1") is None


def test_another_account_naming_it_is_a_mismatch_that_names_both() -> None:
    mismatch = account_mismatch("sub-1", "acc-2", "acc-1")
    assert isinstance(mismatch, AccountMismatch)
    assert (mismatch.account_id, mismatch.known_account) == ("acc-2", "acc-1")
    with pytest.raises(AccountMismatch, match="belongs to account acc-1, not acc-2"):
        require_owner("sub-1", "acc-2", "acc-1")


def test_a_mismatch_rejects_a_termination_before_any_other_rule(sample_terms: TerminationTerms) -> None:
    history = History(
        subscription_terminated=True,
        credit_note_used=True,
        account_mismatch=AccountMismatch("sub-1", "acc-2", "acc-1"),
    )
    verdict = judge_request(sample_terms, history)
    assert isinstance(verdict, Rejection)
    assert verdict.code is RejectionCode.ACCOUNT_MISMATCH
    assert "belongs to account acc-1" in verdict.detail


@pytest.fixture
def sample_terms() -> TerminationTerms:
    return TerminationTerms(
        cycle=Cycle(start=date(2021, 4, 1), months=12),
        amount_paid=Money.parse("120.00", Currency.of("SGD")),
        requested_at=datetime(2021, 4, 12, 9, 30, tzinfo=UTC),
        allow_refund=True,
    )
