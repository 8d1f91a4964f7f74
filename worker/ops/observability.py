"""What the pipeline reports, counted and logged: `MetricsObserver` feeds the worker's metrics
(worker/ops/metrics.py) and logs each dead letter once the broker has it (docs/production.md names
this module's logger, `worker.ops.observability`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from worker.engine.failures import FailureKind
from worker.engine.observer import PipelineObserver
from worker.engine.records import InboundRecord

if TYPE_CHECKING:
    from worker.ops.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class MetricsObserver(PipelineObserver):
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        for topic, count in _per_topic(records).items():
            self._metrics.consumed.labels(topic).inc(count)
            self._metrics.batch_seconds.labels(topic).observe(seconds)

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        for topic, count in _per_topic(records).items():
            self._metrics.failed.labels(topic, kind.value).inc(count)

    def dead_lettered(self, record: InboundRecord, reason: str, kind: FailureKind) -> None:
        self._metrics.dead_lettered.labels(record.topic, reason).inc()
        if kind is FailureKind.POISON:  # the other kinds were counted at each failed attempt
            self._metrics.failed.labels(record.topic, kind.value).inc()
        log_dead_letter(record, reason, kind)


def log_dead_letter(record: InboundRecord, reason: str, kind: FailureKind) -> None:
    """One WARNING per dead letter, once the broker has it, with what finds it in `refund-worker dlq`."""
    fields = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": _text(record.key),
        "ce_id": _text(dict(record.headers).get("ce_id")),
        "reason": reason,
        "kind": kind.value,
    }
    log.warning(
        "dead-lettered %s[%d]@%d to its dead-letter topic: %s",
        record.topic,
        record.partition,
        record.offset,
        reason,
        extra=fields,
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _per_topic(records: Sequence[InboundRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.topic] = counts.get(record.topic, 0) + 1
    return counts
