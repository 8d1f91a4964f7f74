"""Bulk statements whose text does not depend on the batch size.

SQLAlchemy renders `IN (...)` and multi-row `VALUES` with one parameter per value, so every batch
size is a new statement to compile, prepare and plan. Arrays (`= ANY(:ids)`, `unnest(...)`) keep
one statement text, cached at every layer, and COPY is PostgreSQL's fastest way in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import BindParameter, Table, TableValuedAlias, Text, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine


def wanted(name: str, element: TypeEngine[Any] | None = None) -> TableValuedAlias:
    """`unnest(:name) AS name(id)`: join it to look rows up by many keys at once.

    Not `key = ANY(:name)`: after five runs PostgreSQL plans a prepared statement generically, and
    its generic plan for ANY filters every row (the look-up grew from 9 to 123 ms as the inbox grew
    to 20,000 rows). A join against unnest keeps to the index in a generic plan, but a custom
    plan turns it into a hash join over the whole table at some tens of thousands of rows: look
    rows up through worker.db.inbox.probed (or one_of for an UPDATE), which stay index probes.
    """
    array: Any = ARRAY(element or Text())  # sqlalchemy's stubs want a Python type here; ARRAY is one
    parameter: BindParameter[list[Any]] = bindparam(name, type_=array)
    return func.unnest(parameter).table_valued("id", name=name).render_derived()


ResellerKey = tuple[str, str]
"""(reseller_id, an identifier the reseller chose): identifiers are unique within their reseller only."""


def wanted_keys() -> TableValuedAlias:
    """`unnest(:resellers, :ids) AS keys(reseller_id, id)`: `wanted` for keys of a reseller's rows,
    bound by `key_arrays`."""
    array: Any = ARRAY(Text())
    resellers: BindParameter[list[Any]] = bindparam("resellers", type_=array)
    ids: BindParameter[list[Any]] = bindparam("ids", type_=array)
    return func.unnest(resellers, ids).table_valued("reseller_id", "id", name="keys").render_derived()


def key_arrays(keys: Iterable[ResellerKey]) -> dict[str, list[str]]:
    """The parameters of `wanted_keys` (and of worker.db.inbox.one_of_keys), in key order."""
    ordered = sorted(set(keys))
    return {"resellers": [reseller for reseller, _ in ordered], "ids": [key for _, key in ordered]}


async def copy_rows(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """COPY `rows` (dicts with the same keys) into `table`, inside the connection's transaction."""
    if not rows:
        return
    columns = tuple(rows[0])
    await copy_records(conn, table, columns, _records(table, columns, rows))


async def copy_records(
    conn: AsyncConnection, table: Table, columns: Sequence[str], records: Iterable[tuple[Any, ...]]
) -> None:
    """COPY `records` (tuples of the values of `columns`, each as the driver encodes it) into `table`,
    inside the connection's transaction. The driver streams them: a generator's tuples are made and
    dropped one by one."""
    raw = (await conn.get_raw_connection()).driver_connection
    if raw is None:
        raise RuntimeError("the connection was closed before COPY")
    await raw.copy_records_to_table(table.name, records=records, columns=list(columns))


def _records(
    table: Table, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Rows as tuples in column order. itemgetter builds them in C: this runs for every value of
    every row of a batch, so a Python call per value was a tenth of the worker's time."""
    pick = itemgetter(*columns)
    json_at = _json_positions(table, columns)
    records = [(pick(row),) for row in rows] if len(columns) == 1 else [pick(row) for row in rows]
    if not json_at:
        return records
    converted = []
    for record in records:
        values = list(record)
        for position in json_at:
            value = values[position]
            values[position] = to_json(value)
        converted.append(tuple(values))
    return converted


@cache
def _json_positions(table: Table, columns: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(i for i, name in enumerate(columns) if isinstance(table.c[name].type, JSONB))


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    """Compact JSON; dates and aware datetimes as ISO 8601 / RFC 3339."""
    return json.dumps(value, default=_json_default, separators=(",", ":"))
