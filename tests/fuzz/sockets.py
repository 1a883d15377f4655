"""Socket.IO clients for the fuzz tests and the checks on every answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import socketio
from socketio import packet

from tests.factories import Recorder
from tests.fuzz import strategies as fz
from tests.fuzz.harness import changes, fault, short
from tests.fuzz.world import World

# A handler answers in milliseconds; no answer in this long is no answer.
ACK_TIMEOUT = 2.0
# Frames larger than CHATD_MAX_HTTP_BUFFER_SIZE (64 KiB) close the socket by design; cases
# stay under it.
MAX_FRAME = 60_000

EVENTS = (
    "send_message",
    "claim_conversation",
    "join_conversation",
    "leave_conversation",
    "join_queue",
    "join_org_presence",
    "user_typing",
    "mark_read",
)


def frame_size(event: str, payload: Any) -> int:
    return len(json.dumps([event, payload], default=lambda b: "x" * (len(b) + 40)))


class StdlibJsonPacket(packet.Packet):
    """Packets as a client outside this process encodes them: with the stdlib json module,
    which writes lone surrogates as \\udXXX escapes and NaN as NaN. (The server under test
    sets orjson on python-socketio's shared Packet class, which would refuse those on our
    side before the server ever saw them.)"""

    json = json


class Clients:
    """The agent's, a joined visitor's and an anonymous socket, reconnected when one was
    dropped (a dropped socket fails the example that dropped it, not the next one)."""

    def __init__(self, world: World, fresh: bool = False) -> None:
        self.world = world
        self.fresh = fresh  # a new socket for every example: no state carried between them
        self.recs: dict[str, Recorder] = {}

    async def get(self, who: str) -> Recorder:
        rec = self.recs.get(who)
        if rec is not None and self.fresh:
            if rec.client.connected:
                await rec.client.disconnect()
            rec = None
        if rec is None or not rec.client.connected:
            rec = await self._connect(who)
            self.recs[who] = rec
        return rec

    async def _connect(self, who: str) -> Recorder:
        f = self.world.factory
        sio = socketio.AsyncClient(reconnection=False, serializer=StdlibJsonPacket)
        rec = Recorder(sio)
        headers = {"Cookie": f"session={self.world.owner.cookie}"} if who == "agent" else {}
        await sio.connect(f.url, headers=headers, transports=["websocket"], wait_timeout=10)
        f._clients.append(sio)
        if who == "visitor":
            conv = self.world.conv
            ack = await rec.call(
                "join_conversation",
                {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]},
            )
            assert "error" not in ack, ack
        return rec


async def _call(world: World, rec: Recorder, event: str, payload: Any, mark: int) -> Any:
    """The ack, or a fault: none within ACK_TIMEOUT, or none shortly after the server logged
    an error (a frame it failed to decode is never answered; no need to wait it out)."""
    watch = world.watch
    call = asyncio.ensure_future(rec.client.call(event, payload, timeout=ACK_TIMEOUT))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ACK_TIMEOUT
    while not call.done() and loop.time() < deadline:
        await asyncio.wait({call}, timeout=0.05)
        if not call.done() and watch.since(mark):
            await asyncio.wait({call}, timeout=0.3)
            break
    if call.done() and not call.cancelled() and call.exception() is None:
        return call.result()
    call.cancel()
    try:
        await call
    except (asyncio.CancelledError, socketio.exceptions.TimeoutError):
        pass
    raise fault("no_ack", watch.cause(mark))(
        f"no ack for {event!r} {short(payload)}; connected={rec.client.connected}; "
        f"server log: {watch.since(mark)}"
    )


async def emit_and_check(world: World, clients: Clients, case: tuple[str, str, Any]) -> Any:
    """Send one event and hold the answer to the rules for any input:

    - an ack arrives, within ACK_TIMEOUT, as a JSON object, and the socket stays connected;
    - a refusal is {"error": {...}} with a code other than internal_error;
    - a refused event stored nothing and changed nothing;
    - the server logged no error or traceback.
    """
    who, event, payload = case
    rec = await clients.get(who)
    before = await world.snapshot.current()
    world.snapshot.invalidate()  # a failure before the `take` below leaves no stale state
    watch = world.watch
    mark = watch.mark()
    ack = await _call(world, rec, event, payload, mark)
    logged = watch.since(mark)
    if not rec.client.connected:
        raise fault("dropped", watch.cause(mark))(f"the server dropped the socket after {event!r}")
    if not isinstance(ack, dict):
        raise fault("ack_not_object", watch.cause(mark))(
            f"the ack of {event!r} {short(payload)} is not a JSON object: {short(ack)}"
        )
    if "error" in ack:
        code = ack["error"].get("code") if isinstance(ack["error"], dict) else None
        if code == "internal_error":
            raise fault("internal_error", watch.cause(mark))(
                f"internal_error for {event!r} {short(payload)}; server log: {logged}"
            )
        assert isinstance(code, str) and code, f"an error without a code: {short(ack)}"
    if logged:
        raise fault("logged_error", watch.cause(mark))(
            f"the server logged errors for {event!r} {short(payload)}: {logged}"
        )
    after = await world.snapshot.take()
    if "error" not in ack and fz.has_unstorable(payload):
        raise fault("accepted_unstorable")(
            f"{event!r} accepted a NUL or lone surrogate: {short(payload)} -> {short(ack)}"
        )
    if "error" in ack:
        diff = changes(before, after)
        if diff:
            raise fault("stored_on_refusal", "_".join(sorted(diff)))(
                f"refused {event!r} ({ack['error']['code']}) still changed {diff}"
            )
    return ack
