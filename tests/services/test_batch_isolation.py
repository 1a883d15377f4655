"""One message's failure never fails another's: when a group-commit batch fails as a whole,
its messages are written one by one, and only the one that cannot be stored gets an error.

The poisoned message is handed to the writer directly, past the socket edge that would refuse
it, to force a failure inside the database transaction."""

from __future__ import annotations

import asyncio

import pytest

from server.actors import EndUserActor
from server.services.message_writer import NewMessage
from tests.factories import Factory, quiet

N = 24
POISON_AT = 9


class Unserializable:
    """Not JSON: the rich_media column's encoder fails on it on every backend."""


POISONS = [
    pytest.param({"content": "bad\x00message"}, True, id="nul-in-content"),
    pytest.param({"client_message_id": "echo\x00"}, True, id="nul-in-client-message-id"),
    pytest.param(
        {"content_type": "image", "rich_media": {"url": "/a.png", "x": Unserializable()}},
        False,
        id="unencodable-rich-media",
    ),
]


@pytest.mark.parametrize(("poison", "postgres_only"), POISONS)
async def test_a_poisoned_message_fails_alone_and_the_rest_of_its_batch_is_stored_in_order(
    factory: Factory, poison, postgres_only
):
    services = factory.services
    if postgres_only and services.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores NUL; only PostgreSQL fails the transaction on it")
    org = await factory.org()
    conv = await factory.conversation(org)
    listener = await factory.visitor(conv)
    actor = EndUserActor(conv["end_user"]["external_id"])
    messages = [
        NewMessage(conversation_id=conv["id"], content=f"m{i}", client_message_id=f"c{i}")
        for i in range(N)
    ]
    messages[POISON_AT] = NewMessage(
        **{"conversation_id": conv["id"], "content": "poison", **poison}
    )
    writer = services.conversations.writer

    # Queued in one go: the writer takes them as one batch.
    results = await asyncio.gather(
        *(writer.send(actor, m) for m in messages), return_exceptions=True
    )

    assert isinstance(results[POISON_AT], Exception), results[POISON_AT]
    stored = [r for i, r in enumerate(results) if i != POISON_AT]
    assert all(not isinstance(r, BaseException) for r in stored), stored
    assert all(created for _message, created in stored)
    assert [m["content"] for m, _ in stored] == [f"m{i}" for i in range(N) if i != POISON_AT]
    assert [m["seq"] for m, _ in stored] == list(range(1, N))  # gap-free, in queue order
    assert await factory.message_count(conv["id"]) == N - 1

    # Each stored message reached the room once; the failed attempt published nothing.
    received = await listener.wait_for("message_received", count=N - 1)
    await quiet()
    received = listener.of("message_received")
    assert [m["seq"] for m in received] == list(range(1, N))


async def test_a_batch_with_a_poisoned_message_still_answers_retries_with_their_original(
    factory: Factory,
):
    """A retry of an already stored message, in the same failed batch, gets its original."""
    org = await factory.org()
    conv = await factory.conversation(org)
    actor = EndUserActor(conv["end_user"]["external_id"])
    writer = factory.services.conversations.writer
    first, created = await writer.send(
        actor, NewMessage(conversation_id=conv["id"], content="once", client_message_id="dup")
    )
    assert created

    retry = NewMessage(conversation_id=conv["id"], content="once", client_message_id="dup")
    poison = NewMessage(
        conversation_id=conv["id"],
        content="poison",
        content_type="image",
        rich_media={"x": Unserializable()},
    )
    fresh = NewMessage(conversation_id=conv["id"], content="fresh", client_message_id="new")
    results = await asyncio.gather(
        writer.send(actor, retry),
        writer.send(actor, poison),
        writer.send(actor, fresh),
        return_exceptions=True,
    )

    assert results[0] == (first, False)
    assert isinstance(results[1], Exception)
    message, created = results[2]
    assert created and message["seq"] == 2
    assert await factory.message_count(conv["id"]) == 2
