"""Log lines: the same structured fields in text and JSON, and never a password from a URL."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from worker.ops.logs import RedactingJsonFormatter, TextFormatter, configure_logging, redact

DECISION = {
    "outcome": "terminated",
    "subscription_id": "sub-1",
    "account_id": "acc-1",
    "ce_id": "ce-1",
    "amount": "12.00",
    "currency": "SGD",
    "rule": None,
    "reason": "outside cycle",
}


def emit(formatter: logging.Formatter, message: str, *args: object, **extra: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"tests.logs.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info(message, *args, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_text_lines_carry_the_fields_as_key_value_pairs() -> None:
    line = emit(TextFormatter(), "decision %s", "terminated", **DECISION)
    assert line.rstrip("\n").endswith(
        "decision terminated outcome=terminated subscription_id=sub-1 account_id=acc-1 ce_id=ce-1 "
        'amount=12.00 currency=SGD rule=null reason="outside cycle"'
    )


def test_json_lines_carry_the_fields_as_keys() -> None:
    record = json.loads(emit(RedactingJsonFormatter(), "decision %s", "terminated", **DECISION))
    assert record["message"] == "decision terminated"
    assert record["level"] == "INFO"
    assert record["logger"].startswith("tests.logs.")
    assert {key: record[key] for key in DECISION} == DECISION
    assert record["time"].endswith("+00:00")


@pytest.mark.parametrize("formatter", [TextFormatter(), RedactingJsonFormatter()], ids=["text", "json"])
def test_passwords_in_urls_never_reach_the_log(formatter: logging.Formatter) -> None:
    line = emit(
        formatter, "cannot reach %s", "postgresql://app:s3cr%40t@db:5432/refunds", url="kafka://u:pw@b:9093"
    )
    assert "s3cr" not in line
    assert "pw@" not in line
    assert "postgresql://app:***@db:5432/refunds" in line


def test_passwords_in_exception_text_are_masked_too() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("tests.logs.exception")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        raise ConnectionError("refused: postgresql://app:hunter2@db/refunds")
    except ConnectionError:
        logger.exception("database away")
    finally:
        logger.removeHandler(handler)
    assert "hunter2" not in stream.getvalue()
    assert "ConnectionError: refused: postgresql://app:***@db/refunds" in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app@db/refunds", "postgresql://app@db/refunds"),
        ("postgresql://app:pw@db/refunds", "postgresql://app:***@db/refunds"),
        (
            "postgresql+asyncpg://:pw@db/x and https://u:p@h",
            "postgresql+asyncpg://:***@db/x and https://u:***@h",
        ),
        ("ratio 3:4 at noon@home", "ratio 3:4 at noon@home"),
    ],
)
def test_redact_masks_only_url_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configure_logging_installs_one_handler_of_the_chosen_format(root_logging: logging.Logger) -> None:
    configure_logging("debug", "text")
    configure_logging("warning", "json")
    assert len(root_logging.handlers) == 1
    assert isinstance(root_logging.handlers[0].formatter, RedactingJsonFormatter)
    assert root_logging.level == logging.WARNING


MEGABYTE = 1_000_000
# Shapes that made the earlier pattern scan the text once per character (or once per URL).
ADVERSARIAL = {
    "one long word": "a" * MEGABYTE,
    "a run of scheme characters": "ab+" * (MEGABYTE // 3) + "://",
    "schemes without passwords": "a://b:" * (MEGABYTE // 6),
    "a password without its @": "https://user:" + "p" * MEGABYTE,
    "a password of slashes": "x://u:" + "/" * MEGABYTE,
    "separators only": "://" * (MEGABYTE // 3),
    "many masked urls": "a://b:c@" * (MEGABYTE // 8),
}


# A pattern that backtracks takes minutes on these inputs and a linear one milliseconds: the budget
# tells the two apart with room for a slow machine.
CPU_BUDGET_S = 1.0


@pytest.mark.no_cover  # a timing: coverage's tracer would make it measure the tracer
@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_masking_a_megabyte_takes_well_under_a_second(text: str) -> None:
    started = time.process_time()  # CPU, not wall-clock: other processes on the machine don't count
    redact(text)
    assert time.process_time() - started < CPU_BUDGET_S


@pytest.mark.no_cover  # a timing, as above
@pytest.mark.parametrize("formatter", [TextFormatter(), RedactingJsonFormatter()], ids=["text", "json"])
def test_formatting_a_megabyte_field_takes_well_under_a_second(formatter: logging.Formatter) -> None:
    started = time.process_time()
    line = emit(formatter, "decision %s", "a" * MEGABYTE, subscription_id="s" * MEGABYTE)
    assert time.process_time() - started < CPU_BUDGET_S
    assert len(line) > 2 * MEGABYTE


def test_a_password_with_a_single_slash_is_still_masked() -> None:
    assert redact("postgresql://app:pa/ss@db/x") == "postgresql://app:***@db/x"
