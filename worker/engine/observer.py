"""What the batch pipeline reports as it works, to whoever listens: metrics count it
(worker/ops/observability.py), liveness judges the consumer by it (worker/ops/liveness.py)."""

from __future__ import annotations

from collections.abc import Sequence

from worker.engine.failures import FailureKind
from worker.engine.records import InboundRecord


class PipelineObserver:
    """What a pipeline reports as it works; these do nothing (worker/ops/observability.py counts them,
    worker/ops/liveness.py judges liveness by them)."""

    def batch_started(self, records: Sequence[InboundRecord]) -> None:
        """The pipeline took these records in hand (again, when a rewound batch comes back)."""

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        """The batch is decided, committed and its poison dead-lettered: its offsets can be committed."""

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        """A transaction over these records failed for a reason other than poison, and is retried."""

    def dead_lettered(self, record: InboundRecord, reason: str, kind: FailureKind) -> None:
        """The record went to its dead-letter topic (acknowledged by the broker)."""


class ObserverGroup(PipelineObserver):
    """Several observers, each told everything, in order."""

    def __init__(self, *observers: PipelineObserver) -> None:
        self._observers = observers

    def batch_started(self, records: Sequence[InboundRecord]) -> None:
        for observer in self._observers:
            observer.batch_started(records)

    def batch_handled(self, records: Sequence[InboundRecord], seconds: float) -> None:
        for observer in self._observers:
            observer.batch_handled(records, seconds)

    def attempt_failed(self, records: Sequence[InboundRecord], kind: FailureKind) -> None:
        for observer in self._observers:
            observer.attempt_failed(records, kind)

    def dead_lettered(self, record: InboundRecord, reason: str, kind: FailureKind) -> None:
        for observer in self._observers:
            observer.dead_lettered(record, reason, kind)
