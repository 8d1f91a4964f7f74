"""Look-ups every input's batch makes: which ce_ids it has seen, which subscriptions are terminated."""

from __future__ import annotations

from collections.abc import Iterable
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
