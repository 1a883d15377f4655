"""Agent presence (agent_status_changed, the join_org_presence ack) and typing indicators
(typing_indicator, typing_cleared): who hears them, how often, and when."""

from __future__ import annotations

import asyncio

from tests.factories import quiet
from tests.realtime.helpers import make_scene

# ---- presence ---------------------------------------------------------------------------


async def online_ids(rec) -> list[str]:
    ack = await rec.call("join_org_presence")
    assert "error" not in ack, ack
    return ack["online"]


async def test_agent_with_two_tabs_goes_online_once_and_offline_when_the_last_tab_closes(
    factory,
):
    s = await make_scene(factory)
    agent = await factory.agent(s.org)
    online = {"agent_id": agent.user_id, "status": "online"}
    offline = {"agent_id": agent.user_id, "status": "offline"}

    tab1 = await factory.client(agent)
    assert await s.inbox.wait_for("agent_status_changed") == [online]
    assert agent.user_id in await online_ids(s.inbox)

    tab2 = await factory.client(agent)
    await quiet()
    assert s.inbox.of("agent_status_changed") == [online]

    await tab1.client.disconnect()
    await quiet()
    assert s.inbox.of("agent_status_changed") == [online]
    assert agent.user_id in await online_ids(s.inbox)

    await tab2.client.disconnect()
    assert await s.inbox.wait_for("agent_status_changed", count=2) == [online, offline]
    await quiet()
    assert s.inbox.of("agent_status_changed") == [online, offline]
    assert agent.user_id not in await online_ids(s.inbox)

    # The org presence room only: not the queue-less colleague, the visitor, another org.
    for rec in s.strangers + [s.visitor]:
        assert rec.of("agent_status_changed") == [], rec.events


async def test_agent_status_changed_reaches_every_presence_watcher_of_the_org_once(factory):
    s = await make_scene(factory)
    second_watcher = await factory.client(await factory.owner(s.org))
    await second_watcher.call("join_org_presence")
    await s.inbox.wait_for("agent_status_changed")  # the owner came online
    s.clear()
    second_watcher.clear()

    agent = await factory.agent(s.org)
    await factory.client(agent)

    for rec in (s.inbox, second_watcher):
        (got,) = await rec.wait_for("agent_status_changed")
        assert got == {"agent_id": agent.user_id, "status": "online"}
    await quiet()
    assert len(s.inbox.of("agent_status_changed")) == 1
    assert len(second_watcher.of("agent_status_changed")) == 1
    for rec in s.strangers + [s.visitor]:
        assert rec.of("agent_status_changed") == [], rec.events


async def test_join_org_presence_ack_lists_the_online_agents_of_the_org_only(factory):
    s = await make_scene(factory)
    await factory.agent(s.org)  # exists, never connects

    ack = await s.inbox.call("join_org_presence")

    # The agent and the colleague have sockets; the owner and the idle agent do not.
    assert ack == {
        "organization_id": s.org.org_id,
        "online": sorted([s.agent.user_id, s.colleague.user_id]),
    }
    foreign = await s.foreign_inbox.call("join_org_presence")
    assert foreign == {"organization_id": s.foreign_org.org_id, "online": [s.foreign_agent.user_id]}


async def test_visitor_sockets_do_not_count_as_agents_online(factory):
    s = await make_scene(factory)
    await factory.visitor(s.conv)
    await factory.client()
    await quiet()
    assert s.inbox.of("agent_status_changed") == []
    assert sorted(await online_ids(s.inbox)) == sorted([s.agent.user_id, s.colleague.user_id])


# ---- typing -----------------------------------------------------------------------------


async def test_visitor_typing_reaches_the_room_but_not_the_typist(factory):
    s = await make_scene(factory)

    ack = await s.visitor.call("user_typing", {"conversation_id": s.conv["id"]})

    assert ack == {"conversation_id": s.conv["id"]}
    (got,) = await s.inbox.wait_for("typing_indicator")
    assert got == {"conversation_id": s.conv["id"], "sender_type": "end_user"}
    await quiet(0.2)  # well inside the 0.6 s timeout
    assert len(s.inbox.of("typing_indicator")) == 1
    assert s.visitor.of("typing_indicator") == []
    for rec in s.strangers:
        assert rec.events == [], rec.events


async def test_agent_typing_reaches_the_visitor_as_sender_type_agent(factory):
    s = await make_scene(factory)

    ack = await s.inbox.call(
        "user_typing", {"conversation_id": s.conv["id"], "sender_type": "agent"}
    )

    assert ack == {"conversation_id": s.conv["id"]}
    (got,) = await s.visitor.wait_for("typing_indicator")
    assert got == {"conversation_id": s.conv["id"], "sender_type": "agent"}
    await quiet(0.2)
    assert len(s.visitor.of("typing_indicator")) == 1
    assert s.inbox.of("typing_indicator") == []
    for rec in s.strangers:
        assert rec.events == [], rec.events


async def test_typing_cleared_reaches_the_room_once_when_the_typist_sends_a_message(factory):
    s = await make_scene(factory)
    await s.visitor.call("user_typing", {"conversation_id": s.conv["id"]})
    await s.inbox.wait_for("typing_indicator")

    await factory.visitor_send(s.visitor, s.conv, "done typing")

    # Well before the 0.6 s timeout would clear it anyway.
    (cleared,) = await s.inbox.wait_for("typing_cleared", timeout=0.3)
    assert cleared == {"conversation_id": s.conv["id"]}
    (cleared,) = await s.visitor.wait_for("typing_cleared")
    assert cleared == {"conversation_id": s.conv["id"]}
    # Past the typing timeout: the message cancelled the timer, so no second clear.
    await quiet(1.0)
    assert len(s.inbox.of("typing_cleared")) == 1
    assert len(s.visitor.of("typing_cleared")) == 1
    for rec in s.strangers:
        assert rec.of("typing_cleared") == [] and rec.of("typing_indicator") == [], rec.events


async def test_typing_cleared_reaches_the_room_once_after_the_typing_timeout(factory):
    s = await make_scene(factory)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await s.inbox.call("user_typing", {"conversation_id": s.conv["id"], "sender_type": "agent"})
    await s.visitor.wait_for("typing_indicator")
    assert s.visitor.of("typing_cleared") == []

    (cleared,) = await s.visitor.wait_for("typing_cleared", timeout=5)

    # CHATD_TYPING_TIMEOUT_SECONDS is 0.6 in the tests; generous bounds, not a timing test.
    assert loop.time() - started >= 0.5
    assert cleared == {"conversation_id": s.conv["id"]}
    (cleared,) = await s.inbox.wait_for("typing_cleared")
    await quiet(1.0)
    assert len(s.visitor.of("typing_cleared")) == 1
    assert len(s.inbox.of("typing_cleared")) == 1
    for rec in s.strangers:
        assert rec.events == [], rec.events


async def test_typing_cleared_when_the_typist_disconnects(factory):
    s = await make_scene(factory)
    await s.visitor.call("user_typing", {"conversation_id": s.conv["id"]})
    await s.inbox.wait_for("typing_indicator")

    await s.visitor.client.disconnect()

    (cleared,) = await s.inbox.wait_for("typing_cleared", timeout=0.3)
    assert cleared == {"conversation_id": s.conv["id"]}
    await quiet(1.0)
    assert len(s.inbox.of("typing_cleared")) == 1


async def test_typing_cleared_when_the_typist_leaves_the_conversation(factory):
    s = await make_scene(factory)
    await s.inbox.call("user_typing", {"conversation_id": s.conv["id"]})
    await s.visitor.wait_for("typing_indicator")

    await s.inbox.call("leave_conversation", {"conversation_id": s.conv["id"]})

    (cleared,) = await s.visitor.wait_for("typing_cleared", timeout=0.3)
    assert cleared == {"conversation_id": s.conv["id"]}
    await quiet(1.0)
    assert len(s.visitor.of("typing_cleared")) == 1


async def test_typing_in_a_conversation_of_another_org_is_not_found_and_shows_nothing(factory):
    s = await make_scene(factory)

    ack = await s.foreign_inbox.call(
        "user_typing", {"conversation_id": s.conv["id"], "sender_type": "agent"}
    )

    assert ack["error"]["code"] == "not_found"
    (err,) = await s.foreign_inbox.wait_for("error")
    assert err == {"message": ack["error"]["message"]}
    await quiet(1.0)
    for rec in (s.inbox, s.visitor):
        assert rec.of("typing_indicator") == [] and rec.of("typing_cleared") == [], rec.events


async def test_visitor_typing_needs_its_own_conversation(factory):
    s = await make_scene(factory)
    other_ext = s.other_conv["end_user"]["external_id"]

    ack = await s.other_visitor.call(
        "user_typing",
        {"conversation_id": s.conv["id"], "sender_type": "end_user", "external_id": other_ext},
    )

    assert ack["error"]["code"] == "not_found"
    await quiet(1.0)
    for rec in (s.inbox, s.visitor):
        assert rec.of("typing_indicator") == [] and rec.of("typing_cleared") == [], rec.events
