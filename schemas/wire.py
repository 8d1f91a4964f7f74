"""Field types shared by the event models: how dates, timestamps, texts and zones are written.

The checks that pydantic-core can do natively (types, required fields, ranges, calendar validity) stay
native, because the worker validates thousands of messages a second; the rest of the contract's format
is checked here and in schemas/money.py (currencies, amounts) with the standard library and the
`iso4217` package: schemas/ is the contract alone and imports nothing of the worker.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

from schemas.limits import (
    EARLIEST_YEAR,
    ID_MAX_LENGTH,
    LATEST_YEAR,
    NAME_MAX_LENGTH,
    REASON_MAX_LENGTH,
    TIME_ZONE_MAX_LENGTH,
    TIMESTAMP_MAX_LENGTH,
)
from schemas.money import (
    MONEY_PATTERN,
    SIGNED_MONEY_PATTERN,
    CurrencyCode,
    ExactMoneyText,
    MoneyText,
    SignedMoneyText,
    exact_money,
    money_minor,
)
from schemas.refusals import attempt, custom_error, invalid, refuse, shown

DateT = TypeVar("DateT", date, datetime)

# RFC 3339 section 5.6 (with the space its note allows). pydantic alone would also take unix-epoch
# strings like "1618220000" and offsets without a colon, which the contract does not allow.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


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


def _blank() -> PydanticCustomError:
    return custom_error("blank_string", "must not be empty or blank")


def _nul() -> PydanticCustomError:
    return custom_error("nul_character", "must not contain U+0000 (NUL), which PostgreSQL text cannot hold")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise _blank()
    return value


def _storable(value: str) -> str:
    if "\x00" in value:
        raise _nul()
    return value


def _storable_not_blank(value: str) -> str:
    """`_not_blank` and `_storable` in one call from pydantic-core, five fewer per termination request;
    a blank text holds no NUL, so at most one of the two refusals applies, whichever is checked first."""
    if not value.strip():
        raise _blank()
    if "\x00" in value:
        raise _nul()
    return value


@cache  # only real zones are cached (a refusal raises), so the cache stays as small as the tz database
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a folder of the tz database ("America", "Etc") or a name too long for a file name.
        raise custom_error("invalid_time_zone", f"{name!r} is not an IANA time zone name") from None


def _known_time_zone(name: str) -> str:
    _zone(name)
    return name


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
    AfterValidator(_storable_not_blank),
]
"""An id of the contract (subscription, account, reseller, credit note): non-blank, bounded."""

NameText = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX_LENGTH, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_storable_not_blank),
]
"""A short human text (who asked): non-blank, bounded."""

ReasonText = Annotated[
    str,
    Field(min_length=1, max_length=REASON_MAX_LENGTH, json_schema_extra={"pattern": r"\S"}),
    AfterValidator(_storable_not_blank),
]
"""Free text (why): non-blank, bounded."""

OptionalText = Annotated[str, Field(max_length=NAME_MAX_LENGTH), AfterValidator(_storable)]
"""A short human text that may be empty (the product's name): bounded."""

TimeZoneName = Annotated[str, Field(max_length=TIME_ZONE_MAX_LENGTH), AfterValidator(_known_time_zone)]
"""An IANA time zone name, as `zoneinfo` knows them (the same lookup as the domain's `time_zone`)."""


__all__ = [
    "MONEY_PATTERN",
    "SIGNED_MONEY_PATTERN",
    "CurrencyCode",
    "ExactMoneyText",
    "Identifier",
    "IsoDate",
    "MoneyText",
    "NameText",
    "NonBlankStr",
    "OptionalText",
    "ReasonText",
    "SignedMoneyText",
    "TimeZoneName",
    "Timestamp",
    "attempt",
    "custom_error",
    "exact_money",
    "invalid",
    "money_minor",
    "refuse",
    "shown",
]
