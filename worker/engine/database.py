"""The database as the engine uses it: protocols narrow enough that an `AsyncEngine` and its
`AsyncConnection` satisfy them as they are, and a test's fake implements them without a cast.

The batch pipeline and the outbox relay need only transactions (`Database.begin`), a connection to
ask whether the database answers (`Database.connect`), and a connection that runs statements
(`Statements`) or reads rows too (`Queries`). The appliers get the pipeline's connection as it is:
`BatchPipeline` is generic in it, so an applier given an `AsyncConnection` can use all of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeAlias, TypeVar

from sqlalchemy import Executable

Parameters: TypeAlias = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
"""One row's bound parameters, or several rows' (an executemany)."""

ConnectionT_co = TypeVar("ConnectionT_co", covariant=True)


class Statements(Protocol):
    """A connection that runs statements; what they return is not read."""

    async def execute(self, statement: Executable, parameters: Parameters = None, /) -> object: ...


class Rows(Protocol):
    """A statement's result, read whole."""

    def all(self) -> Sequence[Any]: ...


class Queries(Protocol):
    """A connection that runs statements and reads the rows they return."""

    async def execute(self, statement: Executable, parameters: Parameters = None, /) -> Rows: ...


class Database(Protocol[ConnectionT_co]):
    """Where transactions come from (an AsyncEngine is a `Database[AsyncConnection]`): `begin` for a
    transaction that commits on leaving, `connect` for a connection to see whether it answers."""

    def begin(self) -> AbstractAsyncContextManager[ConnectionT_co]: ...

    def connect(self) -> AbstractAsyncContextManager[ConnectionT_co]: ...
