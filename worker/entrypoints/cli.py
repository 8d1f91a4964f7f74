"""The `refund-worker` command line (contract section 5)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.dlq.cli import app as dlq_app

if TYPE_CHECKING:
    from worker.config.settings import Settings

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

USAGE_ERROR = 2


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


def _fail(message: str) -> typer.Exit:
    typer.echo(f"refund-worker: {message}", err=True)
    return typer.Exit(USAGE_ERROR)


def _settings() -> Settings:
    """Every command that needs the configuration loads it here: a bad variable is one line on
    stderr naming it and its value (`REFUND_WINDOW_DAYS='abc' is not a whole number`), exit 2."""
    from worker.config.settings import InvalidSettings, load_settings

    try:
        return load_settings()
    except InvalidSettings as invalid:
        raise _fail(str(invalid)) from None


@app.command()
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
    quotes = quote_input(raw, RefundPolicy(window_days=_settings().refund_window_days))
    # The good lines' answers first, in order: one bad line must not hide what the others decide.
    sys.stdout.write("".join(json.dumps(decision) + "\n" for decision in quotes.decisions))
    sys.stdout.flush()
    if quotes.problems:
        name = "stdin" if source == "-" else source
        raise _fail(f"invalid input in {name}:\n" + "\n".join(map(str, quotes.problems)))


@app.command()
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
        raise _fail(
            "adjust only decides with --dry-run: adjustments are applied by the worker, sent to it as "
            "balance-adjustment-requested events on Kafka (docs/contract.md, section 8)"
        )
    adjustments = adjust_input(_read_source(source))
    sys.stdout.write("".join(json.dumps(decision) + "\n" for decision in adjustments.decisions))
    sys.stdout.flush()
    if adjustments.problems:
        name = "stdin" if source == "-" else source
        raise _fail(f"invalid input in {name}:\n" + "\n".join(map(str, adjustments.problems)))


def _read_source(source: str) -> bytes:
    """The bytes of FILE or stdin; each line's UTF-8 is checked on its own by the command reading it."""
    try:
        return sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except FileNotFoundError:
        raise _fail(f"no such file: {source}") from None
    except IsADirectoryError:
        raise _fail(f"{source} is a directory, not a file") from None
    except PermissionError:
        raise _fail(f"cannot read {source}: permission denied") from None


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

    settings = _settings()
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a person stops it: no traceback
            asyncio.run(launch(settings, demo=demo))
    except StartupFailed as failed:  # an outage is waited out; this is what no wait can fix
        raise _fail(str(failed)) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (safe to run from several places at once)."""
    from worker.config.security import database_connect_args
    from worker.engine.runtime import migrate_database
    from worker.ops.logs import configure_logging

    settings = _settings()
    if settings.database_url is None:
        raise _fail("DATABASE_URL is not set: migrate needs the database to bring up to date")
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

    settings = _settings()
    if settings.database_url is None:
        raise _fail("DATABASE_URL is not set: audit reads the database whose balances it checks")
    connect_args = database_connect_args(settings)
    try:
        if as_json:
            summary = audit_as_json(settings.database_url, connect_args, sys.stdout)
        else:
            summary = audit_as_table(settings.database_url, connect_args)
    except AuditFailed as failed:
        raise _fail(str(failed)) from None
    except KeyboardInterrupt:
        raise _fail("audit interrupted; it changed nothing, running it again is safe") from None
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
