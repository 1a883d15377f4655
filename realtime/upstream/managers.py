"""The client managers: python-socketio's own, with a replay gate and local delivery.

The managers add a replay gate to python-socketio's own managers. While a socket that
reconnected is being replayed what it missed (join_conversation with last_seq), live
events for it are held and then delivered after the replay, so the client sees every message
once and in seq order. The gate sits below the Redis manager's local delivery, so it works the
same on one process and on many.

The Redis manager also repairs live delivery after a fan-out outage: whenever its subscription
is (re)established it announces, to its own sockets, the head seq of every conversation room
they are in (`conversation_head`), and clients fetch what they lack. Upstream symbols
overridden (python-socketio 5.18.1): AsyncRedisManager._publish, _redis_listen_with_retries,
_listen.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet
from socketio.async_manager import AsyncManager

from realtime import events
from realtime.events import MESSAGE_RECEIVED
from realtime.upstream.engine import EncodedPacket
from server import rooms

log = logging.getLogger(__name__)

# How long after a replay late live copies of replayed messages are still filtered out.
WATERMARK_SECONDS = 10.0
# The subscriber retries a lost Redis at this pace (python-socketio backs off to 60 s, which
# left other processes' messages undelivered for that long after Redis was back).
RESUBSCRIBE_FIRST_SLEEP = 0.25
RESUBSCRIBE_MAX_SLEEP = 1.0
# A head announcement that cannot read the database retries this often, this many times.
ANNOUNCE_RETRY_SECONDS = 1.0
ANNOUNCE_ATTEMPTS = 60
# How often the head of conversations whose messages could not be published is offered again.
REANNOUNCE_SECONDS = 1.0
# Events handed to local sockets between two yields to the event loop while announcing.
ANNOUNCE_YIELD_EVERY = 256
_CONV_ROOM = rooms.conversation("")

HeadLookup = Callable[[list[str]], Awaitable[dict[str, int]]]


class ReplayGateMixin(AsyncManager):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: dict[str, list[tuple[str, object, str]]] = {}
        self._watermarks: dict[str, dict[str, int]] = {}
        # (namespace, sid) -> the rooms it is in, kept beside python-socketio's room table.
        self._rooms_of: dict[tuple[str, str], set] = {}

    # ---- room index ------------------------------------------------------------------------
    # python-socketio finds a socket's rooms by testing every room of the namespace, so each
    # disconnect costs O(all rooms): with thousands of visitors reconnecting at once that was
    # the largest item in the profile (a quadratic storm). The index makes it O(own rooms).

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        key = (namespace, sid)
        rooms = self._rooms_of.get(key)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._rooms_of[key]

    def basic_disconnect(self, sid, namespace, **kwargs):
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        # What python-socketio's basic_disconnect does after leaving the rooms.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid, namespace):
        return [r for r in self._rooms_of.get((namespace, sid), ()) if r is not None]

    def hold(self, sid: str) -> None:
        self._held.setdefault(sid, [])

    async def release(self, sid: str, conversation_id: str, replayed_up_to: int) -> None:
        """Deliver what was held, without messages the replay already sent."""
        self._set_watermark(sid, conversation_id, replayed_up_to)
        while True:
            held = self._held.get(sid)
            if not held:
                self._held.pop(sid, None)
                return
            self._held[sid] = []
            for event, data, namespace in held:
                if not self._already_sent(sid, event, data):
                    await self.send_direct(sid, event, data, namespace)

    def _set_watermark(self, sid: str, conversation_id: str, seq: int) -> None:
        marks = self._watermarks.setdefault(sid, {})
        marks[conversation_id] = max(seq, marks.get(conversation_id, 0))
        asyncio.get_running_loop().call_later(
            WATERMARK_SECONDS, self._drop_watermark, sid, conversation_id, marks[conversation_id]
        )

    def _drop_watermark(self, sid: str, conversation_id: str, seq: int) -> None:
        marks = self._watermarks.get(sid)
        if marks and marks.get(conversation_id) == seq:
            del marks[conversation_id]
            if not marks:
                del self._watermarks[sid]

    def forget(self, sid: str) -> None:
        self._held.pop(sid, None)
        self._watermarks.pop(sid, None)

    def _already_sent(self, sid: str, event: str, data) -> bool:
        if event != MESSAGE_RECEIVED or not isinstance(data, dict):
            return False
        marks = self._watermarks.get(sid)
        if not marks:
            return False
        mark = marks.get(data.get("conversation_id"))
        return mark is not None and data.get("seq", 0) <= mark

    async def send_direct(self, sid: str, event: str, data, namespace: str = "/") -> None:
        """Send to one local socket, bypassing the gate and the message queue."""
        await self._deliver(event, data, namespace, sid, None)

    async def _deliver(self, event, data, namespace, room, skip_sid) -> None:
        """Local delivery of one event to a room's sockets on this process.

        python-socketio's AsyncManager.emit encodes once but then starts one asyncio task per
        recipient and waits for them all. Handing a packet to a socket is a put on its
        unbounded outgoing queue, which never suspends, so we hand it over in a plain loop:
        the same packets, in the same order, without a task per delivery (which the profile
        showed as the largest share of fan-out cost). A socket that closed meanwhile is
        skipped, as the task version skipped it by losing the task's exception.
        """
        namespace = namespace or "/"
        if namespace not in self.rooms:
            return
        if isinstance(data, tuple):
            data = list(data)
        elif data is not None:
            data = [data]
        else:
            data = []
        recipients = [
            eio_sid
            for sid, eio_sid in self.get_participants(namespace, room)
            if skip_sid is None or sid not in skip_sid
        ]
        if not recipients:
            return
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=[event, *data]
        ).encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        eio_pkts = [EncodedPacket(eio_packet.MESSAGE, p) for p in encoded]
        eio = self.server.eio
        for eio_sid in recipients:
            socket = eio.sockets.get(eio_sid)
            if socket is None or socket.closed:
                continue
            try:
                for pkt in eio_pkts:
                    await socket.send(pkt)
            except Exception:  # noqa: BLE001 - one gone socket must not stop the others
                log.debug("dropped %s for closed socket %s", event, eio_sid)

    async def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        room = to or room
        if (self._held or self._watermarks) and room is not None and callback is None:
            skips = (
                []
                if skip_sid is None
                else (list(skip_sid) if isinstance(skip_sid, list) else [skip_sid])
            )
            for sid, _eio_sid in self.get_participants(namespace or "/", room):
                if sid in skips:
                    continue
                held = self._held.get(sid)
                if held is not None:
                    held.append((event, data, namespace or "/"))
                    skips.append(sid)
                elif self._already_sent(sid, event, data):
                    skips.append(sid)
            skip_sid = skips
        if callback is None and not kwargs:
            if skip_sid is not None and not isinstance(skip_sid, list):
                skip_sid = [skip_sid]
            return await self._deliver(event, data, namespace, room, skip_sid)
        return await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )


class GatedManager(ReplayGateMixin):
    """The single-process manager: every emit takes the encode-once local delivery.

    python-socketio's AsyncServer.emit always passes `ignore_queue=` to the manager; it only
    means something with a message queue, so it is dropped here, and the emit takes the same
    `_deliver` path as the Redis manager's local delivery (which AsyncPubSubManager.emit
    reaches without keyword arguments).
    """

    async def emit(
        self, event, data, namespace, room=None, skip_sid=None, callback=None, to=None, **kwargs
    ):
        kwargs.pop("ignore_queue", None)
        return await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, to=to,
            **kwargs,
        )


class GatedRedisManager(socketio.AsyncRedisManager, ReplayGateMixin):
    """The Redis manager, publishing in pipelined batches.

    The stock manager awaits one PUBLISH round trip per emit, so a busy process spends its
    fan-out waiting on Redis one event at a time. Here emits append to an ordered buffer that
    one task writes out with a pipeline: one round trip for everything published meanwhile,
    in the same order (other processes see events in publish order, as before). The local
    delivery still happens inside emit, before the publish, as in the stock manager.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._outbox: list[str] = []
        self._flusher: asyncio.Task | None = None
        # conversation ids -> their last_seq; set by the composition root.
        self.head_lookup: HeadLookup | None = None
        self._announcer: asyncio.Task | None = None
        self._announce_again = False
        # conversation id -> the highest seq whose message_received never reached Redis.
        self._unpublished: dict[str, int] = {}
        self._reannouncer: asyncio.Task | None = None
        # token -> the future a readiness probe waits on (see probe()).
        self._probes: dict[str, asyncio.Future] = {}
        self.publish_errors = 0  # batches that could not be written to Redis (/metrics)

    async def probe(self, timeout: float = 2.0) -> None:
        """A round trip through the fan-out channel (/readyz): publish a probe and wait for
        this process's own subscription to receive it. Raises TimeoutError when it does not
        come back, or the publish's error. Other processes ignore the probe (an unknown
        method); ours never reaches python-socketio's handlers (_listen takes it out)."""
        token = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self._probes[token] = waiter
        try:
            async with asyncio.timeout(timeout):
                if not self.connected:
                    self._redis_connect()
                await self.redis.publish(self.channel, _PROBE_PREFIX + token.encode() + b'"}')
                await waiter
        finally:
            self._probes.pop(token, None)

    def _probe_received(self, data: bytes) -> None:
        token = data[len(_PROBE_PREFIX) : len(_PROBE_PREFIX) + 16].decode("ascii", "replace")
        waiter = self._probes.get(token)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _publish(self, data):
        self._outbox.append(self.json.dumps(data))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_outbox())

    async def _flush_outbox(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            for attempt in (1, 2):
                try:
                    if not self.connected:
                        self._redis_connect()
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for message in batch:
                            pipe.publish(self.channel, message)
                        await pipe.execute()
                    break
                except Exception as exc:  # noqa: BLE001 - logged; Redis may come back
                    self.connected = False
                    if attempt == 2:
                        self.publish_errors += 1
                        log.error("cannot publish %d events to redis: %s", len(batch), exc)
                        self._dropped(batch)

    async def flush_published(self, timeout: float = 5.0) -> None:
        """Wait until everything emitted so far has been written to Redis."""
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(flusher), timeout)
            except TimeoutError:
                log.warning("redis publish still pending after %.0f s", timeout)

    # ---- live-delivery repair after a fan-out outage ---------------------------------------
    # While Redis is down, what other processes commit reaches none of our sockets, and our
    # own publishes are dropped (other processes' sockets miss them). When our subscription
    # is back, we read every conversation room's head seq and tell the room's local sockets.
    # The order closes the window between Redis returning and the resubscribe: a message
    # committed before the read is covered by the head; one committed after it is published
    # after that commit, so after our SUBSCRIBE was confirmed, and arrives live. Every
    # process resubscribes, so each one's head covers the publishes others dropped.

    async def _redis_listen_with_retries(self):
        """Like python-socketio's, with a subscriber client of its own (a publish that
        reconnects must not swap the connection under the listener), subscribe
        confirmations passed through (they mark the moment live delivery resumed, also
        after redis-py reconnected by itself), and a short retry pace."""
        retry_sleep = RESUBSCRIBE_FIRST_SLEEP
        while True:
            client = self._get_redis_module().Redis.from_url(self.redis_url, **self.redis_options)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                retry_sleep = RESUBSCRIBE_FIRST_SLEEP
                async for message in pubsub.listen():
                    yield message
            except Exception as exc:  # noqa: BLE001 - Redis is down or the link broke
                log.warning("redis subscription lost (%s); retrying in %.2f s", exc, retry_sleep)
            finally:
                await _close_quietly(pubsub, client)
            await asyncio.sleep(retry_sleep)
            retry_sleep = min(retry_sleep * 2, RESUBSCRIBE_MAX_SLEEP)

    async def _listen(self):
        channel = self.channel.encode("utf-8")
        async for message in self._redis_listen_with_retries():
            if message.get("channel") != channel:
                continue
            if message.get("type") == "subscribe":
                self.announce_heads()
            elif message.get("type") == "message" and "data" in message:
                data = message["data"]
                if isinstance(data, bytes) and data.startswith(_PROBE_PREFIX):
                    self._probe_received(data)
                    continue
                yield data

    def announce_heads(self) -> None:
        """Announce (soon, once) every local conversation room's head seq to its sockets."""
        if self._announcer is not None and not self._announcer.done():
            self._announce_again = True
            return
        self._announcer = asyncio.get_running_loop().create_task(self._announce_loop())

    async def _announce_loop(self) -> None:
        while True:
            self._announce_again = False
            await self._announce_once()
            if not self._announce_again:
                return

    async def _announce_once(self) -> None:
        lookup = self.head_lookup
        if lookup is None:
            return
        for attempt in range(1, ANNOUNCE_ATTEMPTS + 1):
            ids = [
                room[len(_CONV_ROOM) :]
                for room in self.rooms.get("/", {})
                if isinstance(room, str) and room.startswith(_CONV_ROOM)
            ]
            if not ids:
                return
            try:
                heads = await lookup(ids)
                break
            except Exception as exc:  # noqa: BLE001 - the database may be down too
                if attempt == ANNOUNCE_ATTEMPTS:
                    log.error("cannot read conversation heads to announce: %s", exc)
                    return
                await asyncio.sleep(ANNOUNCE_RETRY_SECONDS)
        for n, (conversation_id, last_seq) in enumerate(heads.items(), 1):
            ev = events.conversation_head(conversation_id, last_seq)
            # Local sockets only (each process announces to its own), through the replay gate.
            await ReplayGateMixin.emit(self, ev.name, ev.payload, "/", room=ev.room)
            if n % ANNOUNCE_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        log.info("announced the head of %d conversations after (re)subscribing", len(heads))

    # A publish can fail while the other processes' subscriptions stay up (they then have no
    # reason to announce anything): the heads of the conversations whose messages were
    # dropped are published instead, once Redis takes publishes again.

    def _dropped(self, batch: list[str]) -> None:
        for raw in batch:
            try:
                message = self.json.loads(raw)
                if message.get("method") != "emit" or message.get("event") not in (
                    MESSAGE_RECEIVED,
                    events.CONVERSATION_HEAD,
                ):
                    continue
                payload = message["data"][0]
                conversation_id = payload["conversation_id"]
                seq = int(payload.get("seq", payload.get("last_seq")))
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                continue
            if seq > self._unpublished.get(conversation_id, -1):
                self._unpublished[conversation_id] = seq
        if self._unpublished and (self._reannouncer is None or self._reannouncer.done()):
            self._reannouncer = asyncio.get_running_loop().create_task(self._reannounce())

    async def _reannounce(self) -> None:
        while self._unpublished:
            await asyncio.sleep(REANNOUNCE_SECONDS)
            heads, self._unpublished = self._unpublished, {}
            for conversation_id, last_seq in heads.items():
                ev = events.conversation_head(conversation_id, last_seq)
                # Other processes only: our own sockets had the messages. A drop comes back
                # through _dropped, and is offered again.
                await self._publish(
                    {
                        "method": "emit",
                        "event": ev.name,
                        "data": [ev.payload],
                        "binary": False,
                        "namespace": "/",
                        "room": ev.room,
                        "skip_sid": None,
                        "callback": None,
                        "host_id": self.host_id,
                    }
                )


_PROBE_PREFIX = b'{"method":"chatd_probe","token":"'


async def _close_quietly(pubsub, client) -> None:
    for closing in (pubsub.aclose, client.aclose):
        try:
            await closing()
        except Exception:  # noqa: BLE001, S110 - the connection is already gone
            pass
