"""`refund-worker quote`: every line judged alone, split on "\\n" only, and bad input named with exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from worker.domain.policy import RefundPolicy
from worker.entrypoints.cli import app
from worker.entrypoints.quote import quote_input

SEED = Path(__file__).resolve().parents[2] / "worker" / "entrypoints" / "seed_requests.jsonl"
POLICY = RefundPolicy(window_days=14)


def request(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SEED.read_text(encoding="utf-8").splitlines()[0])
    data.update(changes)
    return data


def line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


def run_quote(raw: bytes, tmp_path: Path) -> tuple[int, str, str]:
    source = tmp_path / "requests.jsonl"
    source.write_bytes(raw)
    result = CliRunner().invoke(app, ["quote", str(source)])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "timestamp",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00Z"],
)
def test_timestamps_at_the_calendars_edges_are_a_clear_error_with_exit_2(
    timestamp: str, tmp_path: Path
) -> None:
    status, out, err = run_quote(line(request(requested_at=timestamp)), tmp_path)
    assert (status, out) == (2, "")
    assert "line 1: requested_at: must lie in the years 1000 to 8999" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
def test_a_line_separator_inside_a_string_does_not_split_the_line(separator: str) -> None:
    raw = b"\n".join(
        [line(request(reason=f"moving{separator}away")), b"{oops", line(request(product=f"a{separator}b"))]
    )
    quotes = quote_input(raw, POLICY)
    assert len(quotes.decisions) == 2
    assert [problem.line for problem in quotes.problems] == [2]


def test_good_lines_are_answered_in_order_and_the_bad_ones_named_on_stderr(tmp_path: Path) -> None:
    good = [request(), request(requested_at="2021-04-17T10:00:00+08:00")]
    raw = b"\n".join(
        [line(good[0]), b"not json", line(request(currency="XYZ")), b"\xff\xfe", line(good[1]), b""]
    )
    status, out, err = run_quote(raw, tmp_path)

    assert status == 2
    assert [json.loads(text)["months_refunded"] for text in out.splitlines()] == [12, 11]
    assert "line 2: " in err
    assert "line 3: currency: " in err
    assert "line 4: not UTF-8 text" in err
    assert "line 1:" not in err
    assert "line 5:" not in err
    assert "Traceback" not in err


def test_all_good_lines_exit_0_with_one_answer_each(tmp_path: Path) -> None:
    raw = SEED.read_bytes()
    status, out, err = run_quote(raw, tmp_path)
    assert (status, err) == (0, "")
    assert len(out.splitlines()) == sum(1 for text in raw.split(b"\n") if text.strip())


def test_a_single_pretty_printed_object_is_one_request() -> None:
    raw = b"\n\n" + json.dumps(request(), indent=2).encode() + b"\n"
    quotes = quote_input(raw, POLICY)
    assert (len(quotes.decisions), quotes.problems) == (1, [])


def test_a_single_pretty_printed_bad_object_is_named_by_its_first_line() -> None:
    raw = b"\n\n" + json.dumps(request(cycle_months=0), indent=2).encode()
    [problem] = quote_input(raw, POLICY).problems
    assert problem.line == 3
    assert "cycle_months" in problem.message


def test_deeply_nested_input_is_a_per_line_error() -> None:
    raw = b"[" * 5000 + b"]" * 5000 + b"\n" + line(request())
    quotes = quote_input(raw, POLICY)
    assert len(quotes.decisions) == 1
    assert [problem.line for problem in quotes.problems] == [1]


def test_windows_line_ends_are_read_as_line_ends() -> None:
    raw = line(request()) + b"\r\n" + line(request()) + b"\r\n"
    quotes = quote_input(raw, POLICY)
    assert (len(quotes.decisions), quotes.problems) == (2, [])
