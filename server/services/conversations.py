"""ConversationService: the one home of the conversation rules.

Every load is scoped to the actor: an agent sees only their organization's conversations, an
end user only the conversation whose end user's external_id they hold. "Not yours" and "does
not exist" are the same NotFound. Events are collected in the transaction and published after
commit, so a client never sees what was not stored, and an ack means the message is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from models import (
    Bot,
    Channel,
    Conversation,
    ConversationSession,
    EmbedToken,
    EndUser,
    Message,
    User,
)
from models.base import new_id, utcnow
from server import serializers
from server.actors import (
    Actor,
    ActorKind,
    AgentActor,
    BotActor,
    EndUserActor,
    IdentityProof,
    IntegrationActor,
    StaffActor,
)
from server.db import Database
from server.domain_events import (
    ConversationAssigned,
    ConversationCreated,
    ConversationHandedOff,
    ConversationHandedToBot,
    ConversationResolved,
    MessageFlagged,
    MessagesRead,
)
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.identity import IdentityVerifier
from server.origins import token_allows
from server.security import sha256_hex
from server.services.message_writer import MessageWriter, NewMessage

# unassigned: waiting for a person (no agent, and no bot answering); bot: a bot is answering.
LIST_FILTERS = ("unassigned", "mine", "bot", "all")
TOKEN_INVALID = "Embed token invalid."
ORIGIN_REFUSED = "Origin not allowed for this embed token."
WIDGET_HISTORY_LIMIT = 100
REPLAY_BATCH = 500

_C = Conversation.__table__
_S = ConversationSession.__table__
_E = EndUser.__table__
_M = Message.__table__
_T = EmbedToken.__table__
_CH = Channel.__table__
_U = User.__table__
_B = Bot.__table__
# The embed token a conversation was opened under, and its bot (_conversation_select).
_CT = _T.alias("conversation_token")
_CCH = _CH.alias("conversation_channel")


@dataclass(frozen=True, slots=True)
class _Entry:
    """Where a conversation is opened: an organization's channel, under an embed token (the
    widget) or none (the integration API)."""

    organization_id: str
    channel_id: str
    id: str | None  # the embed token's


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """What the real-time layer may cache about a socket's right to a conversation."""

    id: str
    organization_id: str
    end_user_external_id: str
    last_seq: int
    # For an end user: the embed token it reaches the conversation under (None for agents, and
    # for conversations opened before tokens were recorded). Its revocation ends the access.
    embed_token_id: str | None = None


# The identity columns of a channel, labelled for _ChannelRow (server/identity.py).
_CHANNEL_IDENTITY = (
    _CH.c.identity_mode,
    _CH.c.identity_salt,
    _CH.c.identity_jwt_algorithm,
    _CH.c.identity_jwks_url,
)


@dataclass(frozen=True, slots=True)
class _ChannelRow:
    """A channel's identity settings, from any row that selected _CHANNEL_IDENTITY."""

    id: str
    identity_mode: str
    identity_salt: str | None
    identity_jwt_algorithm: str | None
    identity_jwks_url: str | None

    @classmethod
    def of(cls, row, channel_id: str | None = None) -> _ChannelRow:
        return cls(
            channel_id or row.channel_id,
            row.identity_mode,
            row.identity_salt,
            row.identity_jwt_algorithm,
            row.identity_jwks_url,
        )


def channel_identity_of(row, channel_id: str | None = None) -> _ChannelRow:
    """The identity settings in a live_embed_token() or mobile_channel() row (give the
    channel's id for the latter), for IdentityVerifier.verify."""
    return _ChannelRow.of(row, channel_id)


def _conversation_bot_id():
    """The bot of a conversation: its embed token's, else its channel's (None: none)."""
    return func.coalesce(_CT.c.bot_id, _CCH.c.bot_id)


def _conversation_select():
    open_session = and_(_S.c.conversation_id == _C.c.id, _S.c.status == "open")
    return select(
        _C.c.id,
        _C.c.organization_id,
        _C.c.channel_id,
        _C.c.created_at,
        _C.c.updated_at,
        _C.c.last_seq,
        _C.c["metadata"].label("metadata"),
        _E.c.id.label("end_user_id"),
        _E.c.external_id,
        _E.c.display_name,
        _E.c.attributes.label("end_user_attributes"),
        _S.c.id.label("session_id"),
        _S.c.status.label("session_status"),
        _S.c.assigned_agent_id,
        _S.c.tags,
        _S.c.handed_off_at,
        _B.c.id.label("bot_id"),
    ).select_from(_with_bot(_C.join(_E, _E.c.id == _C.c.end_user_id).outerjoin(_S, open_session)))


def _with_bot(joined, only_with_bot: bool = False):
    """`joined` (conversations and more) with the conversation's enabled bot (_B), if any."""
    joined = joined.outerjoin(_CT, _CT.c.id == _C.c.embed_token_id).join(
        _CCH, _CCH.c.id == _C.c.channel_id
    )
    bot = and_(_B.c.id == _conversation_bot_id(), _B.c.enabled.is_(True))
    return joined.join(_B, bot) if only_with_bot else joined.outerjoin(_B, bot)


def _bot_answering():
    """In a _conversation_select: the open session is the bot's (no agent, not handed off)."""
    return and_(
        _S.c.id.is_not(None),
        _S.c.assigned_agent_id.is_(None),
        _S.c.handed_off_at.is_(None),
        _B.c.id.is_not(None),
    )


def _waiting_for_people():
    """In a _conversation_select: the open session waits for an agent."""
    return and_(
        _S.c.id.is_not(None),
        _S.c.assigned_agent_id.is_(None),
        or_(_B.c.id.is_(None), _S.c.handed_off_at.is_not(None)),
    )


def _scope(stmt, actor: Actor, conversation_id: str):
    """The conversation, if the actor reaches it: an end user by its external_id, every other
    kind of actor by its organization."""
    stmt = stmt.where(_C.c.id == conversation_id)
    if actor.kind is ActorKind.END_USER:
        return stmt.where(_E.c.external_id == actor.external_id)
    return stmt.where(_C.c.organization_id == actor.organization_id)


def normalize_tags(tags: list[str]) -> list[str]:
    seen: list[str] = []
    for tag in tags:
        t = tag.strip()
        if t and t not in seen:
            seen.append(t)
    return seen


class ConversationService:
    def __init__(self, db: Database, identity: IdentityVerifier | None = None) -> None:
        self.db = db
        self.writer = MessageWriter(db)
        # Verifies end users on channels that require it (None: a verifier without a secret
        # key, which still refuses every proof on such channels).
        self.identity = identity or IdentityVerifier("")

    async def start(self) -> None:
        await self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()

    # ---- lookups -------------------------------------------------------------------------

    async def _load(self, session, actor: Actor, conversation_id: str):
        row = (
            await session.execute(_scope(_conversation_select(), actor, conversation_id))
        ).first()
        if row is None:
            raise NotFound("Conversation not found.")
        return row

    async def facts(self, actor: Actor, conversation_id: str) -> ConversationFacts:
        """Check that the actor may use the conversation. Raises NotFound.

        An end user is under an embed token: the one its client presented, else the one that
        created or last opened the conversation. Raises Forbidden when that token is revoked,
        or when the visitor's browser Origin is not among the token's allowed origins; and
        NotFound when the presented token is of another channel (not yours).
        """
        if actor.kind is ActorKind.END_USER:
            return await self._end_user_facts(actor, conversation_id)
        stmt = _scope(
            select(_C.c.id, _C.c.organization_id, _E.c.external_id, _C.c.last_seq).select_from(
                _C.join(_E, _E.c.id == _C.c.end_user_id)
            ),
            actor,
            conversation_id,
        )
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        if row is None:
            raise NotFound("Conversation not found.")
        return ConversationFacts(row.id, row.organization_id, row.external_id, row.last_seq)

    async def _end_user_facts(self, actor: EndUserActor, conversation_id: str) -> ConversationFacts:
        token_key = actor.embed_token_id if actor.embed_token_id else _C.c.embed_token_id
        stmt = _scope(
            select(
                _C.c.id,
                _C.c.organization_id,
                _C.c.channel_id,
                _E.c.external_id,
                _C.c.last_seq,
                _T.c.id.label("token_id"),
                _T.c.channel_id.label("token_channel_id"),
                _T.c.revoked_at,
                _T.c.allowed_origins,
                *_CHANNEL_IDENTITY,
            ).select_from(
                _C.join(_E, _E.c.id == _C.c.end_user_id)
                .join(_CH, _CH.c.id == _C.c.channel_id)
                .outerjoin(_T, _T.c.id == token_key)
            ),
            actor,
            conversation_id,
        )
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        if row is None:
            raise NotFound("Conversation not found.")
        if actor.embed_token_id and row.token_channel_id != row.channel_id:
            # A token of another channel (or organization) does not reach this conversation.
            raise NotFound("Conversation not found.")
        if row.token_id is not None:
            if row.revoked_at is not None:
                raise Forbidden("This chat is no longer available (embed token revoked).")
            if not token_allows(row.allowed_origins, actor.origin):
                raise Forbidden(ORIGIN_REFUSED)
        await self.identity.verify(_ChannelRow.of(row), actor.external_id, actor.proof)
        return ConversationFacts(
            row.id, row.organization_id, row.external_id, row.last_seq, row.token_id
        )

    async def live_embed_tokens(self, token_ids: list[str]) -> set[str]:
        """Which of these embed tokens exist and are not revoked (one query per 500 ids)."""
        live: set[str] = set()
        async with self.db.read() as session:
            for i in range(0, len(token_ids), 500):
                chunk = token_ids[i : i + 500]
                rows = await session.execute(
                    select(_T.c.id).where(_T.c.id.in_(chunk), _T.c.revoked_at.is_(None))
                )
                live.update(r.id for r in rows)
        return live

    async def get_conversation(self, actor: StaffActor, conversation_id: str) -> dict[str, Any]:
        async with self.db.read() as session:
            return serializers.conversation(await self._load(session, actor, conversation_id))

    async def list_conversations(
        self, actor: AgentActor, filter: str = "unassigned", limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        if filter not in LIST_FILTERS:
            raise InvalidInput("filter must be one of unassigned, mine, bot, all.")
        stmt = _conversation_select().where(_C.c.organization_id == actor.organization_id)
        if filter == "unassigned":
            stmt = stmt.where(_waiting_for_people())
        elif filter == "bot":
            stmt = stmt.where(_bot_answering())
        elif filter == "mine":
            stmt = stmt.where(_S.c.assigned_agent_id == actor.user_id)
        stmt = stmt.order_by(_C.c.updated_at.desc(), _C.c.id).limit(limit).offset(offset)
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [serializers.conversation(r) for r in rows]

    # ---- the integration API ----------------------------------------------------------------

    async def list_for_integration(
        self,
        actor: IntegrationActor,
        status: str | None = None,
        assignee: str | None = None,
        channel_id: str | None = None,
        updated_since: datetime | None = None,
        limit: int = 100,
        cursor: tuple[datetime, str] | None = None,
    ) -> tuple[list[dict[str, Any]], tuple[datetime, str] | None]:
        """The organization's conversations, least recently updated first (a poller keeps
        its place with the cursor: (updated_at, id) of the last one seen). Filters: status
        `open` (an open session) or `resolved` (none), assignee an agent id or `none`
        (open and unassigned), channel, updated at or after `updated_since` (UTC).
        Returns (conversations, the next page's cursor or None)."""
        stmt = _conversation_select().where(_C.c.organization_id == actor.organization_id)
        if status == "open":
            stmt = stmt.where(_S.c.id.is_not(None))
        elif status == "resolved":
            stmt = stmt.where(_S.c.id.is_(None))
        if assignee == "none":
            stmt = stmt.where(_S.c.id.is_not(None), _S.c.assigned_agent_id.is_(None))
        elif assignee is not None:
            stmt = stmt.where(_S.c.assigned_agent_id == assignee)
        if channel_id is not None:
            stmt = stmt.where(_C.c.channel_id == channel_id)
        if updated_since is not None:
            stmt = stmt.where(_C.c.updated_at >= updated_since)
        if cursor is not None:
            after_time, after_id = cursor
            stmt = stmt.where(
                or_(
                    _C.c.updated_at > after_time,
                    and_(_C.c.updated_at == after_time, _C.c.id > after_id),
                )
            )
        stmt = stmt.order_by(_C.c.updated_at.asc(), _C.c.id.asc()).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (rows[-1].updated_at, rows[-1].id) if more else None
        return [serializers.conversation_for_integration(r) for r in rows], next_cursor

    async def get_for_integration(
        self, actor: IntegrationActor, conversation_id: str
    ) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = await self._load(conn, actor, conversation_id)
        return serializers.conversation_for_integration(row)

    async def update_for_integration(
        self,
        actor: IntegrationActor,
        conversation_id: str,
        display_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        """Set the end user's display name, replace the conversation's metadata, replace the
        open session's tags (Conflict when there is none). Only what is given changes."""
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            row = await self._load(s, actor, conversation_id)
            if tags is not None:
                if row.session_id is None:
                    raise Conflict("No open session to tag: the conversation is resolved.")
                await s.execute(
                    update(_S).where(_S.c.id == row.session_id).values(tags=normalize_tags(tags))
                )
            if display_name is not None:
                await s.execute(
                    update(_E).where(_E.c.id == row.end_user_id).values(display_name=display_name)
                )
            values: dict[str, Any] = {"updated_at": utcnow()}
            if metadata is not None:
                values["metadata"] = metadata
            await s.execute(update(_C).where(_C.c.id == conversation_id).values(**values))
            row = await self._load(s, actor, conversation_id)
        return serializers.conversation_for_integration(row)

    async def assign_to_agent(
        self, actor: IntegrationActor, conversation_id: str, agent_id: str
    ) -> dict[str, Any]:
        """Hand the open session to an agent of the organization (the integration routes
        it). Raises NotFound (conversation, or no such agent in the organization), Conflict
        (no open session). Raises ConversationAssigned when the holder changes."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            row = await self._load(s, actor, conversation_id)
            agent = (
                await s.execute(
                    select(_U.c.id).where(
                        _U.c.id == agent_id, _U.c.organization_id == actor.organization_id
                    )
                )
            ).first()
            if agent is None:
                raise NotFound("Agent not found.")
            if row.session_id is None:
                raise Conflict("The conversation has no open session to assign.")
            if row.assigned_agent_id != agent_id:
                await s.execute(
                    update(_S)
                    .where(_S.c.id == row.session_id)
                    .values(assigned_agent_id=agent_id, assigned_at=now)
                )
                uow.raise_event(
                    ConversationAssigned(
                        actor.organization_id,
                        conversation_id,
                        row.session_id,
                        agent_id,
                        serializers.iso(now),
                    )
                )
            row = await self._load(s, actor, conversation_id)
        return serializers.conversation_for_integration(row)

    async def unassign(self, actor: IntegrationActor, conversation_id: str) -> dict[str, Any]:
        """Put the open session back in the queue (no agent holds it). Raises NotFound,
        Conflict (no open session). Raises ConversationAssigned with agent_id None when an
        agent held it (sockets get conversation_assigned with assigned_to null)."""
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            row = await self._load(s, actor, conversation_id)
            if row.session_id is None:
                raise Conflict("The conversation has no open session to unassign.")
            if row.assigned_agent_id is not None:
                await s.execute(
                    update(_S)
                    .where(_S.c.id == row.session_id)
                    .values(assigned_agent_id=None, assigned_at=None)
                )
                uow.raise_event(
                    ConversationAssigned(
                        actor.organization_id,
                        conversation_id,
                        row.session_id,
                        None,
                        serializers.iso(utcnow()),
                    )
                )
            row = await self._load(s, actor, conversation_id)
        return serializers.conversation_for_integration(row)

    # ---- opening a conversation (widget, native apps) ------------------------------------

    async def create_or_get_conversation(
        self,
        embed_token: str,
        external_id: str,
        customer_name: str | None = None,
        origin: str | None = None,
        own_origin: str | None = None,
        proof: IdentityProof | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Open (or find) the visitor's conversation on the token's channel.

        Raises Forbidden for an unknown or revoked token, or a browser Origin outside the
        token's allowed origins; IdentityRequired / IdentityRefused when the channel verifies
        its end users and `proof` is missing or wrong (nothing is created or renamed).
        Returns (conversation, created).
        """
        token = await self.live_embed_token(embed_token, origin, own_origin)
        await self.identity.verify(_ChannelRow.of(token), external_id, proof)
        for attempt in range(3):
            try:
                return await self._create_or_get(
                    _Entry(token.organization_id, token.channel_id, token.id),
                    external_id,
                    customer_name,
                )
            except IntegrityError:
                # Two first requests of one visitor raced; the loser finds the winner's rows.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def live_embed_token(
        self, token: str, origin: str | None = None, own_origin: str | None = None
    ):
        """The live embed token a visitor's client presents, checked once for every way in
        (widget page, conversation opening, socket handshake, uploads): its row
        (organization, channel, allowed origins, the channel's identity settings). Raises
        Forbidden for an unknown or revoked token, and for a browser `origin` the token does
        not admit (origins.token_allows; `own_origin` is the server's own, the widget
        page's)."""
        stmt = (
            select(_T, *_CHANNEL_IDENTITY)
            .select_from(_T.join(_CH, _CH.c.id == _T.c.channel_id))
            .where(_T.c.token_hash == sha256_hex(token), _T.c.revoked_at.is_(None))
        )
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        if row is None:
            raise Forbidden(TOKEN_INVALID)
        if not token_allows(row.allowed_origins, origin, own_origin):
            raise Forbidden(ORIGIN_REFUSED)
        return row

    async def open_for_integration(
        self,
        actor: IntegrationActor,
        channel_id: str,
        external_id: str,
        display_name: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create or get the conversation of `external_id` on a channel of the integration's
        organization (a server opening a conversation for its user). Raises NotFound for a
        channel of another organization. Returns (conversation, created)."""
        stmt = select(_CH.c.id).where(
            _CH.c.id == channel_id, _CH.c.organization_id == actor.organization_id
        )
        async with self.db.read() as conn:
            if (await conn.execute(stmt)).first() is None:
                raise NotFound("Channel not found.")
        for attempt in range(3):
            try:
                return await self._create_or_get(
                    _Entry(actor.organization_id, channel_id, None), external_id, display_name
                )
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def has_conversation(self, channel_id: str, external_id: str) -> bool:
        """Whether the end user of external_id already has a conversation on the channel."""
        stmt = (
            select(_C.c.id)
            .select_from(_C.join(_E, _E.c.id == _C.c.end_user_id))
            .where(
                _C.c.channel_id == channel_id,
                _E.c.channel_id == channel_id,
                _E.c.external_id == external_id,
            )
            .limit(1)
        )
        async with self.db.read() as session:
            return (await session.execute(stmt)).first() is not None

    async def mobile_channel(self, channel_id: str | None, channel_key: str | None):
        """The mobile channel a native app names by id or public key: its row (organization,
        identity settings). NotFound for anything else (a web chat channel included: its
        visitors come in with an embed token)."""
        cond = _CH.c.id == channel_id if channel_id else _CH.c.public_key == channel_key
        stmt = select(_CH).where(cond, _CH.c.type == "mobile_sdk")
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        if row is None:
            raise NotFound("Mobile channel not found.")
        return row

    async def open_on_mobile_channel(
        self,
        channel,
        external_id: str,
        display_name: str | None = None,
        proof: IdentityProof | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Open (or find) a native app user's conversation on a mobile channel (a row of
        mobile_channel()). IdentityRequired / IdentityRefused when the channel verifies its
        end users and the proof is missing or wrong (nothing created). Returns
        (conversation, created)."""
        await self.identity.verify(_ChannelRow.of(channel, channel.id), external_id, proof)
        for attempt in range(3):
            try:
                return await self._create_or_get(
                    _Entry(channel.organization_id, channel.id, None), external_id, display_name
                )
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _create_or_get(self, token: _Entry, external_id: str, customer_name: str | None):
        created = False
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            user = (
                await s.execute(
                    select(_E.c.id, _E.c.display_name).where(
                        _E.c.channel_id == token.channel_id, _E.c.external_id == external_id
                    )
                )
            ).first()
            if user is None:
                end_user_id = new_id()
                await s.execute(
                    insert(_E).values(
                        id=end_user_id,
                        organization_id=token.organization_id,
                        channel_id=token.channel_id,
                        external_id=external_id,
                        display_name=customer_name,
                        created_at=utcnow(),
                    )
                )
            else:
                end_user_id = user.id
                if customer_name and customer_name != user.display_name:
                    await s.execute(
                        update(_E).where(_E.c.id == end_user_id).values(display_name=customer_name)
                    )
            conv = (
                await s.execute(
                    select(_C.c.id, _C.c.embed_token_id).where(
                        _C.c.channel_id == token.channel_id, _C.c.end_user_id == end_user_id
                    )
                )
            ).first()
            conv_id = conv.id if conv is not None else None
            if conv is not None and token.id is not None and conv.embed_token_id != token.id:
                # The visitor is now under the token that opened the conversation last.
                await s.execute(
                    update(_C).where(_C.c.id == conv_id).values(embed_token_id=token.id)
                )
            if conv_id is None:
                conv_id = new_id()
                now = utcnow()
                await s.execute(
                    insert(_C).values(
                        id=conv_id,
                        organization_id=token.organization_id,
                        channel_id=token.channel_id,
                        end_user_id=end_user_id,
                        embed_token_id=token.id,
                        last_seq=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
                created = True
            row = (await s.execute(_conversation_select().where(_C.c.id == conv_id))).one()
            shape = serializers.conversation(row)
            if created:
                uow.raise_event(
                    ConversationCreated(
                        token.organization_id,
                        conv_id,
                        token.channel_id,
                        shape["end_user"],
                        shape["created_at"],
                    )
                )
        return shape, created

    # ---- messages ------------------------------------------------------------------------

    async def send_message(self, actor: Actor, msg: NewMessage) -> tuple[dict[str, Any], bool]:
        """Store a message and publish it.

        Actor: any actor that reaches the conversation (actors.py), and may act on its open
        session. Locks the conversation row (seq allocation) until commit; concurrent
        sends share a transaction (MessageWriter), each with its own checks, seq and ack.
        Raises NotFound, Forbidden (writing into a session the actor may not act on).
        Raises MessageCreated, and ConversationAssigned first when an agent's message
        reopens a resolved conversation.
        Returns (message, created); a retry with a known client_message_id returns the
        original with created=False and emits nothing.
        """
        return await self.writer.send(actor, msg)

    async def history(
        self,
        actor: Actor,
        conversation_id: str,
        limit: int = 50,
        offset: int = 0,
        after_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        """Messages in seq order.

        Without after_seq: the newest `limit` messages, skipping the `offset` newest, oldest
        first. With after_seq: the first `limit` messages after it (skipping `offset`).
        """
        async with self.db.read() as session:
            await self._load(session, actor, conversation_id)
            stmt = select(_M).where(_M.c.conversation_id == conversation_id)
            if after_seq is not None:
                stmt = stmt.where(_M.c.seq > after_seq).order_by(_M.c.seq.asc())
                rows = (await session.execute(stmt.limit(limit).offset(offset))).all()
            else:
                stmt = stmt.order_by(_M.c.seq.desc()).limit(limit).offset(offset)
                rows = list(reversed((await session.execute(stmt)).all()))
        return [serializers.message(r) for r in rows]

    async def messages_page(
        self,
        actor: StaffActor,
        conversation_id: str,
        after_seq: int = 0,
        since: datetime | None = None,
        sender_type: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """For the integration API: messages after `after_seq`, oldest first, optionally only
        those created at or after `since` (UTC) and of one `sender_type`. Returns {"messages",
        "next_after_seq"}: the seq to pass as after_seq for the next page, None when this page
        is the last. Raises NotFound."""
        async with self.db.read() as conn:
            await self._load(conn, actor, conversation_id)
            stmt = select(_M).where(_M.c.conversation_id == conversation_id, _M.c.seq > after_seq)
            if since is not None:
                stmt = stmt.where(_M.c.created_at >= since)
            if sender_type is not None:
                stmt = stmt.where(_M.c.sender_type == sender_type)
            stmt = stmt.order_by(_M.c.seq.asc()).limit(limit + 1)
            rows = (await conn.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "messages": [serializers.message(r) for r in rows],
            "next_after_seq": rows[-1].seq if more else None,
        }

    async def widget_history(
        self,
        external_id: str,
        conversation_id: str,
        after_seq: int | None = None,
        origin: str | None = None,
        proof: IdentityProof | None = None,
    ) -> list[dict[str, Any]]:
        """The widget's history. Raises NotFound, and Forbidden once the conversation's embed
        token is revoked or when a browser `origin` (other than the server's own) is outside
        the token's allowed origins, as the visitor's socket events are refused."""
        actor = EndUserActor(external_id, origin=origin, proof=proof)
        await self.facts(actor, conversation_id)
        rows = await self.history(actor, conversation_id, WIDGET_HISTORY_LIMIT, 0, after_seq)
        return [serializers.message_for_widget(r) for r in rows]

    async def messages_after(
        self, actor: Actor, conversation_id: str, after_seq: int, limit: int = REPLAY_BATCH
    ) -> list[dict[str, Any]]:
        """For replay on reconnect: messages with seq > after_seq, oldest first."""
        return await self.history(actor, conversation_id, limit, 0, after_seq)

    async def mark_read(
        self, actor: Actor, conversation_id: str, message_ids: list[str]
    ) -> list[str]:
        """Record that the actor read these messages of the conversation.

        Every id must belong to the conversation (else InvalidInput, nothing changes). The
        actor's own messages are skipped; a first read time is kept. Raises MessagesRead with
        the ids that changed. Returns those ids.
        """
        now = utcnow()
        reader = actor.sender_id
        changed: list[str] = []
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            conv = await self._load(s, actor, conversation_id)
            rows = (
                await s.execute(
                    select(_M.c.id, _M.c.sender_type, _M.c.sender_id, _M.c.read_by)
                    .where(_M.c.conversation_id == conversation_id, _M.c.id.in_(message_ids))
                    .with_for_update()
                )
            ).all()
            if len(rows) != len(set(message_ids)):
                raise InvalidInput("Some message_ids are not messages of this conversation.")
            for row in rows:
                if row.sender_type == actor.sender_type and row.sender_id == reader:
                    continue
                read_by = dict(row.read_by or {})
                if reader in read_by:
                    continue
                read_by[reader] = serializers.iso(now)
                await s.execute(update(_M).where(_M.c.id == row.id).values(read_by=read_by))
                changed.append(row.id)
            if changed:
                uow.raise_event(
                    MessagesRead(
                        conv.organization_id,
                        conversation_id,
                        changed,
                        actor.sender_type,
                        reader,
                        serializers.iso(now),
                    )
                )
        return changed

    # ---- bots ----------------------------------------------------------------------------

    async def bot_turn(self, conversation_id: str):
        """What the conversation's bot needs to answer: the conversation, its end user, its
        open session and its enabled bot, as one row (None when the conversation has no open
        session or no enabled bot). BotService decides from it whether the bot answers."""
        stmt = (
            select(
                _C.c.id,
                _C.c.organization_id,
                _C.c.channel_id,
                _E.c.id.label("end_user_id"),
                _E.c.external_id,
                _E.c.display_name,
                _E.c.attributes.label("end_user_attributes"),
                _S.c.id.label("session_id"),
                _S.c.assigned_agent_id,
                _S.c.handed_off_at,
                _S.c.bot_state,
                _B.c.id.label("bot_id"),
                _B.c.name.label("bot_name"),
                _B.c.kind.label("bot_kind"),
                _B.c.flow.label("bot_flow"),
                _B.c.commands.label("bot_commands"),
                _B.c.webhook_url.label("bot_webhook_url"),
                _B.c.webhook_salt.label("bot_webhook_salt"),
                _B.c.timeout_seconds.label("bot_timeout_seconds"),
            )
            .select_from(
                _with_bot(
                    _C.join(_E, _E.c.id == _C.c.end_user_id).join(
                        _S, and_(_S.c.conversation_id == _C.c.id, _S.c.status == "open")
                    ),
                    only_with_bot=True,
                )
            )
            .where(_C.c.id == conversation_id)
        )
        async with self.db.read() as conn:
            return (await conn.execute(stmt)).first()

    async def save_bot_state(
        self, session_id: str, state: dict[str, Any], collected: dict[str, str] | None = None
    ) -> None:
        """Keep the bot's memory of an open session, and what it collected from the end user
        (merged into the end user's attributes)."""
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            await s.execute(
                update(_S)
                .where(_S.c.id == session_id, _S.c.status == "open")
                .values(bot_state=state)
            )
            if collected:
                user = (
                    await s.execute(
                        select(_E.c.id, _E.c.attributes)
                        .select_from(_E.join(_C, _C.c.end_user_id == _E.c.id))
                        .join(_S, _S.c.conversation_id == _C.c.id)
                        .where(_S.c.id == session_id)
                        .with_for_update(of=_E)
                    )
                ).first()
                if user is not None:
                    await s.execute(
                        update(_E)
                        .where(_E.c.id == user.id)
                        .values(attributes={**(user.attributes or {}), **collected})
                    )

    async def flag_message(
        self, bot: BotActor, conversation_id: str, message_id: str, reason: str
    ) -> bool:
        """Moderation: mark an end user's message of the bot's organization as flagged.
        Raises MessageFlagged the first time. Returns whether it changed."""
        async with self.db.unit_of_work() as uow:
            row = (
                await uow.conn.execute(
                    update(_M)
                    .where(
                        _M.c.id == message_id,
                        _M.c.conversation_id == conversation_id,
                        _M.c.sender_type == "end_user",
                        _M.c.flagged.is_(False),
                        _M.c.conversation_id.in_(
                            select(_C.c.id).where(_C.c.organization_id == bot.organization_id)
                        ),
                    )
                    .values(flagged=True)
                    .returning(_M.c.seq)
                )
            ).first()
            if row is None:
                return False
            uow.raise_event(
                MessageFlagged(
                    bot.organization_id,
                    conversation_id,
                    message_id,
                    row.seq,
                    {"type": bot.kind.value, "id": bot.bot_id},
                    reason,
                )
            )
        return True

    async def hand_off(
        self, bot: BotActor, conversation_id: str, session_id: str, reason: str
    ) -> bool:
        """The bot hands the open session to people: it joins the queue of conversations
        waiting for an agent. A no-op (False) when an agent holds it, it was handed off
        already, or it is no longer open. Raises ConversationHandedOff."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            done = (
                await s.execute(
                    update(_S)
                    .where(
                        _S.c.id == session_id,
                        _S.c.conversation_id == conversation_id,
                        _S.c.organization_id == bot.organization_id,
                        _S.c.status == "open",
                        _S.c.assigned_agent_id.is_(None),
                        _S.c.handed_off_at.is_(None),
                    )
                    .values(handed_off_at=now)
                    .returning(_S.c.id)
                )
            ).first()
            if done is None:
                return False
            await s.execute(update(_C).where(_C.c.id == conversation_id).values(updated_at=now))
            uow.raise_event(
                ConversationHandedOff(
                    bot.organization_id,
                    conversation_id,
                    session_id,
                    bot.bot_id,
                    reason,
                    serializers.iso(now),
                )
            )
        return True

    async def hand_to_bot(self, actor: AgentActor, conversation_id: str) -> dict[str, Any]:
        """An agent hands the open session back to the conversation's bot: no agent holds
        it, the bot answers the next message, starting afresh. Raises NotFound, Conflict (no
        open session, or no enabled bot), Forbidden (another agent's session, for the role
        `agent`). Raises ConversationAssigned (to nobody) when an agent held it, and
        ConversationHandedToBot."""
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            row = await self._load(s, actor, conversation_id)
            if row.bot_id is None:
                raise Conflict("This conversation has no enabled bot to hand it to.")
            sess = await self._open_session_for_update(s, actor, conversation_id)
            await s.execute(
                update(_S)
                .where(_S.c.id == sess.id)
                .values(
                    assigned_agent_id=None, assigned_at=None, handed_off_at=None, bot_state=None
                )
            )
            await s.execute(update(_C).where(_C.c.id == conversation_id).values(updated_at=now))
            if sess.assigned_agent_id is not None:
                # As an integration's unassign: the queue sees assigned_to null.
                uow.raise_event(
                    ConversationAssigned(
                        actor.organization_id,
                        conversation_id,
                        sess.id,
                        None,
                        serializers.iso(now),
                    )
                )
            uow.raise_event(
                ConversationHandedToBot(
                    actor.organization_id,
                    conversation_id,
                    sess.id,
                    row.bot_id,
                    actor.user_id,
                    serializers.iso(now),
                )
            )
            row = await self._load(s, actor, conversation_id)
        return serializers.conversation(row)

    # ---- assignment and resolution -------------------------------------------------------

    async def assign_conversation(self, actor: AgentActor, conversation_id: str) -> dict[str, Any]:
        """The calling agent claims the conversation's open session.

        Atomic (UPDATE ... WHERE assigned_agent_id IS NULL), so two agents racing get one
        winner. Raises NotFound, Conflict (no open session, or held by another agent).
        Raises ConversationAssigned. Claiming one's own is a no-op.
        """
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            claimed = (
                await s.execute(
                    update(_S)
                    .where(
                        _S.c.conversation_id == conversation_id,
                        _S.c.organization_id == actor.organization_id,
                        _S.c.status == "open",
                        _S.c.assigned_agent_id.is_(None),
                    )
                    .values(assigned_agent_id=actor.user_id, assigned_at=now)
                    .returning(_S.c.id)
                )
            ).first()
            if claimed is not None:
                uow.raise_event(
                    ConversationAssigned(
                        actor.organization_id,
                        conversation_id,
                        claimed.id,
                        actor.user_id,
                        serializers.iso(now),
                    )
                )
                return {
                    "id": conversation_id,
                    "assigned_agent_id": actor.user_id,
                    "assigned_at": serializers.iso(now),
                }
            row = await self._load(s, actor, conversation_id)
            if row.session_id is None:
                raise Conflict("The conversation has no open session to assign.")
            if row.assigned_agent_id != actor.user_id:
                raise Conflict("The conversation is already assigned to another agent.")
            assigned_at = (
                await s.execute(select(_S.c.assigned_at).where(_S.c.id == row.session_id))
            ).scalar()
            return {
                "id": conversation_id,
                "assigned_agent_id": actor.user_id,
                "assigned_at": serializers.iso(assigned_at),
            }

    async def _open_session_for_update(self, s, actor: StaffActor, conversation_id: str):
        await self._load(s, actor, conversation_id)
        sess = (
            await s.execute(
                select(_S.c.id, _S.c.assigned_agent_id, _S.c.tags)
                .where(
                    _S.c.conversation_id == conversation_id,
                    _S.c.organization_id == actor.organization_id,
                    _S.c.status == "open",
                )
                .with_for_update()
            )
        ).first()
        if sess is None:
            raise Conflict("No open session: the conversation is already resolved.")
        if not actor.may_act_on(sess.assigned_agent_id):
            raise Forbidden("This conversation is assigned to another agent.")
        return sess

    async def resolve(
        self, actor: StaffActor, conversation_id: str, tags: list[str] | None = None
    ) -> dict[str, Any]:
        """Close the open session, adding the given tags to those it has.

        Raises NotFound, Conflict (already resolved), Forbidden (an agent resolving another
        agent's session). Raises ConversationResolved.
        """
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            sess = await self._open_session_for_update(s, actor, conversation_id)
            final_tags = normalize_tags(list(sess.tags or []) + list(tags or []))
            await s.execute(
                update(_S)
                .where(_S.c.id == sess.id)
                .values(status="resolved", resolved_at=now, tags=final_tags)
            )
            await s.execute(update(_C).where(_C.c.id == conversation_id).values(updated_at=now))
            uow.raise_event(
                ConversationResolved(
                    actor.organization_id,
                    conversation_id,
                    sess.id,
                    final_tags,
                    serializers.iso(now),
                    {"type": actor.kind.value, "id": actor.sender_id},
                )
            )
        return {
            "id": conversation_id,
            "session_id": sess.id,
            "status": "resolved",
            "tags": final_tags,
            "resolved_at": serializers.iso(now),
        }

    async def set_tags(
        self, actor: StaffActor, conversation_id: str, tags: list[str]
    ) -> dict[str, Any]:
        """Replace the open session's tags. Raises NotFound, Conflict, Forbidden."""
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            sess = await self._open_session_for_update(s, actor, conversation_id)
            await s.execute(update(_S).where(_S.c.id == sess.id).values(tags=normalize_tags(tags)))
            row = await self._load(s, actor, conversation_id)
        return serializers.conversation(row)

    async def counts(self, actor: AgentActor) -> dict[str, int]:
        """Open conversations per inbox filter, for badges."""
        counted: dict[str, int] = {}
        async with self.db.read() as session:
            for name, where in (
                ("unassigned", _waiting_for_people()),
                ("bot", _bot_answering()),
                ("mine", _S.c.assigned_agent_id == actor.user_id),
            ):
                stmt = select(func.count()).select_from(
                    _conversation_select()
                    .where(_C.c.organization_id == actor.organization_id, where)
                    .subquery()
                )
                counted[name] = int((await session.execute(stmt)).scalar() or 0)
        return counted

    async def last_seqs(self, conversation_ids: list[str]) -> dict[str, int]:
        """The highest stored seq of each conversation that exists, by id.

        For the real-time layer, which re-announces the head of the rooms its sockets were
        admitted to after a fan-out outage: no actor, and the answer goes only to those rooms.
        One query per 500 ids, no lock.
        """
        heads: dict[str, int] = {}
        ids = list(dict.fromkeys(conversation_ids))
        async with self.db.read() as session:
            for start in range(0, len(ids), 500):
                rows = await session.execute(
                    select(_C.c.id, _C.c.last_seq).where(_C.c.id.in_(ids[start : start + 500]))
                )
                heads.update({row.id: int(row.last_seq or 0) for row in rows})
        return heads
