"""A fault-injection TCP proxy on 127.0.0.1 for the reliability tests.

:class:`FaultProxy` listens on a free port of 127.0.0.1 and forwards every
accepted connection to a target on the loopback interface. An asyncio event
loop on its own thread (named ``faultproxy``) does the work; the test thread
switches the fault mode at any time. Every mode switch is synchronous: when
the call returns the new mode is in force for existing and new connections
(a ``reset()`` has already sent its RSTs, a ``refuse()`` has closed the
listening socket, a ``black_hole()`` forwards no further byte).

Modes:

* ``pass_through()``: forward both directions at once (the initial mode).
* ``latency(up=, down=)``: delay each chunk by ``up`` seconds on its way to
  the target and ``down`` seconds on its way back, counted from when the
  proxy read it, keeping the byte order. The delay in force decides: a chunk
  queued under ``latency()`` leaves at once after ``pass_through()``, and
  waits longer if the latency grows.
* ``black_hole()``: forward nothing in either direction but keep every socket
  open. Data, EOFs and resets are held, not dropped (like a network partition
  under TCP retransmission), so leaving the mode delivers them. New
  connections are accepted; they reach the target only when the hole ends.
* ``reset()``: RST every current connection on both sides (``SO_LINGER``
  (1, 0), then abort) and keep resetting new connections right after accept
  while the mode lasts.
* ``refuse()``: close the listening socket, so connects fail with
  ``ECONNREFUSED``. Connections already open are left alone and forward
  without delay. Any other mode listens again on the same port.

Example::

    with FaultProxy(server.port) as proxy:
        channel = grpc.insecure_channel(proxy.address)
        proxy.black_hole()
        ...
        proxy.pass_through()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["pass", "latency", "black_hole", "reset", "refuse"]

# Upper bound on every wait: thread start and join, mode switches, upstream connects.
TIMEOUT_SECONDS = 5.0
# Bytes read per chunk and chunks held per direction before reading pauses.
CHUNK_BYTES = 65536
QUEUE_CHUNKS = 64
LISTEN_HOST = "127.0.0.1"

_EOF = b""
_LINGER_RST = struct.pack("ii", 1, 0)


class _PeerError(Exception):
    """The source side of a direction failed; the connection is reset."""


# An item in a direction's queue: (loop time read, bytes | _EOF | the source's error).
_Item = tuple[float, bytes | BaseException]


@dataclass(eq=False)
class _Connection:
    """One accepted client connection and, once connected, its upstream side."""

    client: asyncio.StreamWriter
    handler: asyncio.Task[None]
    upstream: asyncio.StreamWriter | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def rst(self) -> None:
        """RSTs both sides; the handler notices and cleans up."""
        for writer in (self.client, self.upstream):
            if writer is not None:
                _rst(writer)

    def kill(self) -> None:
        """RSTs both sides and cancels the handler (from another task only)."""
        self.rst()
        self.handler.cancel()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Closes a stream with an RST: ``SO_LINGER`` (1, 0), then abort."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:port`` to ``target_host:target_port`` with faults.

    Args:
        target_port: Port the proxy forwards to.
        target_host: A loopback IP address (default ``127.0.0.1``); names are
            refused so that nothing resolves or leaves the machine.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. The
    mode methods and the counters are safe to use from any thread but the
    proxy's own. A stopped proxy cannot be started again.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        try:
            loopback = ipaddress.ip_address(target_host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"target_host must be a loopback IP address, not {target_host!r}")
        if not 0 < target_port < 65536:
            raise ValueError(f"target_port out of range: {target_port}")
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._lock = threading.Lock()  # guards lifecycle and counters
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._accepted = 0
        self._bytes_up = 0
        self._bytes_down = 0
        # Loop-thread state.
        self._mode: Mode = "pass"
        self._delay_up = 0.0
        self._delay_down = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._switching = asyncio.Lock()
        self._changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Starts the loop thread and listens on a free port (``self.port``). Idempotent."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("FaultProxy was stopped; make a new one")
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._thread = threading.Thread(
                target=self._run, args=(loop,), name="faultproxy", daemon=True
            )
            self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Closes the listener and every connection, stops the loop, joins the thread.

        Idempotent; safe before :meth:`start`.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(TIMEOUT_SECONDS)
        finally:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(loop.stop)
            thread.join(TIMEOUT_SECONDS)
        if thread.is_alive():
            raise RuntimeError("faultproxy thread did not stop")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- modes ----------------------------------------------------------------

    def pass_through(self) -> None:
        """Forwards both directions without delay (and listens, if refusing)."""
        self._call(self._switch("pass"))

    def latency(self, up: float = 0.0, down: float = 0.0) -> None:
        """Delays each chunk ``up`` seconds towards the target, ``down`` seconds back."""
        for name, value in (("up", up), ("down", down)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        self._call(self._switch("latency", up, down))

    def black_hole(self) -> None:
        """Stops forwarding in both directions; sockets stay open, data is held."""
        self._call(self._switch("black_hole"))

    def reset(self) -> None:
        """RSTs every current connection, and every new one while the mode lasts."""
        self._call(self._switch("reset"))

    def refuse(self) -> None:
        """Closes the listening socket: connects are refused. Open connections stay."""
        self._call(self._switch("refuse"))

    # --- state ----------------------------------------------------------------

    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"``, the target to give a gRPC channel."""
        return f"{LISTEN_HOST}:{self.port}"

    @property
    def mode(self) -> Mode:
        """The current mode: pass, latency, black_hole, reset or refuse."""
        return self._mode

    @property
    def connections_accepted(self) -> int:
        """Client connections accepted since start (reset ones included)."""
        with self._lock:
            return self._accepted

    @property
    def active_connections(self) -> int:
        """Client connections the proxy holds open now."""
        with self._lock:
            return len(self._connections)

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded from clients to the target."""
        with self._lock:
            return self._bytes_up

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded from the target to clients."""
        with self._lock:
            return self._bytes_down

    def __repr__(self) -> str:
        return (
            f"FaultProxy({self.address} -> {self.target_host}:{self.target_port}, "
            f"mode={self._mode}, active={self.active_connections})"
        )

    # --- loop thread ----------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        """Runs a coroutine on the loop and waits for it (at most TIMEOUT_SECONDS)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            stopped = self._stopped
        if loop is None or thread is None or stopped:
            coro.close()
            raise RuntimeError("FaultProxy is not running; call start() first")
        if threading.current_thread() is thread:
            coro.close()
            raise RuntimeError("FaultProxy methods cannot be called from its own loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            future.result(TIMEOUT_SECONDS)
        except TimeoutError:
            future.cancel()
            raise

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        server = await asyncio.start_server(
            self._on_accept, LISTEN_HOST, self.port, reuse_address=True
        )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    async def _switch(self, mode: Mode, up: float = 0.0, down: float = 0.0) -> None:
        # Switches from several threads interleave at their awaits (start_server
        # yields once after binding): one at a time, or two would bind the port.
        async with self._switching:
            await self._switch_now(mode, up, down)

    async def _switch_now(self, mode: Mode, up: float, down: float) -> None:
        if mode == "refuse":
            if self._server is not None:
                # Closes the listening socket at once; accepted connections are not affected.
                self._server.close()
                self._server = None
        elif self._server is None:
            await self._listen()  # the same port; raises (mode unchanged) if it is taken
        self._mode = mode
        self._delay_up, self._delay_down = up, down
        self._changed.set()  # wakes writers holding a chunk for a delay
        self._changed = asyncio.Event()
        if mode == "black_hole":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "reset":
            await self._rst_all()

    def _resetting(self) -> bool:
        return self._mode == "reset"

    async def _rst_all(self) -> None:
        connections = list(self._connections)
        for connection in connections:
            connection.kill()
        # Let the handlers finish so the sockets are closed (RST sent) when we return.
        handlers = [c.handler for c in connections]
        if handlers:
            await asyncio.wait(handlers, timeout=TIMEOUT_SECONDS)

    async def _shutdown(self) -> None:
        async with self._switching:
            await self._close_all()

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._flowing.set()
        await self._rst_all()

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        connection = _Connection(client=writer, handler=handler)
        with self._lock:
            self._accepted += 1
            self._connections.add(connection)
        try:
            if self._resetting():
                _rst(writer)
                return
            await self._flowing.wait()  # a black hole delays the upstream connect too
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target_host, self.target_port),
                    TIMEOUT_SECONDS,
                )
            except (OSError, TimeoutError):
                _rst(writer)  # the target is down: the client sees a reset
                return
            connection.upstream = up_writer
            if self._resetting():  # switched while connecting
                connection.rst()
                return
            await self._forward(connection, reader, up_reader, up_writer)
        except asyncio.CancelledError:
            pass  # reset or shutdown: connection.kill() already closed the sockets
        finally:
            for pump in connection.pumps:
                pump.cancel()
            if connection.pumps:
                await asyncio.wait(connection.pumps, timeout=TIMEOUT_SECONDS)
            for side in (connection.client, connection.upstream):
                if side is not None and not side.transport.is_closing():
                    side.transport.abort()
            with self._lock:
                self._connections.discard(connection)

    async def _forward(
        self,
        connection: _Connection,
        client_reader: asyncio.StreamReader,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        up_queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        down_queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_CHUNKS)
        writers = [
            asyncio.create_task(self._write(up_queue, up_writer, up=True)),
            asyncio.create_task(self._write(down_queue, connection.client, up=False)),
        ]
        connection.pumps = [
            *writers,
            asyncio.create_task(self._read(client_reader, up_queue, up=True)),
            asyncio.create_task(self._read(up_reader, down_queue, up=False)),
        ]
        done, _ = await asyncio.wait(writers, return_when=asyncio.FIRST_EXCEPTION)
        errors = [task.exception() for task in done]  # retrieve every one, so none is logged
        if any(error is not None for error in errors):
            connection.rst()  # propagate a reset (or a write failure) to both sides
        else:  # both directions ended with EOF
            for side in (connection.client, up_writer):
                side.close()

    async def _read(
        self, source: asyncio.StreamReader, queue: asyncio.Queue[_Item], *, up: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data: bytes | BaseException = await source.read(CHUNK_BYTES)
            except OSError as error:
                data = error
            await queue.put((loop.time(), data))
            if not isinstance(data, bytes) or data == _EOF:
                return

    async def _write(
        self, queue: asyncio.Queue[_Item], sink: asyncio.StreamWriter, *, up: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            read_at, data = await queue.get()
            while True:  # until flowing and the delay in force now has passed
                if not self._flowing.is_set():
                    await self._flowing.wait()
                    continue
                delay = self._delay_up if up else self._delay_down
                wait = read_at + delay - loop.time()
                if wait <= 0:
                    break
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await changed.wait()  # a mode switch re-evaluates the delay
            # No await between the checks above and the write: a black hole
            # switched on from the test thread stops the very next chunk.
            if isinstance(data, BaseException):
                raise _PeerError(str(data))
            if data == _EOF:
                if sink.can_write_eof():
                    sink.write_eof()
                return
            sink.write(data)
            with self._lock:
                if up:
                    self._bytes_up += len(data)
                else:
                    self._bytes_down += len(data)
            await sink.drain()
