"""Figures 10d and 10e: backends killed (SIGKILL) and started again while callers run.

Both measure a pool through ``grpcpool.channel`` beside one bare grpcio
channel with the ``round_robin`` LB policy over the same addresses, in the
same run, through the same kills and restarts, in interleaved rounds (pool,
grpcio, grpcio, pool, ...). The backends are :mod:`benchmarks.callers`
processes of their own, one per loopback address, on one port; a restarted
one listens on the same address and port, and its restart is timed from the
moment it bound the port, as the server reports it.

10d. A healed backend comes back: three backends (127.0.0.2-.4, a
     ``grpcpool.static_resolver``), a pool of 6 with the default connection
     settings, 8 callers. One backend is killed, kept down for 10 s and
     started again: the time from its restart until it serves at least 20%
     of the calls again (its fair share is a third), over sliding windows of
     the last 120 calls, and the calls that failed in the round. The pool
     has moved that backend's connections to the live ones meanwhile;
     ``grpcpool.core._planner`` tries the dead address again after a
     backoff from ``connection.backoff_min`` up to 4 s, and grpcio's own
     subchannel backoff (1 s, x1.6 per attempt, up to 120 s) decides when
     the bare channel tries again.
10e. Rolling restarts: two backends, a pool of 4 with ``connection.max_age``
     1 s (other settings default), 8 callers for 15 s while the backends are
     restarted in turn (kill, then a new process on the same address and
     port), each kill 3 s after the backend restarted before it listens
     again, so one is always up and has been for 3 s, however long a server
     takes to start on a busy machine: the share of calls that failed, judged
     against grpcio's in the same round plus one percentage point.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

import grpcpool
from benchmarks.callers import CALL_TIMEOUT, PAYLOAD, Backends, addresses, callers, share_reached
from benchmarks.harness import Figure, Goal, Settings, compared, guarded, interleave
from benchmarks.pools import channel_options, running_pool, unique_name
from benchmarks.server import WHERE_METHOD
from grpcpool import Config, telemetry

__all__ = ["run"]

CALLERS = 8
KINDS = ("grpcpool", "round_robin")
HEAL_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
HEAL_SIZE = 6
HEAL_DOWN = 10.0
HEAL_SHARE = 0.20
HEAL_WINDOW = 120  # calls: 20 per connection of the pool of 6
HEAL_GOAL = 10.0  # seconds after the restart
HEAL_RATIO = 2.0  # times grpcio round_robin's
HEAL_LIMIT = 30.0  # seconds after the restart before a round gives up
ROLL_HOSTS = ("127.0.0.2", "127.0.0.3")
ROLL_SIZE = 4
ROLL_MAX_AGE = 1.0
ROLL_SECONDS = 15.0
ROLL_EVERY = 3.0
ROLL_MARGIN = 1.0  # percentage points over grpcio round_robin's failed share
WARM_TIMEOUT = 30.0


def _config(backends: Backends, size: int, name: str, **connection: Any) -> Config:
    """A pool of ``size`` over ``backends`` (a static resolver), default connection settings."""
    return Config.new(
        endpoint={
            "type": "local",
            "host": "backends.test",
            "port": backends.port,
            "resolver": grpcpool.static_resolver(addresses(backends.port, backends.hosts)),
        },
        pool={"size": size, "name": name},
        connection=connection,
    )


@dataclass
class _Client:
    """A stub on a pool channel or on a bare grpcio channel, and what the pool did."""

    stub: Any
    name: str | None = None
    refreshes: Counter[str] = field(default_factory=Counter)

    def spread(self) -> str:
        """The pool's connections per backend now (empty for a bare channel)."""
        if self.name is None:
            return ""
        workers = grpcpool.status(self.name).workers
        spread = Counter((w.address or "unpinned").rsplit(":", 1)[0] for w in workers)
        return ", ".join(f"{host} {n}" for host, n in sorted(spread.items()))


@contextmanager
def _client(kind: str, backends: Backends, size: int, **connection: Any) -> Iterator[_Client]:
    """A pool of ``size`` (``kind`` "grpcpool") or one round_robin channel over ``backends``.

    Either way the block starts once every backend has answered a call.
    """
    if kind == "round_robin":
        target = "ipv4:" + ",".join(addresses(backends.port, backends.hosts))
        options = channel_options(("grpc.lb_policy_name", "round_robin"))
        with grpc.insecure_channel(target, options=options) as channel:
            client = _Client(channel.unary_unary(WHERE_METHOD))
            _until_all_serve(client.stub, backends.hosts)
            yield client
        return
    name = unique_name("healing")
    client = _Client(None, name)

    def refreshed(sender: str, *, metadata: dict[str, Any], **_: Any) -> None:
        client.refreshes[str(metadata.get("reason"))] += 1

    telemetry.channel_refreshed.connect(refreshed, sender=name, weak=False)
    try:
        with running_pool(_config(backends, size, name, **connection)):
            client.stub = grpcpool.channel(name).unary_unary(WHERE_METHOD)
            _until_all_serve(client.stub, backends.hosts)
            yield client
    finally:
        telemetry.channel_refreshed.disconnect(refreshed, sender=name)


def _until_all_serve(stub: Any, hosts: tuple[str, ...]) -> None:
    """Calls ``stub`` until every one of ``hosts`` has served a call.

    Raises:
        RuntimeError: Some host served none within ``WARM_TIMEOUT``.
    """
    seen: set[str] = set()
    deadline = time.monotonic() + WARM_TIMEOUT
    while not seen.issuperset(hosts):
        if time.monotonic() > deadline:
            raise RuntimeError(f"backends {sorted(set(hosts) - seen)} served no call")
        seen.add(stub(PAYLOAD, timeout=CALL_TIMEOUT, wait_for_ready=True).decode())


def _failures(failed: Counter[str]) -> str:
    return ", ".join(f"{n} {code}" for code, n in sorted(failed.items())) or "0"


# --- figure 10d ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Healed:
    """One round of 10d: seconds from the restart until the share came back (inf: never)."""

    seconds: float
    failed: Counter[str]
    calls: int
    spread: str


def _heal_round(kind: str, backends: Backends, settings: Settings) -> _Healed:
    host = backends.hosts[0]
    limit = settings.pick(HEAL_LIMIT, 5.0)
    with (
        _client(kind, backends, HEAL_SIZE) as client,
        callers(client.stub, CALLERS, log=True) as tally,
    ):
        assert tally.log is not None
        log = tally.log
        time.sleep(settings.pick(1.0, 0.2))
        backends.kill(0)
        time.sleep(settings.pick(HEAL_DOWN, 0.3))
        back = backends.restart(0)
        deadline = back + limit
        while (
            time.monotonic() < deadline
            and share_reached(log[-HEAL_WINDOW:], host, back, HEAL_SHARE, HEAL_WINDOW) is None
        ):
            time.sleep(0.05)
        spread = client.spread()
    reached = share_reached(log, host, back, HEAL_SHARE, HEAL_WINDOW)
    seconds = reached - back if reached is not None else float("inf")
    return _Healed(seconds, tally.failed, tally.calls, spread)


def _figure_10d(settings: Settings) -> list[Figure]:
    rounds = settings.pick(3, 1)
    down = settings.pick(HEAL_DOWN, 0.3)
    healed: dict[str, list[_Healed]] = {kind: [] for kind in KINDS}
    with Backends(HEAL_HOSTS) as backends:

        def measure(kind: str) -> float:
            healed[kind].append(_heal_round(kind, backends, settings))
            return healed[kind][-1].seconds * 1000

        times = interleave(rounds, {kind: functools.partial(measure, kind) for kind in KINDS})

    def detail(kind: str) -> str:
        runs = healed[kind]
        failed: Counter[str] = Counter()
        for run in runs:
            failed.update(run.failed)
        seconds = "/".join(f"{r.seconds:.2f}" for r in runs)
        text = (
            f"{kind}: back after {seconds} s in the {len(runs)} round(s); "
            f"failed {_failures(failed)} of {sum(r.calls for r in runs) + failed.total()} calls"
        )
        if kind == "grpcpool":
            text += "; connections per backend at the end: " + " | ".join(r.spread for r in runs)
        return text

    shape = (
        f"3 backends, one killed (SIGKILL), down {down:g} s, restarted; pool of {HEAL_SIZE}, "
        f"default connection settings, {CALLERS} callers"
    )
    note = (
        f"{detail('grpcpool')}; {detail('round_robin')}; inf: not within "
        f"{settings.pick(HEAL_LIMIT, 5.0):g} s of the restart"
    )
    baseline = "one grpcio channel, round_robin LB, same kill and restart"
    return [
        compared(
            "10d",
            f"restarted backend -> it serves >= {HEAL_SHARE:.0%} of calls again "
            f"(last {HEAL_WINDOW} calls); {shape}",
            times["grpcpool"],
            "ms",
            baseline,
            times["round_robin"],
            goal=Goal("<=", HEAL_GOAL * 1000, f"<= {HEAL_GOAL * 1000:.0f} ms"),
            judge="value",
            note=note,
        ),
        compared(
            "10d",
            "same, grpcpool over grpcio round_robin",
            times["grpcpool"],
            "ms",
            "grpcio round_robin, same rounds",
            times["round_robin"],
            goal=Goal("<=", HEAL_RATIO, f"<= {HEAL_RATIO:g}x"),
        ),
        compared(
            "10d",
            "failed calls per round (kill, down, restart, back)",
            [float(r.failed.total()) for r in healed["grpcpool"]],
            "calls",
            "grpcio round_robin, same rounds",
            [float(r.failed.total()) for r in healed["round_robin"]],
        ),
    ]


# --- figure 10e ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rolled:
    """One round of 10e."""

    share: float
    failed: Counter[str]
    calls: int
    down: list[float]  # seconds each restarted backend was down (kill to listening)
    refreshes: Counter[str]


def _roll_round(kind: str, backends: Backends, settings: Settings) -> _Rolled:
    seconds = settings.pick(ROLL_SECONDS, 1.0)
    every = settings.pick(ROLL_EVERY, 0.5)
    down: list[float] = []
    with (
        _client(kind, backends, ROLL_SIZE, max_age=ROLL_MAX_AGE) as client,
        callers(client.stub, CALLERS) as tally,
    ):
        end = time.monotonic() + seconds
        due = time.monotonic() + every
        while due < end:
            time.sleep(max(0.0, due - time.monotonic()))
            killed = time.monotonic()
            back = backends.restart(len(down) % len(backends.hosts))
            down.append(back - killed)
            due = back + every  # the next kill: this backend has served for `every`
        time.sleep(max(0.0, end - time.monotonic()))
    return _Rolled(tally.failed_share(), tally.failed, tally.calls, down, client.refreshes)


def _figure_10e(settings: Settings) -> list[Figure]:
    rounds = settings.pick(2, 1)
    rolled: dict[str, list[_Rolled]] = {kind: [] for kind in KINDS}
    with Backends(ROLL_HOSTS) as backends:

        def measure(kind: str) -> float:
            rolled[kind].append(_roll_round(kind, backends, settings))
            return rolled[kind][-1].share

        shares = interleave(rounds, {kind: functools.partial(measure, kind) for kind in KINDS})

    def detail(kind: str) -> str:
        runs = rolled[kind]
        failed: Counter[str] = Counter()
        refreshes: Counter[str] = Counter()
        for run in runs:
            failed.update(run.failed)
            refreshes.update(run.refreshes)
        total = sum(r.calls for r in runs) + failed.total()
        share = failed.total() / total * 100 if total else float("nan")
        down = [seconds for run in runs for seconds in run.down]
        text = (
            f"{kind}: failed {_failures(failed)} of {total} calls ({share:.2f}%), "
            f"{'/'.join(str(len(r.down)) for r in runs)} restarts per round, each "
            f"backend down {min(down, default=0):.2f}-{max(down, default=0):.2f} s"
        )
        if kind == "grpcpool":
            text += f", refreshes {dict(refreshes) or 0}"
        return text

    seconds = settings.pick(ROLL_SECONDS, 1.0)
    every = settings.pick(ROLL_EVERY, 0.5)
    shape = (
        f"2 backends restarted in turn (SIGKILL, started again; the next {every:g} s after), "
        f"pool of {ROLL_SIZE}, max_age {ROLL_MAX_AGE:g} s, {CALLERS} callers, {seconds:g} s"
    )
    baseline = "one grpcio channel, round_robin LB, same restarts"
    return [
        compared(
            "10e",
            f"share of calls failed; {shape}",
            shares["grpcpool"],
            "%",
            baseline,
            shares["round_robin"],
            goal=Goal("<=", ROLL_MARGIN, f"<= baseline + {ROLL_MARGIN:g} pp"),
            judge="difference",
            note=f"{detail('grpcpool')}; {detail('round_robin')}",
        ),
        compared(
            "10e",
            "failed calls per round (same)",
            [float(r.failed.total()) for r in rolled["grpcpool"]],
            "calls",
            "grpcio round_robin, same rounds",
            [float(r.failed.total()) for r in rolled["round_robin"]],
        ),
    ]


def run(settings: Settings) -> list[Figure]:
    """Figures 10d and 10e, each against backend processes of its own."""
    return [
        *guarded("10d", "a healed backend comes back", lambda: _figure_10d(settings)),
        *guarded("10e", "rolling restarts with max_age", lambda: _figure_10e(settings)),
    ]
