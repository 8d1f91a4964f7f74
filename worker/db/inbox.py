"""Look-ups every input's batch makes: which ce_ids it has seen, which subscriptions are terminated
and which account each subscription belongs to. Every key is (reseller_id, id): identifiers are
unique within their reseller only (contract section 7).

`InboxTracking` is the inbox's one judgement of a redelivery (as eventsourcing's process recorder
names its tracking record): the same ce_id with the same payload is a duplicate, with another a
conflict. Every use case asks it, none compares digests itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, TableValuedAlias, any_, func, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from worker.db.bulk import ResellerKey, key_arrays, wanted, wanted_keys
from worker.db.schema.expiry import expiry_timers, subscription_renewals
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


def one_of_keys(reseller: ColumnElement[str], key: ColumnElement[str]) -> ColumnElement[bool]:
    """`one_of` for (reseller, key) pairs bound by worker.db.bulk.key_arrays: each column is one of its
    array (the index is probed with every reseller and id given, a few resellers at most), and the
    pair one of the pairs (a filter of the rows found, never a join)."""
    keys = wanted_keys()
    pairs = func.array(select(tuple_(keys.c.reseller_id, keys.c.id)).scalar_subquery())
    return one_of(reseller, "resellers") & one_of(key, "ids") & (tuple_(reseller, key) == any_(pairs))


async def seen_digests(
    conn: AsyncConnection, topic: str, ce_ids: Iterable[ResellerKey]
) -> dict[ResellerKey, bytes]:
    """The payload digest stored for each of these (reseller, ce_id) already handled on `topic`."""
    rows = await conn.execute(_seen_digests(topic), key_arrays(ce_ids))
    return {(reseller, ce_id): digest for reseller, ce_id, digest in rows}


# Each statement is built once (@cache), as the others of a batch are module constants: building one
# and its cache key took 150-250 us, about 5 us a request at batches of 500, more at smaller ones.
@cache
def _seen_digests(topic: str) -> Select[Any]:
    keys = wanted_keys()
    return probed(
        keys,
        select(inbox.c.reseller_id, inbox.c.ce_id, inbox.c.payload_sha256).where(
            inbox.c.reseller_id == keys.c.reseller_id, inbox.c.topic == topic, inbox.c.ce_id == keys.c.id
        ),
    )


async def terminated_subscriptions(
    conn: AsyncConnection, subscriptions: Iterable[ResellerKey]
) -> set[ResellerKey]:
    rows = await conn.execute(_terminated(), key_arrays(subscriptions))
    return {(reseller, subscription) for reseller, subscription in rows}


@cache
def _terminated() -> Select[Any]:
    keys, t = wanted_keys(), terminations.c
    return probed(
        keys,
        select(t.reseller_id, t.subscription_id).where(
            t.reseller_id == keys.c.reseller_id, t.subscription_id == keys.c.id
        ),
    )


def _owner_in(table: Table, keys: TableValuedAlias) -> ColumnElement[str]:
    c = table.c
    found = select(c.account_id).where(c.reseller_id == keys.c.reseller_id, c.subscription_id == keys.c.id)
    return found.limit(1).scalar_subquery()


async def subscription_owners(
    conn: AsyncConnection, subscriptions: Iterable[ResellerKey]
) -> dict[ResellerKey, str]:
    """The account each known subscription belongs to: from its termination, its expiry timer or a
    renewal, one index probe of each per key (worker.domain.ownership decides what a mismatch does)."""
    rows = await conn.execute(_owners(), key_arrays(subscriptions))
    return {
        (reseller, subscription): account for reseller, subscription, account in rows if account is not None
    }


@cache
def _owners() -> Select[Any]:
    keys = wanted_keys()
    owner = func.coalesce(
        _owner_in(terminations, keys), _owner_in(expiry_timers, keys), _owner_in(subscription_renewals, keys)
    )
    return select(keys.c.reseller_id, keys.c.id, owner)


def inbox_row(
    reseller_id: str,
    topic: str,
    ce_id: str,
    digest: bytes,
    outcome: StrEnum,
    partition: int | None,
    offset: int | None,
) -> dict[str, Any]:
    return {
        "reseller_id": reseller_id,
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
    """The payload digests the inbox holds for a batch's (reseller, ce_id) on one topic, and those the
    batch adds."""

    seen: dict[ResellerKey, bytes]

    def redelivery(self, ce_id: ResellerKey, digest: bytes) -> Redelivery | None:
        """None for a ce_id never handled, else whether this is a duplicate or a conflict."""
        known = self.seen.get(ce_id)
        if known is None:
            return None
        return Redelivery.DUPLICATE if known == digest else Redelivery.CONFLICT

    def track(self, ce_id: ResellerKey, digest: bytes) -> None:
        """The batch handles this ce_id: a later copy in the same batch is a redelivery."""
        self.seen[ce_id] = digest


async def inbox_tracking(conn: AsyncConnection, topic: str, ce_ids: Iterable[ResellerKey]) -> InboxTracking:
    return InboxTracking(await seen_digests(conn, topic, ce_ids))
