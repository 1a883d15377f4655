"""Bots: an organization's first responders, and when they hand a conversation to people.

- **Management** (owner and admin): bots of two kinds, `flow` (answers from a JSON definition,
  server/bots/flow.py) and `webhook` (the organization's own service answers,
  server/bots/webhook.py), each attached to channels and web chat embed tokens (a token's bot
  wins over its channel's).
- **Answering**: the "bots" durable subscriber of the outbox. For each end user's message in a
  conversation whose open session is the bot's (no agent holds it, not handed off, the bot is
  enabled), the bot shows `typing_indicator`, works out its answer and writes its replies as
  ordinary messages (`sender_type: bot`) through the message writer. The outbox delivers at
  least once, in order per conversation, from one process at a time: the replies carry a
  client_message_id made from the end user's message id, so a redelivery stores nothing twice
  and each message gets exactly one answer. Once an agent claims the conversation, the writer
  refuses the bot's messages (BotActor.may_act_on) and the bot stops at once.
- **Hand-off**: by the end user's request, a command, a fallback after misunderstandings, the
  bot's own decision, or its failure (no answer within its timeout, an error): the session
  then waits in the unassigned queue for a person. An agent can hand it back to the bot.
- **Moderation**: a flow's rules, or a webhook bot's answer, flag the end user's message
  (server/services/conversations.py: flag_message); the bot does not answer it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from typing import Any

from sqlalchemy import delete, insert, select, update

from models import Bot, Channel, EmbedToken
from models.base import new_id, utcnow
from server import serializers
from server.actors import AgentActor, BotActor
from server.bots import flow as flows
from server.bots.webhook import BotAnswer, BotCallFailed, WebhookBotClient
from server.bus import EventBus
from server.db import Database
from server.domain_events import (
    ConversationHandedOff,
    ConversationHandedToBot,
    DomainEvent,
    MessageCreated,
    TypingStarted,
    TypingStopped,
)
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.security import sha256_hex
from server.services.conversations import ConversationService
from server.services.message_writer import NewMessage
from server.services.orgs import channel_public, token_public
from server.services.webhooks import SECRET_PREFIX, check_target
from server.settings import Settings

log = logging.getLogger(__name__)

SUBSCRIBER_NAME = "bots"
EVENT_TYPES = (MessageCreated.name, ConversationHandedOff.name, ConversationHandedToBot.name)
# How soon a bot created or enabled on another process starts answering.
ORGS_REFRESH_SECONDS = 1.0
# What the end user reads when a webhook bot fails; then a person takes over.
BOT_FAILED_MESSAGE = (
    "Sorry, our assistant cannot answer right now. A person will reply here as soon as possible."
)
MIN_TIMEOUT_SECONDS = 1.0
MAX_TIMEOUT_SECONDS = 10.0
# A webhook bot's call runs inside an outbox delivery, which is cancelled before its lease
# ends and starts with at least half the lease left (server/queue.py): the call gets at most
# this share of CHATD_OUTBOX_LEASE_SECONDS, the rest is for writing the replies or the
# hand-off. With the default lease (30 s) a bot's own timeout (at most 10 s) always fits.
LEASE_SHARE = 0.4

_B = Bot.__table__
_CH = Channel.__table__
_T = EmbedToken.__table__


def bot_public(row: Any, channel_ids: list[str], token_ids: list[str]) -> dict[str, Any]:
    commands = list(row.commands or [])
    return {
        "id": row.id,
        "name": row.name,
        "avatar_url": row.avatar_url,
        "kind": row.kind,
        "enabled": bool(row.enabled),
        "flow": row.flow,
        "commands": commands,
        "all_commands": flows.all_commands(commands),
        "webhook_url": row.webhook_url,
        "timeout_seconds": row.timeout_seconds,
        "channel_ids": channel_ids,
        "embed_token_ids": token_ids,
        "created_at": serializers.iso(row.created_at),
        "updated_at": serializers.iso(row.updated_at),
    }


def bot_for_clients(row: Any) -> dict[str, Any]:
    """What the widget and apps show of a bot: its name, avatar and commands."""
    return {
        "id": row.id,
        "name": row.name,
        "avatar_url": row.avatar_url,
        "commands": flows.all_commands(list(row.commands or [])),
    }


class BotService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        conversations: ConversationService,
        bus: EventBus,
        api_keys,
    ) -> None:
        self.db = db
        self.settings = settings
        self.conversations = conversations
        self.bus = bus
        self.api_keys = api_keys
        self.client = WebhookBotClient(settings.webhook_allow_private_targets)
        # Organizations with an enabled bot: the write path asks wants() (no I/O) whether an
        # end user's message needs an outbox row for the bots.
        self._orgs: set[str] = set()
        # Organizations with an enabled webhook bot (told about hand-offs).
        self._webhook_orgs: set[str] = set()
        self._refresher: asyncio.Task | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh_orgs()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="bot-orgs")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self.client.close()

    async def refresh_orgs(self) -> None:
        """The organizations with an enabled bot (attached or not: a channel or token created
        with a bot, on any process, is answered from its first message)."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(_B.c.organization_id, _B.c.kind).where(_B.c.enabled.is_(True))
                )
            ).all()
        self._orgs = {r.organization_id for r in rows}
        self._webhook_orgs = {r.organization_id for r in rows if r.kind == "webhook"}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(ORGS_REFRESH_SECONDS)
            try:
                await self.refresh_orgs()
            except Exception:  # noqa: BLE001 - the database is down: keep what we know
                log.warning("bots: reading the organizations with bots failed", exc_info=True)

    def wants(self, event: DomainEvent) -> bool:
        """An end user's message, or a hand-off, in an organization with a bot (no I/O)."""
        if isinstance(event, MessageCreated):
            return (
                event.organization_id in self._orgs
                and event.message.get("sender_type") == "end_user"
            )
        return event.organization_id in self._webhook_orgs

    # ---- management -----------------------------------------------------------------------

    @staticmethod
    def _require_admin(actor: AgentActor) -> None:
        if not actor.is_admin:
            raise Forbidden("Your role does not allow this.")

    def secret_for(self, bot_id: str, salt: str) -> str:
        """A webhook bot's signing secret (Standard Webhooks' whsec_ form), derived from the
        server's secret key and the bot's salt: never stored."""
        raw = hmac.new(
            self.settings.secret_key.encode(),
            f"bot-secret:{bot_id}:{salt}".encode(),
            hashlib.sha256,
        ).digest()
        return SECRET_PREFIX + base64.b64encode(raw).decode()

    async def _public(self, conn, row) -> dict[str, Any]:
        channels = await conn.execute(select(_CH.c.id).where(_CH.c.bot_id == row.id))
        tokens = await conn.execute(select(_T.c.id).where(_T.c.bot_id == row.id))
        return bot_public(row, [r.id for r in channels], [r.id for r in tokens])

    async def _row(self, conn, organization_id: str, bot_id: str):
        row = (
            await conn.execute(
                select(_B).where(_B.c.id == bot_id, _B.c.organization_id == organization_id)
            )
        ).first()
        if row is None:
            raise NotFound("Bot not found.")
        return row

    async def list(self, actor: AgentActor) -> list[dict[str, Any]]:
        stmt = (
            select(_B)
            .where(_B.c.organization_id == actor.organization_id)
            .order_by(_B.c.created_at, _B.c.id)
        )
        async with self.db.read() as conn:
            return [await self._public(conn, r) for r in (await conn.execute(stmt)).all()]

    async def get(self, actor: AgentActor, bot_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await self._public(conn, await self._row(conn, actor.organization_id, bot_id))

    async def _checked(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        """The columns for a bot of `kind` from the given fields (InvalidInput naming the
        field)."""
        out: dict[str, Any] = {}
        for key in ("name", "avatar_url", "enabled"):
            if key in values:
                out[key] = values[key]
        if kind == "flow":
            if values.get("webhook_url"):
                raise InvalidInput("webhook_url: Only webhook bots have a URL.")
            flow = flows.validate_flow(values.get("flow") or {}) if "flow" in values else None
            if flow is not None:
                out["flow"] = flow
        else:
            if values.get("flow"):
                raise InvalidInput("flow: Only flow bots have a flow.")
            if "webhook_url" in values:
                await check_target(
                    values["webhook_url"], self.settings.webhook_allow_private_targets
                )
                out["webhook_url"] = values["webhook_url"]
            if "timeout_seconds" in values:
                out["timeout_seconds"] = float(values["timeout_seconds"])
        return out

    async def create(self, actor: AgentActor, values: dict[str, Any]) -> dict[str, Any]:
        """A new bot of the agent's organization. A webhook bot's answer carries, this once,
        its signing secret ("secret") and its API key ("api_key")."""
        self._require_admin(actor)
        kind = values["kind"]
        if kind == "webhook" and not values.get("webhook_url"):
            raise InvalidInput("webhook_url: Required for webhook bots.")
        cols = await self._checked(kind, values)
        flow = cols.get("flow") if kind == "flow" else None
        if kind == "flow" and flow is None:
            flow = cols["flow"] = flows.validate_flow({})
        cols["commands"] = flows.validate_commands(values.get("commands") or [], flow)
        bot_id = new_id()
        salt = secrets.token_hex(16) if kind == "webhook" else None
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(
                insert(_B).values(
                    id=bot_id,
                    organization_id=actor.organization_id,
                    kind=kind,
                    webhook_salt=salt,
                    created_at=now,
                    updated_at=now,
                    **{"enabled": True, "timeout_seconds": 10.0, **cols},
                )
            )
            out = await self._public(
                uow.conn, await self._row(uow.conn, actor.organization_id, bot_id)
            )
        if kind == "webhook":
            key = await self.api_keys.create_for_bot(
                actor.organization_id, bot_id, f"Bot: {values['name']}"[:200], actor.user_id
            )
            out = {**out, "secret": self.secret_for(bot_id, salt), "api_key": key["key"]}
        await self.refresh_orgs()
        return out

    async def update(
        self, actor: AgentActor, bot_id: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        self._require_admin(actor)
        async with self.db.unit_of_work() as uow:
            row = await self._row(uow.conn, actor.organization_id, bot_id)
            cols = await self._checked(row.kind, values)
            if "commands" in values or "flow" in cols:
                flow = cols.get("flow", row.flow) if row.kind == "flow" else None
                commands = values["commands"] if "commands" in values else list(row.commands or [])
                cols["commands"] = flows.validate_commands(commands or [], flow)
            await uow.conn.execute(
                update(_B).where(_B.c.id == bot_id).values(updated_at=utcnow(), **cols)
            )
            out = await self._public(
                uow.conn, await self._row(uow.conn, actor.organization_id, bot_id)
            )
        await self.refresh_orgs()
        return out

    async def delete(self, actor: AgentActor, bot_id: str) -> None:
        """Delete a bot: its channels and tokens have none after it, its key is revoked with
        it (deleted), and its conversations wait for people."""
        self._require_admin(actor)
        async with self.db.unit_of_work() as uow:
            await self._row(uow.conn, actor.organization_id, bot_id)
            await uow.conn.execute(update(_CH).where(_CH.c.bot_id == bot_id).values(bot_id=None))
            await uow.conn.execute(update(_T).where(_T.c.bot_id == bot_id).values(bot_id=None))
            await uow.conn.execute(delete(_B).where(_B.c.id == bot_id))
        await self.refresh_orgs()

    async def rotate_secret(self, actor: AgentActor, bot_id: str) -> dict[str, Any]:
        """A new signing secret for a webhook bot (the old one stops at once)."""
        self._require_admin(actor)
        salt = secrets.token_hex(16)
        async with self.db.unit_of_work() as uow:
            row = await self._row(uow.conn, actor.organization_id, bot_id)
            if row.kind != "webhook":
                raise Conflict("Only webhook bots have a signing secret.")
            await uow.conn.execute(
                update(_B).where(_B.c.id == bot_id).values(webhook_salt=salt, updated_at=utcnow())
            )
            out = await self._public(
                uow.conn, await self._row(uow.conn, actor.organization_id, bot_id)
            )
        return {**out, "secret": self.secret_for(bot_id, salt)}

    async def attach(
        self, actor: AgentActor, target: str, target_id: str, bot_id: str | None
    ) -> dict[str, Any]:
        """Attach a bot (None: none) to a channel (`target` "channel") or an embed token
        ("embed_token") of the agent's organization. Returns the channel or token."""
        self._require_admin(actor)
        table = _CH if target == "channel" else _T
        async with self.db.unit_of_work() as uow:
            if bot_id is not None:
                await self._row(uow.conn, actor.organization_id, bot_id)
            done = await uow.conn.execute(
                update(table)
                .where(table.c.id == target_id, table.c.organization_id == actor.organization_id)
                .values(bot_id=bot_id)
            )
            if done.rowcount == 0:
                raise NotFound(
                    "Channel not found." if target == "channel" else "Embed token not found."
                )
            row = (await uow.conn.execute(select(table).where(table.c.id == target_id))).one()
        return channel_public(row) if target == "channel" else token_public(row)

    async def for_embed_token(self, embed_token: str) -> dict[str, Any] | None:
        """The bot that answers under a live embed token (its own, else its channel's), for
        the widget: name, avatar and commands. None when no enabled bot answers there."""
        async with self.db.read() as conn:
            token = (
                await conn.execute(
                    select(_T.c.bot_id, _CH.c.bot_id.label("channel_bot_id"))
                    .select_from(_T.join(_CH, _CH.c.id == _T.c.channel_id))
                    .where(_T.c.token_hash == sha256_hex(embed_token), _T.c.revoked_at.is_(None))
                )
            ).first()
            if token is None:
                raise Forbidden("Embed token invalid.")
            bot_id = token.bot_id or token.channel_bot_id
            if bot_id is None:
                return None
            row = (
                await conn.execute(select(_B).where(_B.c.id == bot_id, _B.c.enabled.is_(True)))
            ).first()
        return bot_for_clients(row) if row is not None else None

    async def for_mobile_channel(self, channel_id: str | None, channel_key: str | None):
        """The bot of a mobile channel (by id or public key), for apps; None when none."""
        channel = await self.conversations.mobile_channel(channel_id, channel_key)
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(_B)
                    .join(_CH, _CH.c.bot_id == _B.c.id)
                    .where(_CH.c.id == channel.id, _B.c.enabled.is_(True))
                )
            ).first()
        return bot_for_clients(row) if row is not None else None

    async def test_flow(
        self, actor: AgentActor, flow: Any, commands: Any, state: Any, text: str
    ) -> dict[str, Any]:
        """A dry run of a flow (saved or not) on one message: nothing is stored."""
        self._require_admin(actor)
        checked = flows.validate_flow(flow if flow is not None else {})
        own = flows.validate_commands(commands or [], checked)
        if state is not None and not isinstance(state, dict):
            raise InvalidInput("state: Must be an object or null.")
        out = flows.respond(checked, state, text, own)
        return {
            "replies": out.replies,
            "state": out.state,
            "handoff": out.handoff,
            "collected": out.collected,
            "flagged": out.flagged,
        }

    # ---- agents ---------------------------------------------------------------------------

    async def hand_to_bot(self, actor: AgentActor, conversation_id: str) -> dict[str, Any]:
        return await self.conversations.hand_to_bot(actor, conversation_id)

    # ---- the outbox subscriber ------------------------------------------------------------

    async def handle(self, delivery) -> None:
        event = delivery.event
        if isinstance(event, MessageCreated):
            await self._answer(event, delivery)
        elif isinstance(event, ConversationHandedOff | ConversationHandedToBot):
            await self._tell_webhook_bot(event, delivery)

    async def _answer(self, event: MessageCreated, delivery) -> None:
        message = event.message
        if message.get("sender_type") != "end_user":
            return
        turn = await self.conversations.bot_turn(event.conversation_id)
        if (
            turn is None
            or turn.session_id != message["session_id"]
            or turn.assigned_agent_id is not None
            or turn.handed_off_at is not None
        ):
            return  # no bot answers this conversation now
        bot = BotActor(turn.bot_id, turn.organization_id, turn.bot_name)
        await self.bus.publish_one(
            TypingStarted(turn.organization_id, turn.id, bot.sender_type, bot.sender_id)
        )
        try:
            if turn.bot_kind == "flow":
                out = flows.respond(
                    turn.bot_flow or {},
                    turn.bot_state,
                    message.get("content") or "",
                    list(turn.bot_commands or []),
                )
                replies, handoff, flagged = out.replies, out.handoff, out.flagged
                state, collected = out.state, out.collected
            else:
                replies, handoff, flagged = await self._ask_webhook_bot(turn, message, delivery)
                state, collected = turn.bot_state, {}
            if flagged:
                await self.conversations.flag_message(
                    bot, turn.id, message["id"], "flagged by the bot"
                )
            if not await self._reply(bot, turn.id, message["id"], replies):
                return  # an agent took the conversation, or it was resolved: stop at once
            if state != turn.bot_state or collected:
                await self.conversations.save_bot_state(turn.session_id, state, collected)
            if handoff:
                await self.conversations.hand_off(bot, turn.id, turn.session_id, handoff)
        finally:
            await self.bus.publish_one(
                TypingStopped(turn.organization_id, turn.id, bot.sender_type, bot.sender_id)
            )

    async def _reply(
        self, bot: BotActor, conversation_id: str, answering: str, replies: list[dict]
    ) -> bool:
        """Write the bot's replies. Their client_message_ids come from the message answered:
        a redelivery stores nothing twice. False when the bot may no longer write there."""
        for i, reply in enumerate(replies):
            try:
                await self.conversations.send_message(
                    bot,
                    NewMessage(
                        conversation_id,
                        reply["content"],
                        reply["content_type"],
                        reply.get("rich_media"),
                        client_message_id=f"bot:{answering}:{i}",
                    ),
                )
            except (Forbidden, Conflict, NotFound):
                return False
        return True

    def _payload(self, turn, event_name: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": event_name,
            "bot": {"id": turn.bot_id, "name": turn.bot_name},
            "conversation": {
                "id": turn.id,
                "channel_id": turn.channel_id,
                "session_id": turn.session_id,
                "end_user": {
                    "id": turn.end_user_id,
                    "external_id": turn.external_id,
                    "display_name": turn.display_name,
                    "attributes": turn.end_user_attributes or {},
                },
            },
            **data,
        }

    def _call_timeout(self, turn) -> float:
        wanted = float(turn.bot_timeout_seconds or MAX_TIMEOUT_SECONDS)
        wanted = min(max(wanted, MIN_TIMEOUT_SECONDS), MAX_TIMEOUT_SECONDS)
        return min(wanted, self.settings.outbox_lease_seconds * LEASE_SHARE)

    async def _ask_webhook_bot(self, turn, message: dict[str, Any], delivery):
        """(replies, handoff reason or None, flagged) from a webhook bot. Its failure is
        answered here: a clear message to the end user, and people take over."""
        payload = self._payload(
            turn,
            MessageCreated.name,
            {
                "message": serializers.message_for_socket(message),
                "created_at": message["created_at"],
            },
        )
        timeout = self._call_timeout(turn)
        try:
            answer: BotAnswer = await self.client.call(
                turn.bot_webhook_url or "",
                self.secret_for(turn.bot_id, turn.bot_webhook_salt or ""),
                f"botmsg_{message['id']}",
                payload,
                timeout,
            )
        except BotCallFailed as exc:
            log.warning("bot %s failed to answer in %s: %s", turn.bot_id, turn.id, exc)
            return (
                [{"content": BOT_FAILED_MESSAGE, "content_type": "text", "rich_media": None}],
                "bot_failed",
                False,
            )
        return answer.replies, ("bot" if answer.handoff else None), answer.flag

    async def _tell_webhook_bot(self, event, delivery) -> None:
        """Tell a webhook bot that its conversation went to people or came back (best effort:
        its failure changes nothing)."""
        turn = await self.conversations.bot_turn(event.conversation_id)
        if turn is None or turn.bot_kind != "webhook" or turn.bot_id != event.bot_id:
            return
        payload = self._payload(turn, event.name, {"data": event.to_dict()})
        try:
            await self.client.call(
                turn.bot_webhook_url or "",
                self.secret_for(turn.bot_id, turn.bot_webhook_salt or ""),
                f"botevt_{delivery.outbox_id}",
                payload,
                self._call_timeout(turn),
            )
        except BotCallFailed as exc:
            log.info("bot %s was not told of %s: %s", turn.bot_id, event.name, exc)
