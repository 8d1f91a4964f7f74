"""What the metrics say of committed adjustment decisions: every series there from the start, then
one count per decision by kind and outcome, and per rejection by reason_code."""

from __future__ import annotations

from schemas.adjustments import BalanceAdjustmentRequested
from tests.integration.harness import adjustment_data
from worker.adjustments.commands import AdjustmentCommand, AdjustmentResult, Outcome, adjustment_request
from worker.domain.account_facts import AdjustmentKind
from worker.domain.adjustment_requests import Applied, RefusalCode, Refused
from worker.domain.money import Currency
from worker.ops.metrics import WorkerMetrics

SGD = Currency.of("SGD")


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def result(kind: str, outcome: Outcome, decision: Applied | Refused | None = None) -> AdjustmentResult:
    data = adjustment_data("acc-1", "res-1", kind, reverses="adj-0" if kind == "reversal" else None)
    request = adjustment_request("adj-1", BalanceAdjustmentRequested.model_validate(data))
    return AdjustmentResult(AdjustmentCommand(request, b"digest"), outcome, decision)


def test_every_kind_outcome_and_reason_code_is_exported_at_zero_from_the_start() -> None:
    metrics = WorkerMetrics()
    for kind in AdjustmentKind:
        for outcome in Outcome:
            assert sample(metrics, "refund_worker_adjustments_total", kind=kind, outcome=outcome) == 0
    for code in RefusalCode:
        assert sample(metrics, "refund_worker_adjustments_rejected_total", reason_code=code) == 0


def test_committed_decisions_are_counted_by_kind_outcome_and_reason_code() -> None:
    metrics = WorkerMetrics()
    applied = Applied("adj-1", AdjustmentKind.CREDIT, SGD, 1000, 1000, "credited")
    refused = Refused(
        "adj-1", AdjustmentKind.REVERSAL, RefusalCode.ALREADY_REVERSED, "adj-0 is already reversed"
    )
    metrics.record_adjustments(
        [
            result("credit", Outcome.APPLIED, applied),
            result("reversal", Outcome.REJECTED, refused),
            result("credit", Outcome.DUPLICATE),
        ]
    )
    counted = "refund_worker_adjustments_total"
    assert sample(metrics, counted, kind="credit", outcome="applied") == 1
    assert sample(metrics, counted, kind="reversal", outcome="rejected") == 1
    assert sample(metrics, counted, kind="credit", outcome="duplicate") == 1
    assert sample(metrics, "refund_worker_adjustments_rejected_total", reason_code="already_reversed") == 1
