"""Property: whatever a client emits, over any event name and any payload, the server answers
with an ack that is a result or a client error (never `internal_error`), stores nothing for
a refused event, and keeps serving the same socket and the others.

Payloads start from a valid one for the event and are mutated field by field with arbitrary
JSON (any Unicode including NUL and lone surrogates, huge integers, NaN, nesting), or are
arbitrary JSON outright."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.realtime.test_validation import make_room

EVENTS = [
    "send_message",
    "join_conversation",
    "leave_conversation",
    "claim_conversation",
    "join_queue",
    "join_org_presence",
    "user_typing",
    "mark_read",
]

# Every character, surrogates included (Hypothesis leaves category Cs out by default).
ANY_CHAR = st.characters(codec=None, categories=None)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=20),
    st.sampled_from(["", "\x00", "\ud800", "a\udfffb", "https://e.com/a.png", "/uploads/x"]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, 2**53, 2**63, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.binary(max_size=8),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "conversation_id",
    "content",
    "content_type",
    "rich_media",
    "sender_type",
    "external_id",
    "client_message_id",
    "last_seq",
    "message_ids",
]


def base_payload(event: str, room) -> dict:
    conv, ext = room.conv["id"], room.conv["end_user"]["external_id"]
    return {
        "send_message": {
            "conversation_id": conv,
            "content": "fuzz",
            "content_type": "text",
            "sender_type": "end_user",
            "external_id": ext,
        },
        "join_conversation": {"conversation_id": conv, "external_id": ext, "last_seq": 0},
        "leave_conversation": {"conversation_id": conv},
        "claim_conversation": {"conversation_id": conv},
        "join_queue": {},
        "join_org_presence": {},
        "user_typing": {"conversation_id": conv, "external_id": ext},
        "mark_read": {"conversation_id": conv, "message_ids": [room.message_id]},
    }.get(event, {})


@st.composite
def emissions(draw):
    event = draw(st.one_of(st.sampled_from(EVENTS), st.sampled_from(["disconnect", "connect"]),
                           st.text(ANY_CHAR, max_size=12)))
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "arbitrary", "none"]))
    if kind == "none":
        return event, None, None
    if kind == "arbitrary":
        return event, None, draw(JSON)
    changes = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(FIELDS), TEXT), st.one_of(JSON, st.just(...)), max_size=3
        )
    )
    return event, changes, None


def _has_nan(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


_ROOMS: dict[int, object] = {}


async def room_of(factory):
    """One room per test (Hypothesis runs the examples against the same server)."""
    room = _ROOMS.get(id(factory))
    if room is None:
        _ROOMS.clear()
        room = _ROOMS[id(factory)] = await make_room(factory)
    return room


@pytest.mark.parametrize("who", ["visitor", "agent"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(emission=emissions())
async def test_no_client_input_gets_an_internal_error_or_stores_a_refused_event(
    factory, who, emission
):
    room = await room_of(factory)
    sender = room.inbox if who == "agent" else room.visitor
    event, changes, arbitrary = emission
    if changes is None:
        payload = arbitrary
    else:
        payload = base_payload(event, room)
        if who == "agent" and event == "send_message":
            payload = {**payload, "sender_type": "agent"}
            payload.pop("external_id")
        for key, value in changes.items():
            if value is ...:
                payload.pop(key, None)
            else:
                payload[key] = value
    before = await factory.message_count(room.conv["id"])

    ack = await sender.call(event, payload, timeout=10)

    after = await factory.message_count(room.conv["id"])
    assert isinstance(ack, dict), (event, payload, ack)
    if "error" in ack:
        assert ack["error"]["code"] != "internal_error", (event, payload, ack)
        assert after == before, (event, payload, ack)
    else:
        assert not _has_nan(payload), (event, payload, ack)
        stored = event == "send_message" and "seq" in ack
        assert after == before + stored, (event, payload, ack)
    # The socket is still served: a valid event still gets its answer.
    assert sender.client.connected
    ok = await sender.call("leave_conversation", {"conversation_id": room.other_conv["id"]})
    assert "error" not in ok, ok
