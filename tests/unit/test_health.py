"""Readiness's judgement of the schema, and the HTTP port's failure when it is taken."""

from __future__ import annotations

import socket

import pytest

from worker.ops.health import Check, bind, migration_check

KNOWN = frozenset({"0001", "0002"})


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        ("0002", Check(True, "ok")),
        (None, Check(False, "behind: no schema yet, head is 0002")),
        ("0001", Check(False, "behind: at 0001, head is 0002")),
        ("0003", Check(True, "ok: at 0003, newer than this release's head 0002")),
    ],
    ids=["at head", "empty database", "behind", "newer release migrated first"],
)
def test_migration_check(current: str | None, expected: Check) -> None:
    assert migration_check(current, "0002", KNOWN) == expected


def test_a_taken_port_fails_at_once_naming_the_setting() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port} \\(METRICS_PORT\\)"):
            bind("127.0.0.1", port)
    finally:
        taken.close()


def test_bind_listens_on_the_given_address() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        with socket.create_connection(sock.getsockname(), timeout=1):
            pass
    finally:
        sock.close()
