"""Look-ups every input's batch makes: which ce_ids it has seen, which subscriptions are terminated.

`InboxTracking` is the inbox's one judgement of a redelivery (as eventsourcing's process recorder
names its tracking record): the same ce_id with the same payload is a duplicate, with another a
conflict. Every use case asks it, none compares digests itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, TableValuedAlias, any_, func, select, true
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from worker.db.bulk import wanted
from worker.db.schema.inbox import inbox
from worker.db.schema.refunds import terminations


def probed(ids: TableValuedAlias, match: Select[Any]) -> Select[Any]:
    """`match`, a look-up of at most one row by a unique key equal to `ids.c.id`, run once per key.

    A plain join of `unnest` with the table is planned as a hash join over the whole table when
    the table holds tens of thousands of rows and the batch hundreds of keys (custom plan, 500
    keys, 60,000 inbox rows: a sequential scan, 58 ms, against 4 ms of probes; issue 13). LIMIT 1
    keeps PostgreSQL from pulling the LATERAL subquery up into such a join, so the only plan left
    is a nested loop of index probes, custom or generic, at any size. The key is unique: LIMIT 1
    drops nothing. tests/service/test_lookup_plans.py checks the plans.
    """
    one = match.limit(1).lateral("match")
    return select(*one.c).select_from(ids.join(one, true()))


def one_of(
    column: ColumnElement[Any], name: str, element: TypeEngine[Any] | None = None
) -> ColumnElement[bool]:
    """`column = ANY(ARRAY(SELECT unnest(:name)))`, for an UPDATE of the rows of many keys.

    The array comes from a sub-select, so neither a custom nor a generic plan knows its length, and
    both probe the index with it; `= ANY(:name)` lets a custom plan scan the whole table for a long
    array, and `FROM unnest(:name)` lets it hash join over the whole table (issue 13).
    """
    return column == any_(func.array(select(wanted(name, element).c.id).scalar_subquery()))


async def seen_digests(conn: AsyncConnection, topic: str, ce_ids: Iterable[str]) -> dict[str, bytes]:
    """The payload digest stored for each of these ce_ids already handled on `topic`."""
    ids = wanted("ids")
    query = probed(
        ids,
        select(inbox.c.ce_id, inbox.c.payload_sha256).where(
            inbox.c.topic == topic, inbox.c.ce_id == ids.c.id
        ),
    )
    return {ce_id: digest for ce_id, digest in await conn.execute(query, {"ids": list(ce_ids)})}


async def terminated_subscriptions(conn: AsyncConnection, subscription_ids: Iterable[str]) -> set[str]:
    ids = wanted("ids")
    query = probed(
        ids, select(terminations.c.subscription_id).where(terminations.c.subscription_id == ids.c.id)
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
