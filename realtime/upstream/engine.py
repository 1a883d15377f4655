"""Engine.IO sockets that cost less per idle connection.

python-engineio keeps, for every connected socket: an asyncio.Queue for outgoing packets (four
deques, ~3 KiB even when empty), a task sleeping until the next ping, a task per websocket read
wrapped in asyncio.wait_for, and another task per outgoing wait. At 10,000 idle widgets those
are a fifth of the server's memory (docs/benchmarks.md). LeanAsyncSocket keeps the protocol
and its timings exactly and drops the extra objects:

- OutgoingQueue: the subset of asyncio.Queue python-engineio calls, on a list;
- the ping is a timer handle instead of a sleeping task;
- reads and polls are bounded with asyncio.timeout in place instead of wait_for + a task;
- a broadcast packet is encoded once for all its recipients (EncodedPacket).

python-engineio names its socket class directly and offers no hook, so use_lean_sockets()
swaps the class it instantiates. The overridden methods follow python-engineio 4.x (pinned in
pyproject.toml); tests/realtime/test_engine.py and the transport tests hold them to it. Listed in
realtime/upstream/__init__.py.
"""

from __future__ import annotations

import asyncio
import time

from engineio import async_server as engineio_async_server
from engineio import async_socket as engineio_async_socket
from engineio import exceptions as engineio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload


class EncodedPacket(eio_packet.Packet):
    """A packet encoded once, for every recipient of a broadcast.

    python-engineio encodes each queued packet again for each socket that sends it; a message
    fanned out to a conversation and an org queue was encoded some twenty times.
    """

    def __init__(self, packet_type, data) -> None:
        super().__init__(packet_type, data)
        self._encoded = super().encode()

    def encode(self, b64=False):
        if b64 and self.binary:
            return super().encode(b64=True)
        return self._encoded


class OutgoingQueue:
    """An unbounded FIFO with the asyncio.Queue methods python-engineio uses.

    One list instead of asyncio.Queue's four deques; waiters (a socket's writer, or a long-poll
    during an upgrade) are futures created only while someone waits. Same semantics: get()
    waits for an item, a cancelled get() loses nothing, join() waits until every item taken
    was marked done.
    """

    __slots__ = ("_items", "_getters", "_unfinished", "_joiners")

    def __init__(self) -> None:
        self._items: list = []
        self._getters: list[asyncio.Future] | None = None
        self._unfinished = 0
        self._joiners: list[asyncio.Future] | None = None

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            waiter = getters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def put_nowait(self, item) -> None:
        self._items.append(item)
        self._unfinished += 1
        self._wake_getter()

    async def put(self, item) -> None:
        self.put_nowait(item)

    def get_nowait(self):
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self):
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in self._getters:
                    self._getters.remove(waiter)
                if self._items and not waiter.cancelled():
                    # Woken and cancelled at once: pass the wake-up on.
                    self._wake_getter()
                raise
        return self._items.pop(0)

    def take_all(self) -> list:
        """Every queued item at once (a writer sends what is queued in one go)."""
        items, self._items = self._items, []
        return items

    def task_done(self, count: int = 1) -> None:
        if self._unfinished < count:
            raise ValueError("task_done() called too many times")
        self._unfinished -= count
        if self._unfinished == 0 and self._joiners:
            for waiter in self._joiners:
                if not waiter.done():
                    waiter.set_result(None)
            self._joiners = None

    async def join(self) -> None:
        if self._unfinished:
            waiter = asyncio.get_running_loop().create_future()
            if self._joiners is None:
                self._joiners = []
            self._joiners.append(waiter)
            await waiter


class LeanAsyncSocket(engineio_async_socket.AsyncSocket):
    """python-engineio's socket with the per-connection objects above removed."""

    def __init__(self, server, sid):
        super().__init__(server, sid)
        self.queue = OutgoingQueue()
        self._ping_handle: asyncio.TimerHandle | None = None

    async def poll(self, bounded: bool = True):
        """Wait for packets to send; the same timeout, QueueEmpty and batching as the stock.

        The websocket writer waits unbounded: a ping is queued every ping_interval while the
        socket lives, and when it ends the reader (whose reads are bounded) queues the end
        marker. A timer per wait cost a Timeout, a timer handle and its cancellation for every
        delivery.
        """
        queue = self.queue
        try:
            if bounded:
                async with asyncio.timeout(self.server.ping_interval + self.server.ping_timeout):
                    first = await queue.get()
            else:
                first = await queue.get()
        except (TimeoutError, asyncio.CancelledError):
            raise engineio_exceptions.QueueEmpty() from None
        if first is None:
            queue.task_done()
            return []
        packets = [first]
        rest = queue.take_all()
        if None in rest:
            # As the stock: packets stop at the end marker, which goes back behind whatever
            # followed it, for a later poll to report the close.
            end = rest.index(None)
            queue._items = rest[end + 1 :] + [None]
            rest = rest[:end]
        packets.extend(rest)
        queue.task_done(len(packets))
        return packets

    def schedule_ping(self):
        # As the stock: only if the previous ping cycle completed. A timer, not a task.
        if self.last_ping:
            self.last_ping = None
            loop = asyncio.get_running_loop()
            self._ping_handle = loop.call_later(self.server.ping_interval, self._ping_due)

    def _ping_due(self) -> None:
        self._ping_handle = None
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            # What send() does once check_ping_timeout passes (it does: last_ping is now).
            self.queue.put_nowait(eio_packet.Packet(eio_packet.PING))

    async def handle_post_request(self, environ):
        """A polling POST, read whole; one larger than max_http_buffer_size closes the socket.

        The stock raises ContentTooLongError and the server then calls disconnect(), whose
        close(wait=True) waits for a poll to take the CLOSE packet: with no poll pending the
        POST's handler waited forever. Closed here without waiting (a pending poll still takes
        the CLOSE packet and ends), the server finds the socket closed and answers 400.
        """
        length = int(environ.get("CONTENT_LENGTH", "0") or 0)
        if length > self.server.max_http_buffer_size:
            self.server.logger.info("%s: polling POST of %d bytes refused", self.sid, length)
            await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise engineio_exceptions.ContentTooLongError()
        # The stock reads with StreamReader.read(length), which returns what has arrived so
        # far: a large body (a 10,000-character message) was cut and refused as malformed.
        body = (await environ["wsgi.input"].readexactly(length)).decode("utf-8")
        for pkt in eio_payload.Payload(encoded_payload=body).packets:
            await self.receive(pkt)

    async def close(self, wait=True, abort=False, reason=None):
        if self._ping_handle is not None:
            self._ping_handle.cancel()
            self._ping_handle = None
        await super().close(wait=wait, abort=abort, reason=reason)

    async def _websocket_handler(self, ws):
        """python-engineio's websocket loop; each read bounded in place, not by a task."""
        timeout = self.server.ping_interval + self.server.ping_timeout
        max_size = self.server.max_http_buffer_size

        async def websocket_wait():
            data = await ws.wait()
            if data and len(data) > max_size:
                raise ValueError("packet is too large")
            return data

        if self.connected:
            # The socket was already connected over polling: this is an upgrade.
            self.upgrading = True  # hold packet sends during the upgrade
            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                return
            decoded = eio_packet.Packet(encoded_packet=pkt)
            if decoded.packet_type != eio_packet.PING or decoded.data != "probe":
                self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
                self.upgrading = False
                return
            await ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
            await self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # end the pending poll
            try:
                pkt = await websocket_wait()
            except OSError:  # pragma: no cover
                self.upgrading = False
                return
            decoded = eio_packet.Packet(encoded_packet=pkt)
            if decoded.packet_type != eio_packet.UPGRADE:
                self.upgraded = False
                self.server.logger.info(
                    "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead.",
                    self.sid,
                    pkt,
                )
                self.upgrading = False
                return
            self.upgraded = True
            self.upgrading = False
        else:
            self.connected = True
            self.upgraded = True

        # Frames go straight to aiohttp's websocket (python-engineio's wrapper checks whether
        # the send method is a coroutine function on every frame).
        sock = ws._sock
        send_str, send_bytes = sock.send_str, sock.send_bytes

        async def writer():
            while True:
                try:
                    packets = await self.poll(bounded=False)
                except engineio_exceptions.QueueEmpty:
                    break
                if not packets:
                    break  # the end marker: the connection is closing
                try:
                    for pkt in packets:
                        data = pkt.encode()
                        await (send_bytes(data) if isinstance(data, bytes) else send_str(data))
                except Exception:  # noqa: BLE001 - as the stock: a failed send ends the writer
                    break
            await ws.close()

        writer_task = asyncio.ensure_future(writer())
        self.server.logger.info("%s: Upgrade to websocket successful", self.sid)

        while True:
            try:
                async with asyncio.timeout(timeout):
                    p = await websocket_wait()
            except Exception:  # noqa: BLE001 - timeout, closed transport, oversized packet
                break
            except asyncio.CancelledError:  # pragma: no cover - the request was cancelled
                break
            if p is None:
                break  # closed by the client
            try:
                pkt = eio_packet.Packet(encoded_packet=p)
            except Exception:  # noqa: BLE001 - a client's garbage, not a server fault
                self.server.logger.info("%s: dropped an undecodable frame", self.sid)
                continue
            try:
                await self.receive(pkt)
            except engineio_exceptions.UnknownPacketError:  # pragma: no cover
                pass
            except engineio_exceptions.SocketIsClosedError:  # pragma: no cover
                self.server.logger.info("Receive error -- socket is closed")
                break
            except Exception:  # pragma: no cover
                self.server.logger.exception("Unknown receive error")

        await self.queue.put(None)  # let the writer finish
        await writer_task
        await self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)


def use_lean_sockets() -> None:
    """Make python-engineio's server create LeanAsyncSocket (it names the class directly)."""
    engineio_async_server.async_socket.AsyncSocket = LeanAsyncSocket
