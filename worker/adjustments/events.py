"""The events an adjustment decision publishes (through the outbox), their ce_ids derived from the
request's. No I/O."""

from __future__ import annotations

from datetime import datetime

from schemas.adjustments import (
    AdjustmentKind,
    AdjustmentRejected,
    AdjustmentRejectionReason,
    BalanceAdjusted,
)
from schemas.outputs import CreditsCause, CreditsUpdated
from worker.adjustments.commands import signed_text
from worker.domain.adjustment_requests import AdjustmentRequest, Applied, Refused
from worker.engine.outbox import OutboxEvent, derived_id


def adjusted_events(
    request: AdjustmentRequest, applied: Applied, version: int, now: datetime
) -> tuple[OutboxEvent, OutboxEvent]:
    """`balance-adjusted` and the `credits-updated` of the same change."""
    currency = request.currency
    delta, balance = signed_text(applied.delta, currency), signed_text(applied.balance, currency)
    adjusted = BalanceAdjusted(
        adjustment_id=request.adjustment_id,
        kind=AdjustmentKind(request.kind.value),
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        currency=currency.code,
        delta=delta,
        balance=balance,
        balance_version=version,
        transaction_id=applied.transaction_id,
        reverses=applied.reverses,
        reason=request.reason,
        requested_by=request.actor.id,
        applied_at=now,
    )
    credits = CreditsUpdated(
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        currency=currency.code,
        delta=delta,
        balance=balance,
        balance_version=version,
        cause=CreditsCause(request.kind.value),
        refund_id=applied.refund_id,
        updated_at=now,
        adjustment_id=request.adjustment_id,
    )
    return (
        OutboxEvent.of(
            derived_id(request.reseller_id, request.adjustment_id, "balance-adjusted"), adjusted, now
        ),
        OutboxEvent.of(credits_event_id(request), credits, now),
    )


def credits_event_id(request: AdjustmentRequest) -> str:
    return derived_id(request.reseller_id, request.adjustment_id, "credits-updated")


def rejected_event(request: AdjustmentRequest, refused: Refused, now: datetime) -> OutboxEvent:
    data = AdjustmentRejected(
        request_id=request.adjustment_id,
        account_id=request.account_id,
        reseller_id=request.reseller_id,
        kind=AdjustmentKind(request.kind.value),
        reason_code=AdjustmentRejectionReason(refused.code.value),
        detail=refused.detail,
    )
    return OutboxEvent.of(
        derived_id(request.reseller_id, request.adjustment_id, "adjustment-rejected"), data, now
    )
