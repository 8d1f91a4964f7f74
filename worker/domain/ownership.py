"""A subscription belongs to one account within its reseller (contract section 7).

Once a subscription is known (from a termination, an expiry or a renewal), an event naming it
under another account of the same reseller is refused before any other rule: the termination
request is rejected with `account_mismatch`, an expiry or renewal is dead-lettered (it can never
succeed). Pure: the caller says which account, if any, the subscription is known under.
"""

from __future__ import annotations

from worker.domain.errors import DomainError


class AccountMismatch(DomainError):
    """The subscription is known under another account of its reseller."""

    def __init__(self, subscription_id: str, account_id: str, known_account: str) -> None:
        super().__init__(
            f"subscription {subscription_id} belongs to account {known_account}, not {account_id}"
        )
        self.subscription_id = subscription_id
        self.account_id = account_id
        self.known_account = known_account


def account_mismatch(
    subscription_id: str, account_id: str, known_account: str | None
) -> AccountMismatch | None:
    """The mismatch when the subscription is known under another account than `account_id`, else
    None: a subscription not known yet belongs to whichever account names it first."""
    if known_account is None or known_account == account_id:
        return None
    return AccountMismatch(subscription_id, account_id, known_account)


def require_owner(subscription_id: str, account_id: str, known_account: str | None) -> None:
    """Raise AccountMismatch when `account_mismatch` finds one."""
    mismatch = account_mismatch(subscription_id, account_id, known_account)
    if mismatch is not None:
        raise mismatch
