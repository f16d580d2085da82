"""A pool under a storm of faults: kills, stops, black holes and resolver changes.

Three real backends in their own processes (see ``tests/chaos.py``), a pool
of 6 spread over them, 16 callers on the pool channel, and a seeded storm of
faults for ``GRPCPOOL_CHAOS_SECONDS`` (60 by default) that always leaves one
backend up. Each driver, sync and asyncio, must:

* never grow past its configured size;
* be at full size again within ``backoff_max`` + 1 s of the last fault;
* fail no call whose connection's backend had been healthy for a second
  (calls in flight on a faulted backend may fail);
* have almost no time (at most 0.5 s, in 100 ms steps) with no ready
  connection while a backend had been up and in the answer for a second.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import grpc
import pykka
import pytest

import grpcpool
from grpcpool import Config
from grpcpool.aio import Pool
from tests.chaos import Backends, CallRecord, Recording, Storm, judge_calls, last_address
from tests.chaos import storm_seconds as seconds_of_storm
from tests.pools import start_pool
from tests.waiting import wait_until

SEED = int(os.environ.get("GRPCPOOL_CHAOS_SEED", "20"))
SIZE = 6
CALLERS = 16
BACKOFF_MAX = 2.0
HEALTHY_FOR = 1.0
ECHO = "/test.Echo/Unary"

# The storm, the pool's start and its settling after the last fault.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(seconds_of_storm() + 120)]


def chaos_config(backends: Backends) -> Config:
    return Config.new(
        endpoint={
            "type": "local",
            "host": "chaos.test",
            "port": backends.port,
            "resolver": backends.resolve,
            "resolve_interval": 0.5,
        },
        pool={"size": SIZE, "strategy": Recording()},
        connection={
            "ping_interval": 1.0,
            "ping_timeout": 0.5,
            "connect_timeout": 2.0,
            "backoff_min": 0.2,
            "backoff_max": BACKOFF_MAX,
            "drain_timeout": 2.0,
        },
    )


class Samples:
    """The pool's size as sampled through the storm."""

    def __init__(self) -> None:
        self.most_expected = 0
        self.most_listed = 0
        self.count = 0

    def take(self, status: grpcpool.PoolStatus) -> None:
        self.most_expected = max(self.most_expected, status.expected_size)
        self.most_listed = max(self.most_listed, len(status.workers))
        self.count += 1


def _judge(
    records: list[CallRecord], backends: Backends, samples: Samples, healed_in: float
) -> None:
    verdict = judge_calls(records, backends, HEALTHY_FOR)
    print(
        f"chaos seed {SEED}: {verdict.calls} calls, {verdict.failed} failed, "
        f"{len(verdict.unexcused)} on a healthy backend, no-ready 100 ms steps "
        f"{verdict.no_ready_buckets}, full size {healed_in:.2f}s after the last fault, "
        f"most expected {samples.most_expected}, most listed {samples.most_listed}"
    )
    assert verdict.calls > 500, "the callers hardly ran"
    assert samples.count > 100
    assert samples.most_expected == SIZE, "the pool outgrew its size"
    # Its size, a move's replacement, and a retired worker on its way out.
    assert samples.most_listed <= SIZE + 2
    assert healed_in <= BACKOFF_MAX + 1.0
    assert verdict.unexcused == [], "calls failed on a backend healthy for a second"
    assert verdict.no_ready_buckets <= 5


def test_a_sync_pool_rides_out_a_storm(supervisors: list[pykka.ActorRef[Any]]) -> None:
    """A sync pool through the storm: never over its size, full size soon after the last
    fault, no failed call on a backend healthy for a second, almost never nothing ready."""
    seconds = seconds_of_storm()
    backends = Backends()
    records: list[CallRecord] = []
    samples = Samples()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    storm = Storm(backends, SEED, seconds)
    try:
        start_pool(supervisors, chaos_config(backends), "chaos")
        grpcpool.await_ready("chaos", timeout=20, min_ready=SIZE)
        call = grpcpool.channel("chaos").unary_unary(ECHO)

        def caller() -> None:
            while not stop.is_set():
                last_address.set(None)
                start = time.monotonic()
                code = None
                try:
                    call(b"x", timeout=2.0)
                except grpc.RpcError as error:
                    code = error.code().name
                records.append(CallRecord(start, time.monotonic(), code, last_address.get()))

        def sampler() -> None:
            while not stop.wait(0.02):
                samples.take(grpcpool.status("chaos"))

        threads = [threading.Thread(target=caller, name="chaos-caller") for _ in range(CALLERS)]
        threads.append(threading.Thread(target=sampler, name="chaos-sampler"))
        for thread in threads:
            thread.start()
        storm.start()
        storm.join(seconds + 60)
        assert storm.last_fault_end is not None
        full = wait_until(
            lambda: grpcpool.status("chaos").current_size == SIZE, timeout=BACKOFF_MAX + 10
        )
        healed_in = time.monotonic() - storm.last_fault_end if full else float("inf")
        stop.set()
        for thread in threads:
            thread.join(10)
        assert wait_until(lambda: len(grpcpool.status("chaos").workers) == SIZE, timeout=10)
        assert grpcpool.status("chaos").expected_size == SIZE
        _judge(records, backends, samples, healed_in)
    finally:
        stop.set()
        storm.cancel()
        for thread in threads:
            thread.join(10)
        for pool_supervisor in reversed(supervisors):
            pool_supervisor.stop()
        supervisors.clear()
        backends.close()


@pytest.mark.asyncio
async def test_an_asyncio_pool_rides_out_a_storm() -> None:
    """The same storm, the same checks, with an asyncio pool."""
    seconds = seconds_of_storm()
    backends = await asyncio.to_thread(Backends)
    records: list[CallRecord] = []
    samples = Samples()
    storm = Storm(backends, SEED, seconds)
    stopping = asyncio.Event()
    try:
        async with Pool(chaos_config(backends), name="chaos-aio") as pool:
            await pool.await_ready(timeout=20, min_ready=SIZE)
            call = pool.channel().unary_unary(ECHO)

            async def caller() -> None:
                while not stopping.is_set():
                    last_address.set(None)
                    start = time.monotonic()
                    code = None
                    try:
                        await call(b"x", timeout=2.0)
                    except grpc.RpcError as error:
                        code = error.code().name
                    records.append(CallRecord(start, time.monotonic(), code, last_address.get()))

            async def sampler() -> None:
                while not stopping.is_set():
                    samples.take(pool.status())
                    await asyncio.sleep(0.02)

            tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
            tasks.append(asyncio.create_task(sampler()))
            storm.start()
            await asyncio.to_thread(storm.join, seconds + 60)
            assert storm.last_fault_end is not None
            deadline = time.monotonic() + BACKOFF_MAX + 10
            while pool.status().current_size < SIZE and time.monotonic() < deadline:
                await pool.wait_changed(0.05)
            full = pool.status().current_size == SIZE
            healed_in = time.monotonic() - storm.last_fault_end if full else float("inf")
            stopping.set()
            await asyncio.wait(tasks, timeout=10)
            deadline = time.monotonic() + 10
            while len(pool.status().workers) != SIZE and time.monotonic() < deadline:
                await pool.wait_changed(0.05)
            assert len(pool.status().workers) == SIZE
            assert pool.status().expected_size == SIZE
        _judge(records, backends, samples, healed_in)
    finally:
        stopping.set()
        storm.cancel()
        await asyncio.to_thread(backends.close)
