"""Tests for outlier detection in a pool's records: units, routing, panic and their signals.

Pure logic: the records machine (grpcpool.core._records) with outlier
detection on, fed worker reports and :class:`JudgeOutliers` events built by
``judgement`` from the ready connections' call counts. Channels are plain
objects; calls are counted by telling each connection's ``stats`` directly.
No server, actor or loop: the drivers (HealthRegistry, asyncio Registry) and
tests/behaviour/test_outliers.py cover the rest.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import grpc

from grpcpool import telemetry
from grpcpool._config_routing import FailurePercentageEjection, OutlierDetection
from grpcpool.connection._machine_types import Emit
from grpcpool.core._ejections import ReplaceConnection, spans_addresses, tally
from grpcpool.core._ready import ReadyConnection
from grpcpool.core._records import (
    Publish,
    Records,
    SetLifecycle,
    judgement,
    records_after,
    step,
)
from grpcpool.core._reports import WorkerReport
from grpcpool.core._view import empty_view
from grpcpool.strategy import resolve_strategy

SPEC = Path(__file__).resolve().parent.parent / "docs" / "SPEC.md"
NAME = "outliers"
OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DETECTION = OutlierDetection(
    interval=1.0,
    base_ejection_time=10.0,
    max_ejection_time=100.0,
    max_ejection_percent=50,
    success_rate=None,
    failure_percentage=FailurePercentageEjection(threshold=50, minimum_hosts=2, request_volume=10),
)


def pool(
    addresses: list[str | None],
    detection: OutlierDetection | None = DETECTION,
    panic_threshold: float = 50.0,
) -> Records:
    """A running pool with one ready worker per address (``worker-1`` on the first)."""
    records = records_after(
        NAME,
        resolve_strategy("round_robin"),
        empty_view(NAME, len(addresses), "running"),
        outlier_detection=detection,
        panic_threshold=panic_threshold,
        rng=random.Random(3),
    )
    for index, address in enumerate(addresses, start=1):
        report = WorkerReport(
            f"worker-{index}", "urn", "ready", channel=object(), address=address  # type: ignore[arg-type]
        )
        records, _ = step(records, report, 100.0)
    return records


def connection(records: Records, worker_id: str) -> ReadyConnection:
    found = records.workers[worker_id].connection
    assert found is not None
    return found


def calls(records: Records, worker_id: str, ok: int, failed: int) -> None:
    """Counts ``ok`` and ``failed`` calls as ended on the worker's connection."""
    stats = connection(records, worker_id).stats
    for _ in range(ok):
        stats.record(0.001, OK, 0.0)
    for _ in range(failed):
        stats.record(0.001, UNAVAILABLE, 0.0)


def judged(records: Records, now: float) -> tuple[Records, tuple[Any, ...]]:
    return step(records, judgement(records, now), 100.0 + now)


def signals(effects: tuple[Any, ...], short: str) -> list[Emit]:
    name = f"{telemetry.PREFIX}.{short}"
    return [e for e in effects if isinstance(e, Emit) and e.signal == name]


def routed(records: Records) -> set[str]:
    return {c.worker_id for c in records.view.connections}


# --- units ---------------------------------------------------------------------------


def test_a_pool_over_several_addresses_judges_addresses_one_address_connections() -> None:
    """Units: several addresses -> each address sums its connections' calls; one address
    (or none resolved) -> each connection is its own unit. Tallying resets the counts."""
    records = pool(["a:1", "a:1", "b:1"])
    calls(records, "worker-1", 3, 1)
    calls(records, "worker-2", 2, 0)
    calls(records, "worker-3", 0, 4)
    statuses = records.view.workers
    assert spans_addresses(statuses)
    ready = [connection(records, f"worker-{i}") for i in (1, 2, 3)]
    assert tally(ready, statuses) == {"a:1": (5, 1), "b:1": (0, 4)}
    assert tally(ready, statuses) == {"a:1": (0, 0), "b:1": (0, 0)}

    single = pool(["a:1", "a:1"])
    calls(single, "worker-2", 1, 1)
    first, second = (connection(single, w) for w in ("worker-1", "worker-2"))
    assert not spans_addresses(single.view.workers)
    assert tally([first, second], single.view.workers) == {first: (0, 0), second: (1, 1)}


def test_an_address_without_a_ready_connection_stays_a_unit() -> None:
    """A worker backing off on an address keeps that address among the units (its
    ejection is kept), with no calls."""
    records = pool(["a:1", "b:1"])
    report = WorkerReport("worker-2", "urn", "backoff", address="b:1")
    records, _ = step(records, report, 101.0)
    event = judgement(records, 1.0)
    assert event.outcomes == {"a:1": (0, 0), "b:1": (0, 0)}


# --- ejection: routing, status, signals ----------------------------------------------------


def test_an_ejected_address_leaves_routing_and_status_says_so() -> None:
    """4 addresses, one failing every call: its worker leaves the pickers (get_channel and
    the pool channel), status marks it ejected and still counts it ready; pool.ejected
    carries the address, the reason and the figures."""
    records = pool(["a:1", "b:1", "c:1", "d:1"])
    for worker in ("worker-1", "worker-2", "worker-3"):
        calls(records, worker, 20, 0)
    calls(records, "worker-4", 0, 20)

    records, effects = judged(records, 1.0)

    assert routed(records) == {"worker-1", "worker-2", "worker-3"}
    assert {records.view.pick() for _ in range(6)} == {
        connection(records, w).channel for w in ("worker-1", "worker-2", "worker-3")
    }
    status = records.view.status(NAME)
    assert [w.ejected for w in status.workers] == [False, False, False, True]
    assert status.current_size == 4 and not records.view.panic
    [ejected] = signals(effects, "pool.ejected")
    assert ejected.metadata == {"address": "d:1", "reason": "failure_percentage"}
    assert ejected.measurements["ejection_time"] == 10.0
    assert (ejected.measurements["successes"], ejected.measurements["failures"]) == (0, 20)
    assert ejected.measurements["failure_percentage"] == 100.0
    assert effects[0] == Publish(records.view)


def test_an_ejected_address_comes_back_after_its_time() -> None:
    """Ejected at 1 for 10 s: back in routing at the interval at 11, with pool.unejected
    (reason expired, how long it was out)."""
    records = pool(["a:1", "b:1"])
    calls(records, "worker-1", 20, 0)
    calls(records, "worker-2", 0, 20)
    records, _ = judged(records, 1.0)
    assert routed(records) == {"worker-1"}

    records, effects = judged(records, 10.0)
    assert effects == () and routed(records) == {"worker-1"}
    records, effects = judged(records, 11.0)

    assert routed(records) == {"worker-1", "worker-2"}
    [back] = signals(effects, "pool.unejected")
    assert back.metadata == {"address": "b:1", "reason": "expired"}
    assert back.measurements == {"ejection_time": 10.0}
    assert not any(w.ejected for w in records.view.workers)


def test_one_address_ejects_a_connection_and_replaces_it_when_ejected_twice_in_a_row() -> None:
    """One address, two connections: the failing connection is the unit (worker_id in the
    signal); ejected again at its first judgement after it came back, the records ask its
    worker for a fresh connection."""
    records = pool(["a:1", "a:1"])
    calls(records, "worker-1", 20, 0)
    calls(records, "worker-2", 0, 20)
    records, effects = judged(records, 1.0)
    [ejected] = signals(effects, "pool.ejected")
    assert ejected.metadata["worker_id"] == "worker-2"
    assert routed(records) == {"worker-1"}
    assert not [e for e in effects if isinstance(e, ReplaceConnection)]

    records, _ = judged(records, 11.0)  # back
    calls(records, "worker-1", 20, 0)
    calls(records, "worker-2", 0, 20)
    records, effects = judged(records, 12.0)

    assert ReplaceConnection("worker-2") in effects
    assert routed(records) == {"worker-1"}


def test_a_fresh_connection_is_a_new_unit() -> None:
    """The replaced worker's new connection is routed at once; at the next interval the old
    connection, gone, is unejected with reason gone."""
    records = pool(["a:1", "a:1"])
    calls(records, "worker-1", 20, 0)
    calls(records, "worker-2", 0, 20)
    records, _ = judged(records, 1.0)

    report = WorkerReport("worker-2", "urn", "ready", channel=object(), address="a:1")  # type: ignore[arg-type]
    records, _ = step(records, report, 102.0)
    assert routed(records) == {"worker-1", "worker-2"}
    records, effects = judged(records, 2.0)
    [gone] = signals(effects, "pool.unejected")
    assert gone.metadata["reason"] == "gone" and gone.metadata["worker_id"] == "worker-2"


def test_outlier_detection_off_never_judges() -> None:
    """Without pool.outlier_detection a JudgeOutliers changes nothing."""
    records = pool(["a:1", "b:1"], detection=None)
    calls(records, "worker-2", 0, 50)
    assert judged(records, 1.0) == (records, ())


def test_a_judgement_that_changes_nothing_publishes_nothing() -> None:
    """Healthy calls everywhere: no effect, the same view."""
    records = pool(["a:1", "b:1"])
    calls(records, "worker-1", 20, 0)
    calls(records, "worker-2", 20, 0)
    after, effects = judged(records, 1.0)
    assert effects == () and after.view is records.view


# --- panic ---------------------------------------------------------------------------


def panicking() -> tuple[Records, tuple[Any, ...]]:
    """4 addresses, 3 failing, no cap: 3 ejected, 1 of 4 left (25 % < 50 %)."""
    return panicking_over(["a:1", "b:1", "c:1", "d:1"])


def panicking_over(addresses: list[str | None]) -> tuple[Records, tuple[Any, ...]]:
    """4 workers on ``addresses``, 3 failing, no cap: 3 units ejected, panic."""
    detection = OutlierDetection(
        interval=1.0,
        base_ejection_time=10.0,
        max_ejection_percent=100,
        success_rate=None,
        failure_percentage=FailurePercentageEjection(
            threshold=50, minimum_hosts=2, request_volume=10
        ),
    )
    records = pool(addresses, detection)
    calls(records, "worker-1", 20, 0)
    for worker in ("worker-2", "worker-3", "worker-4"):
        calls(records, worker, 0, 20)
    return judged(records, 1.0)


def test_too_few_routable_connections_route_over_every_ready_one() -> None:
    """Panic: with 1 of 4 connections ready and not ejected, calls go to all 4; status still
    marks the 3 ejected; pool.panic says active 1 (entering), then 0 when they return."""
    records, effects = panicking()

    assert records.view.panic
    assert routed(records) == {"worker-1", "worker-2", "worker-3", "worker-4"}
    assert records.view.unrouted == ()
    assert [w.ejected for w in records.view.workers] == [False, True, True, True]
    [entered] = signals(effects, "pool.panic")
    assert entered.measurements == {"active": 1, "ready": 4, "ejected": 3}
    assert len(signals(effects, "pool.ejected")) == 3

    records, effects = judged(records, 11.0)
    assert not records.view.panic
    [left] = signals(effects, "pool.panic")
    assert left.measurements["active"] == 0


def test_panic_keeps_the_pickers_when_the_routed_set_is_unchanged() -> None:
    """Entering panic with every ready connection routed before and after: the same
    pickers (the round robin's turn goes on)."""
    records = pool(["a:1", "b:1"], panic_threshold=100.0)
    pick = records.view.pick
    calls(records, "worker-1", 20, 0)
    calls(records, "worker-2", 0, 20)
    records, effects = judged(records, 1.0)
    assert records.view.panic and records.view.pick is pick
    assert signals(effects, "pool.panic")


def test_no_panic_without_an_ejected_ready_connection() -> None:
    """1 of 4 workers ready and nothing ejected: it would route the same, so no panic and
    no signal; a threshold of 0 never panics while something is routable."""
    records = pool(["a:1", "b:1", "c:1", "d:1"])
    for worker in ("worker-2", "worker-3", "worker-4"):
        report = WorkerReport(worker, "urn", "backoff", address="x:1")
        records, effects = step(records, report, 101.0)
        assert not signals(effects, "pool.panic")
    assert not records.view.panic

    calm = pool(["a:1", "b:1", "c:1", "d:1"], panic_threshold=0.0)
    for worker in ("worker-1", "worker-2"):
        calls(calm, worker, 20, 0)
    for worker in ("worker-3", "worker-4"):
        calls(calm, worker, 0, 20)
    calm, _ = judged(calm, 1.0)
    assert not calm.view.panic and routed(calm) == {"worker-1", "worker-2"}


def test_a_pool_whose_every_ready_connection_is_ejected_routes_over_them() -> None:
    """However low the threshold, a pool never refuses a call while a connection is ready:
    with every ready one ejected it panics."""
    detection = OutlierDetection(
        interval=1.0,
        max_ejection_percent=100,
        success_rate=None,
        failure_percentage=FailurePercentageEjection(
            threshold=50, minimum_hosts=1, request_volume=10
        ),
    )
    records = pool(["a:1"], detection, panic_threshold=0.0)
    calls(records, "worker-1", 0, 20)
    records, _ = judged(records, 1.0)
    assert records.view.panic and routed(records) == {"worker-1"}


def test_stopping_a_panicking_pool_leaves_panic() -> None:
    """A pool that stops while in panic says it left panic (active 0)."""
    records, _ = panicking()
    records, effects = step(records, SetLifecycle("stopped"), 200.0)
    [left] = signals(effects, "pool.panic")
    assert left.measurements["active"] == 0


# --- the signals against the specification ------------------------------------------------


def _spec_keys(signal: str) -> tuple[set[str], set[str]]:
    """The measurement and metadata keys docs/SPEC.md's table gives ``signal``."""
    for line in SPEC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] == signal:
            words = [
                {m.group(0) for part in cell.split(",") if (m := re.match(r"[a-z_]+", part.strip()))}
                for cell in cells[1:]
            ]
            return words[0], words[1]
    raise AssertionError(f"{signal} is not in SPEC's tables")


def test_every_outlier_signal_has_the_specs_keys() -> None:
    """pool.ejected, pool.unejected and pool.panic, for address and connection units alike,
    carry the measurements the SPEC lists and metadata among its keys (the driver adds
    pool_name)."""
    emitted: list[Emit] = []
    for addresses in (["a:1", "b:1", "c:1", "d:1"], ["a:1", "a:1", "a:1", "a:1"]):
        records, effects = panicking_over(addresses)
        records, more = step(records, SetLifecycle("stopped"), 300.0)
        emitted += [e for e in (*effects, *more) if isinstance(e, Emit)]
        emitted += [e for e in judged(records, 20.0)[1] if isinstance(e, Emit)]
    assert {e.signal for e in emitted} == {
        telemetry.pool_ejected.name,
        telemetry.pool_unejected.name,
        telemetry.pool_panic.name,
    }
    for emit in emitted:
        measurements, metadata = _spec_keys(emit.signal)
        assert set(emit.measurements) == measurements, emit
        assert {"pool_name", *emit.metadata} <= metadata, emit
