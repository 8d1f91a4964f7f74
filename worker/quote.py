"""`refund-worker quote`: what the policy decides for termination requests, touching nothing.

This is what the portal shows before the operator confirms, so it runs exactly the worker's
decision (`decide_refund`), credit note included; only the history checks (already terminated,
credit note already used) need the database and are not made here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.errors import describe
from schemas.inputs import TerminationRequested
from worker.domain.policy import CreditNoteInvalid, RefundDecision, RefundPolicy, decide_refund


@dataclass(frozen=True, slots=True)
class InvalidLine:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class InvalidQuoteInput(Exception):
    def __init__(self, problems: list[InvalidLine]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def quote_text(text: str, policy: RefundPolicy) -> list[dict[str, Any]]:
    """One decision per request, in order; raises InvalidQuoteInput naming every bad line."""
    decisions: list[dict[str, Any]] = []
    problems: list[InvalidLine] = []
    for line, document in _documents(text):
        try:
            request = TerminationRequested.model_validate_json(document)
        except ValidationError as invalid:
            problems.append(InvalidLine(line, describe(invalid)))
            continue
        decisions.append(quote(request, policy))
    if problems:
        raise InvalidQuoteInput(problems)
    return decisions


def quote(request: TerminationRequested, policy: RefundPolicy) -> dict[str, Any]:
    try:
        decision = decide_refund(request.terms(), policy)
    except CreditNoteInvalid as invalid:
        return _rejected(request, str(invalid))
    return _decided(decision)


def _decided(decision: RefundDecision) -> dict[str, Any]:
    return {
        "refundable": decision.refundable,
        "amount": str(decision.amount),
        "currency": decision.amount.currency.code,
        "months_refunded": decision.months_refunded,
        "cycle_months": decision.cycle_months,
        "rule": decision.rule,
        "no_refund_reason": decision.no_refund_reason,
        "method": decision.method,
        "policy_amount": str(decision.policy_amount),
    }


def _rejected(request: TerminationRequested, detail: str) -> dict[str, Any]:
    terms = request.terms()
    zero = str(terms.amount_paid.share(0, 1))
    return {
        "refundable": False,
        "amount": zero,
        "currency": terms.amount_paid.currency.code,
        "months_refunded": 0,
        "cycle_months": terms.cycle.months,
        "rule": None,
        "no_refund_reason": None,
        "method": None,
        "policy_amount": zero,
        "rejection": {"reason_code": CreditNoteInvalid.reason_code, "detail": detail},
    }


def _documents(text: str) -> Iterator[tuple[int, str]]:
    """(line number, JSON text) for each request: JSON Lines, or one pretty-printed object."""
    stripped = text.strip()
    if stripped.startswith("{") and "\n" in stripped and _is_single_document(stripped):
        first_line = text.count("\n", 0, len(text) - len(text.lstrip())) + 1
        yield first_line, stripped
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _is_single_document(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False  # JSON Lines stop parsing at the second object: "Extra data"
    return True
