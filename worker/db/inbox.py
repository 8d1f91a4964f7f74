"""Look-ups every input's batch makes: which ce_ids it has seen, which subscriptions are terminated.

`InboxTracking` is the inbox's one judgement of a redelivery (as eventsourcing's process recorder
names its tracking record): the same ce_id with the same payload is a duplicate, with another a
conflict. Every use case asks it, none compares digests itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.db.bulk import wanted
from worker.db.tables import inbox, terminations


async def seen_digests(conn: AsyncConnection, topic: str, ce_ids: Iterable[str]) -> dict[str, bytes]:
    """The payload digest stored for each of these ce_ids already handled on `topic`."""
    ids = wanted("ids")
    query = select(inbox.c.ce_id, inbox.c.payload_sha256).join_from(
        ids, inbox, (inbox.c.topic == topic) & (inbox.c.ce_id == ids.c.id)
    )
    return {ce_id: digest for ce_id, digest in await conn.execute(query, {"ids": list(ce_ids)})}


async def terminated_subscriptions(conn: AsyncConnection, subscription_ids: Iterable[str]) -> set[str]:
    ids = wanted("ids")
    query = select(terminations.c.subscription_id).join_from(
        ids, terminations, terminations.c.subscription_id == ids.c.id
    )
    return set((await conn.execute(query, {"ids": list(subscription_ids)})).scalars())


def inbox_row(
    topic: str, ce_id: str, digest: bytes, outcome: StrEnum, partition: int | None, offset: int | None
) -> dict[str, Any]:
    return {
        "topic": topic,
        "ce_id": ce_id,
        "payload_sha256": digest,
        "outcome": outcome.value,
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


class Redelivery(StrEnum):
    DUPLICATE = "duplicate"
    """The same ce_id with the same payload: already handled, nothing to do."""
    CONFLICT = "conflict"
    """The same ce_id with another payload: not ours to decide, a dead letter."""


@dataclass(slots=True)
class InboxTracking:
    """The payload digests the inbox holds for a batch's ce_ids on one topic, and those the batch adds."""

    seen: dict[str, bytes]

    def redelivery(self, ce_id: str, digest: bytes) -> Redelivery | None:
        """None for a ce_id never handled, else whether this is a duplicate or a conflict."""
        known = self.seen.get(ce_id)
        if known is None:
            return None
        return Redelivery.DUPLICATE if known == digest else Redelivery.CONFLICT

    def track(self, ce_id: str, digest: bytes) -> None:
        """The batch handles this ce_id: a later copy in the same batch is a redelivery."""
        self.seen[ce_id] = digest


async def inbox_tracking(conn: AsyncConnection, topic: str, ce_ids: Iterable[str]) -> InboxTracking:
    return InboxTracking(await seen_digests(conn, topic, ce_ids))
