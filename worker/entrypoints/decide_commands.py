"""The commands that decide and touch nothing: `quote` (the refund policy) and `adjust --dry-run`
(the adjustment rules), each reading JSON Lines from a file or stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from worker.entrypoints.cli_support import fail, settings_or_exit


def quote(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="JSON Lines of termination-requested data; - is stdin.")
    ] = "-",
) -> None:
    """Print what the refund policy decides for each request, one JSON line each, touching nothing."""
    import json

    from worker.domain.policy import RefundPolicy
    from worker.entrypoints.quote import quote_input

    raw = _read_source(source)
    quotes = quote_input(raw, RefundPolicy(window_days=settings_or_exit().refund_window_days))
    # The good lines' answers first, in order: one bad line must not hide what the others decide.
    sys.stdout.write("".join(json.dumps(decision) + "\n" for decision in quotes.decisions))
    sys.stdout.flush()
    if quotes.problems:
        name = "stdin" if source == "-" else source
        raise fail(f"invalid input in {name}:\n" + "\n".join(map(str, quotes.problems)))


def adjust(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-",
            help="JSON Lines of balance-adjustment-requested data with the account's state; - is stdin.",
        ),
    ] = "-",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print, touching nothing (required for now).")
    ] = False,
) -> None:
    """Print what the adjustment rules decide for each operator request, one JSON line each, touching
    nothing. Lines of one account are decided in order, each seeing the earlier ones' effect."""
    import json

    from worker.entrypoints.adjust import adjust_input

    if not dry_run:
        raise fail(
            "adjust only decides with --dry-run: adjustments are applied by the worker, sent to it as "
            "balance-adjustment-requested events on Kafka (docs/contract.md, section 8)"
        )
    adjustments = adjust_input(_read_source(source))
    sys.stdout.write("".join(json.dumps(decision) + "\n" for decision in adjustments.decisions))
    sys.stdout.flush()
    if adjustments.problems:
        name = "stdin" if source == "-" else source
        raise fail(f"invalid input in {name}:\n" + "\n".join(map(str, adjustments.problems)))


def _read_source(source: str) -> bytes:
    """The bytes of FILE or stdin; each line's UTF-8 is checked on its own by the command reading it."""
    try:
        return sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except FileNotFoundError:
        raise fail(f"no such file: {source}") from None
    except IsADirectoryError:
        raise fail(f"{source} is a directory, not a file") from None
    except PermissionError:
        raise fail(f"cannot read {source}: permission denied") from None
