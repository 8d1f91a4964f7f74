"""The worker's Prometheus metrics: every name in one place, fed by hooks where things happen.

The pipeline reports through `PipelineObserver` (worker/engine/observer.py; worker/ops/observability.py
counts) and the composition root hands decisions to `record_decisions`, so neither the pipeline nor
the domain imports a metric. The gauges of shared state are read when Prometheus scrapes (worker/ops/
scraped_gauges.py). Every counter series whose labels are known in advance is exported at 0 from
the start, so an alert on `increase()` fires on the first event after a start, not the second.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Sequence

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)

from schemas.topics import INPUT_TOPICS
from worker.adjustments.commands import AdjustmentResult
from worker.adjustments.commands import Outcome as AdjustmentOutcome
from worker.credit_notes.commands import NoteOutcome, NoteResult
from worker.domain.account_facts import AdjustmentKind
from worker.domain.adjustment_requests import RefusalCode, Refused
from worker.domain.money import Currency, Money
from worker.domain.money_refunds import MoneyRefundRefused
from worker.engine.failures import FailureKind
from worker.money_refunds.commands import (
    MoneyRefundResult,
    RequestOutcome,
    SettlementAnswer,
    SettlementResult,
)
from worker.ops.observability import MetricsObserver
from worker.ops.scraped_gauges import PREFIX, ScrapedGauges
from worker.terminations.commands import CommandResult, Outcome

# Handling a batch takes milliseconds when all is well and tens of seconds while the database is
# away (the pipeline waits it out), so the buckets span both.
BATCH_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# Every reason_code a money refund request can be refused with (worker/domain/money_refunds.py).
MONEY_REFUND_REFUSALS = (
    RefusalCode.FORBIDDEN,
    RefusalCode.INVALID_AMOUNT,
    RefusalCode.METHOD_NOT_ALLOWED,
    RefusalCode.CURRENCY_MISMATCH,
    RefusalCode.EXCEEDS_PAYMENT,
    RefusalCode.INSUFFICIENT_BALANCE,
)

# Every `reason` worker.engine.failures.failure_reason gives (tests/unit/test_telemetry_under_outage.py
# checks).
DEAD_LETTER_REASONS = (
    "not_json",
    "invalid_envelope",
    "invalid_data",
    "domain_refused",
    "idempotency_conflict",
    "account_mismatch",
    "credit_note_redefined",
    "unknown_instruction",
    "settlement_conflict",
    "retries_exhausted",
    "poison",
    "unexpected",
)


class WorkerMetrics:
    """The metrics of one worker, in a registry of its own (tests run several workers in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or _registry_with_process_metrics()
        r = self.registry
        self.consumed = Counter(
            f"{PREFIX}_messages_consumed", "Input messages handled and committed.", ["topic"], registry=r
        )
        self.failed = Counter(
            f"{PREFIX}_messages_failed",
            "Messages in a failed attempt, by failure kind (worker/engine/failures.py): poison counts each "
            "poison message once; contention, infrastructure and unexpected count every message of "
            "each attempt that failed so and was retried.",
            ["topic", "kind"],
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{PREFIX}_dead_lettered", "Messages sent to <topic>-dlt.", ["topic", "reason"], registry=r
        )
        self.refunds_issued = Counter(
            f"{PREFIX}_refunds_issued", "Refunds above zero decided.", ["currency", "method"], registry=r
        )
        self.refunded_amount = Counter(
            f"{PREFIX}_refunded_amount",
            "Sum of refunds decided, in the currency's major unit (exact minor units converted at the edge).",
            ["currency"],
            registry=r,
        )
        self.decisions = Counter(
            f"{PREFIX}_decisions", "Termination requests decided, by outcome.", ["outcome"], registry=r
        )
        self.adjustments = Counter(
            f"{PREFIX}_adjustments",
            "Adjustment requests decided, by kind and outcome (applied, rejected, duplicate, conflict).",
            ["kind", "outcome"],
            registry=r,
        )
        self.adjustments_rejected = Counter(
            f"{PREFIX}_adjustments_rejected",
            "Adjustment requests rejected, by reason_code.",
            ["reason_code"],
            registry=r,
        )
        self.credit_notes = Counter(
            f"{PREFIX}_invoice_credit_notes",
            "Credit notes from the invoice app handled, by outcome (refund_conflict: reported to finance).",
            ["outcome"],
            registry=r,
        )
        self.money_refunds = Counter(
            f"{PREFIX}_money_refunds",
            "Money refund requests decided, by outcome (instructed, rejected, duplicate, conflict).",
            ["outcome"],
            registry=r,
        )
        self.money_refunds_rejected = Counter(
            f"{PREFIX}_money_refunds_rejected",
            "Money refund requests rejected, by reason_code.",
            ["reason_code"],
            registry=r,
        )
        self.payment_settlements = Counter(
            f"{PREFIX}_payment_settlements",
            "Settlements from the payment service handled, by outcome (succeeded, failed, already_settled, "
            "duplicate; idempotency_conflict, unknown_instruction and conflicting_status are dead-lettered).",
            ["outcome"],
            registry=r,
        )
        self.money_refunds_overdue_reported = Counter(
            f"{PREFIX}_money_refunds_overdue_reported",
            "Money refunds reported overdue (money-refund-updated overdue, once each; they stay open).",
            registry=r,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_batch_seconds",
            "Time to handle one batch: parse, decide and commit, dead-letter.",
            ["topic"],
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.gauges = ScrapedGauges(r)
        """The outbox, the expiry timers, the consumer's lag and the dependencies, read at each scrape."""
        self._export_known_series()

    def _export_known_series(self) -> None:
        """Every series whose labels are known before the first event, at 0 (currencies are not
        known in advance: their series appear with their first refund)."""
        for topic in (topic.value for topic in INPUT_TOPICS):
            self.consumed.labels(topic)
            self.batch_seconds.labels(topic)
            for kind in FailureKind:
                self.failed.labels(topic, kind.value)
            for reason in DEAD_LETTER_REASONS:
                self.dead_lettered.labels(topic, reason)
        for outcome in Outcome:
            self.decisions.labels(outcome.value)
        for adjustment_kind in AdjustmentKind:
            for adjusted in AdjustmentOutcome:
                self.adjustments.labels(adjustment_kind.value, adjusted.value)
        for code in RefusalCode:
            self.adjustments_rejected.labels(code.value)
        for note_outcome in NoteOutcome:
            self.credit_notes.labels(note_outcome.value)
        for money_outcome in RequestOutcome:
            self.money_refunds.labels(money_outcome.value)
        for refusal in MONEY_REFUND_REFUSALS:
            self.money_refunds_rejected.labels(refusal.value)
        for answer in SettlementAnswer:
            self.payment_settlements.labels(answer.value)

    def faststream_middleware(self) -> KafkaPrometheusMiddleware:
        """FastStream's own consume/publish metrics (refund_worker_received_messages_total, ...)."""
        return KafkaPrometheusMiddleware(
            registry=self.registry, app_name="refund-worker", metrics_prefix=PREFIX
        )

    def observer(self) -> MetricsObserver:
        return MetricsObserver(self)

    def record_decisions(self, results: Iterable[CommandResult]) -> None:
        """Count a batch's committed decisions, summed per series first (a labels() look-up a request
        was 4% of the worker); the refunded amounts are summed in exact minor units, then a float."""
        outcomes: Tally[str] = Tally()
        refunds: Tally[tuple[str, str]] = Tally()
        refunded: dict[Currency, int] = {}
        for result in results:
            outcomes[result.outcome.value] += 1
            decision = result.decision
            if result.outcome is not Outcome.TERMINATED or decision is None or not decision.refundable:
                continue
            currency = decision.amount.currency
            refunds[(currency.code, decision.method.value if decision.method else "none")] += 1
            refunded[currency] = refunded.get(currency, 0) + decision.amount.minor
        for outcome, count in outcomes.items():
            self.decisions.labels(outcome).inc(count)
        for (code, method), count in refunds.items():
            self.refunds_issued.labels(code, method).inc(count)
        for currency, minor in refunded.items():
            self.refunded_amount.labels(currency.code).inc(float(Money(minor, currency).to_decimal()))

    def record_adjustments(self, results: Iterable[AdjustmentResult]) -> None:
        """Count committed adjustment decisions (a conflict too: it is dead-lettered)."""
        for result in results:
            self.adjustments.labels(result.command.request.kind.value, result.outcome.value).inc()
            if isinstance(result.decision, Refused):
                self.adjustments_rejected.labels(result.decision.code.value).inc()

    def record_credit_notes(self, results: Iterable[NoteResult]) -> None:
        """Count committed credit-note outcomes (those dead-lettered under theirs too, as decisions do)."""
        for result in results:
            self.credit_notes.labels(result.outcome.value).inc()

    def record_money_refunds(self, results: Iterable[MoneyRefundResult]) -> None:
        """Count committed money refund decisions (a conflict too: it is dead-lettered)."""
        for result in results:
            self.money_refunds.labels(result.outcome.value).inc()
            if isinstance(result.decision, MoneyRefundRefused):
                self.money_refunds_rejected.labels(result.decision.code.value).inc()

    def record_overdue(self, reported: Sequence[object]) -> None:
        """Count the instructions one round reported overdue."""
        self.money_refunds_overdue_reported.inc(len(reported))

    def record_settlements(self, results: Iterable[SettlementResult]) -> None:
        """Count committed settlement answers (those dead-lettered under theirs too)."""
        for result in results:
            self.payment_settlements.labels(result.answer.value).inc()


def _registry_with_process_metrics() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry
