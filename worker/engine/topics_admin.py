"""Making sure the topics the worker reads and writes exist (a fresh cluster, the embedded broker)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from schemas.topics import INPUT_TOPICS, OUTPUT_TOPICS, dead_letter_topic

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap_servers: str, *, partitions: int, **client_options: Any) -> None:
    """Create missing contract topics; a dead-letter topic gets its source topic's partition count.

    A cluster that forbids topic creation to this worker only gets a warning: its operators create
    the topics, and the worker must not refuse to start over it.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="refund-worker-admin", **client_options
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        sources = [topic.value for topic in (*INPUT_TOPICS, *OUTPUT_TOPICS)]
        await _create(admin, [NewTopic(t, partitions, 1) for t in sources if t not in existing])
        counts = await _partition_counts(admin, [topic.value for topic in INPUT_TOPICS])
        letters = [
            NewTopic(dead_letter_topic(source), count, 1)
            for source, count in counts.items()
            if dead_letter_topic(source) not in existing
        ]
        await _create(admin, letters)
    finally:
        await admin.close()


async def _create(admin: AIOKafkaAdminClient, topics: Iterable[NewTopic]) -> None:
    wanted = list(topics)
    if not wanted:
        return
    try:
        await admin.create_topics(wanted)
        log.info("created topics %s", ", ".join(f"{t.name}({t.num_partitions})" for t in wanted))
    except KafkaError as error:
        log.warning("could not create topics %s: %s", [t.name for t in wanted], error)


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(topics)
    return {entry["topic"]: len(entry["partitions"]) for entry in described if entry.get("partitions")}
