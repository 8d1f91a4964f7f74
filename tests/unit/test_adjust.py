"""`refund-worker adjust --dry-run`: one account's lines decided in order, each line's problem named
with exit 2, and nothing sent without --dry-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.examples import EXAMPLES
from schemas.topics import Topic
from worker.entrypoints.adjust import adjust_input
from worker.entrypoints.cli import app

FINANCE = {"id": "finance@res-b3.example", "reseller_id": "res-b3", "permissions": ["finance:manage"]}


def line(**changes: Any) -> dict[str, Any]:
    """The contract's example request (a 20.00 SGD refund of a 45.00 SGD charge), with `changes`."""
    return {**EXAMPLES[Topic.BALANCE_ADJUSTMENT_REQUESTED].data, **changes}


def credit(amount: str, **changes: Any) -> dict[str, Any]:
    return line(kind="credit", amount=amount, transaction=None, **changes)


def reversal(target: str, **changes: Any) -> dict[str, Any]:
    return line(kind="reversal", amount=None, transaction=None, reverses=target, **changes)


def jsonl(*lines: dict[str, Any] | bytes) -> bytes:
    return b"\n".join(item if isinstance(item, bytes) else json.dumps(item).encode() for item in lines)


def decided(*lines: dict[str, Any] | bytes) -> list[dict[str, Any]]:
    adjustments = adjust_input(jsonl(*lines))
    assert adjustments.problems == []
    return adjustments.decisions


def run_adjust(raw: bytes, tmp_path: Path, *options: str) -> tuple[int, str, str]:
    source = tmp_path / "adjustments.jsonl"
    source.write_bytes(raw)
    result = CliRunner().invoke(app, ["adjust", *options, str(source)])
    return result.exit_code, result.stdout, result.stderr


def test_the_contracts_example_is_applied_with_its_delta_and_new_balance() -> None:
    [decision] = decided(line(adjustment_id="adj-1", current_balance="125.50"))
    assert decision == {
        "adjustment_id": "adj-1",
        "reseller_id": "res-b3",
        "account_id": "acc-1002",
        "kind": "transaction_refund",
        "currency": "SGD",
        "decision": "applied",
        "delta": "20.00",
        "balance": "145.50",
        "transaction_id": "txn-88412",
        "reverses": None,
        "refund_id": None,
        "detail": "refunded 20.00 SGD of transaction txn-88412 (25.00 SGD left): balance is 145.50 SGD",
    }


def test_a_later_line_of_the_account_sees_the_earlier_lines_effect() -> None:
    decisions = decided(
        line(adjustment_id="adj-1", current_balance="125.50"),
        line(adjustment_id="adj-2", amount="30.00"),
        reversal("adj-1", adjustment_id="adj-3"),
        line(adjustment_id="adj-4", amount="45.00"),
    )
    assert [d["decision"] for d in decisions] == ["applied", "rejected", "applied", "applied"]
    assert (decisions[1]["reason_code"], decisions[1]["detail"]) == (
        "exceeds_refundable",
        "25.00 SGD is left to refund of transaction txn-88412",
    )
    assert [d.get("balance") for d in decisions] == ["145.50", None, "125.50", "170.50"]
    assert decisions[2]["transaction_id"] == "txn-88412"


def test_accounts_and_resellers_are_decided_apart() -> None:
    decisions = decided(
        credit("10.00", current_balance="0.00"),
        credit("10.00", current_balance="5.00", account_id="acc-9"),
        credit(
            "10.00", current_balance="1.00", reseller_id="res-x", actor={**FINANCE, "reseller_id": "res-x"}
        ),
        credit("10.00"),
    )
    assert [d["balance"] for d in decisions] == ["10.00", "15.00", "11.00", "20.00"]


def test_a_rejection_names_its_code_and_the_figure_and_changes_nothing() -> None:
    decisions = decided(
        line(kind="correction", amount="-12.51", current_balance="12.50", adjustment_id="down"),
        line(kind="correction", amount="-12.50", adjustment_id="all"),
    )
    assert decisions[0]["decision"] == "rejected"
    assert decisions[0]["reason_code"] == "insufficient_balance"
    assert decisions[0]["detail"].startswith("balance is 12.50 SGD")
    assert decisions[1]["balance"] == "0.00"


def test_known_facts_let_a_termination_refund_and_an_earlier_entry_be_reversed() -> None:
    known = {
        "transactions": [{"transaction_id": "txn-88412", "amount": "45.00", "refunded": "40.00"}],
        "entries": [
            {"id": "rf-1", "kind": "termination_refund", "delta": "110.00"},
            {"id": "rf-2", "kind": "termination_refund", "delta": "0.00", "method": "credit_note"},
            {"id": "old", "kind": "transaction_refund", "delta": "40.00", "transaction_id": "txn-88412"},
        ],
    }
    decisions = decided(
        reversal("rf-1", current_balance="165.50", known=known),
        reversal("rf-2"),
        line(amount="6.00"),
        reversal("old"),
        line(amount="45.00"),
    )
    assert (decisions[0]["balance"], decisions[0]["refund_id"]) == ("55.50", "rf-1")
    assert decisions[1]["reason_code"] == "not_reversible"
    assert decisions[2]["detail"] == "5.00 SGD is left to refund of transaction txn-88412"
    assert (decisions[3]["delta"], decisions[3]["balance"], decisions[3]["transaction_id"]) == (
        "-40.00",
        "15.50",
        "txn-88412",
    )
    assert (decisions[4]["decision"], decisions[4]["balance"]) == ("applied", "60.50")


def test_a_fact_a_later_line_states_must_agree_with_the_earlier_lines(tmp_path: Path) -> None:
    raw = jsonl(
        credit("10.00", current_balance="0.00"),
        credit("1.00", current_balance="0.00"),
        credit("1.00", current_balance="10.00"),
    )
    status, out, err = run_adjust(raw, tmp_path, "--dry-run")
    assert status == 2
    assert [json.loads(text)["balance"] for text in out.splitlines()] == ["10.00", "11.00"]
    assert (
        "line 2: current_balance: 0.00 SGD stated, but the earlier lines of account acc-1002 leave 10.00 SGD"
        in err
    )


def test_bad_lines_are_named_on_stderr_with_exit_2_and_the_good_ones_still_answered(tmp_path: Path) -> None:
    raw = jsonl(
        credit("10.00", current_balance="0.00", adjustment_id="a"),
        b"not json",
        credit("1.234"),
        credit("1.00", adjustment_id="a"),
        credit("100", currency="JPY"),
        b"\xff\xfe",
        line(kind="transaction_refund", transaction=None),
        credit("1.00"),
    )
    status, out, err = run_adjust(raw, tmp_path, "--dry-run")
    assert status == 2
    assert [json.loads(text)["balance"] for text in out.splitlines()] == ["10.00", "11.00"]
    assert "line 2: (data): Invalid JSON" in err
    assert "line 3: amount: '1.234' has 3 decimal places but SGD has 2" in err
    assert "line 4: adjustment_id: a is already line 1's, for the same account" in err
    assert (
        "line 5: current_balance: required, as no earlier line gives the JPY balance of account acc-1002"
        in err
    )
    assert "line 6: not UTF-8 text" in err
    assert "line 7: transaction: a transaction_refund names its transaction" in err
    assert "line 1:" not in err
    assert "line 8:" not in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("known", "message"),
    [
        ({"entries": [{"id": "x", "kind": "refund", "delta": "1.00"}]}, "known.entries.0.kind"),
        ({"entries": [{"id": "x", "kind": "credit", "delta": "1.00", "extra": 1}]}, "known.entries.0.extra"),
        (
            {"transactions": [{"transaction_id": "t", "amount": "1.00", "refunded": "2.00"}]},
            "cannot have 2.00",
        ),
        ({"entries": [{"id": "x", "kind": "transaction_refund", "delta": "1.00"}]}, "known: entry x: "),
    ],
)
def test_a_malformed_known_fact_is_named(known: dict[str, Any], message: str) -> None:
    [problem] = adjust_input(jsonl(credit("1.00", current_balance="0.00", known=known))).problems
    assert message in problem.message


def test_all_good_lines_exit_0_with_one_answer_each(tmp_path: Path) -> None:
    raw = jsonl(credit("10.00", current_balance="0.00"), reversal("line-1"), b"", credit("1.00"))
    status, out, err = run_adjust(raw, tmp_path, "--dry-run")
    assert (status, err) == (0, "")
    assert [json.loads(text)["decision"] for text in out.splitlines()] == ["applied", "applied", "applied"]


def test_a_single_pretty_printed_line_is_one_request() -> None:
    raw = b"\n" + json.dumps(credit("1.00", current_balance="0.00"), indent=2).encode()
    assert [d["balance"] for d in adjust_input(raw).decisions] == ["1.00"]


def test_without_dry_run_nothing_is_read_and_kafka_is_named(tmp_path: Path) -> None:
    status, out, err = run_adjust(jsonl(credit("1.00", current_balance="0.00")), tmp_path)
    assert (status, out) == (2, "")
    assert "--dry-run" in err
    assert "balance-adjustment-requested events on Kafka" in err
    assert "Traceback" not in err


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["adjust", "--dry-run", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


SEED = Path(__file__).resolve().parents[2] / "worker" / "entrypoints" / "seed_adjustments.jsonl"


def test_the_seed_tells_the_help_centers_story(tmp_path: Path) -> None:
    status, out, err = run_adjust(SEED.read_bytes(), tmp_path, "--dry-run")
    assert (status, err) == (0, "")
    decisions = [json.loads(text) for text in out.splitlines()]
    assert [(d["kind"], d["decision"], d.get("reason_code"), d.get("balance")) for d in decisions] == [
        ("transaction_refund", "applied", None, "145.50"),  # 004: refund part of a transaction
        ("transaction_refund", "rejected", "exceeds_refundable", None),
        ("credit", "applied", None, "150.50"),  # 003: issue credit
        ("reversal", "applied", None, "130.50"),  # 004: "Delete" the wrong entry
        ("correction", "applied", None, "80.50"),  # 004: a negative correction, then the paying system
        ("reversal", "rejected", "insufficient_balance", None),  # the termination refund, already spent
        ("credit", "rejected", "forbidden", None),  # 003: only with the Finance permission
    ]
