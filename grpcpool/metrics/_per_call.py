"""What both exporters share for ``register(per_call=True)``: gRFC A66's per-call measures.

An exporter registered with ``per_call=True`` installs a :class:`PerCall`
recorder (:func:`grpcpool._call_metrics.install`); the pool channels, sync
and asyncio, tell it of every call and attempt (see
:mod:`grpcpool._call_metrics`). This base does what does not depend on the
metrics library: the attributes of a call (``grpc.method`` by A66's rule,
``grpc.target`` of its pool), kept per pool and method so that a call looks
them up once, and the exporter's status-labelled handles kept per status
code. A subclass writes the five instruments.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Generic, TypeVar

import grpc

from grpcpool import _call_metrics
from grpcpool.metrics._grpc_catalog import METHOD, STATUS, TARGET, method_attribute
from grpcpool.metrics._subchannels import Targets

__all__ = ["CallLabels", "PerCall"]

S = TypeVar("S")
H = TypeVar("H")


class CallLabels(Generic[S, H]):
    """The attributes of calls of one method on one pool, and the exporter's handles for them.

    Attributes:
        attributes: ``grpc.method`` and ``grpc.target``.
        started: The exporter's handle for ``attributes``
            (``grpc.client.attempt.started``).
        ended: By status code: the exporter's handle for the attributes with
            ``grpc.status`` too (made once per code by ``make``).
    """

    __slots__ = ("_make", "attributes", "ended", "started")

    def __init__(
        self,
        method: str,
        target: str,
        make_started: Callable[[dict[str, str]], S],
        make: Callable[[dict[str, str]], H],
    ) -> None:
        self.attributes = {METHOD: method, TARGET: target}
        self.started = make_started(self.attributes)
        self._make = make
        self.ended: dict[grpc.StatusCode, H] = {}

    def of(self, code: grpc.StatusCode) -> H:
        """The handle for calls that ended with ``code``."""
        handle = self.ended.get(code)
        if handle is None:
            handle = self.ended[code] = self._make({**self.attributes, STATUS: code.name})
        return handle


class PerCall(abc.ABC, Generic[S, H]):
    """A recorder of calls through the pool channels (:class:`grpcpool._call_metrics.Recorder`).

    Args:
        targets: The pools' targets (the exporter's bridge keeps them).
    """

    def __init__(self, targets: Targets) -> None:
        self._targets = targets
        self._labels: dict[tuple[str, str, bool | None], CallLabels[S, H]] = {}
        self.closed = False
        targets.on_change(self._forget)

    def install(self) -> None:
        """Starts hearing of calls."""
        _call_metrics.install(self)

    def close(self) -> None:
        """Stops hearing of calls; calls under way when it closes record nothing more."""
        self.closed = True
        _call_metrics.remove(self)

    def labels(self, pool: str, method: str, registered: bool | None) -> CallLabels[S, H]:
        key = (pool, method, registered)
        labels = self._labels.get(key)
        if labels is None:
            attribute, target = method_attribute(method, registered), self._targets.of(pool)
            labels = CallLabels(attribute, target, self._started_handle, self._handle)
            labels = self._labels.setdefault(key, labels)
        return labels

    def _forget(self, pool: str) -> None:
        """Pool ``pool`` (re)started: its target may be new, so its labels are made again."""
        for key in list(self._labels):  # one C-level copy: safe while callers add
            if key[0] == pool:
                self._labels.pop(key, None)

    @abc.abstractmethod
    def _started_handle(self, attributes: dict[str, str]) -> S:
        """What the exporter counts attempts with these attributes (no status) through."""

    @abc.abstractmethod
    def _handle(self, attributes: dict[str, str]) -> H:
        """What the exporter records calls with these attributes (status included) through."""

    @abc.abstractmethod
    def attempt_started(self, labels: CallLabels[S, H]) -> None: ...

    @abc.abstractmethod
    def attempt_ended(
        self,
        labels: CallLabels[S, H],
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None: ...

    @abc.abstractmethod
    def call_ended(self, labels: CallLabels[S, H], code: grpc.StatusCode, seconds: float) -> None: ...

    def attempt_and_call_ended(
        self,
        labels: CallLabels[S, H],
        code: grpc.StatusCode,
        seconds: float,
        sent: int,
        received: int,
    ) -> None:
        self.attempt_ended(labels, code, seconds, sent, received)
        self.call_ended(labels, code, seconds)
