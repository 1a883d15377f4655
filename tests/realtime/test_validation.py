"""Bad input on the socket: refused with the right code, told to the sender only, nothing stored,
nothing broadcast. Plus what must get through: every rich media type as the guide shows it.
Also the edges of the handshake and the frame: size limit, rate limit, cross-site hijacking."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import socketio

from tests.factories import Agent, Factory, Recorder, quiet
from tests.realtime.helpers import MESSAGE_KEYS, assert_error_ack, expect_refusal, names

# Placeholders, filled in per test with the ids of the conversation set up for it.
CONV = "<conv>"  # the conversation's id
EXT = "<ext>"  # its end user's external_id
MSG = "<msg>"  # a message the visitor sent in it
OTHER_EXT = "<other-ext>"  # the external_id of another conversation's end user, same org
OTHER_MSG = "<other-msg>"  # a message of that other conversation
MISSING = "<missing>"  # a well-formed UUID naming nothing
DROP = object()  # remove the field from the base payload


@dataclass
class Room:
    """One conversation with a joined agent, a visitor in two tabs, and an unjoined socket."""

    conv: dict
    agent: Agent
    inbox: Recorder
    visitor: Recorder
    visitor_tab: Recorder
    stranger: Recorder
    message_id: str
    other_conv: dict
    other_message_id: str
    missing: str

    def sender(self, who: str) -> Recorder:
        return {"agent": self.inbox, "visitor": self.visitor, "stranger": self.stranger}[who]

    @property
    def everyone(self) -> list[Recorder]:
        return [self.inbox, self.visitor, self.visitor_tab, self.stranger]

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            for key, real in (
                (CONV, self.conv["id"]),
                (OTHER_EXT, self.other_conv["end_user"]["external_id"]),
                (EXT, self.conv["end_user"]["external_id"]),
                (OTHER_MSG, self.other_message_id),
                (MSG, self.message_id),
                (MISSING, self.missing),
            ):
                value = value.replace(key, real)
            return value
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.fill(v) for v in value)
        return value


async def make_room(factory: Factory) -> Room:
    org = await factory.org()
    agent = await factory.owner(org)
    conv = await factory.conversation(org)
    other_conv = await factory.conversation(org)
    inbox = await factory.client(agent)
    for event, payload in (
        ("join_queue", None),
        ("join_conversation", {"conversation_id": conv["id"]}),
    ):
        assert "error" not in await inbox.call(event, payload)
    visitor = await factory.visitor(conv)
    visitor_tab = await factory.visitor(conv)
    stranger = await factory.client()
    sent = await factory.visitor_send(visitor, conv, "first")
    other_visitor = await factory.visitor(other_conv)
    other_sent = await factory.visitor_send(other_visitor, other_conv, "elsewhere")
    room = Room(
        conv,
        agent,
        inbox,
        visitor,
        visitor_tab,
        stranger,
        sent["id"],
        other_conv,
        other_sent["id"],
        str(uuid.uuid4()),
    )
    # Let the set-up's own events arrive before the test starts counting.
    await inbox.wait_for("message_received")
    await inbox.wait_for("conversation_updated", count=2)
    await visitor.wait_for("message_received")
    await visitor_tab.wait_for("message_received")
    for rec in room.everyone:
        rec.clear()
    return room


# ---- the cases ------------------------------------------------------------------------------


def msg(**changes: Any) -> dict:
    """A valid end-user send_message payload, changed."""
    base = {
        "conversation_id": CONV,
        "content": "hello",
        "content_type": "text",
        "sender_type": "end_user",
        "external_id": EXT,
    }
    for key, value in changes.items():
        if value is DROP:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def media(content_type: str, rich_media: Any = DROP, content: str = "caption") -> dict:
    return msg(content_type=content_type, rich_media=rich_media, content=content)


def buttons(n: int) -> list[dict]:
    return [{"label": f"Option {i}", "value": f"v{i}"} for i in range(n)]


def cards(n: int) -> list[dict]:
    return [{"title": f"Product {i}"} for i in range(n)]


def case(event, payload, code="invalid_input", field=None, who="visitor", id=None):
    return pytest.param(event, payload, code, field, who, id=f"{event}-{id}")


NOT_OBJECTS = [("a-string", "hello"), ("a-list", ["hello"])]
NOT_OBJECTS_ALL = [*NOT_OBJECTS, ("a-number", 42), ("true", True)]
NON_UUIDS = [
    ("short", "abc"),
    ("empty", ""),
    ("truncated", "3a2b1c..."),
    ("without-dashes", "3a2b1c4d5e6f7a8b9c0d1e2f3a4b5c6d"),
    ("trailing-newline", CONV + "\n"),
    ("trailing-junk", CONV + "x"),
    ("leading-space", " " + CONV),
    ("room-name", "conv:" + CONV),
    ("a-number", 123),
    ("null", None),
]

SEND_MESSAGE = [
    *[case("send_message", p, id=f"not-an-object-{n}") for n, p in NOT_OBJECTS_ALL],
    case("send_message", None, id="no-payload"),
    case("send_message", (msg(), msg()), id="two-arguments"),
    case("send_message", {}, field="conversation_id", id="empty-object"),
    case("send_message", msg(conversation_id=DROP), field="conversation_id", id="no-conv-id"),
    case("send_message", msg(sender_type=DROP), field="sender_type", id="no-sender-type"),
    *[
        case("send_message", msg(conversation_id=v), field="conversation_id", id=f"conv-id-{n}")
        for n, v in NON_UUIDS
    ],
    case("send_message", msg(content=5), field="content", id="content-number"),
    case("send_message", msg(content=["hello"]), field="content", id="content-list"),
    case("send_message", msg(content={"text": "x"}), field="content", id="content-object"),
    case("send_message", msg(content_type=5), field="content_type", id="content-type-number"),
    case("send_message", msg(content_type="video"), field="content_type", id="content-type-video"),
    case("send_message", msg(content_type="TEXT"), field="content_type", id="content-type-case"),
    case("send_message", msg(sender_type="bot"), field="sender_type", id="sender-type-bot"),
    case("send_message", msg(sender_type=1), field="sender_type", id="sender-type-number"),
    case("send_message", msg(external_id=5), field="external_id", id="external-id-number"),
    case("send_message", msg(external_id=""), field="external_id", id="external-id-empty"),
    case("send_message", msg(external_id="x" * 256), field="external_id", id="external-id-long"),
    case("send_message", msg(client_message_id=5), field="client_message_id", id="echo-id-number"),
    case(
        "send_message",
        msg(client_message_id="x" * 65),
        field="client_message_id",
        id="echo-id-long",
    ),
    case("send_message", msg(room="org:x:queue"), field="room", id="unknown-field-room"),
    case("send_message", msg(sender_id="someone"), field="sender_id", id="unknown-field-sender-id"),
    case("send_message", msg(seq=1), field="seq", id="unknown-field-seq"),
    case("send_message", msg(content="x" * 10_001), field="content", id="content-too-long"),
    case(
        "send_message",
        media("image", {"url": "https://example.com/a.png"}, "x" * 10_001),
        field="content",
        id="caption-too-long",
    ),
    case(
        "send_message",
        msg(rich_media={"url": "https://example.com/a.png"}),
        field="rich_media",
        id="text-with-rich-media",
    ),
    case("send_message", msg(content=""), field="content", id="text-empty"),
    case("send_message", msg(content="  \n\t"), field="content", id="text-blank"),
    case("send_message", msg(content=None), field="content", id="text-null"),
    case("send_message", msg(content=DROP), field="content", id="text-without-content"),
    case("send_message", msg(external_id=DROP), field="external_id", id="end-user-no-external-id"),
    case(
        "send_message", msg(external_id=None), field="external_id", id="end-user-null-external-id"
    ),
    case(
        "send_message",
        msg(sender_type="agent", external_id=DROP),
        "not_authenticated",
        id="agent-without-cookie",
    ),
    case("send_message", msg(external_id=OTHER_EXT), "not_found", id="someone-elses-external-id"),
    case("send_message", msg(external_id="guessed"), "not_found", id="unknown-external-id"),
    case("send_message", msg(conversation_id=MISSING), "not_found", id="no-such-conversation"),
    # image
    case("send_message", media("image"), field="rich_media", id="image-without-rich-media"),
    case("send_message", media("image", None), field="rich_media", id="image-null-rich-media"),
    case(
        "send_message", media("image", "https://e.com/a.png"), field="rich_media", id="image-string"
    ),
    case(
        "send_message", media("image", ["https://e.com/a.png"]), field="rich_media", id="image-list"
    ),
    case("send_message", media("image", {}), field="rich_media", id="image-no-url"),
    *[
        case("send_message", media("image", {"url": url}), field="rich_media", id=f"image-url-{n}")
        for n, url in (
            ("javascript", "javascript:alert(1)"),
            ("javascript-mixed-case", "JavaScript:alert(document.cookie)"),
            ("data", "data:image/svg+xml;base64,PHN2Zz48L3N2Zz4="),
            ("protocol-relative", "//evil.example/a.png"),
            ("ftp", "ftp://example.com/a.png"),
            ("bare-host", "example.com/a.png"),
            ("scheme-only", "https://"),
            ("empty", ""),
            ("number", 5),
            ("too-long", "https://example.com/" + "a" * 2030),
        )
    ],
    case(
        "send_message",
        media("image", {"url": "/a.png", "alt": 5}),
        field="rich_media",
        id="image-alt-number",
    ),
    case(
        "send_message",
        media("image", {"url": "/a.png", "onerror": "alert(1)"}),
        field="rich_media",
        id="image-unknown-field",
    ),
    # file
    case("send_message", media("file"), field="rich_media", id="file-without-rich-media"),
    *[
        case("send_message", media("file", rm), field="rich_media", id=f"file-{n}")
        for n, rm in (
            ("no-filename", {"url": "https://example.com/f.pdf"}),
            ("no-url", {"filename": "f.pdf"}),
            ("empty-filename", {"url": "/f.pdf", "filename": ""}),
            ("negative-size", {"url": "/f.pdf", "filename": "f.pdf", "size": -1}),
            ("string-size", {"url": "/f.pdf", "filename": "f.pdf", "size": "204800"}),
            ("fractional-size", {"url": "/f.pdf", "filename": "f.pdf", "size": 1.5}),
            ("boolean-size", {"url": "/f.pdf", "filename": "f.pdf", "size": True}),
            ("javascript-url", {"url": "javascript:alert(1)", "filename": "f.pdf"}),
            ("unknown-field", {"url": "/f.pdf", "filename": "f.pdf", "path": "/etc/passwd"}),
        )
    ],
    # quick_button
    case(
        "send_message",
        media("quick_button"),
        field="rich_media",
        id="quick-button-without-rich-media",
    ),
    *[
        case("send_message", media("quick_button", rm), field="rich_media", id=f"quick-button-{n}")
        for n, rm in (
            ("no-buttons", {}),
            ("zero-buttons", {"buttons": []}),
            ("21-buttons", {"buttons": buttons(21)}),
            ("buttons-string", {"buttons": "yes"}),
            ("button-no-value", {"buttons": [{"label": "Yes"}]}),
            ("button-no-label", {"buttons": [{"value": "yes"}]}),
            ("button-empty-label", {"buttons": [{"label": "", "value": "yes"}]}),
            ("button-label-number", {"buttons": [{"label": 5, "value": "yes"}]}),
            ("button-unknown-field", {"buttons": [{"label": "Y", "value": "y", "url": "/x"}]}),
            ("dropdown-shape", {"options": buttons(2)}),
        )
    ],
    # carousel
    case(
        "send_message",
        media("carousel", content=""),
        field="rich_media",
        id="carousel-without-rich-media",
    ),
    *[
        case("send_message", media("carousel", rm, ""), field="rich_media", id=f"carousel-{n}")
        for n, rm in (
            ("no-cards", {}),
            ("zero-cards", {"cards": []}),
            ("11-cards", {"cards": cards(11)}),
            ("cards-string", {"cards": "Product A"}),
            ("card-no-title", {"cards": [{"subtitle": "Short description"}]}),
            ("card-empty-title", {"cards": [{"title": ""}]}),
            ("card-javascript-image", {"cards": [{"title": "A", "image_url": "javascript:x"}]}),
            ("card-6-buttons", {"cards": [{"title": "A", "buttons": buttons(6)}]}),
            ("card-button-no-value", {"cards": [{"title": "A", "buttons": [{"label": "Buy"}]}]}),
        )
    ],
    # dropdown
    case("send_message", media("dropdown"), field="rich_media", id="dropdown-without-rich-media"),
    *[
        case("send_message", media("dropdown", rm), field="rich_media", id=f"dropdown-{n}")
        for n, rm in (
            ("no-options", {"placeholder": "-- pick one --"}),
            ("zero-options", {"options": []}),
            ("101-options", {"options": buttons(101)}),
            ("options-string", {"options": "apac"}),
            ("option-no-label", {"options": [{"value": "apac"}]}),
            ("placeholder-number", {"options": buttons(2), "placeholder": 5}),
            ("quick-button-shape", {"buttons": buttons(2)}),
        )
    ],
    # Well-formed, but over max_rich_media_bytes (16 KiB) while under the frame limit.
    case(
        "send_message",
        media("dropdown", {"options": [{"label": "L" * 100, "value": "v" * 400}] * 40}),
        field="rich_media",
        id="rich-media-over-max-bytes",
    ),
    # An agent's rich media goes through the same checks.
    case(
        "send_message",
        media("image", {"url": "javascript:alert(1)"})
        | {"sender_type": "agent", "external_id": None},
        field="rich_media",
        who="agent",
        id="agent-javascript-image",
    ),
]

REF = {"conversation_id": CONV}

CLAIM = [
    *[case("claim_conversation", p, who="agent", id=f"not-an-object-{n}") for n, p in NOT_OBJECTS],
    case("claim_conversation", None, who="agent", id="no-payload"),
    case("claim_conversation", {}, field="conversation_id", who="agent", id="no-conv-id"),
    case(
        "claim_conversation",
        {"conversation_id": "abc"},
        field="conversation_id",
        who="agent",
        id="non-uuid",
    ),
    case(
        "claim_conversation",
        {"conversation_id": 5},
        field="conversation_id",
        who="agent",
        id="conv-id-number",
    ),
    case(
        "claim_conversation",
        REF | {"agent_id": "x"},
        field="agent_id",
        who="agent",
        id="unknown-field",
    ),
    case("claim_conversation", REF, "not_authenticated", id="visitor"),
    case(
        "claim_conversation",
        {"conversation_id": MISSING},
        "not_found",
        who="agent",
        id="no-such-conversation",
    ),
]

JOIN = [
    *[
        case("join_conversation", p, who="stranger", id=f"not-an-object-{n}")
        for n, p in NOT_OBJECTS
    ],
    case("join_conversation", None, who="stranger", id="no-payload"),
    case(
        "join_conversation",
        {"external_id": EXT},
        field="conversation_id",
        who="stranger",
        id="no-conv-id",
    ),
    case(
        "join_conversation",
        {"conversation_id": "abc", "external_id": EXT},
        field="conversation_id",
        who="stranger",
        id="non-uuid",
    ),
    case(
        "join_conversation",
        {"conversation_id": CONV + "\n", "external_id": EXT},
        field="conversation_id",
        who="stranger",
        id="trailing-newline",
    ),
    case(
        "join_conversation",
        REF | {"external_id": EXT, "room": "org:x:queue"},
        field="room",
        who="stranger",
        id="unknown-field",
    ),
    *[
        case(
            "join_conversation",
            REF | {"external_id": EXT, "last_seq": v},
            field="last_seq",
            who="stranger",
            id=f"last-seq-{n}",
        )
        for n, v in (("negative", -1), ("string", "3"), ("fractional", 1.5), ("boolean", True))
    ],
    case(
        "join_conversation",
        REF | {"external_id": 5},
        field="external_id",
        who="stranger",
        id="external-id-number",
    ),
    case(
        "join_conversation",
        REF | {"external_id": ""},
        field="external_id",
        who="stranger",
        id="external-id-empty",
    ),
    case("join_conversation", REF, who="stranger", id="no-external-id-no-cookie"),
    case(
        "join_conversation",
        REF | {"external_id": "guessed"},
        "not_found",
        who="stranger",
        id="wrong-external-id",
    ),
    case(
        "join_conversation",
        REF | {"external_id": OTHER_EXT},
        "not_found",
        who="stranger",
        id="other-visitors-external-id",
    ),
    case(
        "join_conversation",
        {"conversation_id": MISSING, "external_id": EXT},
        "not_found",
        who="stranger",
        id="no-such-conversation",
    ),
]

LEAVE = [
    *[case("leave_conversation", p, id=f"not-an-object-{n}") for n, p in NOT_OBJECTS],
    case("leave_conversation", None, id="no-payload"),
    case("leave_conversation", {}, field="conversation_id", id="no-conv-id"),
    case("leave_conversation", {"conversation_id": "abc"}, field="conversation_id", id="non-uuid"),
    case(
        "leave_conversation", {"conversation_id": 5}, field="conversation_id", id="conv-id-number"
    ),
    case("leave_conversation", REF | {"external_id": EXT}, field="external_id", id="unknown-field"),
]

ROOMS = [
    c
    for event in ("join_queue", "join_org_presence")
    for c in (
        *[case(event, p, who="agent", id=f"not-an-object-{n}") for n, p in NOT_OBJECTS],
        case(
            event,
            {"organization_id": "someone-else"},
            field="organization_id",
            who="agent",
            id="unknown-field",
        ),
        case(event, None, "not_authenticated", id="visitor"),
        case(event, {}, "not_authenticated", id="visitor-empty-object"),
    )
]

TYPING = [
    *[case("user_typing", p, id=f"not-an-object-{n}") for n, p in NOT_OBJECTS],
    case("user_typing", None, id="no-payload"),
    case("user_typing", {"sender_type": "end_user"}, field="conversation_id", id="no-conv-id"),
    case("user_typing", {"conversation_id": "abc"}, field="conversation_id", id="non-uuid"),
    case("user_typing", REF | {"sender_type": "bot"}, field="sender_type", id="sender-type-bot"),
    case("user_typing", REF | {"sender_type": 5}, field="sender_type", id="sender-type-number"),
    case("user_typing", REF | {"content": "hel"}, field="content", id="unknown-field"),
    case("user_typing", REF | {"external_id": 5}, field="external_id", id="external-id-number"),
    case(
        "user_typing",
        REF | {"sender_type": "agent"},
        "not_authenticated",
        id="agent-without-cookie",
    ),
    case(
        "user_typing",
        REF | {"sender_type": "end_user"},
        who="stranger",
        id="end-user-no-external-id",
    ),
    case(
        "user_typing",
        REF | {"sender_type": "end_user", "external_id": OTHER_EXT},
        "not_found",
        who="stranger",
        id="other-visitors-external-id",
    ),
    case(
        "user_typing",
        {"conversation_id": MISSING, "external_id": EXT},
        "not_found",
        id="no-such-conversation",
    ),
]

READ = [
    *[case("mark_read", p, who="agent", id=f"not-an-object-{n}") for n, p in NOT_OBJECTS],
    case("mark_read", None, who="agent", id="no-payload"),
    case(
        "mark_read", {"message_ids": [MSG]}, field="conversation_id", who="agent", id="no-conv-id"
    ),
    case("mark_read", REF, field="message_ids", who="agent", id="no-message-ids"),
    case("mark_read", REF | {"message_ids": []}, field="message_ids", who="agent", id="zero-ids"),
    case(
        "mark_read", REF | {"message_ids": MSG}, field="message_ids", who="agent", id="ids-string"
    ),
    case("mark_read", REF | {"message_ids": [5]}, field="message_ids", who="agent", id="id-number"),
    case(
        "mark_read",
        REF | {"message_ids": ["abc"]},
        field="message_ids",
        who="agent",
        id="id-non-uuid",
    ),
    case(
        "mark_read",
        REF | {"message_ids": [MSG] + [str(uuid.uuid4()) for _ in range(100)]},
        field="message_ids",
        who="agent",
        id="101-ids",
    ),
    case(
        "mark_read",
        REF | {"message_ids": [MSG], "read_at": "2025-01-01"},
        field="read_at",
        who="agent",
        id="unknown-field",
    ),
    case(
        "mark_read",
        REF | {"message_ids": [MSG], "sender_type": "bot"},
        field="sender_type",
        who="agent",
        id="sender-type-bot",
    ),
    case(
        "mark_read",
        REF | {"message_ids": [MSG, OTHER_MSG]},
        who="agent",
        id="message-of-another-conversation",
    ),
    case("mark_read", REF | {"message_ids": [MSG, MISSING]}, who="agent", id="unknown-message"),
    case(
        "mark_read",
        {"conversation_id": MISSING, "message_ids": [MSG]},
        "not_found",
        who="agent",
        id="no-such-conversation",
    ),
    case(
        "mark_read",
        REF | {"message_ids": [MSG], "sender_type": "agent"},
        "not_authenticated",
        id="agent-without-cookie",
    ),
]

OTHER = [
    case("delete_conversation", REF, who="agent", id="unknown-event"),
    case("message_received", msg(), id="server-event-name"),
    case("connect_error", msg(), id="reserved-looking-name"),
]


@pytest.mark.parametrize(
    ("event", "payload", "code", "field", "who"),
    [*SEND_MESSAGE, *CLAIM, *JOIN, *LEAVE, *ROOMS, *TYPING, *READ, *OTHER],
)
async def test_invalid_client_event_is_refused_to_the_sender_alone_and_changes_nothing(
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
            assert rec.events == [], (rec is room.visitor_tab, rec.events)
    assert await factory.message_count(room.conv["id"]) == before
    status, history = await factory.get(
        f"/api/conversations/{room.conv['id']}/messages", room.agent
    )
    assert status == 200 and [m["read_by"] for m in history] == [{}]
    status, conv = await factory.get(f"/api/conversations/{room.conv['id']}", room.agent)
    assert conv["active_session"]["assigned_agent_id"] is None

    if event == "join_conversation":
        # The refused socket is in no room: the conversation's next message passes it by.
        room.stranger.clear()
        await factory.visitor_send(room.visitor, room.conv, "after the refused join")
        await room.inbox.wait_for("message_received")
        await quiet()
        assert room.stranger.events == []


# ---- what gets through ------------------------------------------------------------------


VALID_MEDIA = [
    pytest.param("text", "Hello, I need help", None, id="text"),
    pytest.param(
        "image",
        "Optional caption",
        {"url": "https://example.com/photo.jpg", "alt": "A scenic view"},
        id="image",
    ),
    pytest.param("image", "", {"url": "/uploads/photo.jpg"}, id="image-own-path"),
    pytest.param(
        "file",
        "invoice.pdf",
        {
            "url": "https://example.com/files/invoice.pdf",
            "filename": "invoice.pdf",
            "size": 204800,
            "mime_type": "application/pdf",
        },
        id="file",
    ),
    pytest.param("file", "", {"url": "/uploads/a.txt", "filename": "a.txt"}, id="file-minimal"),
    pytest.param(
        "quick_button",
        "Choose an option:",
        {"buttons": [{"label": "Yes", "value": "yes"}, {"label": "No", "value": "no"}]},
        id="quick_button",
    ),
    pytest.param("quick_button", "Pick", {"buttons": buttons(20)}, id="quick_button-20"),
    pytest.param(
        "carousel",
        "",
        {
            "cards": [
                {
                    "image_url": "https://example.com/a.jpg",
                    "title": "Product A",
                    "subtitle": "Short description",
                    "buttons": [{"label": "Buy now", "value": "buy_A"}],
                }
            ]
        },
        id="carousel",
    ),
    pytest.param("carousel", "", {"cards": cards(10)}, id="carousel-10"),
    pytest.param(
        "dropdown",
        "Select your region:",
        {
            "placeholder": "-- pick one --",
            "options": [
                {"label": "Asia Pacific", "value": "apac"},
                {"label": "Europe", "value": "eu"},
            ],
        },
        id="dropdown",
    ),
    pytest.param("dropdown", "Pick", {"options": buttons(100)}, id="dropdown-100"),
    pytest.param("text", "x" * 10_000, None, id="text-at-max-length"),
]


@pytest.mark.parametrize(("content_type", "content", "rich_media"), VALID_MEDIA)
async def test_valid_message_of_each_content_type_round_trips(
    factory, content_type, content, rich_media
):
    room = await make_room(factory)
    before = await factory.message_count(room.conv["id"])
    payload = {
        "conversation_id": room.conv["id"],
        "content": content,
        "content_type": content_type,
        "rich_media": rich_media,
        "sender_type": "end_user",
        "external_id": room.conv["end_user"]["external_id"],
    }

    ack = await room.visitor.call("send_message", payload)

    assert "error" not in ack, ack
    assert set(ack) == MESSAGE_KEYS
    assert (ack["content_type"], ack["content"], ack["rich_media"]) == (
        content_type,
        content,
        rich_media,
    )
    for rec in (room.inbox, room.visitor, room.visitor_tab):
        (got,) = await rec.wait_for("message_received")
        assert got == ack
    assert await factory.message_count(room.conv["id"]) == before + 1
    status, history = await factory.get(
        f"/api/conversations/{room.conv['id']}/messages", room.agent
    )
    assert status == 200
    assert history[-1]["id"] == ack["id"]
    assert (history[-1]["content_type"], history[-1]["content"], history[-1]["rich_media"]) == (
        content_type,
        content,
        rich_media,
    )
    status, widget = await factory.get(
        f"/chat-widget/history/{room.conv['id']}",
        params={"external_id": room.conv["end_user"]["external_id"]},
    )
    assert status == 200 and widget[-1]["rich_media"] == rich_media


async def test_agent_can_send_rich_media_too(factory):
    room = await make_room(factory)
    rich = {"buttons": [{"label": "Yes", "value": "yes"}]}
    ack = await factory.agent_send(
        room.inbox, room.conv, "Resolved?", content_type="quick_button", rich_media=rich
    )
    assert ack["rich_media"] == rich and ack["sender_type"] == "agent"
    (got,) = await room.visitor.wait_for("message_received")
    assert got["rich_media"] == rich


async def test_uppercase_conversation_id_names_the_same_conversation_and_room(factory):
    room = await make_room(factory)
    upper = room.conv["id"].upper()
    ack = await room.stranger.call(
        "join_conversation",
        {"conversation_id": upper, "external_id": room.conv["end_user"]["external_id"]},
    )
    assert "error" not in ack, ack
    sent = await factory.visitor_send(room.visitor, {**room.conv, "id": upper}, "shouting")
    assert sent["conversation_id"] == room.conv["id"]
    for rec in (room.stranger, room.inbox):
        (got,) = await rec.wait_for("message_received")
        assert got["conversation_id"] == room.conv["id"]


# ---- frame size -------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_frame_over_max_http_buffer_size_disconnects_and_stores_nothing(factory, transport):
    room = await make_room(factory)
    big = await factory.visitor(room.conv, transport)
    before = await factory.message_count(room.conv["id"])
    payload = {
        "conversation_id": room.conv["id"],
        "content": "x" * (factory.services.settings.max_http_buffer_size + 1),
        "sender_type": "end_user",
        "external_id": room.conv["end_user"]["external_id"],
    }

    await big.emit("send_message", payload)

    for _ in range(100):
        if not big.client.connected:
            break
        await asyncio.sleep(0.05)
    assert not big.client.connected
    await quiet()
    assert await factory.message_count(room.conv["id"]) == before
    for rec in room.everyone:
        assert rec.events == [], rec.events


# ---- rate limit -------------------------------------------------------------------------


async def test_end_users_21st_message_in_10_seconds_is_refused_and_not_broadcast(factory):
    room = await make_room(factory)
    other = await factory.visitor(room.other_conv)
    await quiet(0.2)
    for rec in room.everyone:
        rec.clear()
    before = await factory.message_count(room.conv["id"])
    # make_room already sent one; 19 more reach the limit of 20.
    for i in range(19):
        ack = await factory.visitor_send(room.visitor, room.conv, f"message {i}")
        assert "error" not in ack, (i, ack)
    await room.inbox.wait_for("message_received", count=19)

    ack = await factory.visitor_send(room.visitor, room.conv, "one too many")

    err = assert_error_ack(ack, "rate_limited")
    assert isinstance(err["retry_after_ms"], int) and 0 < err["retry_after_ms"] <= 10_000
    (event,) = await room.visitor.wait_for("error")
    assert event == {"message": err["message"]}
    # The limit is the end user's, not the socket's: the second tab is limited too.
    ack = await factory.visitor_send(room.visitor_tab, room.conv, "from the other tab")
    await expect_refusal(room.visitor_tab, ack, "rate_limited")
    await quiet()
    assert await factory.message_count(room.conv["id"]) == before + 19
    for rec in (room.inbox, room.visitor, room.visitor_tab):
        assert len(rec.of("message_received")) == 19, rec.events
        assert all(m["content"] != "one too many" for m in rec.of("message_received"))
    assert len(room.inbox.of("conversation_updated")) == 19
    assert room.inbox.of("error") == [] and len(room.visitor.of("error")) == 1

    # Another visitor is not affected.
    other_before = await factory.message_count(room.other_conv["id"])
    other_ack = await factory.visitor_send(other, room.other_conv, "I am fine")
    assert "error" not in other_ack, other_ack
    (got,) = await other.wait_for("message_received")
    assert got["id"] == other_ack["id"]
    assert await factory.message_count(room.other_conv["id"]) == other_before + 1


# ---- cross-site WebSocket hijacking -----------------------------------------------------


FOREIGN_ORIGINS = [
    "https://evil.example",
    "null",
    "http://localhost",
    "{own}.evil.example",
    "http://evil.example?{own}",
]


@pytest.fixture
def settings(base_settings, request):
    return base_settings.with_overrides(**getattr(request, "param", {}))


@pytest.mark.parametrize(
    ("origin", "transport", "settings"),
    [
        *[(origin, "websocket", {}) for origin in FOREIGN_ORIGINS],
        # One over polling: a refused polling client's disconnect waits out a long-poll, so
        # the server pings every 2 s here (and waits 2 s for the answer) instead of 25 + 20.
        (
            "https://evil.example",
            "polling",
            {"ping_interval_seconds": 2, "ping_timeout_seconds": 2},
        ),
    ],
    indirect=["settings"],
)
async def test_agent_handshake_from_a_foreign_origin_is_refused(factory, transport, origin):
    org = await factory.org()
    watcher = await factory.client(await factory.owner(org))
    await watcher.call("join_org_presence")
    agent = await factory.agent(org)
    watcher.clear()

    with pytest.raises(socketio.exceptions.ConnectionError):
        await factory.client(agent, transport, headers={"Origin": origin.format(own=factory.url)})

    await quiet()
    # The refused handshake never made the agent online.
    assert watcher.events == []
    ack = await watcher.call("join_org_presence")
    assert agent.user_id not in ack["online"]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@pytest.mark.parametrize("origin", ["own", None])
async def test_agent_handshake_from_the_servers_own_origin_or_without_origin_is_an_agent(
    factory, transport, origin
):
    org = await factory.org()
    watcher = await factory.client(await factory.owner(org))
    await watcher.call("join_org_presence")
    agent = await factory.agent(org)
    watcher.clear()
    headers = {"Origin": factory.url} if origin == "own" else {}
    assert factory.url.startswith("http://127.0.0.1:")

    inbox = await factory.client(agent, transport, headers=headers)

    ack = await inbox.call("join_queue")
    assert ack == {"organization_id": org.org_id}
    (status,) = await watcher.wait_for("agent_status_changed")
    assert status == {"agent_id": agent.user_id, "status": "online"}


async def test_visitor_handshake_from_any_origin_connects(factory):
    org = await factory.org()
    conv = await factory.conversation(org)
    widget = await factory.client(headers={"Origin": "https://customer-site.example"})
    ack = await widget.call(
        "join_conversation",
        {"conversation_id": conv["id"], "external_id": conv["end_user"]["external_id"]},
    )
    assert ack == {"conversation_id": conv["id"], "last_seq": 0, "replayed": 0}
    # ... but it is no agent.
    await expect_refusal(widget, await widget.call("join_queue"), "not_authenticated")


class TestConfiguredAllowedOrigins:
    @pytest.fixture
    def settings(self, base_settings):
        return base_settings.with_overrides(allowed_origins=("https://inbox.example",))

    async def test_agent_handshake_from_an_allowed_origin_connects(self, factory):
        org = await factory.org()
        agent = await factory.owner(org)
        inbox = await factory.client(agent, headers={"Origin": "https://inbox.example"})
        assert await inbox.call("join_queue") == {"organization_id": org.org_id}

    async def test_agent_handshake_from_another_origin_is_still_refused(self, factory):
        org = await factory.org()
        agent = await factory.owner(org)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await factory.client(agent, headers={"Origin": "https://inbox.example.evil.example"})
