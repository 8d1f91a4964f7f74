"""Kafka's default partitioning of a keyed record: murmur2 of the key, as the Java client and
aiokafka's default partitioner compute it, over the topic's partitions in order."""

from __future__ import annotations

import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """aiokafka.partitioner.murmur2's value in half its time: the 4-byte words unpacked at once and
    masked once per step, rather than assembled byte by byte (tests/unit/test_partitioning.py holds
    it to aiokafka's). Up to three output records a request are partitioned by it (issue 13)."""
    length = len(data)
    h = _SEED ^ length
    for word in struct.unpack_from(f"<{length >> 2}I", data):
        k = (word * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        base = length - tail
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key_hash: int, partitions: Sequence[int]) -> int:
    """The partition among `partitions` (sorted) for a key of this murmur2 hash."""
    return partitions[(key_hash & 0x7FFFFFFF) % len(partitions)]
