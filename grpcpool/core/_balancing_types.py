"""The values a pool's balancer works with: its settings, state, events and effects.

All of them are frozen dataclasses, so a test can build any state and compare
effects with ``==``, and a driver cannot change what the rules decided. See
:mod:`grpcpool.core._balancing` for how they fit together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from grpcpool._config_timings import MOVE_SLACK
from grpcpool._status import WorkerStatus
from grpcpool.config import Config
from grpcpool.connection._machine_types import Emit, Log
from grpcpool.core._planner import Planner
from grpcpool.core._resolution import Answers
from grpcpool.core._watching import StartWatch, Watching
from grpcpool.resolver import is_push

__all__ = [
    "BalancerSettings",
    "BalancerState",
    "DropReplacements",
    "Effect",
    "Event",
    "Move",
    "Pushed",
    "RepinWorker",
    "ReplacedGone",
    "ReplacementNotStarted",
    "ReplacementStarted",
    "ResolutionDone",
    "RetireWorker",
    "SetResolverError",
    "StartReplacement",
    "StartResolution",
    "StartWatch",
    "Started",
    "StopReplacement",
    "TimerDue",
    "Wake",
    "WatchFailed",
    "WorkersChanged",
    "new_state",
]


@dataclass(frozen=True)
class BalancerSettings:
    """What a pool's configuration tells its balancer.

    Attributes:
        target: ``host:port``, named in the resolver's log lines.
        resolve_interval: ``endpoint.resolve_interval`` (None: no periodic resolution).
        resolve_timeout: ``endpoint.resolve_timeout``: a resolution unanswered
            this long is abandoned.
        move_limit: A move's replacement must be ready within this many
            seconds (``connect_timeout + ping_timeout + MOVE_SLACK``).
        max_age: ``connection.max_age``.
        retry_min: ``connection.backoff_min``: the first wait before a failed
            address is tried again.
        retry_max: ``connection.backoff_max``.
        push: The resolver pushes (has ``watch``): the pool follows one
            watch instead of resolving on a schedule.
        allow_empty: A pushed empty set is followed (the resolver's
            ``allow_empty``); otherwise the last non-empty set is kept.
    """

    target: str
    resolve_interval: float | None
    resolve_timeout: float
    move_limit: float
    max_age: float | None = None
    retry_min: float = 1.0
    retry_max: float | None = None
    push: bool = False
    allow_empty: bool = False

    @classmethod
    def of(cls, config: Config) -> BalancerSettings:
        """The settings of a pool with ``config``."""
        connection, endpoint = config.connection, config.endpoint
        return cls(
            target=endpoint.target,
            resolve_interval=endpoint.resolve_interval,
            resolve_timeout=endpoint.resolve_timeout,
            move_limit=connection.connect_timeout + connection.ping_timeout + MOVE_SLACK,
            max_age=connection.max_age,
            retry_min=connection.backoff_min,
            retry_max=connection.backoff_max,
            push=is_push(endpoint.resolver),
            allow_empty=bool(getattr(endpoint.resolver, "allow_empty", False)),
        )


@dataclass(frozen=True)
class Move:
    """The make-before-break move under way: ``replaced`` leaves once ``added`` is ready.

    Attributes:
        number: Tells this move's :class:`ReplacementStarted` from a late
            one of a move given up before.
        replaced: The worker that makes way.
        address: Where its replacement connects.
        reason: ``"rebalance"`` or ``"max_age"`` (for ``channel.refreshed``).
        age: How long ``replaced`` had been ready when the move began.
        deadline: When (monotonic) the move is given up unless ``added`` is ready.
        added: The replacement's worker id, once the driver has named it.
    """

    number: int
    replaced: str
    address: str
    reason: str
    age: float
    deadline: float
    added: str | None = None


@dataclass(frozen=True)
class BalancerState:
    """Everything one pool's balancer knows.

    The planner (address health, refresh times) and the resolver answers
    (the last good answer, the retry backoff) are objects of their own
    modules, tested there, and are updated in place by :func:`step`: a state
    is stepped once, and the state it returns is the one to step next.

    Attributes:
        settings: What the configuration says.
        planner: Decides the repins and moves.
        answers: The resolver's last good answer, and what a new one means.
        watching: A push resolver's current watch and its retry backoff.
        workers: The last snapshot of the pool's worker records.
        move: The move under way, if any.
        moves: The number of the latest move begun.
        leaving: Workers retired or stopped by the balancer, until they have
            left the snapshot (or ``LEAVE_WAIT`` has passed), with that time
            (monotonic): plans do not count them.
        resolutions: The number of the latest resolution started.
        resolving_until: While a resolution runs: when (monotonic) it is abandoned.
        resolve_at: When (monotonic) the next resolution is due, if one is scheduled.
        plan_wake_at: When (monotonic) the last plan said time alone changes it.
        wake_at: The one wake-up asked of the driver (monotonic), if any.
    """

    settings: BalancerSettings
    planner: Planner = field(compare=False, repr=False)
    answers: Answers = field(compare=False, repr=False)
    watching: Watching = field(default_factory=Watching, compare=False, repr=False)
    workers: tuple[WorkerStatus, ...] = ()
    move: Move | None = None
    moves: int = 0
    leaving: tuple[tuple[str, float], ...] = ()
    resolutions: int = 0
    resolving_until: float | None = None
    resolve_at: float | None = None
    plan_wake_at: float | None = None
    wake_at: float | None = None


def new_state(settings: BalancerSettings, rng: random.Random | None = None) -> BalancerState:
    """A balancer not yet started; ``rng`` draws the planner's jitter (seed it in tests)."""
    planner = Planner(settings.max_age, settings.retry_min, settings.retry_max, rng)
    return BalancerState(settings, planner, Answers(settings.target, settings.resolve_interval))


# --- events: what happened ------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The balancer has started (again: a restart starts a fresh state).

    Attributes:
        addresses: The answer the pool started with, if it had one.
        took: How long that answer took (seconds), for its ``pool.resolved``.
        workers: The pool's worker records now.
    """

    addresses: tuple[str, ...] | None
    took: float
    workers: tuple[WorkerStatus, ...]


@dataclass(frozen=True)
class ResolutionDone:
    """Resolution ``number`` answered: ``addresses``, or None and why not (``error``)."""

    number: int
    addresses: tuple[str, ...] | None
    error: str | None
    took: float


@dataclass(frozen=True)
class Pushed:
    """Watch ``watch`` pushed a set: ``addresses`` (checked, maybe empty), or
    None and why the set was unusable (``error``); ``revision`` if the
    registry numbers its changes."""

    watch: int
    addresses: tuple[str, ...] | None
    error: str | None = None
    revision: int | None = None


@dataclass(frozen=True)
class WatchFailed:
    """Watch ``watch`` failed for good (``error``); the driver has closed it."""

    watch: int
    error: str


@dataclass(frozen=True)
class WorkersChanged:
    """A worker changed state, or the pool's workers changed: their records now."""

    workers: tuple[WorkerStatus, ...]


@dataclass(frozen=True)
class TimerDue:
    """The wake-up asked for (:class:`Wake`) has come: the pool's worker records now."""

    workers: tuple[WorkerStatus, ...]


@dataclass(frozen=True)
class ReplacementStarted:
    """The replacement of move ``number`` runs, as ``worker_id``."""

    number: int
    worker_id: str


@dataclass(frozen=True)
class ReplacementNotStarted:
    """The replacement of move ``number`` could not be started (``error``)."""

    number: int
    error: str


@dataclass(frozen=True)
class ReplacedGone:
    """A replacement was to take a worker's place, and that worker was gone.

    The driver found out while carrying out :class:`RetireWorker` (the worker
    was scaled down between the snapshot and the retirement): the
    replacement, ``worker_id``, did not become one of the pool's.
    """

    worker_id: str


Event = (
    Started
    | ResolutionDone
    | Pushed
    | WatchFailed
    | WorkersChanged
    | TimerDue
    | ReplacementStarted
    | ReplacementNotStarted
    | ReplacedGone
)

# --- effects: what the driver must do, in order ---------------------------------------


@dataclass(frozen=True)
class StartResolution:
    """Run the pool's resolver (without blocking) and answer with :class:`ResolutionDone`."""

    number: int


@dataclass(frozen=True)
class Wake:
    """Deliver :class:`TimerDue` after ``delay`` seconds, replacing any earlier wake-up.

    ``delay`` None: no wake-up; only news changes anything.
    """

    delay: float | None


@dataclass(frozen=True)
class RepinWorker:
    """Tell ``worker_id``, which serves nothing, to connect to ``address`` at once."""

    worker_id: str
    address: str


@dataclass(frozen=True)
class StartReplacement:
    """Start a worker pinned to ``address`` to replace ``replacing`` (move ``number``).

    It is not one of the pool's workers (not counted, never scaled down)
    until :class:`RetireWorker` makes it one; answer with
    :class:`ReplacementStarted` or :class:`ReplacementNotStarted`.
    """

    number: int
    address: str
    replacing: str


@dataclass(frozen=True)
class RetireWorker:
    """Stop ``worker_id`` for good (its channel drains); ``replacement`` takes its place.

    If ``worker_id`` turns out to be gone already, the replacement does not
    join the pool: answer with :class:`ReplacedGone`.
    """

    worker_id: str
    replacement: str


@dataclass(frozen=True)
class StopReplacement:
    """Stop the replacement ``worker_id``, whose move has ended without it."""

    worker_id: str


@dataclass(frozen=True)
class DropReplacements:
    """Stop every replacement whose move has not ended.

    A balancer asks it when it starts (the moves of a balancer that crashed
    ended with it) and when it gives up a move whose replacement the driver
    has not named yet (whenever that one starts, it is dropped).
    """


@dataclass(frozen=True)
class SetResolverError:
    """Show ``problem`` (why the last resolution failed, or None) in the pool's status."""

    problem: str | None


Effect = (
    StartResolution
    | StartWatch
    | Wake
    | RepinWorker
    | StartReplacement
    | RetireWorker
    | StopReplacement
    | DropReplacements
    | SetResolverError
    | Emit
    | Log
)
