"""CallLedger: the calls running on one connection, and when a retired one may close.

A connection leaves the pool (a ``max_age`` refresh, a balancer move, a scale
down, the pool's stop) while calls may still run on it. Closing its channel
cancels them; keeping it open costs the server a connection for nothing.
The rule: a retired connection closes as soon as the last call counted on it
ends, at once if none runs; ``connection.drain_timeout`` is only the upper
bound, and the driver cuts whatever still runs then.

Only calls started through the pool channel are counted. A channel handed
out raw (``get_channel``) may carry calls nothing sees, so a retired
connection whose channel was handed out stays open until its drain ends,
unless the pool has stopped (a stopped pool keeps nothing open for calls it
cannot count, as before).

The ledger decides; the driver acts. Each method answers with the effect
to carry out (:class:`Close`), or None for nothing to do, and
:attr:`Close.NOW` is answered exactly once per ledger, so the driver never
needs to know who else might be closing.

Thread safety without a lock: the sync pool channel counts calls from any
thread, so every change here is a single C-level operation on a builtin
(``set.add``, ``set.discard``, ``list.pop``, an attribute store), atomic
under the GIL, and the two sides that race follow one order. A call starting
adds itself, then reads ``retired``; a retirement sets ``retired``, then
reads the calls. Whichever goes second sees the other, so a call either
runs and is waited for, or is refused and goes elsewhere; and the close is
claimed by one ``list.pop``, so it happens once. The asyncio pool runs it
all on one thread, where the same holds trivially.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

__all__ = ["CallLedger", "Close"]


class Close(enum.Enum):
    """What the driver does with a connection's channel."""

    NOW = "close now"
    """Close it now: nothing counted runs on it (or the drain ended: cut what runs)."""
    WHEN_LAST_ENDS = "close when last ends"
    """Keep it until :meth:`CallLedger.ended` answers :attr:`NOW`, at most ``drain_timeout``."""
    AT_DRAIN_END = "close at drain end"
    """Keep it for the whole ``drain_timeout``: calls nothing counts may run on it."""


class CallLedger:
    """The calls in flight on one connection (one channel), and its retirement.

    Each call is a token the caller chooses, unique while the call runs. A
    call is counted from :meth:`started` (when it answers True) until
    :meth:`ended`; ``calls`` is the live set, read without a lock (its
    ``len`` is the connection's load, which ``least_in_flight`` compares).

    Attributes:
        calls: Tokens of the calls in flight. Read it; change it only through
            the methods (tests of pickers may fill it by hand).
    """

    __slots__ = ("_close", "_held", "_stopped", "calls", "retired")

    def __init__(self) -> None:
        self.calls: set[Hashable] = set()
        #: Set once, by :meth:`retire`: no call starts on the connection any more.
        self.retired = False
        # A retired channel handed out raw: closes when its drain ends, not before.
        self._held = False
        # The pool has stopped: a raw hand-out holds nothing any more.
        self._stopped = False
        # The right to close, taken by one list.pop(): Close.NOW is answered once.
        self._close: list[None] = [None]

    @property
    def in_flight(self) -> int:
        """How many counted calls are running."""
        return len(self.calls)

    @property
    def closed(self) -> bool:
        """True once :attr:`Close.NOW` has been answered."""
        return not self._close

    def started(self, token: Hashable) -> bool:
        """A call is starting: count it, unless the connection was retired.

        Returns:
            True: the call runs on this connection and is counted until
            :meth:`ended`. False: the connection was retired meanwhile (the
            caller read a picture of the pool taken before it left); the
            call must go to another connection, and the caller ends this
            token at once with :meth:`ended`, which may say to close.
        """
        self.calls.add(token)
        return not self.retired

    def ended(self, token: Hashable) -> Close | None:
        """The call ``token`` has ended (answered, failed, cancelled, its stream done).

        Returns:
            :attr:`Close.NOW` if it was the last call on a retired connection
            that nothing else holds open; None otherwise.
        """
        self.calls.discard(token)
        if self.retired and not self._held and not self.calls:
            return self._claim()
        return None

    def retire(self, *, handed_out: bool = False) -> Close | None:
        """The connection leaves the pool: no call starts on it any more.

        Args:
            handed_out: Its channel was handed out raw (``get_channel``),
                so calls nothing counts may run on it (ignored once the pool
                has stopped, see :meth:`pool_stopped`).

        Returns:
            :attr:`Close.AT_DRAIN_END` if ``handed_out``;
            :attr:`Close.NOW` if no counted call runs;
            :attr:`Close.WHEN_LAST_ENDS` otherwise (:meth:`ended` will say);
            None if it was retired or closed before.
        """
        if self.retired or self.closed:
            return None
        self._held = held = handed_out and not self._stopped
        self.retired = True
        if held:
            return Close.AT_DRAIN_END
        if not self.calls:
            return self._claim()
        return Close.WHEN_LAST_ENDS

    def pool_stopped(self) -> Close | None:
        """The pool has stopped: a raw hand-out no longer holds the connection open.

        Now or when it is retired later; counted calls still run to their end
        (or the drain's).

        Returns:
            :attr:`Close.NOW` if the connection is retired and no counted call
            runs; None otherwise.
        """
        self._stopped = True
        self._held = False
        if self.retired and not self.calls:
            return self._claim()
        return None

    def cut(self) -> Close | None:
        """The drain has ended, or the channel is being closed without one: close now.

        Whatever still runs is cut by the close.

        Returns:
            :attr:`Close.NOW` unless it was answered before.
        """
        self.retired = True
        return self._claim()

    def _claim(self) -> Close | None:
        try:
            self._close.pop()
        except IndexError:  # closed by another caller already
            return None
        return Close.NOW

    def __repr__(self) -> str:
        state = "closed" if self.closed else "retired" if self.retired else "open"
        return f"<CallLedger {state} in_flight={len(self.calls)}>"
