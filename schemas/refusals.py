"""How the models refuse a value: pydantic errors that name the field, collected so that every bad field
of a message is reported at once, with the offending value quoted short."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

T = TypeVar("T")

# Values quoted in error messages are cut: a message (a log line, a dead-letter header) stays short
# whatever the input, and reprlib looks at no more of a large value than it shows.
_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80


def custom_error(error_type: str, message: str) -> PydanticCustomError:
    # The message goes in the context, not the template, so braces in user input cannot be mis-formatted.
    return PydanticCustomError(error_type, "{reason}", {"reason": message})


def invalid(loc: tuple[str | int, ...], value: object, message: str) -> InitErrorDetails:
    """An error at `loc` for a rule of the contract that no single field type can state."""
    return InitErrorDetails(type=custom_error("invalid_value", message), loc=loc, input=value)


def refuse(title: str, errors: list[InitErrorDetails]) -> NoReturn:
    """Raise the collected errors at once; raised inside a validator, each keeps its own field location."""
    raise ValidationError.from_exception_data(title, errors)


def attempt(
    errors: list[InitErrorDetails], loc: tuple[str | int, ...], value: object, make: Callable[[], T]
) -> T | None:
    """`make()`, or None with its refusal (a PydanticCustomError) recorded at `loc`, so that all bad
    fields are reported together."""
    try:
        return make()
    except PydanticCustomError as exc:
        errors.append(InitErrorDetails(type=exc, loc=loc, input=value))
        return None


def shown(value: object) -> str:
    """`repr(value)`, cut to about 80 characters."""
    return _SHOWN.repr(value)
