"""One thin handler per client event: validate, build the actor, call a service, shape the ack.

Failures emit `error` {"message"} to the sender only and, when the client asked for an ack,
answer {"error": {"code", "message", ...}}. Nothing here writes SQL or decides permissions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import socketio
from marshmallow import Schema, ValidationError

from realtime import schemas
from server import rooms
from server.actors import AgentActor, EndUserActor
from server.app_services import Services
from server.errors import (
    DomainError,
    InvalidInput,
    NotAuthenticated,
    RateLimited,
    infrastructure_error,
)
from server.events import ERROR
from server.services.conversations import REPLAY_BATCH, NewMessage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClientState:
    """What one socket is: maybe an agent (cookie), plus the conversations it joined."""

    agent: AgentActor | None = None
    # conversation_id -> external_id the socket proved for it (end-user joins)
    end_user_of: dict[str, str] = field(default_factory=dict)
    # conversations an agent socket was checked for (org scope)
    agent_convs: set[str] = field(default_factory=set)


def _origin_allowed(origin: str, host: str | None, allowed: tuple[str, ...]) -> bool:
    if origin.rstrip("/") in allowed:
        return True
    # The server's own origin: the browser sets both Origin and Host, a page cannot forge them.
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


class ChatNamespace(socketio.AsyncNamespace):
    def __init__(self, services: Services) -> None:
        super().__init__("/")
        self.svc = services
        settings = services.settings
        limits = {
            "max_content_length": settings.max_content_length,
            "max_rich_media_bytes": settings.max_rich_media_bytes,
        }
        self.schemas: dict[str, Schema] = {
            "send_message": schemas.SendMessageSchema(**limits),
            "claim_conversation": schemas.ConversationRefSchema(),
            "join_conversation": schemas.JoinConversationSchema(),
            "leave_conversation": schemas.ConversationRefSchema(),
            "join_queue": schemas.EmptySchema(),
            "join_org_presence": schemas.EmptySchema(),
            "user_typing": schemas.TypingSchema(),
            "mark_read": schemas.MarkReadSchema(),
        }
        self.clients: dict[str, ClientState] = {}

    # ---- plumbing -----------------------------------------------------------------------

    async def trigger_event(self, event: str, *args):
        """Every client event goes through here: one place validates and renders errors.

        (ChatServer has already refused frames that are not events, and reserved names: a
        "connect" or "disconnect" here comes from the server itself.)
        """
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        try:
            handler = getattr(self, "on_" + event, None) if isinstance(event, str) else None
            schema = self.schemas.get(event) if handler is not None else None
            if handler is None or schema is None:
                raise InvalidInput(f"Unknown event {event!r}.")
            payload = args[1] if len(args) > 1 else None
            if payload is None and isinstance(schema, schemas.EmptySchema):
                payload = {}
            if not isinstance(payload, dict) or len(args) > 2:
                raise InvalidInput("The payload must be one JSON object.")
            try:
                data = schema.load(payload)
            except ValidationError as exc:
                raise InvalidInput(_summary(exc.messages), fields=_str_keys(exc.messages)) from None
            state = self.clients.get(sid)
            if state is None:
                raise NotAuthenticated("Not connected.")
            return await handler(sid, state, data)
        except DomainError as err:
            refusal = err
        except Exception as exc:
            refusal = infrastructure_error(exc)
            if refusal is None:
                log.exception("socket handler %s failed", event)
                await self.emit(ERROR, {"message": "Internal error."}, to=sid)
                return {"error": {"code": "internal_error", "message": "Internal error."}}
            # The database or Redis is down: retryable, and nothing was changed.
            log.warning("socket handler %s: service unavailable: %r", event, exc)
        await self.emit(ERROR, {"message": refusal.message}, to=sid)
        return {"error": refusal.to_dict()}

    async def on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        request = environ.get("aiohttp.request")
        state = ClientState()
        token = request.cookies.get("session") if request is not None else None
        if token:
            agent = await self.svc.auth.agent_for_session(token)
            if agent is not None:
                origin = request.headers.get("Origin")
                if origin and not _origin_allowed(
                    origin, request.headers.get("Host"), self.svc.settings.allowed_origins
                ):
                    # A page on another site must not ride on the agent's cookie (CSWSH).
                    raise socketio.exceptions.ConnectionRefusedError(
                        {"message": "Origin not allowed for an agent session."}
                    )
                state.agent = agent
        self.clients[sid] = state
        if state.agent is not None:
            await self.svc.presence.agent_connected(
                state.agent.organization_id, state.agent.user_id
            )

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        state = self.clients.pop(sid, None)
        self.server.manager.forget(sid)
        await self.svc.typing.disconnected(sid)
        if state is not None and state.agent is not None:
            await self.svc.presence.agent_disconnected(
                state.agent.organization_id, state.agent.user_id
            )

    # ---- actors -------------------------------------------------------------------------

    @staticmethod
    def _agent(state: ClientState) -> AgentActor:
        if state.agent is None:
            raise NotAuthenticated("An agent session is required.")
        return state.agent

    def _actor_for(self, state: ClientState, data: dict, sender_type: str | None):
        """The payload's sender_type picks the actor; the widget and the inbox may share a
        browser (and so a cookie), so a cookie alone does not make a socket an agent's."""
        external_id = data.get("external_id")
        conv = data["conversation_id"]
        if sender_type is None:
            if external_id or conv in state.end_user_of:
                sender_type = "end_user"
            elif state.agent is not None:
                sender_type = "agent"
            else:
                raise InvalidInput("external_id is required.")
        if sender_type == "agent":
            return self._agent(state)
        external_id = external_id or state.end_user_of.get(conv)
        if not external_id:
            raise InvalidInput("external_id is required for end users.")
        return EndUserActor(external_id)

    async def _check_access(self, state: ClientState, actor, conversation_id: str) -> None:
        """Authorization facts are cached per socket: typing must not cost a query."""
        if isinstance(actor, AgentActor):
            if conversation_id not in state.agent_convs:
                await self.svc.conversations.facts(actor, conversation_id)
                state.agent_convs.add(conversation_id)
        elif state.end_user_of.get(conversation_id) != actor.external_id:
            await self.svc.conversations.facts(actor, conversation_id)
            state.end_user_of[conversation_id] = actor.external_id

    # ---- events -------------------------------------------------------------------------

    async def on_send_message(self, sid: str, state: ClientState, data: dict):
        actor = self._actor_for(state, data, data["sender_type"])
        if isinstance(actor, EndUserActor):
            s = self.svc.settings
            retry = await self.svc.limiter.hit(
                "send:" + actor.external_id, s.rate_limit_messages, s.rate_limit_window_seconds
            )
            if retry:
                raise RateLimited(retry, "Too many messages; slow down.")
        message, _created = await self.svc.conversations.send_message(
            actor,
            NewMessage(
                conversation_id=data["conversation_id"],
                content=data["content"],
                content_type=data["content_type"],
                rich_media=data["rich_media"],
                client_message_id=data["client_message_id"],
            ),
        )
        await self.svc.typing.stopped(sid, data["conversation_id"])
        return {k: v for k, v in message.items() if k != "read_by"}

    async def on_claim_conversation(self, sid: str, state: ClientState, data: dict):
        agent = self._agent(state)
        result = await self.svc.conversations.assign_conversation(agent, data["conversation_id"])
        await self.enter_room(sid, rooms.conversation(data["conversation_id"]))
        state.agent_convs.add(data["conversation_id"])
        return result

    async def on_join_conversation(self, sid: str, state: ClientState, data: dict):
        conv = data["conversation_id"]
        actor = self._actor_for(state, data, None)
        facts = await self.svc.conversations.facts(actor, conv)
        if isinstance(actor, AgentActor):
            state.agent_convs.add(conv)
        else:
            state.end_user_of[conv] = actor.external_id
        room = rooms.conversation(conv)
        last_seq = data["last_seq"]
        if last_seq is None:
            await self.enter_room(sid, room)
            return {"conversation_id": conv, "last_seq": facts.last_seq, "replayed": 0}
        manager = self.server.manager
        manager.hold(sid)
        replayed, upto = 0, last_seq
        try:
            await self.enter_room(sid, room)
            while True:
                batch = await self.svc.conversations.messages_after(actor, conv, upto)
                for message in batch:
                    message.pop("read_by", None)
                    await manager.send_direct(sid, "message_received", message)
                    upto = message["seq"]
                replayed += len(batch)
                if len(batch) < REPLAY_BATCH:
                    break
        finally:
            await manager.release(sid, conv, upto)
        return {
            "conversation_id": conv,
            "last_seq": max(upto, facts.last_seq),
            "replayed": replayed,
        }

    async def on_leave_conversation(self, sid: str, state: ClientState, data: dict):
        conv = data["conversation_id"]
        await self.leave_room(sid, rooms.conversation(conv))
        state.end_user_of.pop(conv, None)
        await self.svc.typing.stopped(sid, conv)
        return {"conversation_id": conv}

    async def on_join_queue(self, sid: str, state: ClientState, data: dict):
        agent = self._agent(state)
        await self.enter_room(sid, rooms.org_queue(agent.organization_id))
        return {"organization_id": agent.organization_id}

    async def on_join_org_presence(self, sid: str, state: ClientState, data: dict):
        agent = self._agent(state)
        await self.enter_room(sid, rooms.org_presence(agent.organization_id))
        online = await self.svc.presence.online_agents(agent.organization_id)
        return {"organization_id": agent.organization_id, "online": online}

    async def on_user_typing(self, sid: str, state: ClientState, data: dict):
        actor = self._actor_for(state, data, data["sender_type"])
        await self._check_access(state, actor, data["conversation_id"])
        await self.svc.typing.typing(sid, data["conversation_id"], actor.sender_type)
        return {"conversation_id": data["conversation_id"]}

    async def on_mark_read(self, sid: str, state: ClientState, data: dict):
        actor = self._actor_for(state, data, data["sender_type"])
        changed = await self.svc.conversations.mark_read(
            actor, data["conversation_id"], data["message_ids"]
        )
        return {"conversation_id": data["conversation_id"], "message_ids": changed}


def _str_keys(messages: Any) -> Any:
    """marshmallow keys list errors by index ({"buttons": {0: ...}}); the socket's JSON
    encoder (orjson) refuses int keys, which lost the whole ack."""
    if isinstance(messages, dict):
        return {_printable(str(k)): _str_keys(v) for k, v in messages.items()}
    return messages


def _printable(key: str) -> str:
    # A field name is the client's text: one that UTF-8 cannot carry is shown escaped.
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def _summary(messages: Any) -> str:
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            if isinstance(value, list) and value and isinstance(value[0], str):
                parts.append(f"{key}: {value[0]}")
            else:
                parts.append(f"{key}: {_summary(value)}")
        return "; ".join(parts) or "Invalid payload."
    if isinstance(messages, list) and messages:
        return str(messages[0])
    return "Invalid payload."
