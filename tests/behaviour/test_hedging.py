"""Hedging (``pool.hedging``) through the pool channel, against real servers.

Two or three backends on 127.0.0.2.., one connection each (a resolver answers
their addresses), round robin. A backend made slow (``server.delay``) or
failing (``server.failing``) while the others answer at once shows what a
hedged unary call does: a second attempt goes to the other backend after the
delay, the first OK answer wins, the loser is cancelled, the server sees
``grpc-previous-rpc-attempts`` on the hedged attempt, the budget caps hedges,
an ``UNAVAILABLE`` lets the other attempt win, and a method not named is
never hedged.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import grpc
import pytest

from tests.behaviour.backends import Answer, Backend, Backends, settled, spread
from tests.behaviour.harness import Driver
from tests.behaviour.signals import Signals
from tests.servers import ECHO_METHOD
from tests.test_interceptors import HEADER as INTERCEPTED

HEADER = "grpc-previous-rpc-attempts"


def start_hedged(
    driver: Driver,
    backends: Backends,
    count: int,
    endpoint: dict[str, Any] | None = None,
    **hedging: Any,
) -> list[Backend]:
    """``count`` backends and a pool with one connection to each, hedging the echo
    method with ``hedging``'s keys; returns once every connection is ready."""
    started = backends.start(count)
    keys = {"methods": [ECHO_METHOD], "max_attempts": 2, **hedging}
    answer = Answer([backend.address for backend in started])
    pool = {"hedging": keys}
    config = backends.config(count, resolver=answer, pool=pool, endpoint=endpoint)
    driver.start(config)
    wanted = Counter({backend.address: 1 for backend in started})
    driver.wait_status(lambda s: settled(s, count) and spread(s) == wanted, timeout=10)
    return started


def hedged_events(signals: Signals) -> list[dict[str, Any]]:
    """``call.hedged`` events so far: their measurements and metadata, merged."""
    return [{**m, **md} for _, m, md in signals.of("call.hedged")]


def header(seen: tuple[tuple[str, str], ...]) -> str | None:
    return dict(seen).get(HEADER)


def test_a_hedge_answers_from_the_other_backend_while_one_stalls(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """One backend takes 1 s per call: with delay 0.05 every call answers in well under
    that, the calls first sent to the slow backend from the other one (call.hedged:
    attempts 2, won 1, with the pool and method), the hedged attempt carries
    grpc-previous-rpc-attempts 1 and the caller's metadata, and the slow backend sees
    its attempts cancelled."""
    slow, fast = start_hedged(driver, backends, 2, delay=0.05, budget=1.0)
    slow.server.delay = 1.0  # type: ignore[union-attr]
    for index in range(4):
        began = time.monotonic()
        payload = b"call-%d" % index
        assert driver.call(payload, metadata=(("x-user", "u"),)) == payload
        assert time.monotonic() - began < 0.6
    events = hedged_events(signals)
    assert len(events) == slow.calls == 2  # round robin: every other call went there first
    assert all(e["attempts"] == 2 and e["won"] == 1 for e in events), events
    assert {(e["pool_name"], e["method"]) for e in events} == {(driver.name, ECHO_METHOD)}
    hedges = [seen for seen in fast.metadata if header(seen) is not None]
    assert [header(seen) for seen in hedges] == ["1", "1"]
    assert all(dict(seen).get("x-user") == "u" for seen in fast.metadata)
    assert all(header(seen) is None for seen in slow.metadata)
    driver.wait_until(lambda: slow.cancelled == 2, timeout=5)


def test_the_budget_caps_hedges_when_every_backend_is_slow(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Both backends take 0.3 s: of 20 concurrent calls with budget 0.1 at least one and
    at most 2 send a hedged attempt, however late they all are; every call answers."""
    first, second = start_hedged(driver, backends, 2, delay=0.02, budget=0.1)
    for backend in (first, second):
        backend.server.delay = 0.3  # type: ignore[union-attr]
    pending = [driver.begin(b"slow-%d" % index, timeout=10) for index in range(20)]
    assert [p.result(timeout=15) for p in pending] == [b"slow-%d" % i for i in range(20)]
    hedged = sum(e["attempts"] - 1 for e in hedged_events(signals))
    assert 1 <= hedged <= 2  # hedging ran, and the budget stopped it
    # A hedge cancelled while queued for a server thread never reaches the handler.
    assert 20 <= first.calls + second.calls <= 20 + hedged


def test_unavailable_on_one_attempt_lets_the_other_win(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """One backend fails every call UNAVAILABLE, the other answers in 0.2 s: a first
    attempt failing UNAVAILABLE sends the second at once, which wins (won 1); a hedge
    failing UNAVAILABLE while the first runs lets the first win (won 0). No call fails."""
    failing, slow = start_hedged(driver, backends, 2, delay=0.05, budget=1.0)
    failing.server.failing = grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
    slow.server.delay = 0.2  # type: ignore[union-attr]
    for index in range(4):
        payload = b"call-%d" % index
        assert driver.call(payload) == payload
    events = hedged_events(signals)
    assert len(events) == 4 and all(e["attempts"] == 2 for e in events), events
    assert {e["won"] for e in events} == {0, 1}


def test_a_fatal_status_fails_the_call_at_once(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """A hedge answered INVALID_ARGUMENT while the first attempt stalls: the call fails
    with it at once (the stalled attempt is cancelled), won -1."""
    slow, refusing = start_hedged(driver, backends, 2, delay=0.05, budget=1.0)
    slow.server.delay = 1.0  # type: ignore[union-attr]
    refusing.server.failing = grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[union-attr]
    outcomes: list[grpc.StatusCode] = []
    for index in range(2):  # one of the two goes to the slow backend first
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            driver.call(b"call-%d" % index)
        outcomes.append(failed.value.code())
        assert time.monotonic() - began < 0.6
    assert outcomes == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert [(e["attempts"], e["won"]) for e in hedged_events(signals)] == [(2, -1)]
    driver.wait_until(lambda: slow.cancelled == 1, timeout=5)


def test_the_calls_deadline_bounds_every_attempt(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Both backends take 1 s, the call's timeout is 0.3 s: it fails DEADLINE_EXCEEDED in
    about that time, after one hedge."""
    first, second = start_hedged(driver, backends, 2, delay=0.05, budget=1.0)
    for backend in (first, second):
        backend.server.delay = 1.0  # type: ignore[union-attr]
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as failed:
        driver.call(b"late", timeout=0.3)
    assert failed.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 0.9
    assert [(e["attempts"], e["won"]) for e in hedged_events(signals)] == [(2, -1)]


def test_methods_not_named_and_streams_are_never_hedged(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """Hedging names another method and the unary-stream Repeat: echo calls to the slow
    backend wait it out, Repeat is not hedged either, and no call.hedged is emitted."""
    backends_ = backends.start(2)
    keys = {"methods": ["/test.Echo/Other", "/test.Echo/Repeat"], "delay": 0.02, "budget": 1.0}
    answer = Answer([backend.address for backend in backends_])
    driver.start(backends.config(2, resolver=answer, pool={"hedging": keys}))
    wanted = Counter({backend.address: 1 for backend in backends_})
    driver.wait_status(lambda s: settled(s, 2) and spread(s) == wanted, timeout=10)
    slow = backends_[0]
    slow.server.delay = 0.3  # type: ignore[union-attr]
    slowest = 0.0
    for _ in range(4):
        began = time.monotonic()
        assert driver.call(b"plain") == b"plain"
        slowest = max(slowest, time.monotonic() - began)
        assert driver.stub().repeat(b"r") == [b"r"] * 3
    assert slowest >= 0.3
    assert sum(backend.calls for backend in backends_) == 4 + 4 * 3
    assert hedged_events(signals) == []


def test_p95_hedges_once_it_has_learnt_the_latency(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """delay "p95": 30 quick calls teach the pool the echo's latency (nothing stalls, so
    hardly anything is hedged); then one backend takes 1 s and the calls sent to it
    first are answered by the other (their hedge wins) within a fraction of that."""
    slow, _ = start_hedged(driver, backends, 2, delay="p95", budget=1.0)
    for _ in range(30):
        driver.call(b"learn")
    learnt = len(hedged_events(signals))
    slow.server.delay = 1.0  # type: ignore[union-attr]
    for index in range(4):
        began = time.monotonic()
        assert driver.call(b"call-%d" % index) == b"call-%d" % index
        assert time.monotonic() - began < 0.9  # the slow backend answers after 1 s
    stalled = hedged_events(signals)[learnt:]
    # Round robin sends 2 of the 4 first to the slow backend: each is answered by its
    # hedge (won 1). A quick call that ran past the learnt p95 (a loaded machine) may
    # be hedged onto the slow backend too; its first attempt then wins (won 0).
    assert sum(e["won"] == 1 for e in stalled) >= 2, stalled


def test_hedged_attempts_pass_the_interceptors(
    driver: Driver, backends: Backends, signals: Signals
) -> None:
    """With interceptors of the pool's kind, each attempt of a hedged call passes them
    (the header they add reaches both backends) and is weighed as without them: an
    UNAVAILABLE first attempt sends the second at once (won 1), an UNAVAILABLE hedge
    lets the slow first attempt win (won 0)."""
    seen: Counter[str] = Counter()
    interceptors = {"interceptors": driver.interceptors(seen)}
    failing, slow = start_hedged(
        driver, backends, 2, endpoint=interceptors, delay=0.05, budget=1.0
    )
    failing.server.failing = grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
    slow.server.delay = 0.2  # type: ignore[union-attr]
    for index in range(2):
        assert driver.call(b"call-%d" % index) == b"call-%d" % index
    events = hedged_events(signals)
    assert sorted(e["won"] for e in events) == [0, 1] and seen[ECHO_METHOD] == 4
    assert all(INTERCEPTED in seen_by for seen_by in failing.metadata + slow.metadata)
