"""The worker's murmur2 is aiokafka's (and the Java client's): a key lands where any Kafka producer
would put it."""

from __future__ import annotations

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from worker.engine.partitioning import murmur2, partition_of


@given(st.binary(max_size=300))
def test_murmur2_is_aiokafkas_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_matches_values_of_the_java_client() -> None:
    # From the Java client's own test (org.apache.kafka.common.utils.UtilsTest.testMurmur2).
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    assert {data: murmur2(data) - (1 << 32) * (murmur2(data) >> 31) for data in cases} == cases


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_a_key_lands_where_the_default_partitioner_puts_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = (aiokafka_murmur2(key) & 0x7FFFFFFF) % count
    assert partition_of(murmur2(key), partitions) == expected
