"""Delayed messages to actors: the Erlang ``send_after`` for pykka, on the process timer."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import pykka

from grpcpool._timer import TimerHandle, call_later

__all__ = ["send_after"]


def send_after(delay: float, target: pykka.ActorRef[Any], message: Any) -> TimerHandle:
    """Tells ``message`` to ``target`` after ``delay`` seconds.

    Delivery goes through ``tell``, so the message is handled on the actor's
    own thread like any other; an actor that has stopped meanwhile is skipped.
    """
    return call_later(delay, functools.partial(_tell, target, message), message)


def _tell(target: pykka.ActorRef[Any], message: Any) -> None:
    # An actor that ended meanwhile: its timers die with it.
    with contextlib.suppress(pykka.ActorDeadError):
        target.tell(message)
