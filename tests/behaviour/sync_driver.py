"""The sync pool behind the harness: ``grpcpool``'s module functions, actors and threads."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import grpc
import pykka
from pykka.messages import ProxyGetAttr

import grpcpool
from grpcpool import ChannelWorker, Config, PoolSpec, PoolStatus, Supervisor
from grpcpool._process import PROCESS
from grpcpool.core import ReadyConnection
from tests.behaviour.harness import Driver, Pending, Stub
from tests.servers import EchoStub
from tests.test_interceptors import Tagging

# Seconds a stop or a scaling request may take.
_ACTOR_TIMEOUT = 15.0


class SyncStub(Stub):
    """:class:`tests.servers.EchoStub` on a ``grpc.Channel``; calls block the caller."""

    def __init__(self, channel: grpc.Channel, calls: concurrent.futures.Executor) -> None:
        self._stub = EchoStub(channel)
        self._calls = calls

    def unary(self, payload: bytes = b"x", *, timeout: float = 5.0, **options: Any) -> bytes:
        answer: bytes = self._stub.Unary(payload, timeout=timeout, **options)
        return answer

    def begin(
        self, payload: bytes = b"x", *, timeout: float = 10.0, **options: Any
    ) -> Pending[bytes]:
        # A blocking call on a thread of the driver's: a user's thread making a call.
        return Pending(self._calls.submit(self.unary, payload, timeout=timeout, **options))

    def repeat(self, payload: bytes, *, timeout: float = 5.0) -> list[bytes]:
        return list(self._stub.Repeat(payload, timeout=timeout))

    def join(self, payloads: Sequence[bytes], *, timeout: float = 5.0) -> bytes:
        answer: bytes = self._stub.Join(iter(payloads), timeout=timeout)
        return answer

    def chat(self, payloads: Sequence[bytes], *, timeout: float = 5.0) -> list[bytes]:
        return list(self._stub.Chat(iter(payloads), timeout=timeout))


class SyncDriver(Driver):
    """Sync pools, each under a ``Supervisor`` of its own (``max_restarts=0``)."""

    kind = "sync"

    def __init__(self) -> None:
        super().__init__()
        self._supervisors: list[pykka.ActorRef[Any]] = []
        self._names: list[str] = []
        self._stubs: dict[str, SyncStub] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def _calls(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=16, thread_name_prefix="behaviour-caller"
            )
        return self._executor

    def start(self, config: Config, name: str | None = "behaviour") -> str:
        spec = PoolSpec(config, name=name)
        self._supervisors.append(Supervisor.start(children=[spec], max_restarts=0))
        self._names.append(spec.pool_name)
        self.name = spec.pool_name
        return self.name

    def stop(self, name: str | None = None) -> None:
        grpcpool.stop(name or self.name)

    def _close(self) -> None:
        try:
            for name in reversed(self._names):
                with contextlib.suppress(grpcpool.GrpcPoolError):
                    grpcpool.stop(name)
            for supervisor in reversed(self._supervisors):
                if supervisor.is_alive():
                    supervisor.stop(timeout=_ACTOR_TIMEOUT)
        finally:
            if self._executor is not None:
                # The pools are stopped: calls still running fail now.
                self._executor.shutdown(wait=True, cancel_futures=True)

    # --- calls --------------------------------------------------------------------------

    def stub(self, name: str | None = None) -> SyncStub:
        name = name or self.name
        stub = self._stubs.get(name)
        if stub is None:
            stub = self._stubs[name] = self.new_stub(name)
        return stub

    def new_stub(self, name: str | None = None) -> SyncStub:
        return SyncStub(grpcpool.channel(name or self.name), self._calls)

    def raw_stub(self, name: str | None = None) -> SyncStub:
        return SyncStub(grpcpool.get_channel(name or self.name), self._calls)

    def channel_ready(self, timeout: float, name: str | None = None) -> bool:
        channel = grpcpool.channel(name or self.name)
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        finally:
            channel.close()  # its subscriptions, not the pool
        return True

    def get_channel(self, name: str | None = None) -> Any:
        return grpcpool.get_channel(name or self.name)

    # --- state and control ----------------------------------------------------------------

    def connections(self, name: str | None = None) -> tuple[ReadyConnection, ...]:
        return PROCESS.pools[name or self.name].view.connections

    def status(self, name: str | None = None) -> PoolStatus:
        return grpcpool.status(name or self.name)

    def await_ready(
        self, timeout: float | None = 5.0, min_ready: int = 1, name: str | None = None
    ) -> None:
        grpcpool.await_ready(name or self.name, timeout=timeout, min_ready=min_ready)

    def begin_await_ready(
        self, timeout: float = 5.0, min_ready: int = 1, name: str | None = None
    ) -> Pending[None]:
        return Pending(self._calls.submit(self.await_ready, timeout, min_ready, name or self.name))

    def scale_up(self, count: Any, name: str | None = None) -> int:
        return grpcpool.scale_up(name or self.name, count)

    def scale_down(self, count: Any, name: str | None = None) -> int:
        return grpcpool.scale_down(name or self.name, count)

    def resize(self, target: Any, name: str | None = None) -> int:
        return grpcpool.resize(name or self.name, target)

    def crash_worker(self, worker_id: str, name: str | None = None) -> None:
        name = name or self.name
        for ref in pykka.ActorRegistry.get_by_class(ChannelWorker):
            # The worker's pool and id, asked of the actor (pykka's own message,
            # as the supervisor asks a child its URN).
            with contextlib.suppress(pykka.ActorDeadError):
                pool = ref.ask(ProxyGetAttr(attr_path=("_parts", "name")), timeout=5)
                wid = ref.ask(ProxyGetAttr(attr_path=("_worker_id",)), timeout=5)
                if (pool, wid) == (name, worker_id):
                    ref.tell("crash")  # not a message a worker knows: it crashes
                    return
        raise LookupError(f"no live worker {worker_id!r} in pool {name!r}")

    def _wait_change(self, name: str, timeout: float) -> None:
        entry = PROCESS.pools.get(name)
        if entry is None:  # nothing to be woken by: look again after the interval
            time.sleep(timeout)
            return
        with entry.changed:
            entry.changed.wait(timeout)

    # --- interceptors -------------------------------------------------------------------------

    def interceptors(self, seen: collections.Counter[str]) -> list[Any]:
        tagging = Tagging()
        tagging.seen = seen
        return [tagging]
