"""Logging: one line per event, text for people or JSON for log pipelines (LOG_FORMAT).

Structured fields travel as `extra={...}` on the record. The JSON formatter (python-json-logger)
writes them as keys; the text formatter appends them as key=value, so both carry the same facts.
Both formatters mask passwords in URLs (`scheme://user:secret@host` -> `scheme://user:***@host`)
in everything they write, exception text included: a driver's error message may quote a URL.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

# Linear in the text's length, whatever the text: a scheme starts only where a run of scheme
# characters starts (the look-behind), so no run is scanned from each of its characters; the user
# stops at ":" or "/" and the password at "//" (or "@", or a space), so each scan ends before the
# next "://" and no character is scanned for two URLs; possessive quantifiers never backtrack
# into a run. (The earlier pattern was quadratic: a 40 KB word took 1.5 s.)
_URL_PASSWORD = re.compile(
    r"(?P<head>(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]*+://[^:/@\s]*+:)"
    r"(?=[^@\s])[^@\s/]*+(?:/(?!/)[^@\s/]*+)*+@"
)
# Attributes every LogRecord has, plus those Python adds itself; the rest came in through `extra`.
_STANDARD_ATTRIBUTES = frozenset([*RESERVED_ATTRS, "taskName", "color_message"])
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def redact(text: str) -> str:
    """`text` with the password of every URL in it masked."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value ...`; values with spaces are quoted."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in extra_fields(record).items())
        if fields:
            head, newline, rest = line.partition("\n")  # keep a traceback below the fields
            line = f"{head} {fields}{newline}{rest}"
        return redact(line)


class RedactingJsonFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=sorted(_STANDARD_ATTRIBUTES),
            timestamp="time",  # RFC 3339 in UTC, from the record's creation time
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_NEEDS_QUOTES = re.compile(r'[\s"]')


def _text_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    # A search, not a test of each character: a batch's line names 500 ce_ids (18,000 characters).
    return json.dumps(text) if not text or _NEEDS_QUOTES.search(text) else text


class RepeatLimiter(logging.Filter):
    """Lets the first record of each logger and message template through, then at most one every
    `every` seconds, carrying how many it held back (`repeated`). For client libraries that log each
    failed reconnect: aiokafka writes some 130 lines a second while its broker is away."""

    def __init__(
        self, prefixes: tuple[str, ...], every: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._prefixes = prefixes
        self._every = every
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # -> (last let through, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key, now = (record.name, str(record.msg)), self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._every:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.repeated = last[1]
        return True


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Root logging to stderr in the chosen format; replaces handlers set before (a second call wins)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingJsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RepeatLimiter(("aiokafka",)))  # a broker outage: a few lines, not thousands
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)  # probes every few seconds are noise
