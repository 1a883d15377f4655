"""Who is acting, and what that kind of actor may reach.

Four kinds, each saying what it is and carrying its own scope rules:
- an end user (a visitor in the widget, a user of a native app), known by the external_id its
  client holds: it reaches only the conversation of that external_id;
- an agent (a signed-in person of an organization), by role: `agent` acts on unassigned
  sessions and its own, `owner` and `admin` on all of their organization's;
- a bot of an organization: it writes only into sessions no person holds;
- an integration (a server holding an API key of an organization), within the key's scopes.

Services ask the actor (`reaches`, `may_act_on`, `takes_on_write`) instead of testing its
class: nothing stands for "not an agent, so an end user".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

ADMIN_ROLES = frozenset({"owner", "admin"})


class ActorKind(StrEnum):
    END_USER = "end_user"
    AGENT = "agent"
    BOT = "bot"
    INTEGRATION = "integration"


@dataclass(frozen=True, slots=True)
class IdentityProof:
    """What an end user's client presents to prove it is the user of its external_id, on a
    channel that verifies identity (server/identity.py): one of the two, by the channel's
    mode."""

    user_hash: str | None = None
    identity_token: str | None = None

    @classmethod
    def of(cls, data: dict | None) -> IdentityProof | None:
        """The proof in a request body, query or handshake (None when it carries none)."""
        if not data:
            return None
        user_hash, token = data.get("user_hash"), data.get("identity_token")
        if not (isinstance(user_hash, str) and user_hash) and not (
            isinstance(token, str) and token
        ):
            return None
        return cls(
            user_hash if isinstance(user_hash, str) and user_hash else None,
            token if isinstance(token, str) and token else None,
        )


@dataclass(frozen=True, slots=True)
class EndUserActor:
    """An anonymous visitor, known only by the external_id the widget or app holds.

    A client may also say which embed token it is under (the widget's handshake), and a
    browser says which page it runs on: both narrow what the visitor reaches (see
    ConversationService.facts).
    """

    external_id: str
    # The live embed token the client presented, if any.
    embed_token_id: str | None = None
    # The browser Origin, when it is not the server's own (the widget page's own is None).
    origin: str | None = None
    # The proof of identity, on channels that verify their end users.
    proof: IdentityProof | None = None

    kind: ClassVar[ActorKind] = ActorKind.END_USER
    sender_type: ClassVar[str] = "end_user"
    # Whether its message into a resolved conversation opens a new session.
    opens_sessions: ClassVar[bool] = True

    @property
    def sender_id(self) -> str:
        return self.external_id

    def reaches(self, organization_id: str, end_user_external_id: str) -> bool:
        return end_user_external_id == self.external_id

    def may_act_on(self, assigned_agent_id: str | None) -> bool:
        return True  # its own conversation, whoever answers it

    @property
    def takes_on_write(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class AgentActor:
    user_id: str
    organization_id: str
    role: str
    email: str = ""
    display_name: str = ""

    kind: ClassVar[ActorKind] = ActorKind.AGENT
    sender_type: ClassVar[str] = "agent"
    opens_sessions: ClassVar[bool] = True

    @property
    def sender_id(self) -> str:
        return self.user_id

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    def reaches(self, organization_id: str, end_user_external_id: str) -> bool:
        return organization_id == self.organization_id

    def may_act_on(self, assigned_agent_id: str | None) -> bool:
        """An agent of role `agent` may not act on a session another agent holds."""
        return self.is_admin or assigned_agent_id is None or assigned_agent_id == self.user_id

    @property
    def takes_on_write(self) -> str | None:
        """An agent who writes into a resolved conversation takes the new session."""
        return self.user_id


@dataclass(frozen=True, slots=True)
class BotActor:
    """A bot of an organization, answering while no person holds the conversation."""

    bot_id: str
    organization_id: str
    name: str = ""

    kind: ClassVar[ActorKind] = ActorKind.BOT
    sender_type: ClassVar[str] = "bot"
    # A bot answers within a session; it never reopens a resolved conversation.
    opens_sessions: ClassVar[bool] = False

    @property
    def sender_id(self) -> str:
        return self.bot_id

    def reaches(self, organization_id: str, end_user_external_id: str) -> bool:
        return organization_id == self.organization_id

    def may_act_on(self, assigned_agent_id: str | None) -> bool:
        # Once a person has the conversation, the bot stops.
        return assigned_agent_id is None

    @property
    def takes_on_write(self) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class IntegrationActor:
    """A server calling with an API key of an organization, limited to the key's scopes.
    Its messages are sent as `bot` (the guide's sender types are end_user, agent, bot)."""

    key_id: str
    organization_id: str
    scopes: frozenset[str] = frozenset()
    name: str = ""
    # A webhook bot's own key: what it sends is the bot's (BotActor), under the bot's rules.
    bot_id: str | None = None

    kind: ClassVar[ActorKind] = ActorKind.INTEGRATION
    sender_type: ClassVar[str] = "bot"
    opens_sessions: ClassVar[bool] = True

    @property
    def sender_id(self) -> str:
        return self.key_id

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def as_sender(self) -> IntegrationActor | BotActor:
        """Who its messages are from: the bot whose key it is, else the integration."""
        if self.bot_id is None:
            return self
        return BotActor(self.bot_id, self.organization_id, self.name)

    def reaches(self, organization_id: str, end_user_external_id: str) -> bool:
        return organization_id == self.organization_id

    def may_act_on(self, assigned_agent_id: str | None) -> bool:
        return True  # the organization's own server: as an admin of its conversations

    @property
    def takes_on_write(self) -> str | None:
        return None


Actor = EndUserActor | AgentActor | BotActor | IntegrationActor
# Actors that act for an organization (as opposed to an end user in its own conversation).
StaffActor = AgentActor | BotActor | IntegrationActor
