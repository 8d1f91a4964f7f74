"""The one MetaData of the schema, with the naming convention the migrations' constraint names follow.

Money is stored as a whole number of the currency's minor unit beside its ISO 4217 code.
"""

from __future__ import annotations

import importlib

from sqlalchemy import Column, DateTime, MetaData, func

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TABLE_MODULES = (
    "inbox",
    "refunds",
    "balances",
    "adjustments",
    "outbox",
    "expiry",
    "dead_letters",
    "invoice_notes",
    "money_refunds",
)


def complete_metadata() -> MetaData:
    """The metadata with every table module loaded (what Alembic compares the database against)."""
    for name in _TABLE_MODULES:
        importlib.import_module(f"worker.db.schema.{name}")
    return metadata


def created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())
