"""Field types shared by the event models: how dates, timestamps, money, currencies and zones are written.

The checks that pydantic-core can do natively (types, required fields, ranges, calendar validity) stay
native, because the worker validates thousands of messages a second; the domain decides the rest
(`Currency.of`, `Money.parse`, `time_zone`), so no rule lives in two places.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, Strict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.limits import (
    CURRENCY_LENGTH,
    EARLIEST_YEAR,
    ID_MAX_LENGTH,
    LATEST_YEAR,
    MONEY_MAX_LENGTH,
    NAME_MAX_LENGTH,
    REASON_MAX_LENGTH,
    TIME_ZONE_MAX_LENGTH,
    TIMESTAMP_MAX_LENGTH,
)
from worker.domain.calendar import time_zone
from worker.domain.errors import DomainError, InvalidAmount, InvalidCycle, InvalidTimeZone, UnknownCurrency
from worker.domain.money import Currency, Money

T = TypeVar("T")
DateT = TypeVar("DateT", date, datetime)

# RFC 3339 section 5.6 (with the space its note allows). pydantic alone would also take unix-epoch
# strings like "1618220000" and offsets without a colon, which the contract does not allow.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)

MONEY_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
"""Documents the money shape in the JSON Schemas; `Money.parse` is what enforces it (digits per currency)."""

SIGNED_MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"

# Values quoted in error messages are cut: a message (a log line, a dead-letter header) stays short
# whatever the input, and reprlib looks at no more of a large value than it shows.
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80

_ERROR_TYPES: dict[type[DomainError], str] = {
    UnknownCurrency: "unknown_currency",
    InvalidAmount: "invalid_amount",
    InvalidTimeZone: "invalid_time_zone",
    InvalidCycle: "invalid_cycle",
}


def custom_error(error_type: str, message: str) -> PydanticCustomError:
    # The message goes in the context, not the template, so braces in user input cannot be mis-formatted.
    return PydanticCustomError(error_type, "{reason}", {"reason": message})


def domain_error(exc: DomainError) -> PydanticCustomError:
    """A domain refusal as a pydantic error, keeping the domain's message word for word."""
    return custom_error(_ERROR_TYPES.get(type(exc), "invalid_value"), str(exc))


def line_error(loc: tuple[str | int, ...], value: object, exc: DomainError) -> InitErrorDetails:
    return InitErrorDetails(type=domain_error(exc), loc=loc, input=value)


def invalid(loc: tuple[str | int, ...], value: object, message: str) -> InitErrorDetails:
    """An error at `loc` for a rule of the contract that no single field type can state."""
    return InitErrorDetails(type=custom_error("invalid_value", message), loc=loc, input=value)


def refuse(title: str, errors: list[InitErrorDetails]) -> NoReturn:
    """Raise the collected errors at once; raised inside a validator, each keeps its own field location."""
    raise ValidationError.from_exception_data(title, errors)


def attempt(
    errors: list[InitErrorDetails], loc: tuple[str | int, ...], value: object, make: Callable[[], T]
) -> T | None:
    """`make()`, or None with its DomainError recorded at `loc`, so all bad fields are reported together."""
    try:
        return make()
    except DomainError as exc:
        errors.append(line_error(loc, value, exc))
        return None


def shown(value: object) -> str:
    """`repr(value)`, cut to about 80 characters."""
    return _SHOWN.repr(value)


def _rfc3339_shape(value: Any) -> Any:
    if not isinstance(value, str) or len(value) > TIMESTAMP_MAX_LENGTH or _RFC3339.fullmatch(value) is None:
        raise custom_error(
            "rfc3339_timestamp",
            "must be an RFC 3339 timestamp with an offset, like 2021-04-12T10:00:00+08:00, "
            f"got {shown(value)}",
        )
    return value


def _iso_date_shape(value: Any) -> Any:
    if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
        raise custom_error("iso_date", f"must be a date as YYYY-MM-DD, got {shown(value)}")
    return value  # impossible dates (2021-02-30) are refused by the native date validation after this


def _within_calendar(value: DateT) -> DateT:
    """Far from the calendar's edges: year 1 or 9999 overflow when shifted to UTC or by a period."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise custom_error(
            "date_out_of_range",
            f"must lie in the years {EARLIEST_YEAR} to {LATEST_YEAR}, got {value.isoformat()}",
        )
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise custom_error("blank_string", "must not be empty or blank")
    return value


def _storable(value: str) -> str:
    if "\x00" in value:
        raise custom_error(
            "nul_character", "must not contain U+0000 (NUL), which PostgreSQL text cannot hold"
        )
    return value


def _known_currency(code: str) -> str:
    try:
        return Currency.of(code).code
    except DomainError as exc:
        raise domain_error(exc) from None


def _known_time_zone(name: str) -> str:
    try:
        time_zone(name)
    except DomainError as exc:
        raise domain_error(exc) from None
    return name


def exact_money(value: str, currency: Currency, *, signed: bool = False) -> Money:
    """The amount of `value` (its magnitude when `signed`), which must carry exactly the currency's digits.

    Outputs are written "120.00", "1200", "1.500": `Money.parse` alone would also take "120".
    """
    magnitude = value[1:] if signed and value.startswith("-") else value
    money = Money.parse(magnitude, currency)
    if str(money) != magnitude:
        raise InvalidAmount(
            f"{value!r} must have exactly {currency.minor_digits} decimals for {currency.code}"
        )
    return money


# A before-validator hands its result on as a Python value, which strict mode would refuse for a date;
# the text's shape is checked first, so lax parsing of that exact text is safe (and still native).
Timestamp = Annotated[
    AwareDatetime, Strict(False), BeforeValidator(_rfc3339_shape), AfterValidator(_within_calendar)
]
"""An RFC 3339 timestamp with an offset, as text; naive times and epoch numbers are refused, and so
are years outside EARLIEST_YEAR..LATEST_YEAR (schemas/limits.py)."""

IsoDate = Annotated[date, Strict(False), BeforeValidator(_iso_date_shape), AfterValidator(_within_calendar)]
"""YYYY-MM-DD as text, a real calendar date in the years EARLIEST_YEAR..LATEST_YEAR."""

NonBlankStr = Annotated[
    str, Field(min_length=1, json_schema_extra={"pattern": r"\S"}), AfterValidator(_not_blank)
]

Identifier = Annotated[
    str,
    Field(min_length=1, max_length=ID_MAX_LENGTH, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_not_blank),
    AfterValidator(_storable),
]
"""An id of the contract (subscription, account, reseller, credit note): non-blank, bounded."""

NameText = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX_LENGTH, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_not_blank),
    AfterValidator(_storable),
]
"""A short human text (who asked): non-blank, bounded."""

ReasonText = Annotated[
    str,
    Field(min_length=1, max_length=REASON_MAX_LENGTH, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_not_blank),
    AfterValidator(_storable),
]
"""Free text (why): non-blank, bounded."""

OptionalText = Annotated[str, Field(max_length=NAME_MAX_LENGTH), AfterValidator(_storable)]
"""A short human text that may be empty (the product's name): bounded."""

CurrencyCode = Annotated[
    str,
    Field(
        max_length=CURRENCY_LENGTH,
        json_schema_extra={"pattern": "^[A-Z]{3}$"},
        description="ISO 4217 code with a minor unit",
    ),
    AfterValidator(_known_currency),
]

TimeZoneName = Annotated[str, Field(max_length=TIME_ZONE_MAX_LENGTH), AfterValidator(_known_time_zone)]
"""An IANA time zone name, as `time_zone` knows them."""

MoneyText = Annotated[
    str,
    Field(
        # Far above any real amount; stops Money.parse meeting Python's 4300-digit int limit.
        max_length=MONEY_MAX_LENGTH,
        json_schema_extra={"pattern": MONEY_PATTERN},
        description="decimal string, at most the currency's ISO 4217 minor digits",
    ),
]
"""Money as it arrives: parsed by `Money.parse` in the model, which knows the currency."""

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
