"""Making and closing the grpc channels of a pool, with an account of the open ones.

Every channel a worker opens goes through :func:`open_channel` and every close
through :func:`close_channel`, so :func:`open_channel_count` tells at any time
how many are open in the process: the test suite checks it is back to zero
after each test.
"""

from __future__ import annotations

import os
import threading
import time

import grpc

from grpcpool.config import Config

__all__ = ["close_channel", "open_channel", "open_channel_count"]

_open: set[grpc.Channel] = set()
_lock = threading.Lock()


# The parent's channels, kept alive for good in a forked child: see below.
_inherited: list[grpc.Channel] = []


def _reset_after_fork() -> None:
    # The parent's channels are unusable in a child (grpcio does not carry
    # channels across fork). Forget them without touching them: not even by
    # letting them be freed, since grpcio's finalizers call into a C core
    # whose threads and locks did not survive the fork.
    global _lock
    _inherited.extend(_open)
    _open.clear()
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def open_channel(config: Config) -> tuple[grpc.Channel, grpc.Channel]:
    """Creates one worker's channel (not yet connected).

    Returns:
        The raw channel (to subscribe to and to close) and the channel to hand
        out, which is the raw one wrapped by ``endpoint.interceptors`` if any.
    """
    options = config.channel_options()
    credentials = config.channel_credentials()
    target = config.endpoint.target
    if credentials is None:
        raw = grpc.insecure_channel(target, options=options)
    else:
        raw = grpc.secure_channel(target, credentials, options=options)
    with _lock:
        _open.add(raw)
    interceptors = config.endpoint.interceptors
    public = grpc.intercept_channel(raw, *interceptors) if interceptors else raw
    return raw, public


# How long a close waits for grpcio's connectivity poll of the channel to end.
_POLL_END_TIMEOUT = 0.5
_POLL_END_CHECK = 0.005


def close_channel(raw: grpc.Channel) -> None:
    """Closes a channel made by :func:`open_channel`. Idempotent.

    Closing cancels the calls still running on it. Unsubscribe first: the
    close then waits for grpcio's connectivity-poll thread to notice and end
    (it wakes every 0.2 s), because closing under a running poll makes that
    thread die with "Cannot monitor channel state: Channel closed!".
    """
    with _lock:
        if raw not in _open:
            return
        _open.discard(raw)
    _await_poll_end(raw)
    raw.close()


def _await_poll_end(raw: grpc.Channel) -> None:
    # grpcio exposes no way to wait for its poll thread; its state object
    # has a flag that the thread clears on its way out. Bounded, so a
    # channel someone else still subscribes to is closed all the same.
    state = getattr(raw, "_connectivity_state", None)
    deadline = time.monotonic() + _POLL_END_TIMEOUT
    while getattr(state, "polling", False) and time.monotonic() < deadline:
        time.sleep(_POLL_END_CHECK)


def open_channel_count() -> int:
    """How many channels made by :func:`open_channel` are not closed yet."""
    with _lock:
        return len(_open)
