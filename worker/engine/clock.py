"""The wall clock, in UTC. Whatever decides or stamps a time (the appliers, the expiry timers and
their read probe) takes a `clock: Callable[[], datetime]` defaulting to this one, and worker/app.py
wires it, so a test can fix `now` instead of reading the time of day."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
