"""Call capacity against real servers: caps per connection, the queue, refused streams.

``pool.max_calls_per_connection`` caps the calls the pool channel runs on one
connection (the server counts them per peer); beyond the caps calls wait in
a FIFO queue bounded by ``pool.max_queued_calls``. A server at its
``grpc.max_concurrent_streams`` refuses streams; the pool routes each refused
call again and lowers that connection's limit, key or no key.
"""

from __future__ import annotations

import grpc
import pytest

from tests.behaviour.backends import Backend, Backends
from tests.behaviour.harness import Driver, Pending
from tests.behaviour.signals import Signals
from tests.servers import HOLD


def capped(
    driver: Driver, backends: Backends, size: int, cap: int, **pool: object
) -> Backend:
    """A backend and a ready pool of ``size`` with ``pool.max_calls_per_connection`` ``cap``."""
    backend = backends.one()
    driver.start(backends.config(size, pool={"max_calls_per_connection": cap, **pool}))
    driver.await_ready(min_ready=size)
    return backend


def hold(driver: Driver, backend: Backend, count: int) -> list[Pending[bytes]]:
    """``count`` calls held at the server, every one of them running there."""
    held = [driver.begin(HOLD, timeout=20) for _ in range(count)]
    driver.wait_status(lambda s: s.in_flight == count and backend.calls == count)
    return held


def test_no_connection_runs_more_calls_than_the_cap_and_the_rest_wait(
    driver: Driver, backends: Backends
) -> None:
    """Cap 2 on a pool of 2: four held calls fill both connections; three more wait in the
    queue (status().queued 3), never reaching the server; once released, all seven answer
    and the server never saw more than 2 calls at once from one connection."""
    backend = capped(driver, backends, 2, 2)
    held = hold(driver, backend, 4)
    waiting = [driver.begin(b"queued", timeout=20) for _ in range(3)]
    status = driver.wait_status(lambda s: s.queued == 3)
    assert status.in_flight == 4 and backend.calls == 4
    assert sorted(worker.in_flight for worker in status.workers) == [2, 2]
    backend.release_held()
    assert [call.result(timeout=10) for call in held] == [HOLD] * 4
    assert [call.result(timeout=10) for call in waiting] == [b"queued"] * 3
    assert backend.peak_running == 2
    driver.wait_status(lambda s: s.queued == 0 and s.in_flight == 0)


def test_waiting_calls_start_in_the_order_they_came(driver: Driver, backends: Backends) -> None:
    """Cap 1 on a pool of 1: with one call held, three calls queue one after the other;
    released, they reach the server in the order they queued."""
    backend = capped(driver, backends, 1, 1)
    held = hold(driver, backend, 1)
    waiting = []
    for order in range(1, 4):
        waiting.append(driver.begin(b"fifo", timeout=20, metadata=(("x-order", str(order)),)))
        driver.wait_status(lambda s, order=order: s.queued == order)  # type: ignore[misc]
    backend.release_held()
    assert held[0].result(timeout=10) == HOLD
    assert [call.result(timeout=10) for call in waiting] == [b"fifo"] * 3
    orders = [dict(seen).get("x-order") for seen in backend.metadata[1:]]
    assert orders == ["1", "2", "3"]


def test_a_call_whose_deadline_passes_in_the_queue_fails_deadline_exceeded(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Cap 1, one call held: a call with a 0.3 s timeout waits, then fails DEADLINE_EXCEEDED
    saying it found no free slot; it never reached the server and left the queue, and
    call.queued says how long it waited and how the wait ended."""
    backend = capped(driver, backends, 1, 1)
    hold(driver, backend, 1)
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(b"late", timeout=0.3)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no connection had a free slot" in (raised.value.details() or "")
    assert backend.calls == 1
    assert driver.status().queued == 0
    [(_, measurements, metadata)] = signals.wait("call.queued", sender=driver.name)
    assert metadata == {"pool_name": driver.name, "outcome": "deadline_exceeded"}
    assert 0.2 <= measurements["duration"] < 5


def test_a_full_queue_fails_a_call_at_once_naming_the_key(
    driver: Driver, backends: Backends
) -> None:
    """Cap 1 and pool.max_queued_calls 1, one call held and one waiting: a third call fails
    at once with RESOURCE_EXHAUSTED naming pool.max_queued_calls; the waiting one still
    answers once the held call ends."""
    backend = capped(driver, backends, 1, 1, max_queued_calls=1)
    held = hold(driver, backend, 1)
    waiting = driver.begin(b"waits", timeout=20)
    driver.wait_status(lambda s: s.queued == 1)
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(b"turned away", timeout=10)
    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "pool.max_queued_calls" in (raised.value.details() or "")
    backend.release_held()
    assert held[0].result(timeout=10) == HOLD
    assert waiting.result(timeout=10) == b"waits"


def test_a_streaming_call_holds_its_slot_until_its_stream_ends(
    driver: Driver, backends: Backends
) -> None:
    """Cap 1: a response stream held open at the server takes the connection's one slot, so
    a unary call meanwhile times out in the queue; once the stream ends, calls run again."""
    backend = capped(driver, backends, 1, 1)
    stream = driver.other_thread(lambda: driver.stub().repeat(HOLD, timeout=20))
    driver.wait_status(lambda s: s.in_flight == 1 and backend.calls == 1)
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(b"blocked", timeout=0.3)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    backend.release_held()
    assert stream.result(timeout=10) == [HOLD] * 3
    assert driver.call(b"after") == b"after"


def test_a_call_waiting_when_its_pool_stops_fails_unavailable(
    driver: Driver, backends: Backends
) -> None:
    """Cap 1, one call held, one waiting: stopping the pool fails the waiting call at once
    with UNAVAILABLE saying the pool stopped; it never reached the server."""
    backend = capped(driver, backends, 1, 1)
    hold(driver, backend, 1)
    waiting = driver.begin(b"stranded", timeout=20)
    driver.wait_status(lambda s: s.queued == 1)
    stopping = driver.other_thread(driver.stop)
    with pytest.raises(grpc.RpcError) as raised:
        waiting.result(timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "stopped" in (raised.value.details() or "") or "shut down" in (
        raised.value.details() or ""
    )
    backend.release_held()
    stopping.result(timeout=10)
    assert backend.calls == 1


def test_refused_streams_are_routed_again_and_lower_the_connections_limit(
    driver: Driver, backends: Backends
) -> None:
    """A server with grpc.max_concurrent_streams 4 refuses some of the calls a pool of 1
    (no capacity key) sends many at a time: every call still answers (each refused one
    routed again, and run by the server once), the connection's limit drops below the
    calls that were in flight, and no refusal counts as a failure of the connection."""
    [backend] = backends.start(1, options=(("grpc.max_concurrent_streams", 4),))
    assert backend.server is not None
    backend.server.delay = 0.005
    driver.start(backends.config(1))
    driver.await_ready()
    [connection] = driver.connections()
    sent = 0
    for _ in range(5):  # a refusal needs the server a little behind; it comes within a few rounds
        calls = [driver.begin(b"busy", timeout=20) for _ in range(64)]
        assert [call.result(timeout=20) for call in calls] == [b"busy"] * 64
        sent += 64
        if connection.limit is not None:
            break
    assert connection.limit is not None, "the server refused no stream in 5 rounds of 64 calls"
    assert 1 <= connection.limit < 64
    assert backend.calls == sent
    assert connection.stats.failures == 0
    driver.wait_status(lambda s: s.queued == 0 and s.in_flight == 0)
