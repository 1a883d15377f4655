"""Set-up shared by the real-time tests: one conversation with the people who must hear its
events, and the strangers (another conversation, another org, no room) who must hear nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.factories import Agent, Factory, Org, Recorder, quiet

# message_received, as the guide lists it, plus the per-conversation seq used for replay.
MESSAGE_KEYS = frozenset(
    {
        "id",
        "conversation_id",
        "session_id",
        "seq",
        "sender_type",
        "sender_id",
        "content_type",
        "content",
        "rich_media",
        "created_at",
    }
)


@dataclass
class Scene:
    org: Org
    conv: dict
    agent: Agent
    inbox: Recorder  # the agent's socket: in conv:{id}, the org queue and the org presence room
    visitor: Recorder  # the conversation's end user, joined to conv:{id}
    colleague: Agent
    lurker: Recorder  # the colleague's socket: same org, connected, joined to no room
    other_conv: dict
    other_visitor: Recorder  # same org, another conversation, joined to it
    foreign_org: Org
    foreign_agent: Agent
    foreign_inbox: Recorder  # another org: its queue, its presence room, one of its conversations
    foreign_conv: dict
    foreign_visitor: Recorder

    @property
    def external_id(self) -> str:
        return self.conv["end_user"]["external_id"]

    @property
    def strangers(self) -> list[Recorder]:
        """Clients that must receive nothing about `conv`, whatever the event."""
        return [self.lurker, self.other_visitor, self.foreign_inbox, self.foreign_visitor]

    @property
    def everyone(self) -> list[Recorder]:
        return [self.inbox, self.visitor, *self.strangers]

    def clear(self) -> None:
        for rec in self.everyone:
            rec.clear()


async def make_scene(factory: Factory) -> Scene:
    org = await factory.org()
    agent = await factory.agent(org)
    colleague = await factory.agent(org)
    foreign_org = await factory.org()
    foreign_agent = await factory.owner(foreign_org)

    conv = await factory.conversation(org, name="Jane Visitor")
    other_conv = await factory.conversation(org)
    foreign_conv = await factory.conversation(foreign_org)

    inbox = await factory.client(agent)
    lurker = await factory.client(colleague)
    foreign_inbox = await factory.client(foreign_agent)
    for rec, c in ((inbox, conv), (foreign_inbox, foreign_conv)):
        for event, payload in (
            ("join_queue", None),
            ("join_org_presence", None),
            ("join_conversation", {"conversation_id": c["id"]}),
        ):
            ack = await rec.call(event, payload)
            assert "error" not in ack, ack

    visitor = await factory.visitor(conv)
    other_visitor = await factory.visitor(other_conv)
    foreign_visitor = await factory.visitor(foreign_conv)
    scene = Scene(
        org=org,
        conv=conv,
        agent=agent,
        inbox=inbox,
        visitor=visitor,
        colleague=colleague,
        lurker=lurker,
        other_conv=other_conv,
        other_visitor=other_visitor,
        foreign_org=foreign_org,
        foreign_agent=foreign_agent,
        foreign_inbox=foreign_inbox,
        foreign_conv=foreign_conv,
        foreign_visitor=foreign_visitor,
    )
    # Presence events of the set-up itself are not what the tests look at.
    await quiet(0.2)
    scene.clear()
    return scene


def assert_error_ack(ack: Any, code: str) -> dict:
    """The ack of a refused event: {"error": {"code", "message", ...}} with the given code."""
    assert isinstance(ack, dict) and set(ack) == {"error"}, ack
    err = ack["error"]
    assert err["code"] == code, ack
    assert isinstance(err["message"], str) and err["message"], ack
    return err


async def expect_refusal(rec: Recorder, ack: Any, code: str) -> dict:
    """The ack carries the error and exactly one `error` {"message"} event reaches the sender."""
    err = assert_error_ack(ack, code)
    (event,) = await rec.wait_for("error")
    assert event == {"message": err["message"]}
    return err


def names(rec: Recorder) -> list[str]:
    return [name for name, _ in rec.events]
