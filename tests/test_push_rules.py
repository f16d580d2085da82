"""Tests for the balancer's rules with a resolver that pushes (grpcpool.core._balancing).

Pure logic: a push resolver is followed through one numbered watch, never
asked on a schedule; an empty set keeps the last non-empty one unless the
resolver allows empty; a failed watch is started again after a backoff; news
of a watch replaced meanwhile is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from grpcpool import telemetry
from grpcpool._config_timings import WATCH_RETRY_MAX, WATCH_RETRY_MIN
from grpcpool.connection._machine_types import Emit, Log
from grpcpool.core._balancing import step
from grpcpool.core._balancing_types import (
    BalancerSettings,
    BalancerState,
    Effect,
    Pushed,
    SetResolverError,
    Started,
    StartResolution,
    StartWatch,
    TimerDue,
    Wake,
    WatchFailed,
    new_state,
)

A, B = "10.0.0.1:80", "10.0.0.2:80"
PUSH = BalancerSettings(
    target="svc:80", resolve_interval=0.2, resolve_timeout=10.0, move_limit=13.0, push=True
)


def started(settings: BalancerSettings = PUSH) -> tuple[BalancerState, tuple[Effect, ...]]:
    return step(new_state(settings), Started(None, 0.0, ()), now=0.0, wall=0.0)


def resolved(effects: tuple[Effect, ...]) -> list[Emit]:
    return [e for e in effects if isinstance(e, Emit) and e.signal == telemetry.pool_resolved.name]


def warnings(effects: tuple[Effect, ...]) -> list[str]:
    return [e.message for e in effects if isinstance(e, Log) and e.level == logging.WARNING]


def test_a_push_resolver_is_watched_once_and_never_polled() -> None:
    """Starting starts watch 1 and no resolution; time alone starts nothing more."""
    state, effects = started()
    assert StartWatch(1) in effects
    assert not any(isinstance(e, StartResolution) for e in effects)
    assert effects[-1] == Wake(None)
    state, effects = step(state, TimerDue(()), now=100.0, wall=100.0)
    assert not any(isinstance(e, StartResolution | StartWatch) for e in effects)


def test_a_pushed_set_is_taken_and_announced_with_its_revision() -> None:
    """A set from the current watch is the pool's answer; pool.resolved says what changed
    and the revision; the same set again is not announced."""
    state, _ = started()
    state, effects = step(state, Pushed(1, (A, B), None, 7), now=1.0, wall=1.0)
    [emit] = resolved(effects)
    assert emit.metadata == {"added": [A, B], "removed": [], "revision": 7}
    assert state.answers.addresses == (A, B) and state.answers.revision == 7
    state, effects = step(state, Pushed(1, (A, B), None, 8), now=2.0, wall=2.0)
    assert resolved(effects) == [] and state.answers.revision == 8


def test_an_empty_set_keeps_the_last_and_warns_once_per_streak() -> None:
    """Without allow_empty an empty set changes nothing, with one WARNING per streak."""
    state, _ = started()
    state, _ = step(state, Pushed(1, (A,)), now=1.0, wall=1.0)
    state, effects = step(state, Pushed(1, ()), now=2.0, wall=2.0)
    assert len(warnings(effects)) == 1 and "empty" in warnings(effects)[0]
    state, effects = step(state, Pushed(1, ()), now=3.0, wall=3.0)
    assert warnings(effects) == [] and state.answers.addresses == (A,)
    state, _ = step(state, Pushed(1, (B,)), now=4.0, wall=4.0)
    state, effects = step(state, Pushed(1, ()), now=5.0, wall=5.0)
    assert len(warnings(effects)) == 1 and state.answers.addresses == (B,)


def test_allow_empty_follows_an_empty_set() -> None:
    """With allow_empty the empty set is the pool's answer, announced."""
    state, _ = started(replace(PUSH, allow_empty=True))
    state, _ = step(state, Pushed(1, (A,)), now=1.0, wall=1.0)
    state, effects = step(state, Pushed(1, ()), now=2.0, wall=2.0)
    assert state.answers.addresses == ()
    assert resolved(effects)[0].metadata["removed"] == [A]


def test_a_failed_watch_keeps_the_set_says_why_and_is_started_again_after_a_backoff() -> None:
    """WatchFailed keeps the addresses, shows the error and asks a wake-up within the
    backoff's bounds; at that time watch 2 starts; news of watch 1 is dropped after."""
    state, _ = started()
    state, _ = step(state, Pushed(1, (A,)), now=1.0, wall=1.0)
    state, effects = step(state, WatchFailed(1, "ConnectionError: gone"), now=2.0, wall=2.0)
    assert SetResolverError("ConnectionError: gone") in effects
    assert state.answers.addresses == (A,)
    wake = effects[-1]
    assert isinstance(wake, Wake) and wake.delay is not None
    assert WATCH_RETRY_MIN <= wake.delay <= WATCH_RETRY_MAX
    state, effects = step(state, TimerDue(()), now=2.0 + wake.delay, wall=0.0)
    assert StartWatch(2) in effects
    state, effects = step(state, Pushed(1, (B,)), now=10.0, wall=10.0)
    assert effects == (Wake(None),) and state.answers.addresses == (A,)
    state, effects = step(state, Pushed(2, (B,)), now=11.0, wall=11.0)
    assert SetResolverError(None) in effects and state.answers.addresses == (B,)


def test_an_unusable_set_keeps_the_last_and_the_watch() -> None:
    """A set the driver found unusable (an error) shows the error; nothing restarts."""
    state, _ = started()
    state, _ = step(state, Pushed(1, (A,)), now=1.0, wall=1.0)
    state, effects = step(state, Pushed(1, None, "bad entry"), now=2.0, wall=2.0)
    assert SetResolverError("bad entry") in effects and state.answers.addresses == (A,)
    assert effects[-1] == Wake(None)


@given(st.lists(st.integers(min_value=1, max_value=3), max_size=30))
def test_failed_watch_delays_stay_in_bounds(failures: list[int]) -> None:
    """However watches fail and answer, the next watch starts within the backoff bounds
    and only one watch is current."""
    state, _ = started()
    now, current = 1.0, 1
    for kind in failures:
        if kind == 1:
            state, effects = step(state, WatchFailed(current, "x"), now=now, wall=now)
            wake = effects[-1]
            assert isinstance(wake, Wake) and wake.delay is not None
            assert WATCH_RETRY_MIN <= wake.delay <= WATCH_RETRY_MAX
            now += wake.delay
            state, effects = step(state, TimerDue(()), now=now, wall=now)
            current += 1
            assert StartWatch(current) in effects
        else:
            state, _ = step(state, Pushed(current, (A,)), now=now, wall=now)
        now += 1.0
    assert state.watching.number == current


SETS = st.lists(st.sampled_from([A, B, "10.0.0.3:80"]), max_size=3, unique=True).map(tuple)


@given(st.lists(st.tuples(SETS, st.booleans()), max_size=25), st.booleans())
def test_the_pool_holds_the_last_non_empty_set_or_the_last_set_with_allow_empty(
    pushes: list[tuple[tuple[str, ...], bool]], allow_empty: bool
) -> None:
    """Whatever sequence of sets (some from a watch replaced since) is pushed, the pool's
    addresses are the last set of the current watch, an empty one skipped unless
    allow_empty; pool.resolved fires exactly when they change."""
    state, _ = started(replace(PUSH, allow_empty=allow_empty))
    held: tuple[str, ...] = ()
    for now, (addresses, stale) in enumerate(pushes, start=1):
        watch = state.watching.number - 1 if stale else state.watching.number
        state, effects = step(state, Pushed(watch, addresses), now=now, wall=now)
        before = held
        if not stale and (addresses or allow_empty):
            held = addresses
        assert state.answers.addresses == held
        assert bool(resolved(effects)) == (held != before)
