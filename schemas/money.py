"""Money as the contract writes it: an ISO 4217 code that has a minor unit, and amounts as decimal
strings with the currency's digits ("120.00" SGD, "1200" JPY, "1.500" KWD).

This is the wire format, checked here so that a bad amount is refused with its field named (and
dead-lettered). The worker computes with `worker.domain.money.Money`, which it builds from the same
strings; tests/unit/test_wire_matches_domain.py keeps the two readings equal.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Annotated

from iso4217 import Currency as Iso4217
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from schemas.limits import AMOUNT_MAX_DIGITS, CURRENCY_LENGTH, MONEY_MAX_LENGTH
from schemas.refusals import custom_error

MONEY_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
"""Documents the money shape in the JSON Schemas; `money_minor` is what enforces it (digits per currency)."""

SIGNED_MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"

_DECIMAL = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<fraction>[0-9]+))?", re.ASCII)


@cache  # only known codes are cached (a refusal raises), so the cache stays as small as ISO 4217
def minor_digits(code: str) -> int:
    """The currency's ISO 4217 minor digits; refuses unknown codes and codes without a minor unit."""
    try:
        iso = Iso4217(code)
    except ValueError:
        raise custom_error("unknown_currency", f"{code!r} is not an ISO 4217 currency code") from None
    if iso.exponent is None:
        # Precious metals, test and fund codes (XAU, XTS, XXX) have no minor unit: not money to refund.
        raise custom_error(
            "unknown_currency", f"{code!r} has no minor unit in ISO 4217, so it cannot be refunded"
        )
    exponent: int = iso.exponent
    return exponent


def money_minor(text: str, code: str) -> int:
    """`text` in the currency's minor units; fewer fraction digits than the currency has are allowed,
    more are not."""
    digits = minor_digits(code)
    match = _DECIMAL.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        example = format_minor(12000 * 10**digits // 100, digits)
        raise _invalid_amount(f"{text!r} is not a non-negative decimal amount like {example}")
    if len(match["units"].lstrip("0")) + digits > AMOUNT_MAX_DIGITS:
        raise _invalid_amount(f"{text[:24]!r} is too large an amount (at most {AMOUNT_MAX_DIGITS} digits)")
    fraction = match["fraction"] or ""
    if len(fraction) > digits:
        raise _invalid_amount(f"{text!r} has {_places(len(fraction))} but {code} has {digits}")
    return int(match["units"] + fraction.ljust(digits, "0"))


def exact_money(value: str, code: str, *, signed: bool = False) -> int:
    """The amount of `value` in minor units (its magnitude when `signed`), which must carry exactly the
    currency's digits: outputs are written "120.00", "1200", "1.500", never "120" for SGD."""
    magnitude = value[1:] if signed and value.startswith("-") else value
    minor = money_minor(magnitude, code)
    digits = minor_digits(code)
    if format_minor(minor, digits) != magnitude:
        raise _invalid_amount(f"{value!r} must have exactly {digits} decimals for {code}")
    return minor


def format_minor(minor: int, digits: int) -> str:
    """A non-negative amount of minor units as the contract writes it, with exactly `digits` decimals."""
    if digits == 0:
        return str(minor)
    units, fraction = divmod(minor, 10**digits)
    return f"{units}.{fraction:0{digits}d}"


def _invalid_amount(message: str) -> PydanticCustomError:
    return custom_error("invalid_amount", message)


def _places(count: int) -> str:
    return f"{count} decimal place{'' if count == 1 else 's'}"


def _known_currency(code: str) -> str:
    minor_digits(code)
    return code


CurrencyCode = Annotated[
    str,
    Field(
        max_length=CURRENCY_LENGTH,
        json_schema_extra={"pattern": "^[A-Z]{3}$"},
        description="ISO 4217 code with a minor unit",
    ),
    AfterValidator(_known_currency),
]

MoneyText = Annotated[
    str,
    Field(
        # Far above any real amount; stops the digits meeting Python's 4300-digit int limit.
        max_length=MONEY_MAX_LENGTH,
        json_schema_extra={"pattern": MONEY_PATTERN},
        description="decimal string, at most the currency's ISO 4217 minor digits",
    ),
]
"""Money as it arrives: read with `money_minor` by the model, which knows the currency."""

ExactMoneyText = Annotated[
    str,
    Field(
        max_length=MONEY_MAX_LENGTH,
        json_schema_extra={"pattern": MONEY_PATTERN},
        description="decimal string with exactly the currency's ISO 4217 minor digits",
    ),
]

SignedMoneyText = Annotated[
    str,
    Field(
        max_length=MONEY_MAX_LENGTH,
        json_schema_extra={"pattern": SIGNED_MONEY_PATTERN},
        description="decimal string, exactly the currency's minor digits; negative when credits went down",
    ),
]
