"""Property-based fuzzing below the Socket.IO client: raw Engine.IO websocket frames.

A real client library never sends most of these, an attacker does: events with no arguments
(`42[]`), non-list payloads, binary placeholders that point at attachments that never come,
huge or negative ack ids, JSON the server's decoder refuses (lone surrogates, NaN, 10,000
levels of nesting) behind a valid ack id. Whatever the frame: the server logs no error or
traceback; an event packet with an ack id is answered, with an error that is not
`internal_error`; and the server keeps answering (on the same socket if it stayed open).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

import aiohttp
from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.harness import fault, search, short
from tests.fuzz.sockets import EVENTS
from tests.rest.helpers import elsewhere

ANSWER_TIMEOUT = 2.0
PROBE_ID = 987654


@dataclass(frozen=True)
class Frames:
    who: str  # "anonymous" or "agent"
    frames: tuple[str | bytes, ...]
    ack_id: int | None  # the id an answer must carry; None when none is owed

    def __repr__(self) -> str:
        shown = ", ".join(short(f, 160) for f in self.frames)
        return f"Frames({self.who}, [{shown}], ack_id={self.ack_id})"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


MALFORMED = (
    "42[]",
    "42",
    "42[",
    "42{}",
    '42"join_queue"',
    "42[1]",
    "42[null]",
    "42[[]]",
    '42["join_queue"',
    '42[{"a":1}]',
    "4",
    "41",
    "43[]",
    "431[]",
    "44",
    "44{}",
    "49",
    "4x",
    "40",
    '40{"token":1}',
    "40/nope,",
    '42/nope,["join_queue"]',
    "42/,[]",
    "6",
    "5",
    "3",
    "",
    "x",
    '42["\\u0000"]',
)
LYING_BINARY = (
    ('451-["send_message",{"_placeholder":true,"num":5}]', b"\x00\x01"),
    ('452-["send_message",{"_placeholder":true,"num":0}]', b"\x00"),
    ('451-["join_queue",{"_placeholder":true,"num":0}]',),
    ('450-["join_queue",{"_placeholder":true,"num":0}]',),
    ('451-["join_queue",{"_placeholder":"yes","num":"0"}]', b"x"),
    ("45x-[]", b"x"),
    ('45-1-["join_queue"]', b"x"),
    (b"\x00\x01",),
)


def event_frames() -> st.SearchStrategy[Frames]:
    """A well-formed event packet with an ack id, whose JSON may be anything."""
    names = st.one_of(st.sampled_from(EVENTS), fz.hostile_strings(), fz.hostile_json())
    args = st.lists(fz.hostile_json(raw_depth=True), max_size=2)

    def build(who, ack_id, name, rest):
        text = "42" + str(ack_id) + fz.encode_json([name, *rest]).decode("ascii")
        return Frames(who, (text,), ack_id)

    return st.builds(
        build,
        st.sampled_from(("anonymous", "agent")),
        st.one_of(st.integers(0, 10_000), st.sampled_from((2**31, 2**53, 2**64))),
        names,
        args,
    )


def malformed_frames() -> st.SearchStrategy[Frames]:
    return st.builds(
        Frames,
        st.sampled_from(("anonymous", "agent")),
        st.one_of(st.sampled_from(MALFORMED).map(lambda f: (f,)), st.sampled_from(LYING_BINARY)),
        st.none(),
    )


class RawSocket:
    """An Engine.IO v4 websocket spoken by hand, connected to the default namespace."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, url: str, cookie: str | None) -> RawSocket:
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        ws = await http.ws_connect(
            url + "/socket.io/?EIO=4&transport=websocket", headers=headers, autoping=True
        )
        sock = cls(ws)
        opened = await ws.receive(timeout=5)
        assert opened.type == aiohttp.WSMsgType.TEXT and opened.data.startswith("0"), opened
        await ws.send_str("40")
        connected = await sock.next_text(5)
        assert connected is not None and connected.startswith("40"), connected
        return sock

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def next_text(self, timeout: float) -> str | None:
        """The next text frame (answering Engine.IO pings); None if the socket closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            msg = await self.ws.receive(timeout=remaining)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return None
            if msg.type == aiohttp.WSMsgType.ERROR:
                return None
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            if msg.data == "2":
                await self.ws.send_str("3")
                continue
            return msg.data

    async def ack(self, ack_id: int, timeout: float) -> str | None:
        """The payload of the ack `43<ack_id>[...]`; None if the socket closed first.
        Raises TimeoutError."""
        prefix = f"43{ack_id}"
        while True:
            text = await self.next_text(timeout)
            if text is None:
                return None
            if text.startswith(prefix) and not text[len(prefix)].isdigit():
                return text[len(prefix) :]

    async def close(self) -> None:
        await self.ws.close()


async def test_raw_frames_never_crash_the_socket_layer(world):
    url = world.factory.url
    watch = world.watch
    async with elsewhere() as http:

        async def check(case: Frames) -> None:
            cookie = world.owner.cookie if case.who == "agent" else None
            sock = await RawSocket.open(http, url, cookie)
            mark = watch.mark()
            try:
                for frame in case.frames:
                    await sock.send(frame)
                if case.ack_id is not None:
                    try:
                        answer = await sock.ack(case.ack_id, ANSWER_TIMEOUT)
                    except TimeoutError:
                        raise fault("no_ack", watch.cause(mark))(
                            f"no answer to {case!r}; server log: {watch.since(mark)}"
                        ) from None
                    if answer is None:
                        raise fault("closed_instead_of_answer", watch.cause(mark))(
                            f"the socket closed instead of answering {case!r}"
                        )
                    if re.search(r'"code":\s*"internal_error"', answer):
                        raise fault("internal_error", watch.cause(mark))(
                            f"internal_error for {case!r}: {watch.since(mark)}"
                        )
                await asyncio.sleep(0.05)  # what the frames set off reaches the log
                if watch.since(mark):
                    raise fault("logged_error", watch.cause(mark))(
                        f"the server logged errors for {case!r}: {watch.since(mark)}"
                    )
                # Still answering: on this socket if it stayed open, else on a new one.
                probe = sock
                # "41" is the client leaving the namespace itself: its later events on this
                # connection are rightly ignored, so the probe goes on a new connection.
                left = any(isinstance(f, str) and f.startswith("41") for f in case.frames)
                if sock.closed or left:
                    probe = await RawSocket.open(http, url, cookie)
                await probe.send(f"42{PROBE_ID}" + json.dumps(["join_queue"]))
                try:
                    answer = await probe.ack(PROBE_ID, ANSWER_TIMEOUT)
                except TimeoutError:
                    answer = None
                if answer is None:
                    raise fault("unanswered_after", watch.cause(mark))(
                        f"after {case!r} the socket no longer answers; log {watch.since(mark)}"
                    )
                if probe is not sock:
                    await probe.close()
            finally:
                await sock.close()

        seeds = [
            Frames("anonymous", ("42[]",), None),
            Frames("anonymous", (LYING_BINARY[0][0], LYING_BINARY[0][1]), None),
            Frames("anonymous", ('421["join_queue","\\ud800"]',), 1),
            Frames("agent", ('422["join_conversation",{"conversation_id":"\\udfff"}]',), 2),
        ]
        await search(
            "fuzz_raw_frames",
            st.one_of(event_frames(), malformed_frames()),
            check,
            seeds=seeds,
        )
