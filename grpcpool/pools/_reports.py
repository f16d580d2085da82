"""What a pool's workers tell its HealthRegistry, and how they send it.

Workers import this module, not the registry actor: a worker needs to know
how to report, not who keeps the records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pykka

from grpcpool._status import WorkerState
from grpcpool.core import CallLedger

__all__ = ["REGISTRY_TIMEOUT", "WorkerGone", "WorkerReport", "send_to_registry"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerReport:
    """A worker's new state. ``channel`` is set only when ``state == "ready"``.

    Attributes:
        worker_id: Stable id within the pool (``"worker-3"``).
        urn: The reporting actor's URN; reports from an earlier incarnation
            of the worker are recognised by it and ignored.
        state: The state the worker has just entered.
        reconnect_attempt: Consecutive failed connects so far.
        last_error: Why the last connect failed or the connection ended.
        channel: The channel to hand out, when ready.
        peer: Where the channel is connected, when ready.
        suspect: Asks the worker to check ``channel`` now (a call on it
            failed with ``UNAVAILABLE``), when ready.
        address: The resolved address the worker is pinned to, if any.
        ledger: The calls in flight on ``channel``, when ready.
        on_last_call: Closes ``channel`` once retired and its last call has
            ended, when ready (see :class:`~grpcpool.pools.ReadyConnection`).
    """

    worker_id: str
    urn: str
    state: WorkerState
    reconnect_attempt: int = 0
    last_error: str | None = None
    channel: grpc.Channel | None = None
    peer: str | None = None
    suspect: Callable[[], None] | None = None
    address: str | None = None
    ledger: CallLedger | None = None
    on_last_call: Callable[[], None] | None = None


@dataclass(frozen=True)
class WorkerGone:
    """A worker has stopped (or is stopping) and must leave the records."""

    worker_id: str
    urn: str


# How long a worker waits for the registry to act on a synchronous report
# (dropping its channel from the view before the channel is closed).
REGISTRY_TIMEOUT = 2.0


def send_to_registry(registry: pykka.ActorRef[Any] | None, message: Any, *, sync: bool) -> None:
    """Tells the registry ``message``, or asks it (to be sure it has acted) when ``sync``.

    Never raises: a registry that is gone or failing is being restarted, and
    the new one asks every worker to report again.
    """
    if registry is None:
        return
    try:
        if sync:
            registry.ask(message, timeout=REGISTRY_TIMEOUT)
        else:
            registry.tell(message)
    except pykka.ActorDeadError:
        pass
    except pykka.Timeout:
        _log.warning("health registry did not answer within %ss", REGISTRY_TIMEOUT)
    except Exception:
        _log.exception("health registry failed on %r", message)
