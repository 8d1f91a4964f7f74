"""`refund-worker quote`: what the policy decides for termination requests, touching nothing.

This is what the portal shows before the operator confirms, so it runs exactly the worker's
decision (`decide_refund`), credit note included; only the history checks (already terminated,
credit note already used) need the database and are not made here.

Input is JSON Lines, or one pretty-printed object (worker/entrypoints/json_lines.py). Each line is
judged alone: a bad line is named, and the good lines are still answered, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from schemas.errors import describe
from schemas.inputs import TerminationRequested
from worker.domain.errors import DomainError
from worker.domain.policy import (
    CreditNoteInvalid,
    RefundDecision,
    RefundPolicy,
    TerminationTerms,
    decide_refund,
)
from worker.engine.wire_to_domain import termination_terms
from worker.entrypoints.json_lines import InvalidLine, documents, not_utf8


@dataclass(frozen=True, slots=True)
class Quotes:
    """The decisions of the good lines, in order, and what is wrong with each bad one."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[InvalidLine] = field(default_factory=list)


def quote_input(raw: bytes, policy: RefundPolicy) -> Quotes:
    """One decision per good request, in order, and one problem per bad line."""
    quotes = Quotes()
    for line, document in documents(raw):
        outcome = _quote_line(document, policy)
        if isinstance(outcome, str):
            quotes.problems.append(InvalidLine(line, outcome))
        else:
            quotes.decisions.append(outcome)
    return quotes


def _quote_line(document: bytes, policy: RefundPolicy) -> dict[str, Any] | str:
    """The decision for one line, or the message saying why it has none."""
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError as error:
        return not_utf8(error)
    try:
        return quote(TerminationRequested.model_validate_json(text), policy)
    except ValidationError as invalid:
        return describe(invalid)
    except DomainError as refused:  # the input's limits should leave none; never a traceback for one
        return str(refused)


def quote(request: TerminationRequested, policy: RefundPolicy) -> dict[str, Any]:
    terms = termination_terms(request)
    try:
        decision = decide_refund(terms, policy)
    except CreditNoteInvalid as invalid:
        return _rejected(terms, str(invalid))
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


def _rejected(terms: TerminationTerms, detail: str) -> dict[str, Any]:
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
