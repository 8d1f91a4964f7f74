"""What every `refund-worker` command shares: the usage-error exit and loading the configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from worker.config.settings import Settings

USAGE_ERROR = 2


def fail(message: str) -> typer.Exit:
    typer.echo(f"refund-worker: {message}", err=True)
    return typer.Exit(USAGE_ERROR)


def settings_or_exit() -> Settings:
    """Every command that needs the configuration loads it here: a bad variable is one line on
    stderr naming it and its value (`REFUND_WINDOW_DAYS='abc' is not a whole number`), exit 2."""
    from worker.config.settings import InvalidSettings, load_settings

    try:
        return load_settings()
    except InvalidSettings as invalid:
        raise fail(str(invalid)) from None
