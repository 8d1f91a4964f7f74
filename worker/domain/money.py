"""Money in integer minor units of an ISO 4217 currency.

Amounts travel as decimal strings with exactly the currency's minor digits ("120.00" SGD,
"1200" JPY, "1.500" KWD) and are held as integers of the minor unit, so no arithmetic on
them ever rounds by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from iso4217 import Currency as Iso4217

from worker.domain.errors import InvalidAmount, UnknownCurrency

# Amounts are stored as BIGINT minor units; 18 digits always fit (and no real refund comes close).
MAX_MINOR_DIGITS = 18
_DECIMAL = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<fraction>[0-9]+))?", re.ASCII)


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    minor_digits: int

    @staticmethod
    def of(code: str) -> Currency:
        return _currency(code)

    def __str__(self) -> str:
        return self.code


@cache
def _currency(code: str) -> Currency:
    try:
        iso = Iso4217(code)
    except ValueError:
        raise UnknownCurrency(f"{code!r} is not an ISO 4217 currency code") from None
    if iso.exponent is None:
        # Precious metals, test and fund codes (XAU, XTS, XXX) have no minor unit: not money to refund.
        raise UnknownCurrency(f"{code!r} has no minor unit in ISO 4217, so it cannot be refunded")
    return Currency(code=iso.code, minor_digits=iso.exponent)


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """A non-negative amount, as a whole number of the currency's minor unit."""

    minor: int
    currency: Currency

    def __post_init__(self) -> None:
        if self.minor < 0:
            raise InvalidAmount(f"amount must not be negative, got {self.minor} minor units")
        if self.minor >= 10**MAX_MINOR_DIGITS:
            raise InvalidAmount(f"amount has more than {MAX_MINOR_DIGITS} digits of minor units")

    @staticmethod
    def zero(currency: Currency) -> Money:
        return Money(0, currency)

    @staticmethod
    def parse(text: str, currency: Currency) -> Money:
        """Read a decimal string; fewer fraction digits than the currency has are allowed, more are not."""
        match = _DECIMAL.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidAmount(
                f"{text!r} is not a non-negative decimal amount like "
                f"{Money(12000 * 10**currency.minor_digits // 100, currency)}"
            )
        if len(match["units"].lstrip("0")) + currency.minor_digits > MAX_MINOR_DIGITS:
            raise InvalidAmount(f"{text[:24]!r} is too large an amount (at most {MAX_MINOR_DIGITS} digits)")
        fraction = match["fraction"] or ""
        if len(fraction) > currency.minor_digits:
            raise InvalidAmount(
                f"{text!r} has {_places(len(fraction))} but {currency.code} has {currency.minor_digits}"
            )
        digits = match["units"] + fraction.ljust(currency.minor_digits, "0")
        return Money(int(digits), currency)

    @property
    def is_zero(self) -> bool:
        return self.minor == 0

    def to_decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-self.currency.minor_digits)

    def share(self, numerator: int, denominator: int) -> Money:
        """numerator/denominator of this amount, rounded down to the minor unit (never over-refund)."""
        if denominator <= 0 or not 0 <= numerator <= denominator:
            raise InvalidAmount(f"a share must lie in 0..1, got {numerator}/{denominator}")
        return Money(self.minor * numerator // denominator, self.currency)

    def __str__(self) -> str:
        digits = self.currency.minor_digits
        if digits == 0:
            return str(self.minor)
        # The digits padded to one more than the fraction, then cut: half the time of divmod and a
        # nested format (several amounts a request go into its events).
        padded = str(self.minor).rjust(digits + 1, "0")
        return f"{padded[:-digits]}.{padded[-digits:]}"


def _places(count: int) -> str:
    return f"{count} decimal place{'' if count == 1 else 's'}"
