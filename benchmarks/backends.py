"""Figure 10: one pool over several backends, as a resolver names them.

Every backend is a :mod:`benchmarks.server` process on its own loopback
address (127.0.0.1, 127.0.0.2, ...), all on one port (:mod:`benchmarks.callers`),
so a resolver's answer lists replicas the way DNS would. Calls go through
``grpcpool.channel`` to the servers' ``Where`` method, whose reply names the
backend that served it.

10a. Three backends, a pool of 9 (3 connections each), steady calls: the
     calls the busiest backend got over the calls the idlest one got, beside
     one grpcio channel with ``pick_first`` over the same three addresses
     (every call on one backend) and one with the ``round_robin`` LB policy.
10b. A fourth backend appears in the resolver's answer (``resolve_interval``
     1 s) while callers run: the time from the answer changing until the new
     backend serves at least 20% of the calls (its fair share is 2 of 9
     connections, 22%), measured over sliding windows of 180 calls, and the
     calls that failed meanwhile.
10c. ``max_age`` 2 s, a pool of 4 over the three backends, 16 callers: every
     connection is replaced by one made ready first, over and over; failed
     calls, and the fewest ready connections seen (``status().current_size``
     sampled every 5 ms).

Figures 10d and 10e, backends killed and restarted under calls, are
:mod:`benchmarks.healing`'s; they run after these, on servers of their own.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import grpc

import grpcpool
from benchmarks import healing
from benchmarks.callers import (
    CALL_TIMEOUT,
    PAYLOAD,
    Backends,
    Tally,
    addresses,
    callers,
    counts,
    share_reached,
)
from benchmarks.harness import Figure, Goal, Settings, compared, guarded, interleave
from benchmarks.pools import channel_options, running_pool, unique_name
from benchmarks.server import WHERE_METHOD, ServerProcess
from grpcpool import Config, telemetry

__all__ = ["run"]

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
NEW_HOST = "127.0.0.4"
SPREAD_SIZE = 9
SPREAD_GOAL = 1.2
ROUND_ROBIN_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
RESOLVE_INTERVAL = 1.0
NEW_SHARE = 0.20
SHARE_WINDOW = 180  # calls: 20 per connection of the pool of 9
MAX_AGE = 2.0
AGE_SIZE = 4
AGE_CALLERS = 16
SAMPLE_EVERY = 0.005


def _config(
    port: int,
    size: int,
    name: str,
    answer: list[str],
    *,
    interval: float | None = 30.0,
    **conn: Any,
) -> Config:
    """A pool of ``size`` over whatever ``answer`` lists when the resolver asks."""
    return Config.new(
        endpoint={
            "type": "local",
            "host": "backends.test",
            "port": port,
            "resolver": lambda host, port: list(answer),
            "resolve_interval": interval,
        },
        pool={"size": size, "name": name},
        connection={"backoff_min": 0.05, "backoff_max": 0.5, "connect_timeout": 2.0, **conn},
    )


# --- figure 10a ------------------------------------------------------------------------


def _figure_10a(settings: Settings, port: int) -> list[Figure]:
    threads = settings.pick(4, 2)
    seconds = settings.pick(1.0, 0.3)
    rounds = settings.pick(3, 1)
    name = unique_name("backends")
    target = "ipv4:" + ",".join(addresses(port, HOSTS))
    tallies: dict[str, Tally] = {}

    def round_of(label: str, stub: Any) -> float:
        with callers(stub, threads) as tally:
            time.sleep(seconds)
        total = tallies.setdefault(label, Tally())
        total.per_host.update(tally.per_host)
        total.failed.update(tally.failed)
        return tally.spread(HOSTS)

    with (
        running_pool(_config(port, SPREAD_SIZE, name, addresses(port, HOSTS))),
        grpc.insecure_channel(target, options=channel_options()) as pick_first,
        grpc.insecure_channel(
            target, options=channel_options(("grpc.service_config", ROUND_ROBIN_CONFIG))
        ) as round_robin,
    ):
        stubs = {
            "pool": grpcpool.channel(name).unary_unary(WHERE_METHOD),
            "pick_first": pick_first.unary_unary(WHERE_METHOD),
            "round_robin": round_robin.unary_unary(WHERE_METHOD),
        }
        for stub in stubs.values():  # warm up: connections, callables, server threads
            stub(PAYLOAD, timeout=CALL_TIMEOUT, wait_for_ready=True)
            with callers(stub, threads):
                time.sleep(settings.pick(0.2, 0.05))
        results = interleave(
            rounds,
            {
                label: (lambda label=label, stub=stub: round_of(label, stub))
                for label, stub in stubs.items()
            },
        )
    failed = sum(sum(t.failed.values()) for t in tallies.values())
    note = (
        f"calls per backend .1/.2/.3 over {rounds} rounds of {seconds:g} s, {threads} callers: "
        f"pool {counts(tallies['pool'], HOSTS)}, grpcio round_robin "
        f"{counts(tallies['round_robin'], HOSTS)}, grpcio pick_first "
        f"{counts(tallies['pick_first'], HOSTS)}; failed calls {failed}"
    )
    return [
        compared(
            "10a",
            f"calls per backend, busiest/idlest: 3 backends, pool of {SPREAD_SIZE} via "
            "grpcpool.channel (round_robin)",
            results["pool"],
            "x",
            "one grpcio channel, round_robin LB (pick_first: every call on one backend)",
            results["round_robin"],
            goal=Goal("<=", SPREAD_GOAL, f"<= {SPREAD_GOAL}"),
            judge="value",
            note=note,
        )
    ]


# --- figure 10b ------------------------------------------------------------------------


def _figure_10b(settings: Settings, port: int) -> list[Figure]:
    threads = settings.pick(4, 2)
    name = unique_name("backends")
    answer = addresses(port, HOSTS)
    limit = RESOLVE_INTERVAL + 5.0
    with (
        ServerProcess(port, host=NEW_HOST),
        running_pool(_config(port, SPREAD_SIZE, name, answer, interval=RESOLVE_INTERVAL)),
    ):
        stub = grpcpool.channel(name).unary_unary(WHERE_METHOD)
        with callers(stub, threads, log=True) as tally:
            time.sleep(settings.pick(0.5, 0.2))
            changed = time.monotonic()
            answer.append(f"{NEW_HOST}:{port}")
            assert tally.log is not None
            log = tally.log
            deadline = changed + limit
            while (
                time.monotonic() < deadline
                and share_reached(log[-SHARE_WINDOW:], NEW_HOST, changed, NEW_SHARE, SHARE_WINDOW)
                is None
            ):
                time.sleep(0.05)
            time.sleep(settings.pick(1.0, 0.2))  # the rebalance's last moves, still counted
        workers = grpcpool.status(name).workers
    reached = share_reached(log, NEW_HOST, changed, NEW_SHARE, SHARE_WINDOW)
    seconds = (reached - changed) if reached is not None else float("nan")
    spread = Counter((w.address or "unpinned").rsplit(":", 1)[0] for w in workers)
    failed = sum(tally.failed.values())
    goal = RESOLVE_INTERVAL + 1.0
    note = (
        f"pool of {SPREAD_SIZE}, resolve_interval {RESOLVE_INTERVAL:g} s, {threads} callers, "
        f"{tally.calls} calls; connections per backend after: "
        + ", ".join(f"{host} {n}" for host, n in sorted(spread.items()))
        + (f"; failures {dict(tally.failed)}" if failed else "")
        + ("" if reached is not None else f"; share not reached within {limit:g} s")
    )
    return [
        Figure(
            "10b",
            f"new backend in the answer -> it serves >= {NEW_SHARE:.0%} of calls "
            f"(last {SHARE_WINDOW} calls)",
            seconds * 1000,
            "ms",
            target=f"<= {goal * 1000:.0f} ms (resolve_interval + 1 s)",
            met=reached is not None and seconds <= goal,
            note=note,
        ),
        Figure(
            "10b",
            "failed calls while the pool rebalances onto the new backend",
            failed,
            "calls",
            target="0",
            met=failed == 0,
        ),
    ]


# --- figure 10c ------------------------------------------------------------------------


def _figure_10c(settings: Settings, port: int) -> list[Figure]:
    seconds = settings.pick(20.0, 3.0)
    name = unique_name("backends")
    config = _config(port, AGE_SIZE, name, addresses(port, HOSTS), max_age=MAX_AGE)
    refreshes: Counter[str] = Counter()
    fewest = [AGE_SIZE]

    def refreshed(sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        refreshes[str(metadata.get("reason"))] += 1

    telemetry.channel_refreshed.connect(refreshed, sender=name, weak=False)
    try:
        with running_pool(config):
            stub = grpcpool.channel(name).unary_unary(WHERE_METHOD)
            with callers(stub, AGE_CALLERS) as tally:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    fewest[0] = min(fewest[0], grpcpool.status(name).current_size)
                    time.sleep(SAMPLE_EVERY)
    finally:
        telemetry.channel_refreshed.disconnect(refreshed, sender=name)
    failed = sum(tally.failed.values())
    note = (
        f"{seconds:g} s, {AGE_CALLERS} callers, {tally.calls} calls, refreshes "
        f"{dict(refreshes) or 0}, calls per backend .1/.2/.3 {counts(tally, HOSTS)}"
        + (f"; failures {dict(tally.failed)}" if failed else "")
    )
    return [
        Figure(
            "10c",
            f"failed calls, max_age {MAX_AGE:g} s, pool of {AGE_SIZE}, {AGE_CALLERS} callers",
            failed,
            "calls",
            target="0",
            met=failed == 0,
            note=note,
        ),
        Figure(
            "10c",
            f"fewest ready connections seen (sampled every {SAMPLE_EVERY * 1000:g} ms)",
            fewest[0],
            "conns",
            target=f">= {AGE_SIZE}",
            met=fewest[0] >= AGE_SIZE,
        ),
    ]


def run(settings: Settings) -> list[Figure]:
    """Figures 10a, 10b and 10c against three backend processes, then 10d and 10e."""
    with Backends(HOSTS) as backends:
        port = backends.port
        figures = [
            *guarded("10a", "calls per backend", lambda: _figure_10a(settings, port)),
            *guarded("10b", "a new backend", lambda: _figure_10b(settings, port)),
            *guarded("10c", "max_age refreshes", lambda: _figure_10c(settings, port)),
        ]
    return [*figures, *healing.run(settings)]
