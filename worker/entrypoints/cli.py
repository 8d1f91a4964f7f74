"""The `refund-worker` command line (contract section 5)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from pathlib import Path
from typing import Annotated

import typer

from worker.dlq.cli import app as dlq_app
from worker.entrypoints.cli_support import fail, settings_or_exit
from worker.entrypoints.decide_commands import adjust, quote
from worker.entrypoints.payment_service.command import payment_simulator

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
"""Every command and subcommand takes -h as --help (subcommands inherit it from the app's context)."""

app = typer.Typer(
    name="refund-worker",
    help="Turns subscription terminations into refunds, credit notes and credit-balance changes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
)
app.add_typer(dlq_app, name="dlq")
app.command()(quote)
app.command()(adjust)
app.command("payment-simulator")(payment_simulator)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"refund-worker {version('refund-worker')}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    pass


@app.command()
def run(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Publish the seed's example requests, print the outcomes as a table, and stop."
        ),
    ] = False,
) -> None:
    """Run the worker: consumers, publishing, expiry timers. Starts an embedded Kafka-compatible
    broker and PostgreSQL when KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are unset."""
    from worker.engine.failures import StartupFailed
    from worker.entrypoints.launch import launch

    settings = settings_or_exit()
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it: no traceback
            asyncio.run(launch(settings, demo=demo))
    except StartupFailed as failed:  # an outage is waited out; this is what no wait can fix
        raise fail(str(failed)) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run from several places at once)."""
    from worker.config.security import database_connect_args
    from worker.engine.runtime import migrate_database
    from worker.ops.logs import configure_logging

    settings = settings_or_exit()
    if settings.database_url is None:
        raise fail("DATABASE_URL is not set: migrate needs the database to bring up to date")
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(migrate_database(settings.database_url, database_connect_args(settings)))
    except Exception as error:  # noqa: BLE001 - one line, no traceback: a Job's log says it all
        raise _migrate_failed(settings.database_url, error) from None


MIGRATE_FAILED = 1


def _migrate_failed(database_url: str, error: Exception) -> typer.Exit:
    """Exit 1 with one line: unreachable, no such database, refused credentials, a failed step."""
    from worker.config.settings import redacted
    from worker.engine.failures import FailureKind, classify, driver_brief

    where = redacted(database_url)
    if classify(error) is FailureKind.INFRASTRUCTURE:
        message = f"cannot migrate: the database at {where} is unreachable ({driver_brief(error)})"
    else:
        message = f"cannot migrate {where}: {driver_brief(error)}"
    typer.echo(f"refund-worker: {message}", err=True)
    return typer.Exit(MIGRATE_FAILED)


AUDIT_DISAGREES = 1


@app.command()
def audit(
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines, one object per problem; the summary goes to stderr.")
    ] = False,
) -> None:
    """Check every stored balance against its ledger, which is the truth, and print each account that
    disagrees (balance not the sum of the deltas, version not the ledger's last, versions not 1..n
    without gaps, a running balance wrong), then one summary line. Reads only, in one read-only
    snapshot.

    Exit status: 0 every account agrees; 1 some disagree; 2 a bad command line, a bad or unset
    DATABASE_URL, or a database that cannot be read."""
    from worker.config.security import database_connect_args
    from worker.entrypoints.audit import AuditFailed, audit_as_json, audit_as_table

    settings = settings_or_exit()
    if settings.database_url is None:
        raise fail("DATABASE_URL is not set: audit reads the database whose balances it checks")
    connect_args = database_connect_args(settings)
    try:
        if as_json:
            summary = audit_as_json(settings.database_url, connect_args, sys.stdout)
        else:
            summary = audit_as_table(settings.database_url, connect_args)
    except AuditFailed as failed:
        raise fail(str(failed)) from None
    except KeyboardInterrupt:
        raise fail("audit interrupted; it changed nothing, running it again is safe") from None
    if summary.problems:
        raise typer.Exit(AUDIT_DISAGREES)


@app.command()
def asyncapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the document to this file.")
    ] = None,
    check: Annotated[
        Path | None, typer.Option("--check", help="Only compare with this file; exit 1 when it differs.")
    ] = None,
) -> None:
    """Print the AsyncAPI document of every topic the worker reads and writes, with the CloudEvents
    headers, Kafka keys and examples (committed as schemas/asyncapi.json). Connects to nothing."""
    from worker.entrypoints.asyncapi import render

    document = asyncio.run(render())
    if check is not None:
        if not check.is_file() or check.read_text(encoding="utf-8") != document:
            typer.echo(f"{check} is out of date: run refund-worker asyncapi --output {check}", err=True)
            raise typer.Exit(1)
        return
    if output is None:
        sys.stdout.write(document)
        return
    output.write_text(document, encoding="utf-8")


def _unwrap_help(typer_app: typer.Typer) -> None:
    """Docstrings are wrapped for the source; help is wrapped for the terminal. Rich keeps a
    docstring's single line breaks, so at 80 columns a help text broke mid-sentence: join them
    (a blank line still separates paragraphs) in every command, here and in `dlq`."""
    for command in typer_app.registered_commands:
        command.help = unwrapped(command.help or inspect.getdoc(command.callback) or "")
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _unwrap_help(group.typer_instance)


def unwrapped(text: str) -> str:
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


_unwrap_help(app)


def main() -> None:
    app()
