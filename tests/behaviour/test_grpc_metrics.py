"""gRPC's standard metrics (gRFC A66 per call, A94 per connection) from both kinds of pool.

The OpenTelemetry exporter is registered on an SDK meter provider with an
in-memory reader (``tests.grpc_metrics``); each scenario checks the names,
units, kinds, attributes and values against the gRFCs' tables after real
calls and connection events. A call's metrics are recorded when it ends,
which on an asyncio pool is a moment after the awaiting caller resumes:
the scenarios wait for the counts they expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from grpcpool.metrics._grpc_catalog import LATENCY_BUCKETS, SIZE_BUCKETS
from tests.behaviour.backends import Answer, Backends, settled
from tests.behaviour.harness import Driver
from tests.grpc_metrics import (
    A66,
    A94,
    BACKEND_SERVICE,
    DISCONNECT_ERROR,
    METHOD,
    STATUS,
    TARGET,
    Otel,
    otel,
)
from tests.servers import ECHO_METHOD, HOLD

UNARY = "test.Echo/Unary"  # A66's grpc.method: the full name without its leading slash
STARTED, DURATION, SENT, RCVD, CALL = A66
SUCCEEDED, FAILED, DISCONNECTIONS, OPEN = A94


@pytest.fixture
def metrics() -> Iterator[Otel]:
    """The exporter with per_call=True, registered before the scenario starts a pool."""
    with otel(per_call=True) as registered:
        yield registered


def target(backends: Backends) -> str:
    """grpc.target of a pool over ``backends.config``: gRPC's canonical form of host:port."""
    return f"dns:///{backends.started[0].host}:{backends.port}"


def test_each_call_kind_is_measured_as_grfc_a66_has_it(
    driver: Driver, backends: Backends, metrics: Otel
) -> None:
    """A unary, unary-stream, stream-unary and stream-stream call through the pool channel:
    one attempt each (grpc.client.attempt.started, {attempt}, by grpc.method and
    grpc.target), its duration and the bytes of its messages (histograms in s and By,
    with A66's buckets, by status too) and one call duration each; the generated-style
    Unary is named test.Echo/Unary, the unregistered methods 'other'."""
    backends.one()
    driver.start(backends.config(2))
    driver.await_ready(min_ready=2)
    stub = driver.stub()
    assert stub.unary(b"hello") == b"hello"
    assert stub.repeat(b"ab") == [b"ab"] * 3
    assert stub.join([b"a", b"bcd"]) == b"abcd"
    assert stub.chat([b"x", b"yz"]) == [b"x", b"yz"]
    driver.wait_until(lambda: metrics.read().value(CALL) == 4)

    reading = metrics.read()
    where = target(backends)
    unary, other = {METHOD: UNARY, TARGET: where}, {METHOD: "other", TARGET: where}
    assert reading.attributes(STARTED) and all(
        a.keys() == {METHOD, TARGET} for a in reading.attributes(STARTED)
    )
    assert (reading.value(STARTED, unary), reading.value(STARTED, other)) == (1, 3)
    for name in (DURATION, SENT, RCVD, CALL):
        assert {frozenset(a.items()) for a in reading.attributes(name)} == {
            frozenset({**unary, STATUS: "OK"}.items()),
            frozenset({**other, STATUS: "OK"}.items()),
        }
        assert (reading.value(name, unary), reading.value(name, other)) == (1, 3)
    # Serialized bytes: "hello" both ways; 2 + 4 + 3 sent, 3 * 2 + 4 + 3 received.
    assert (reading.total(SENT, unary), reading.total(SENT, other)) == (5, 9)
    assert (reading.total(RCVD, unary), reading.total(RCVD, other)) == (5, 13)
    assert 0 < reading.total(DURATION, unary) <= reading.total(CALL, unary) < 5

    kinds = {name: (reading.kind(name), reading.unit(name)) for name in A66}
    assert kinds == {
        STARTED: ("counter", "{attempt}"),
        DURATION: ("histogram", "s"),
        SENT: ("histogram", "By"),
        RCVD: ("histogram", "By"),
        CALL: ("histogram", "s"),
    }
    for name, bounds in ((DURATION, LATENCY_BUCKETS), (SENT, SIZE_BUCKETS), (CALL, LATENCY_BUCKETS)):
        assert all(tuple(p.explicit_bounds) == bounds for p in reading.points(name))


def test_a_failed_call_and_a_call_with_nothing_ready_carry_their_status(
    driver: Driver, backends: Backends, metrics: Otel
) -> None:
    """A call the server fails with NOT_FOUND is one attempt and one call with grpc.status
    NOT_FOUND; once the backend is gone, a call that finds no ready connection fails
    UNAVAILABLE and counts as one attempt (with no bytes) and one call, both UNAVAILABLE."""
    backend = backends.one()
    driver.start(backends.config(1))
    driver.await_ready(min_ready=1)
    assert backend.server is not None
    backend.server.failing = grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as failed:
        driver.call(b"x")
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND
    backend.kill()
    driver.wait_until(lambda: not driver.connections())
    with pytest.raises(grpc.RpcError) as refused:
        driver.call(b"x")
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    driver.wait_until(lambda: metrics.read().value(CALL) == 2)

    reading = metrics.read()
    for code in ("NOT_FOUND", "UNAVAILABLE"):
        labels = {METHOD: UNARY, TARGET: target(backends), STATUS: code}
        assert [reading.value(name, labels) for name in (DURATION, SENT, CALL)] == [1, 1, 1]
    assert reading.total(SENT, {STATUS: "UNAVAILABLE"}) == 0
    assert reading.value(STARTED) == 2


def test_a_hedged_call_is_one_call_of_two_attempts(
    driver: Driver, backends: Backends, metrics: Otel
) -> None:
    """A hedged call whose first attempt stalls on a slow backend: two attempts started,
    the winner OK and the loser CANCELLED, and one call duration, OK."""
    slow, fast = backends.start(2)
    answer = Answer([slow.address, fast.address])
    hedging = {"methods": [ECHO_METHOD], "max_attempts": 2, "delay": 0.05, "budget": 1.0}
    driver.start(backends.config(2, resolver=answer, pool={"hedging": hedging}))
    driver.wait_status(lambda s: settled(s, 2), timeout=10)
    assert slow.server is not None
    slow.server.delay = 1.0
    for _ in range(2):  # round robin: one of the two goes to the slow backend first
        assert driver.call(b"h") == b"h"
    driver.wait_until(lambda: metrics.read().value(DURATION) == 3, timeout=5)

    reading = metrics.read()
    assert reading.value(STARTED, {METHOD: UNARY}) == 3
    assert reading.value(DURATION, {STATUS: "OK"}) == 2
    assert reading.value(DURATION, {STATUS: "CANCELLED"}) == 1
    assert reading.value(CALL, {STATUS: "OK"}) == reading.value(CALL) == 2


def connections(reading: Any, pool: str) -> dict[str, float]:
    """The four A94 figures of ``pool``."""
    labels = {BACKEND_SERVICE: pool}
    return {name: reading.value(name, labels) for name in A94}


def test_connections_are_counted_as_grfc_a94_has_it(
    driver: Driver, backends: Backends, metrics: Otel
) -> None:
    """A pool of 2: two successful connection attempts and two open connections (by
    grpc.target and grpc.lb.backend_service, the pool's name); the backend killed: two
    disconnections, none open, failed attempts while it is down; back: two open again;
    scaled down by one: a disconnection 'subchannel shutdown'; stopped: none open."""
    backend = backends.one()
    name = driver.start(backends.config(2))
    driver.await_ready(min_ready=2)

    def now() -> dict[str, float]:
        return connections(metrics.read(), name)

    driver.wait_until(lambda: now()[OPEN] == 2 and now()[SUCCEEDED] == 2)
    backend.kill()
    driver.wait_until(lambda: now()[OPEN] == 0 and now()[FAILED] >= 1)
    reading = metrics.read()
    assert reading.value(DISCONNECTIONS) == 2
    assert {a[DISCONNECT_ERROR] for a in reading.attributes(DISCONNECTIONS)} <= {
        "unknown",
        "socket error",
    }
    backend.restart()
    driver.await_ready(min_ready=2, timeout=10)
    driver.wait_until(lambda: now()[OPEN] == 2 and now()[SUCCEEDED] == 4)
    driver.scale_down(1)
    shutdown = {BACKEND_SERVICE: name, DISCONNECT_ERROR: "subchannel shutdown"}
    driver.wait_until(lambda: now()[OPEN] == 1)
    assert metrics.read().value(DISCONNECTIONS, shutdown) == 1
    driver.stop()
    driver.wait_until(lambda: now()[OPEN] == 0)

    reading = metrics.read()
    assert reading.value(DISCONNECTIONS, shutdown) == 2
    kinds = {n: (reading.kind(n), reading.unit(n)) for n in A94}
    assert kinds == {
        SUCCEEDED: ("counter", "{attempt}"),
        FAILED: ("counter", "{attempt}"),
        DISCONNECTIONS: ("counter", "{disconnection}"),
        OPEN: ("updown", "{connection}"),
    }
    for n in (SUCCEEDED, FAILED, OPEN):
        assert {frozenset(a) for a in reading.attributes(n)} == {
            frozenset({TARGET, BACKEND_SERVICE})
        }
    assert {a[TARGET] for n in A94 for a in reading.attributes(n)} == {target(backends)}


def test_a_call_refused_and_routed_again_is_one_call_of_more_attempts(
    driver: Driver, backends: Backends, metrics: Otel
) -> None:
    """A server with grpc.max_concurrent_streams 4 refuses some of the calls a pool of 1
    sends many at a time, and the pool routes each refused call again (section 5e): every
    call is one call duration, OK; each refusal is an attempt of its own, UNAVAILABLE,
    beside the call's OK attempt, so attempts started = calls + refusals."""
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

    def ended(reading: Any) -> bool:  # every attempt and call recorded
        return reading.value(CALL) == sent and reading.value(DURATION) == reading.value(STARTED)

    driver.wait_until(lambda: ended(metrics.read()))
    reading = metrics.read()
    refusals = reading.value(DURATION, {STATUS: "UNAVAILABLE"})
    assert refusals >= 1
    assert reading.value(CALL, {STATUS: "OK"}) == sent
    assert reading.value(DURATION, {STATUS: "OK"}) == sent
    assert reading.value(STARTED, {METHOD: UNARY}) == sent + refusals
    assert backend.calls == sent


def test_a_call_that_waits_in_the_queue_is_one_attempt_with_its_wait(
    driver: Driver, backends: Backends, metrics: Otel
) -> None:
    """pool.max_calls_per_connection 1 on a pool of 1, one call held at the server: a
    stream-unary call waits in the queue, and a unary call with a 0.3 s timeout queues
    behind it and fails there: one attempt and one call, both DEADLINE_EXCEEDED, no bytes
    sent. Released, the waiting call is one attempt, OK, whose duration includes its
    wait of 0.3 s and more (the wait is part of its first attempt, as picking a
    connection is)."""
    backend = backends.one()
    driver.start(backends.config(1, pool={"max_calls_per_connection": 1}))
    driver.await_ready()
    held = driver.begin(HOLD, timeout=20)
    driver.wait_status(lambda s: s.in_flight == 1 and backend.calls == 1)
    joined = driver.other_thread(lambda: driver.stub().join([b"a", b"b"], timeout=20))
    driver.wait_status(lambda s: s.queued == 1)
    with pytest.raises(grpc.RpcError) as raised:
        driver.call(b"late", timeout=0.3)
    assert raised.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    backend.release_held()
    assert held.result(timeout=10) == HOLD
    assert joined.result(timeout=10) == b"ab"
    driver.wait_until(lambda: metrics.read().value(CALL) == 3)

    reading = metrics.read()
    late = {STATUS: "DEADLINE_EXCEEDED"}
    assert [reading.value(name, late) for name in (DURATION, SENT, CALL)] == [1, 1, 1]
    assert reading.total(SENT, late) == 0
    assert reading.value(STARTED) == 3
    other = {METHOD: "other", STATUS: "OK"}
    assert reading.value(DURATION, other) == reading.value(CALL, other) == 1
    assert 0.3 <= reading.total(DURATION, other) <= reading.total(CALL, other) < 10
    assert reading.total(SENT, other) == 2
