"""What no backend can store, and frames no handler should see, are refused at the socket's
edge: the sender gets `invalid_input` (ack and `error` event), nothing is stored or broadcast,
nothing is logged as a crash, and the socket and its neighbours keep working."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from server.validation import MAX_INT
from tests.factories import Factory, Org, quiet
from tests.realtime.helpers import assert_error_ack, expect_refusal, names
from tests.realtime.test_validation import CONV, EXT, MSG, REF, case, make_room, media, msg

NUL = "\x00"
SURROGATE = "\ud800"
UNSTORABLE = [("nul", NUL), ("lone-surrogate", SURROGATE), ("low-surrogate", "\udfff")]

EDGE_CASES = [
    *[
        c
        for n, bad in UNSTORABLE
        for c in (
            case("send_message", msg(content=f"hi{bad}there"), field="content", id=f"content-{n}"),
            case(
                "send_message",
                msg(client_message_id=f"echo{bad}"),
                field="client_message_id",
                id=f"echo-id-{n}",
            ),
            case("send_message", msg(external_id=EXT + bad), field="external_id", id=f"ext-{n}"),
            case(
                "send_message",
                media("image", {"url": "https://example.com/a.png", "alt": f"a{bad}"}),
                field="rich_media",
                id=f"rich-media-value-{n}",
            ),
            case(
                "send_message",
                media("quick_button", {"buttons": [{"label": "Y", "value": "y", bad: "x"}]}),
                field="rich_media",
                id=f"rich-media-key-{n}",
            ),
            case(
                "send_message",
                media("image", {"url": f"https://example.com/{bad}.png"}),
                field="rich_media",
                id=f"rich-media-url-{n}",
            ),
            case("send_message", msg(**{f"x{bad}": 1}), id=f"unknown-key-{n}"),
            case(
                "join_conversation",
                REF | {"external_id": EXT + bad},
                field="external_id",
                who="stranger",
                id=f"external-id-{n}",
            ),
            case(
                "user_typing",
                REF | {"external_id": EXT + bad},
                field="external_id",
                id=f"external-id-{n}",
            ),
            case(
                "mark_read",
                {"conversation_id": CONV, "message_ids": [MSG], "external_id": EXT + bad},
                field="external_id",
                id=f"external-id-{n}",
            ),
        )
    ],
    *[
        case(
            "join_conversation",
            REF | {"external_id": EXT, "last_seq": v},
            field="last_seq",
            who="stranger",
            id=f"last-seq-{n}",
        )
        for n, v in (("2^31", MAX_INT + 1), ("2^53", 2**53), ("2^63", 2**63))
    ],
    # Binary attachments: the python-socketio client sends bytes as a binary event.
    case("send_message", msg(content=b"hello"), field="content", id="content-bytes"),
    case(
        "send_message",
        media("file", {"url": "/uploads/a.bin", "filename": "a.bin", "data": b"\x00\x01"}),
        field="rich_media",
        id="rich-media-bytes",
    ),
    case(
        "send_message",
        media("image", {"url": b"https://example.com/a.png"}),
        field="rich_media",
        id="rich-media-url-bytes",
    ),
    case(
        "send_message",
        media("file", {"url": "/uploads/a.bin", "filename": "a.bin", "size": 2**64}),
        field="rich_media",
        id="rich-media-huge-integer",
    ),
]


@pytest.mark.parametrize(("event", "payload", "code", "field", "who"), EDGE_CASES)
async def test_unstorable_or_binary_input_is_refused_as_invalid_input_and_changes_nothing(
    factory, event, payload, code, field, who
):
    room = await make_room(factory)
    sender = room.sender(who)
    before = await factory.message_count(room.conv["id"])

    ack = await sender.call(event, room.fill(payload))

    err = await expect_refusal(sender, ack, code)
    if field is not None:
        assert field in err["fields"], err
    await quiet()
    assert names(sender) == ["error"], sender.events
    for rec in room.everyone:
        if rec is not sender:
            assert rec.events == [], rec.events
    assert await factory.message_count(room.conv["id"]) == before
    # The socket keeps working.
    ok = await factory.visitor_send(room.visitor, room.conv, "still here")
    assert "error" not in ok, ok


# ---- frames at the Socket.IO layer ---------------------------------------------------------


class RawSocket:
    """A Socket.IO client spoken by hand over a websocket, to send frames no library sends."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self.ws.send_bytes(frame)
        else:
            await self.ws.send_str(frame)

    async def receive(self, timeout: float = 5.0) -> str:
        while True:
            message = await asyncio.wait_for(self.ws.receive(), timeout)
            if message.type != aiohttp.WSMsgType.TEXT:
                raise AssertionError(f"socket ended: {message!r}")
            if message.data == "2":  # an Engine.IO ping
                await self.ws.send_str("3")
                continue
            return message.data

    async def ack(self, ack_id: int, timeout: float = 5.0) -> object:
        """The ack of event `ack_id`, skipping other packets."""
        prefix = f"43{ack_id}"
        while True:
            frame = await self.receive(timeout)
            if frame.startswith(prefix) and frame[len(prefix)] == "[":
                return json.loads(frame[len(prefix) :])[0]

    async def call(self, ack_id: int, event: str, payload: object) -> object:
        await self.send(f"42{ack_id}" + json.dumps([event, payload]))
        return await self.ack(ack_id)

    async def silent(self, seconds: float = 0.4) -> list[str]:
        frames = []
        try:
            while True:
                frames.append(await self.receive(seconds))
        except TimeoutError:
            return frames


async def raw_socket(http: aiohttp.ClientSession, factory: Factory, cookie: str | None = None):
    headers = {"Cookie": f"session={cookie}"} if cookie else {}
    ws = await http.ws_connect(
        factory.url + "/socket.io/?EIO=4&transport=websocket", headers=headers
    )
    sock = RawSocket(ws)
    assert (await sock.receive()).startswith("0{")
    await sock.send("40")
    assert (await sock.receive()).startswith("40{")
    return sock


def join_payload(room) -> dict:
    return {"conversation_id": room.conv["id"], "external_id": room.conv["end_user"]["external_id"]}


@pytest.fixture
def crashes(caplog):
    """Log records that report a crash (a traceback, or an error-level record)."""
    caplog.set_level(logging.INFO)

    def found() -> list[str]:
        return [
            f"{r.name}: {r.getMessage()}"
            for r in caplog.records
            if r.exc_info or r.levelno >= logging.ERROR
        ]

    return found


# Each is sent as an event with ack id 7 where the frame has room for one.
MALFORMED = [
    pytest.param("427[]", True, id="empty-array"),
    pytest.param("427[1]", True, id="number-as-event-name"),
    pytest.param('427[null,{"a":1}]', True, id="null-as-event-name"),
    pytest.param('427[["send_message"],{}]', True, id="list-as-event-name"),
    pytest.param('427{"event":"send_message"}', True, id="object-not-array"),
    pytest.param('427"send_message"', True, id="string-not-array"),
    pytest.param("427true", True, id="boolean-not-array"),
    pytest.param('427["send_message",', True, id="truncated-json"),
    pytest.param('427["send_message",NaN]', True, id="nan"),
    pytest.param('427["send_message",{"a":1e400}]', True, id="infinite-number"),
    pytest.param("427" + "[" * 5000 + "]" * 5000, True, id="deeply-nested"),
    pytest.param('427["send_message\\ud800",{}]', True, id="surrogate-event-name"),
    pytest.param("437[]", False, id="ack-for-nothing"),
    pytest.param("44", False, id="connect-error-from-client"),
    pytest.param("49", False, id="unknown-packet-type"),
    pytest.param("4x", False, id="garbage-packet-type"),
    pytest.param('4512345678901-["send_message",{}]', False, id="attachment-count-too-long"),
    pytest.param('4511-7["send_message",{}]', True, id="too-many-attachments"),
    pytest.param('450-7["send_message",{}]', True, id="binary-event-without-attachments"),
]


@pytest.mark.parametrize(("frame", "answered"), MALFORMED)
async def test_a_malformed_packet_is_answered_or_dropped_without_a_crash(
    factory, crashes, frame, answered
):
    room = await make_room(factory)
    async with aiohttp.ClientSession() as http:
        sock = await raw_socket(http, factory)

        await sock.send(frame)

        if answered:
            assert_error_ack(await sock.ack(7), "invalid_input")
        # The same socket still works, and so do the others.
        ack = await sock.call(8, "join_conversation", join_payload(room))
        assert "error" not in ack, ack
        ok = await factory.visitor_send(room.visitor, room.conv, "after the bad frame")
        assert "error" not in ok, ok
        await sock.ws.close()
    await quiet(0.2)
    assert crashes() == []


BINARY_LIES = [
    # One attachment announced, a placeholder pointing at the fourth.
    pytest.param(
        ['451-7["send_message",{"content":{"_placeholder":true,"num":3}}]', b"x"],
        id="placeholder-beyond-count",
    ),
    pytest.param(
        ['451-7["send_message",{"content":{"_placeholder":true,"num":"0"}}]', b"x"],
        id="placeholder-num-not-integer",
    ),
    pytest.param(
        ['451-7["send_message",{"content":{"_placeholder":true,"num":-1}}]', b"x"],
        id="placeholder-negative",
    ),
    # Two announced, one sent, then an ordinary text frame where the second should be.
    pytest.param(
        [
            '452-7["send_message",{"a":{"_placeholder":true,"num":0},'
            '"b":{"_placeholder":true,"num":1}}]',
            b"x",
            '429["user_typing",{}]',
        ],
        id="text-frame-as-attachment",
    ),
    # No placeholder at all for the announced attachment.
    pytest.param(['451-7["send_message",{"content":"hi"}]', b"x"], id="attachment-unreferenced"),
    # A binary frame nobody announced.
    pytest.param([b"\x01\x02"], id="unannounced-attachment"),
]


@pytest.mark.parametrize("frames", BINARY_LIES)
async def test_binary_placeholders_that_lie_are_dropped_without_a_crash(factory, crashes, frames):
    room = await make_room(factory)
    async with aiohttp.ClientSession() as http:
        sock = await raw_socket(http, factory)
        for frame in frames:
            await sock.send(frame)
        answered = await sock.silent()
        # Whatever came back is a refusal, never a stored message.
        for frame in answered:
            if frame.startswith("437") or frame.startswith("439"):
                assert_error_ack(json.loads(frame[3:])[0], "invalid_input")
        ack = await sock.call(8, "join_conversation", join_payload(room))
        assert "error" not in ack, ack
        await sock.ws.close()
    assert await factory.message_count(room.conv["id"]) == 1
    await quiet(0.2)
    assert crashes() == []


# ---- reserved event names ----------------------------------------------------------------------

RESERVED = ["disconnect", "connect", "connect_error", "disconnecting", "newListener", "*"]


@pytest.mark.parametrize("event", RESERVED)
async def test_a_reserved_event_name_from_a_client_is_refused_and_changes_nothing(
    factory, crashes, event
):
    room = await make_room(factory)
    watcher_agent = await factory.agent(Org(room.agent.org_id, room.agent.user_id, "", "", ""))
    watcher = await factory.client(watcher_agent)
    joined = await watcher.call("join_org_presence", None)
    assert room.agent.user_id in joined["online"]
    watcher.clear()

    ack = await room.inbox.call(event, {"conversation_id": room.conv["id"]})

    await expect_refusal(room.inbox, ack, "invalid_input")
    await quiet()
    # The agent is still online for the organization, and its socket still works.
    assert watcher.of("agent_status_changed") == []
    again = await watcher.call("join_org_presence", None)
    assert room.agent.user_id in again["online"]
    sent = await factory.agent_send(room.inbox, room.conv, "still connected")
    assert "error" not in sent, sent
    await room.visitor.wait_for("message_received", lambda m: m["content"] == "still connected")
    assert crashes() == []


async def test_a_reserved_event_name_without_an_ack_still_changes_nothing(factory):
    room = await make_room(factory)
    await room.inbox.emit("disconnect", None)
    (event,) = await room.inbox.wait_for("error")
    assert event["message"]
    sent = await factory.agent_send(room.inbox, room.conv, "still connected")
    assert "error" not in sent, sent
