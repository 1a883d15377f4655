"""The scene every fuzz test plays against: an organization with its owner, an agent, two
conversations with messages and a spare embed token, and a foreign organization with its own.
Set up through the services and the public API, like every other test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.factories import Agent, Factory, Org
from tests.fuzz.harness import LogWatch, Snapshot
from tests.rest.helpers import visitor_says


@dataclass
class World:
    factory: Factory
    org: Org
    owner: Agent
    agent: Agent
    conv: dict
    message_id: str
    other_conv: dict
    other_message_id: str
    foreign_org: Org
    foreign_owner: Agent
    foreign_conv: dict
    foreign_message_id: str
    spare_token_id: str
    foreign_token_id: str
    channel_id: str
    upload_dir: Path
    snapshot: Snapshot
    watch: LogWatch

    @property
    def ext(self) -> str:
        return self.conv["end_user"]["external_id"]

    @property
    def conv_ids(self) -> list[str]:
        """Ids a request may name: its own conversation most often, then the others."""
        own = self.conv["id"]
        return [own, own, own, own.upper(), self.other_conv["id"], self.foreign_conv["id"]]

    @property
    def external_ids(self) -> list[str]:
        return [
            self.ext,
            self.ext,
            self.ext,
            self.other_conv["end_user"]["external_id"],
            self.foreign_conv["end_user"]["external_id"],
            "nobody-" + self.ext,
        ]

    @property
    def message_ids(self) -> list[str]:
        return [self.message_id, self.message_id, self.other_message_id, self.foreign_message_id]


# The organizations and logged-in people, made once per run: each costs password hashes
# (seconds per test), and they live in the database, which outlives each test's server.
_PEOPLE: dict[str, tuple[Org, Agent, Agent, Org, Agent]] = {}


async def _people(factory: Factory) -> tuple[Org, Agent, Agent, Org, Agent]:
    key = factory.services.settings.database_url
    if key not in _PEOPLE:
        org = await factory.org()
        owner = await factory.owner(org)
        agent = await factory.agent(org)
        foreign_org = await factory.org()
        foreign_owner = await factory.owner(foreign_org)
        _PEOPLE[key] = (org, owner, agent, foreign_org, foreign_owner)
    return _PEOPLE[key]


async def make_world(factory: Factory, upload_dir: Path, watch: LogWatch) -> World:
    org, owner, agent, foreign_org, foreign_owner = await _people(factory)
    conv = await factory.conversation(org, name="Jane Visitor")
    message = await visitor_says(factory, conv, "first")
    other_conv = await factory.conversation(org)
    other_message = await visitor_says(factory, other_conv, "elsewhere")

    foreign_conv = await factory.conversation(foreign_org)
    foreign_message = await visitor_says(factory, foreign_conv, "not yours")

    status, spare = await factory.post(
        "/api/admin/embed-tokens",
        owner,
        json={"channel_id": org.channel_id, "name": "Spare"},
    )
    assert status == 201, spare
    # Spare tokens only: a revoked main token would end the next tests' set-up.
    status, foreign_spare = await factory.post(
        "/api/admin/embed-tokens",
        foreign_owner,
        json={"channel_id": foreign_org.channel_id, "name": "Spare"},
    )
    assert status == 201, foreign_spare
    foreign_token_id = foreign_spare["id"]
    return World(
        factory=factory,
        org=org,
        owner=owner,
        agent=agent,
        conv=conv,
        message_id=message["id"],
        other_conv=other_conv,
        other_message_id=other_message["id"],
        foreign_org=foreign_org,
        foreign_owner=foreign_owner,
        foreign_conv=foreign_conv,
        foreign_message_id=foreign_message["id"],
        spare_token_id=spare["id"],
        foreign_token_id=foreign_token_id,
        channel_id=org.channel_id,
        upload_dir=upload_dir,
        snapshot=Snapshot(factory, [org.org_id, foreign_org.org_id], upload_dir),
        watch=watch,
    )
