"""Telemetry: one blinker signal per event of the Elixir library.

Each signal lives in blinker's default namespace under the Elixir event name
joined with dots, so ``blinker.signal("grpc_connection_pool.channel.connected")``
and :data:`channel_connected` are the same object. Subscribe with
``telemetry.channel_connected.connect(receiver)``; the sender is the pool name
(or the supervisor's name for the ``supervisor.*`` events) and receivers get the
keyword arguments ``measurements`` and ``metadata`` (both dicts).

Events, without the common ``grpc_connection_pool.`` prefix, as
``name: measurements | metadata``:

- ``pool.init``: pool_size | pool_name, endpoint (``"host:port"``)
- ``pool.get_channel``: (none) | pool_name, available_channels
- ``pool.scale_up``: duration, requested, succeeded, failed, new_size | pool_name
- ``pool.scale_down``: duration, requested, terminated, new_size | pool_name
- ``pool.autoscaled``: from_size, to_size, peak_in_flight, queued | pool_name
- ``pool.status``: expected_size, current_size, in_flight, queued | pool_name
- ``pool.resolved``: addresses, duration | pool_name, added, removed
- ``pool.ejected``: ejection_time, successes, failures, success_rate,
  failure_percentage, threshold | pool_name, address, worker_id (a connection
  unit only), reason (``"failure_percentage"`` or ``"success_rate"``)
- ``pool.unejected``: ejection_time (seconds it was out) | pool_name, address,
  worker_id, reason (``"expired"``, or ``"gone"``: the unit left the pool)
- ``pool.panic``: active (1 on entry, 0 on exit), ready, ejected | pool_name
- ``call.hedged``: attempts, won (0-based index of the winning attempt, -1: none won) |
  pool_name, method
- ``call.queued``: duration (seconds it waited for a slot) | pool_name, outcome
  (``"started"``, ``"deadline_exceeded"``, ``"cancelled"`` or ``"stopped"``)
- ``channel.connected``: duration | pool_name, worker_id
- ``channel.connection_failed``: duration | pool_name, worker_id, error
- ``channel.disconnected``: duration | pool_name, worker_id, reason
- ``channel.ping``: duration | pool_name, worker_id, result (``"ok"``/``"error"``)
- ``channel.connection_down``: (none) | pool_name, worker_id, reason
- ``channel.reconnect_scheduled``: delay_ms, attempt | pool_name, worker_id, reason
- ``channel.refreshed``: age | pool_name, worker_id, address, reason
- ``channel.released``: duration | pool_name, worker_id
- ``supervisor.child_restarted``: restarts | supervisor, child_id, reason
- ``supervisor.shutdown``: restarts | supervisor, reason

``duration`` is in seconds (float); ``delay_ms`` keeps its Elixir name and unit.
``pool.resolved`` follows each successful resolution of the pool's host:
``addresses`` is how many it returned, ``added``/``removed`` the addresses
(``"ip:port"``, sorted lists) new since the last answer and gone from it.
``channel.refreshed`` follows the replacement of a connection by one made
ready beforehand: ``age`` is how long (seconds) the replaced connection was
ready, ``worker_id`` the replaced worker, ``address`` where the new one goes,
``reason`` ``"max_age"`` or ``"rebalance"``.
``pool.autoscaled`` follows each step ``pool.autoscale`` took (after the
``pool.scale_up`` or ``pool.scale_down`` that carried it out): ``peak_in_flight``
is the peak of calls in flight plus queued over the interval that decided
it, ``queued`` the calls waiting when it was decided.
``call.queued`` follows each call that waited in a pool's queue for a free
slot (``pool.max_calls_per_connection``) when it leaves the queue.
``channel.released`` follows a worker stopping while its connection was
ready (a scale down, the replaced worker of a refresh, the pool's stop, a
crash): the pool let the connection go, no server or network did, so it is
no ``disconnected``; ``duration`` is how long it was ready. It closes once
the calls on it end (``connection.drain_timeout`` at most).
``pool.get_channel`` is sampled by ``pool.telemetry_sample_rate``.
``pool.status``'s ``in_flight`` is the calls running through the pool channel
(:func:`grpcpool.channel`) when the report is taken, as ``status().in_flight``
counts them; calls on channels from ``get_channel`` are not counted. Its
``queued`` is the calls waiting for a free slot then (``status().queued``).

Receivers run on whichever thread emits: an actor's thread for most events, the
caller's thread for ``pool.get_channel``; ``call.hedged`` on the thread that
settled the call (a grpcio callback thread, the caller's, or the process timer
thread; an asyncio pool's loop); ``call.queued`` on the waiting caller's
thread (an asyncio pool's loop). A receiver should be quick and must
not block on the pool it observes.
"""

from __future__ import annotations

import logging
from typing import Any

import blinker

__all__ = [
    "EVENTS",
    "PREFIX",
    "call_hedged",
    "call_queued",
    "channel_connected",
    "channel_connection_down",
    "channel_connection_failed",
    "channel_disconnected",
    "channel_ping",
    "channel_reconnect_scheduled",
    "channel_refreshed",
    "channel_released",
    "emit",
    "pool_autoscaled",
    "pool_ejected",
    "pool_get_channel",
    "pool_init",
    "pool_panic",
    "pool_resolved",
    "pool_scale_down",
    "pool_scale_up",
    "pool_status",
    "pool_unejected",
    "supervisor_child_restarted",
    "supervisor_shutdown",
]

_log = logging.getLogger(__name__)

#: What every signal name starts with: the Elixir library's telemetry prefix.
PREFIX = "grpc_connection_pool"

pool_init = blinker.signal(f"{PREFIX}.pool.init")
pool_get_channel = blinker.signal(f"{PREFIX}.pool.get_channel")
pool_scale_up = blinker.signal(f"{PREFIX}.pool.scale_up")
pool_scale_down = blinker.signal(f"{PREFIX}.pool.scale_down")
pool_autoscaled = blinker.signal(f"{PREFIX}.pool.autoscaled")
pool_status = blinker.signal(f"{PREFIX}.pool.status")
pool_resolved = blinker.signal(f"{PREFIX}.pool.resolved")
pool_ejected = blinker.signal(f"{PREFIX}.pool.ejected")
pool_unejected = blinker.signal(f"{PREFIX}.pool.unejected")
pool_panic = blinker.signal(f"{PREFIX}.pool.panic")
call_hedged = blinker.signal(f"{PREFIX}.call.hedged")
call_queued = blinker.signal(f"{PREFIX}.call.queued")
channel_connected = blinker.signal(f"{PREFIX}.channel.connected")
channel_connection_failed = blinker.signal(f"{PREFIX}.channel.connection_failed")
channel_disconnected = blinker.signal(f"{PREFIX}.channel.disconnected")
channel_ping = blinker.signal(f"{PREFIX}.channel.ping")
channel_connection_down = blinker.signal(f"{PREFIX}.channel.connection_down")
channel_reconnect_scheduled = blinker.signal(f"{PREFIX}.channel.reconnect_scheduled")
channel_refreshed = blinker.signal(f"{PREFIX}.channel.refreshed")
channel_released = blinker.signal(f"{PREFIX}.channel.released")
supervisor_child_restarted = blinker.signal(f"{PREFIX}.supervisor.child_restarted")
supervisor_shutdown = blinker.signal(f"{PREFIX}.supervisor.shutdown")

EVENTS: tuple[str, ...] = tuple(
    signal.name
    for signal in (
        pool_init,
        pool_get_channel,
        pool_scale_up,
        pool_scale_down,
        pool_autoscaled,
        pool_status,
        pool_resolved,
        pool_ejected,
        pool_unejected,
        pool_panic,
        call_hedged,
        call_queued,
        channel_connected,
        channel_connection_failed,
        channel_disconnected,
        channel_ping,
        channel_connection_down,
        channel_reconnect_scheduled,
        channel_refreshed,
        channel_released,
        supervisor_child_restarted,
        supervisor_shutdown,
    )
)


def emit(
    signal: blinker.NamedSignal,
    sender: str,
    measurements: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """Sends ``signal`` to every receiver, isolating each one.

    ``blinker.Signal.send`` stops at the first receiver that raises and passes
    the exception to the sender. A pool must not break because a metrics hook
    did, so each receiver runs on its own: an exception is logged and the next
    receiver still runs. With no receiver connected this returns at once.
    """
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, measurements=measurements, metadata=metadata)
        except Exception:
            _log.exception("telemetry receiver %r for %s raised", receiver, signal.name)
