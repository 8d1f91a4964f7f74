"""Bulk statements whose text does not depend on the batch size.

SQLAlchemy renders `IN (...)` and multi-row `VALUES` with one parameter per value, so every batch
size is a new statement to compile, prepare and plan. Arrays (`= ANY(:ids)`, `unnest(...)`) keep
one statement text, cached at every layer, and COPY is PostgreSQL's fastest way in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Table, TableValuedAlias, Text, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine


def wanted(name: str, element: TypeEngine[Any] | None = None) -> TableValuedAlias:
    """`unnest(:name) AS name(id)`: join it to look rows up by many keys at once.

    Not `key = ANY(:name)`: after five runs PostgreSQL plans a prepared statement generically, and
    its generic plan for ANY filters every row (the look-up grew from 9 to 123 ms as the inbox grew
    to 20,000 rows). A join against unnest keeps to the index at any size.
    """
    array: Any = ARRAY(element or Text())  # sqlalchemy's stubs want a Python type here; ARRAY is one
    parameter: BindParameter[list[Any]] = bindparam(name, type_=array)
    return func.unnest(parameter).table_valued("id", name=name).render_derived()


async def copy_rows(conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """COPY `rows` (dicts with the same keys) into `table`, inside the connection's transaction."""
    if not rows:
        return
    columns = tuple(rows[0])
    convert = _converters(table, columns)
    records = [tuple(to_db(row[name]) for name, to_db in zip(columns, convert, strict=True)) for row in rows]
    raw = (await conn.get_raw_connection()).driver_connection
    if raw is None:
        raise RuntimeError("the connection was closed before COPY")
    await raw.copy_records_to_table(table.name, records=records, columns=list(columns))


@cache
def _converters(table: Table, columns: tuple[str, ...]) -> tuple[Callable[[Any], Any], ...]:
    return tuple(_to_json if isinstance(table.c[name].type, JSONB) else _as_is for name in columns)


def _as_is(value: Any) -> Any:
    return value


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))
