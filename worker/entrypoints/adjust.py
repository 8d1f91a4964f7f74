"""`refund-worker adjust --dry-run`: what the adjustment rules decide for operator requests, touching nothing.

Each line is a `balance-adjustment-requested` data object with, beside it, what its account knows
(worker/entrypoints/adjust_state.py). It runs exactly the worker's rules (worker.domain.adjustments),
fed with the facts the lines state instead of the database's. Lines of one account (its reseller and
id) are decided in order, each seeing what the earlier ones applied, as the worker decides one
account's requests in a batch. A bad line is named and decides nothing; the others are still answered,
in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from schemas.adjustments import BalanceAdjustmentRequested
from schemas.errors import describe
from worker.adjustments.commands import adjustment_request, signed_text
from worker.domain.adjustments import (
    AccountFacts,
    AdjustmentRequest,
    Decision,
    Refused,
    decide_adjustment,
    record,
)
from worker.domain.errors import DomainError
from worker.entrypoints.adjust_state import LineState, with_stated
from worker.entrypoints.json_lines import InvalidLine, documents, not_utf8

Account = tuple[str, str]
"""(reseller_id, account_id): ids are unique within their reseller only."""


class Outcome(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Adjustments:
    """The decisions of the good lines, in order, and what is wrong with each bad one."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[InvalidLine] = field(default_factory=list)


def adjust_input(raw: bytes) -> Adjustments:
    """One decision per good line, in order, and one problem per bad line."""
    ledger = _Ledger()
    adjustments = Adjustments()
    for line, document in documents(raw):
        outcome = ledger.decide(line, document)
        if isinstance(outcome, str):
            adjustments.problems.append(InvalidLine(line, outcome))
        else:
            adjustments.decisions.append(outcome)
    return adjustments


class _Ledger:
    """The accounts as the lines read so far leave them."""

    def __init__(self) -> None:
        self._accounts: dict[Account, AccountFacts] = {}
        self._lines: dict[tuple[str, str, str], int] = {}
        """(reseller_id, account_id, adjustment_id) -> the line that used the id."""

    def decide(self, line: int, document: bytes) -> dict[str, Any] | str:
        """The decision for one line, or the message saying why it has none."""
        try:
            text = document.decode("utf-8")
        except UnicodeDecodeError as error:
            return not_utf8(error)
        read = _read(text)
        if isinstance(read, str):
            return read
        data, state = read
        account = (data.reseller_id, data.account_id)
        adjustment_id = state.adjustment_id or f"line-{line}"
        earlier = self._lines.get((*account, adjustment_id))
        if earlier is not None:
            return f"adjustment_id: {adjustment_id} is already line {earlier}'s, for the same account"
        try:
            request = adjustment_request(adjustment_id, data)
            facts = with_stated(
                self._accounts.get(account) or AccountFacts(*account), request.currency, state
            )
            decision = decide_adjustment(request, facts)
        except DomainError as refused:
            return str(refused)
        self._accounts[account] = record(facts, request, decision)
        self._lines[(*account, adjustment_id)] = line
        return rendered(request, decision)


def _read(text: str) -> tuple[BalanceAdjustmentRequested, LineState] | str:
    """The line's request and what it states of its account, or every problem of both at once."""
    problems = []
    data = state = None
    try:
        data = BalanceAdjustmentRequested.model_validate_json(text)
    except ValidationError as invalid:
        problems.append(describe(invalid))
    try:
        state = LineState.model_validate_json(text)
    except ValidationError as invalid:
        if not any(detail["type"] == "json_invalid" for detail in invalid.errors()):
            problems.append(describe(invalid))  # not JSON is said once, above
    if data is None or state is None:
        return "; ".join(problems)
    return data, state


def rendered(request: AdjustmentRequest, decision: Decision) -> dict[str, Any]:
    """The decision as one JSON object: applied with the delta and balance, or rejected with why."""
    common = {
        "adjustment_id": request.adjustment_id,
        "reseller_id": request.reseller_id,
        "account_id": request.account_id,
        "kind": request.kind,
        "currency": request.currency.code,
    }
    if isinstance(decision, Refused):
        return {
            **common,
            "decision": Outcome.REJECTED,
            "reason_code": decision.code,
            "detail": decision.detail,
        }
    return {
        **common,
        "decision": Outcome.APPLIED,
        "delta": signed_text(decision.delta, decision.currency),
        "balance": signed_text(decision.balance, decision.currency),
        "transaction_id": decision.transaction_id,
        "reverses": decision.reverses,
        "refund_id": decision.refund_id,
        "detail": decision.detail,
    }
