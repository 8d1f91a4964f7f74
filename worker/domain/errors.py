"""Named errors of the refund rules. Each says which value was wrong and why."""


class DomainError(ValueError):
    """A value the refund rules refuse. Poison for the worker, exit 2 for the command line."""


class UnknownCurrency(DomainError):
    """Not an ISO 4217 currency that has minor units (XAU, XXX and made-up codes are refused)."""


class InvalidAmount(DomainError):
    """Not a decimal amount, negative, or more precise than the currency's minor unit."""


class InvalidTimeZone(DomainError):
    """Not an IANA time zone name."""


class InvalidTimestamp(DomainError):
    """A timestamp without an offset, or one whose local date falls off the calendar."""


class InvalidCycle(DomainError):
    """A cycle of fewer than one month."""


class InvalidAdjustment(DomainError):
    """An adjustment request without what its kind needs (an amount, a transaction, the entry it
    reverses), or with a transaction in another currency than its own."""


class WrongAccount(DomainError):
    """An adjustment judged against another account's facts: the caller mixed two accounts."""


class DuplicateAdjustment(DomainError):
    """An adjustment id already on the account: the inbox, not the rules, answers a redelivery."""


class InvalidMoneyRefund(DomainError):
    """A money refund request whose payment is in another currency than the request, or a timeout
    that is not above zero."""


class DuplicateInstruction(DomainError):
    """An instruction id already on the account: the inbox, not the rules, answers a redelivery."""


class UnknownInstruction(DomainError):
    """A settlement for an instruction the account does not have: it can never succeed (poison)."""


class ConflictingSettlement(DomainError):
    """A settlement with the other status than the one the instruction was settled with (poison)."""


class ConflictingCreditNote(DomainError):
    """An invoice-app credit note recorded again with other facts (amount, currency, subscription)."""
