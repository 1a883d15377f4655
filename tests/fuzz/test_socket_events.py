"""Property-based fuzzing of every client-to-server Socket.IO event.

For each event of realtime/schemas.py, sent by the agent's, a joined visitor's and an
anonymous socket: whatever the payload, the sender gets an ack within a time-out, never
`internal_error`, the server logs no error, and a refused event changes nothing. Payloads
start from valid ones (so that authorization, storage and fan-out are reached) and are
mutated into the hostile space of tests/fuzz/strategies.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import strategies as st

from tests.fuzz import strategies as fz
from tests.fuzz.harness import search
from tests.fuzz.sockets import EVENTS, MAX_FRAME, Clients, emit_and_check, frame_size
from tests.fuzz.world import World

HOSTILE = fz.hostile_json(binary=True)
SENDERS = st.sampled_from(("agent", "agent", "visitor", "visitor", "stranger"))

BUTTON = {"label": "Yes", "value": "yes"}
RICH_MEDIA = {
    "image": {"url": "https://example.com/a.png", "alt": "A picture"},
    "file": {
        "url": "/uploads/0123456789abcdef0123456789abcdef/report.pdf",
        "filename": "report.pdf",
        "size": 1024,
        "mime_type": "application/pdf",
    },
    "quick_button": {"buttons": [BUTTON]},
    "carousel": {
        "cards": [
            {
                "title": "A card",
                "subtitle": "Its subtitle",
                "image_url": "https://example.com/c.png",
                "buttons": [BUTTON],
            }
        ]
    },
    "dropdown": {"placeholder": "Pick one", "options": [BUTTON, {"label": "No", "value": "no"}]},
}


def typed_fields(world: World) -> dict[str, st.SearchStrategy[Any]]:
    """Hostile values of the right JSON type for each field, which pass a type check and
    must be caught by the next one."""
    return {
        "conversation_id": st.one_of(st.sampled_from(fz.BAD_UUIDS), fz.hostile_strings()),
        "external_id": fz.hostile_strings(),
        "content": fz.hostile_strings(),
        "content_type": st.one_of(
            st.sampled_from(("text", *RICH_MEDIA, "TEXT", "video")), fz.hostile_strings()
        ),
        "sender_type": st.one_of(
            st.sampled_from(("end_user", "agent", "bot")), fz.hostile_strings()
        ),
        "client_message_id": fz.hostile_strings(),
        "last_seq": fz.hostile_ints(),
        "message_ids": st.lists(
            st.one_of(st.sampled_from(world.message_ids), fz.hostile_strings()), max_size=3
        )
        | st.lists(st.sampled_from(world.message_ids), min_size=101, max_size=101),
        "rich_media": st.one_of(HOSTILE, rich_media_any()),
    }


def rich_media(kind: str) -> st.SearchStrategy[dict]:
    """Valid rich media of a kind, with hostile values now and then deep inside it."""
    media = RICH_MEDIA[kind]
    button = fz.mutated(st.just(BUTTON), HOSTILE, max_mutations=1)
    if kind == "quick_button":
        return st.fixed_dictionaries({"buttons": st.lists(button, min_size=1, max_size=2)})
    if kind == "dropdown":
        return fz.mutated(
            st.fixed_dictionaries(
                {
                    "placeholder": st.just("Pick"),
                    "options": st.lists(button, min_size=1, max_size=2),
                }
            ),
            HOSTILE,
            max_mutations=1,
        )
    if kind == "carousel":
        card = fz.mutated(
            st.fixed_dictionaries(
                {
                    "title": st.just("A card"),
                    "buttons": st.lists(button, max_size=2),
                    "image_url": st.just("https://example.com/c.png"),
                }
            ),
            HOSTILE,
            max_mutations=1,
        )
        return st.fixed_dictionaries({"cards": st.lists(card, min_size=1, max_size=2)})
    return fz.mutated(st.just(media), HOSTILE, max_mutations=2)


def rich_media_any() -> st.SearchStrategy[dict]:
    return st.sampled_from(sorted(RICH_MEDIA)).flatmap(rich_media)


def base_payloads(world: World, event: str) -> st.SearchStrategy[dict]:
    conv = st.sampled_from(world.conv_ids)
    ext = st.sampled_from(world.external_ids)
    sender = st.sampled_from(("end_user", "agent"))
    if event == "send_message":
        text = st.fixed_dictionaries(
            {
                "conversation_id": conv,
                "content": st.one_of(st.just("hello"), st.text(min_size=1, max_size=20)),
                "content_type": st.just("text"),
                "sender_type": sender,
                "external_id": ext,
            },
            optional={"client_message_id": st.uuids().map(str)},
        )
        rich = st.sampled_from(sorted(RICH_MEDIA)).flatmap(
            lambda kind: st.fixed_dictionaries(
                {
                    "conversation_id": conv,
                    "content": st.just(""),
                    "content_type": st.just(kind),
                    "rich_media": rich_media(kind),
                    "sender_type": sender,
                    "external_id": ext,
                }
            )
        )
        return st.one_of(text, rich)
    if event in ("claim_conversation", "leave_conversation"):
        return st.fixed_dictionaries({"conversation_id": conv})
    if event == "join_conversation":
        return st.fixed_dictionaries(
            {"conversation_id": conv},
            optional={"external_id": ext, "last_seq": st.integers(0, 5)},
        )
    if event in ("join_queue", "join_org_presence"):
        return st.just({})
    if event == "user_typing":
        return st.fixed_dictionaries(
            {"conversation_id": conv}, optional={"sender_type": sender, "external_id": ext}
        )
    if event == "mark_read":
        return st.fixed_dictionaries(
            {
                "conversation_id": conv,
                "message_ids": st.lists(st.sampled_from(world.message_ids), min_size=1, max_size=3),
            },
            optional={"sender_type": sender, "external_id": ext},
        )
    raise AssertionError(event)


def cases(world: World, event: str) -> st.SearchStrategy[tuple[str, str, Any]]:
    payloads = fz.mutated(base_payloads(world, event), HOSTILE, typed=typed_fields(world))
    if event in ("join_queue", "join_org_presence"):
        payloads = st.one_of(st.none(), payloads)
    # Now and then two arguments where one is expected.
    payloads = (
        st.one_of(payloads, st.tuples(payloads, HOSTILE)) if event == "user_typing" else payloads
    )
    return st.tuples(SENDERS, st.just(event), payloads).filter(
        lambda c: frame_size(c[1], c[2]) < MAX_FRAME
    )


def seeds(world: World, event: str) -> list[tuple[str, str, Any]]:
    """The issue's attacks on this event, tried before the search."""
    conv, ext = world.conv["id"], world.ext
    visitor = {"conversation_id": conv, "sender_type": "end_user", "external_id": ext}
    text = {**visitor, "content_type": "text", "content": "hi"}
    out: list[tuple[str, str, Any]] = [("visitor", event, {"conversation_id": "\ud800"})]
    if event == "send_message":
        out += [
            ("visitor", event, {**text, "content": "a\x00b"}),
            ("visitor", event, {**text, "client_message_id": "m\x00"}),
            ("visitor", event, {**text, "content": "x\udfffy"}),
            ("visitor", event, {**text, "content": float("nan")}),
            (
                "agent",
                event,
                {
                    "conversation_id": conv,
                    "sender_type": "agent",
                    "content_type": "image",
                    "rich_media": {"url": "https://example.com/a.png", "alt": b"\x00\x01"},
                },
            ),
        ]
    elif event == "join_conversation":
        out += [
            ("visitor", event, {"conversation_id": conv, "external_id": ext, "last_seq": 2**53}),
            ("agent", event, {"conversation_id": conv, "last_seq": 2**63}),
        ]
    elif event == "user_typing":
        out += [("visitor", event, {"conversation_id": conv, "external_id": "\ud800"})]
    elif event == "mark_read":
        out += [("agent", event, {"conversation_id": conv, "message_ids": ["\x00"]})]
    return out


async def fuzz_event(world: World, event: str) -> None:
    clients = Clients(world)

    async def check(case):
        await emit_and_check(world, clients, case)

    await search(f"fuzz_{event}", cases(world, event), check, seeds=seeds(world, event))


async def test_send_message_survives_hostile_payloads(world):
    await fuzz_event(world, "send_message")


async def test_claim_conversation_survives_hostile_payloads(world):
    await fuzz_event(world, "claim_conversation")


async def test_join_conversation_survives_hostile_payloads(world):
    await fuzz_event(world, "join_conversation")


async def test_leave_conversation_survives_hostile_payloads(world):
    await fuzz_event(world, "leave_conversation")


async def test_join_queue_survives_hostile_payloads(world):
    await fuzz_event(world, "join_queue")


async def test_join_org_presence_survives_hostile_payloads(world):
    await fuzz_event(world, "join_org_presence")


async def test_user_typing_survives_hostile_payloads(world):
    await fuzz_event(world, "user_typing")


async def test_mark_read_survives_hostile_payloads(world):
    await fuzz_event(world, "mark_read")


EVENT_NAMES = st.one_of(
    st.sampled_from(("disconnect", "connect", "message", "connect_error", "ping", "")),
    st.sampled_from(EVENTS).map(lambda e: e.upper()),
    fz.hostile_strings().filter(lambda name: name not in EVENTS),
)


async def test_reserved_and_unknown_event_names_are_refused(world):
    """`disconnect`, `connect` and names no handler has are refused with invalid_input and
    leave the socket as it was: the agent is still connected and still answered."""
    clients = Clients(world, fresh=True)

    async def check(case):
        who, event, payload = case
        ack = await emit_and_check(world, clients, case)
        assert "error" in ack, f"event {event!r} was not refused: {ack!r}"
        assert ack["error"]["code"] == "invalid_input", ack
        rec = clients.recs[who]
        probe = await rec.client.call("join_queue", {}, timeout=2.0)
        if who == "agent":
            assert "error" not in probe, f"after {event!r} the agent's socket answers {probe!r}"

    payloads = st.one_of(st.none(), HOSTILE, st.just({"conversation_id": str(uuid.uuid4())}))
    strategy = st.tuples(SENDERS, EVENT_NAMES, payloads).filter(
        lambda c: frame_size(c[1], c[2]) < MAX_FRAME
    )
    seeds = [("agent", "disconnect", None), ("agent", "connect", None)]
    await search("fuzz_event_names", strategy, check, seeds=seeds)
