"""/health/live of the real worker tells a blocked event loop from a healthy one."""

from __future__ import annotations

import asyncio
import json
import time

from tests.integration.harness import worker_settings
from tests.integration.test_operability import eventually, http_get, serving
from worker.ops.health import LIVE_PATH


async def heartbeat_running() -> bool:
    # The server answers while FastStream is still starting; the heartbeat starts after it.
    return any(task.get_name() == "liveness-heartbeat" for task in asyncio.all_tasks())


async def test_a_blocked_event_loop_fails_the_next_liveness_probe_then_recovers(
    kafka_bootstrap: str, database_url: str, kafka_group_settings: dict[str, int]
) -> None:
    settings = worker_settings(
        kafka_bootstrap, database_url, kafka_group_settings, metrics_port=0, liveness_loop_blocked_seconds=0.5
    )
    async with serving(settings) as (_, base):
        await eventually(heartbeat_running, within=30)
        assert (await http_get(base + LIVE_PATH))[0] == 200
        time.sleep(1.5)  # noqa: ASYNC251 - blocks the worker's loop, as a quadratic step on a large input did
        status, body = await http_get(base + LIVE_PATH)
        assert status == 503
        stuck = json.loads(body)
        assert (stuck["status"], stuck["detail"][:25]) == ("stuck", "event loop blocked for 1.")
        assert (await http_get(base + LIVE_PATH))[0] == 200
