"""One thin handler per client event: validate, build the actor, call a service, shape the ack.

Failures emit `error` {"message"} to the sender only and, when the client asked for an ack,
answer {"error": {"code", "message", ...}}. Nothing here writes SQL or decides permissions.

A connection attempt always ends in `connect` or in `connect_error` {"message", "data":
{"code", ...}} (Socket.IO's shape: a JavaScript client reads err.message and err.data). Every
socket's grant, an agent's session or a visitor's embed token, is re-checked by a periodic
sweep on each process, so a logout or a revocation cuts open sockets everywhere.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import socketio
from marshmallow import EXCLUDE, Schema, ValidationError

from realtime import schemas
from realtime.events import ERROR
from server import rooms, serializers
from server.actors import Actor, ActorKind, AgentActor, EndUserActor, IdentityProof
from server.app_services import Services
from server.errors import (
    DomainError,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    RateLimited,
    infrastructure_error,
)
from server.origins import agent_origin_allowed, is_own_origin
from server.schemas import IdentityProofSchema
from server.services.conversations import REPLAY_BATCH, ConversationFacts, NewMessage
from server.services.ratelimit import MemoryRateLimiter
from server.validation import unstorable_reason

log = logging.getLogger(__name__)

SESSION_ENDED = "Your session has ended; sign in again."
TOKEN_REVOKED = "This chat is no longer available."


@dataclass(slots=True)
class ClientState:
    """What one socket is: maybe an agent (cookie), plus the conversations it joined."""

    agent: AgentActor | None = None
    # conversation_id -> external_id the socket proved for it (end-user joins)
    end_user_of: dict[str, str] = field(default_factory=dict)
    # conversations an agent socket was checked for (org scope)
    agent_convs: set[str] = field(default_factory=set)
    # The agent's session (AuthService.session_key), re-checked by the access sweep.
    session_key: str | None = None
    # The embed token the handshake presented (the widget passes it in `auth`).
    embed_token_id: str | None = None
    # ... or the token itself, when the database could not check it at the handshake.
    unchecked_embed_token: str | None = None
    # The browser Origin, when it is not the server's own.
    origin: str | None = None
    # conversation_id -> what the end-user check found (organization, embed token)
    visitor_facts: dict[str, ConversationFacts] = field(default_factory=dict)
    # The proof of identity the handshake presented (channels that verify end users).
    proof: IdentityProof | None = None
    # conversation_id -> external_id this socket counts as connected (joined as its end
    # user): push notifications go to end users without such a socket.
    present: dict[str, str] = field(default_factory=dict)

    def embed_token_ids(self) -> set[str]:
        """The embed tokens this socket's visitor access rests on."""
        ids = {f.embed_token_id for f in self.visitor_facts.values() if f.embed_token_id}
        if self.embed_token_id:
            ids.add(self.embed_token_id)
        return ids


def _handshake_embed_token(auth: Any) -> str | None:
    """The embed token in the handshake's `auth` ({embed_token}); None when there is none
    (native apps send no auth). Raises InvalidInput for anything else."""
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise InvalidInput("auth must be an object: {embed_token}.")
    token = auth.get("embed_token")
    if token is None:
        return None
    if not isinstance(token, str) or not token or len(token) > 200 or unstorable_reason(token):
        raise InvalidInput("auth.embed_token must be an embed token.")
    return token


_handshake_proof_schema = IdentityProofSchema(unknown=EXCLUDE)


def _handshake_proof(auth: Any) -> IdentityProof | None:
    """The proof of identity in the handshake's `auth` ({user_hash} or {identity_token}), for
    every end-user event of the socket that does not carry its own. Raises InvalidInput for
    a malformed one."""
    if not isinstance(auth, dict) or not ("user_hash" in auth or "identity_token" in auth):
        return None
    try:
        loaded = _handshake_proof_schema.load(
            {k: auth.get(k) for k in ("user_hash", "identity_token")}
        )
    except ValidationError as err:
        raise InvalidInput("auth carries a malformed proof of identity.", err.messages) from None
    return IdentityProof.of(loaded)


def _refusal(data: dict[str, Any]) -> socketio.exceptions.ConnectionRefusedError:
    # The exception's constructor would turn a dict into its str(); set the packet ourselves.
    exc = socketio.exceptions.ConnectionRefusedError()
    exc.error_args = {"message": data["message"], "data": data}
    return exc


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
            "register_device": schemas.DeviceSchema(),
            "unregister_device": schemas.DeviceRefSchema(),
        }
        self.clients: dict[str, ClientState] = {}
        # send_message per socket: a socket lives on one process, so the count is local.
        self.socket_limiter = MemoryRateLimiter()
        services.run_in_background(self.sweep_access_forever)
        services.auth.on_logout(self._session_ended)

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
        """Accept, or refuse with connect_error data {"code", "message", ...}: forbidden (a
        foreign Origin, a revoked token), invalid_input (a malformed auth), unavailable with
        retry_after_ms (the database or Redis is down). Never an unanswered attempt."""
        try:
            state = await self._authenticate(environ, auth)
            self.clients[sid] = state
            if state.agent is not None:
                await self.svc.presence.agent_connected(
                    state.agent.organization_id, state.agent.user_id
                )
        except DomainError as err:
            self.clients.pop(sid, None)
            raise _refusal(err.to_dict()) from None
        except Exception as exc:
            self.clients.pop(sid, None)
            unavailable = infrastructure_error(exc)
            if unavailable is None:
                log.exception("socket connect failed")
                raise _refusal({"code": "internal_error", "message": "Internal error."}) from None
            log.warning("socket connect refused, a service is down: %s", exc)
            raise _refusal(unavailable.to_dict()) from None

    async def _authenticate(self, environ: dict, auth: Any) -> ClientState:
        request = environ.get("aiohttp.request")
        headers = request.headers if request is not None else {}
        origin = headers.get("Origin")
        host = headers.get("Host")
        state = ClientState(origin=origin if origin and not is_own_origin(origin, host) else None)
        embed_token = _handshake_embed_token(auth)
        state.proof = _handshake_proof(auth)
        if embed_token is not None:
            # A visitor's socket (the widget). The browser may also hold an agent's cookie
            # (the widget page is on our origin); that does not make this socket an agent's.
            try:
                token = await self.svc.widget.handshake_token(embed_token, state.origin)
            except Exception as exc:
                if infrastructure_error(exc) is None:
                    raise
                # The database is down. A refused widget socket is never retried by the
                # browser client, so accept it; the token is checked before its first
                # visitor event (_actor), which needs the database anyway.
                state.unchecked_embed_token = embed_token
                return state
            state.embed_token_id = token.id
            return state
        cookie = request.cookies.get("session") if request is not None else None
        if cookie:
            agent = await self.svc.auth.agent_for_session(cookie)
            if agent is not None:
                allowed = self.svc.settings.allowed_origins
                if origin and not agent_origin_allowed(origin, host, allowed):
                    raise Forbidden("Origin not allowed for an agent session.")
                state.agent = agent
                state.session_key = self.svc.auth.session_key(cookie)
        return state

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        state = self.clients.pop(sid, None)
        self.server.manager.forget(sid)
        await self.socket_limiter.reset("send:" + sid)
        if state is not None:
            for conv in list(state.present):
                await self._count_absent(state, conv)
        try:
            await self.svc.typing.disconnected(sid)
            if state is not None and state.agent is not None:
                await self.svc.presence.agent_disconnected(
                    state.agent.organization_id, state.agent.user_id
                )
        except Exception as exc:  # noqa: BLE001 - presence expires by itself (its TTL)
            if infrastructure_error(exc) is None:
                log.exception("socket disconnect clean-up failed")
            else:
                log.warning("socket disconnect clean-up skipped, a service is down: %s", exc)

    def typist_sockets(self, conversation_id: str, sender_type: str, sender_id: str) -> list[str]:
        """This process's sockets in the conversation's room acting there as this sender: a
        typist does not see its own typing indicator (nor do its other tabs)."""
        room = rooms.conversation(conversation_id)
        found = []
        for sid, _eio_sid in self.server.manager.get_participants(self.namespace, room):
            state = self.clients.get(sid)
            if state is None:
                continue
            if sender_type == "agent":
                if state.agent is not None and state.agent.user_id == sender_id and (
                    conversation_id not in state.end_user_of
                ):
                    found.append(sid)
            elif state.end_user_of.get(conversation_id) == sender_id:
                found.append(sid)
        return found

    # ---- access sweep -------------------------------------------------------------------

    async def sweep_access_forever(self) -> None:
        """Every access_sweep_seconds, cut this process's sockets whose grant has ended."""
        while True:
            await asyncio.sleep(self.svc.settings.access_sweep_seconds)
            try:
                await self.sweep_access()
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                if infrastructure_error(exc) is None:
                    log.exception("access sweep failed")
                else:
                    log.warning("access sweep skipped, a service is down: %s", exc)

    async def sweep_access(self) -> int:
        """Disconnect the sockets whose agent session was logged out or expired, or whose
        embed token was revoked: one query for the sessions, one for the tokens. Returns how
        many sockets were cut."""
        by_session: dict[str, list[str]] = {}
        by_token: dict[str, list[str]] = {}
        for sid, state in self.clients.items():
            if state.session_key is not None:
                by_session.setdefault(state.session_key, []).append(sid)
            if state.embed_token_id is not None or state.visitor_facts:
                for token_id in state.embed_token_ids():
                    by_token.setdefault(token_id, []).append(sid)
        ended: dict[str, str] = {}
        if by_session:
            live = await self.svc.auth.live_sessions(list(by_session))
            for key, sids in by_session.items():
                if key not in live:
                    ended.update(dict.fromkeys(sids, SESSION_ENDED))
        if by_token:
            live = await self.svc.conversations.live_embed_tokens(list(by_token))
            for token_id, sids in by_token.items():
                if token_id not in live:
                    ended.update(dict.fromkeys(sids, TOKEN_REVOKED))
        for sid, message in ended.items():
            await self._cut(sid, message)
        return len(ended)

    async def _session_ended(self, session_key: str) -> None:
        """A logout on this process: its sockets go now, not at the next sweep."""
        for sid, state in list(self.clients.items()):
            if state.session_key == session_key:
                await self._cut(sid, SESSION_ENDED)

    async def _cut(self, sid: str, message: str) -> None:
        if sid not in self.clients:
            return
        # Straight to the local socket: a cut needs no Redis, and may happen while it is down.
        await self.server.manager.send_direct(sid, ERROR, {"message": message}, self.namespace)
        await self.server.disconnect(sid, namespace=self.namespace, ignore_queue=True)

    # ---- actors -------------------------------------------------------------------------

    @staticmethod
    def _agent(state: ClientState) -> AgentActor:
        if state.agent is None:
            raise NotAuthenticated("An agent session is required.")
        return state.agent

    async def _actor(self, state: ClientState, data: dict, sender_type: str | None):
        """The event's actor; an end user's handshake token checked first if it was not."""
        actor = self._actor_for(state, data, sender_type)
        if actor.kind is ActorKind.END_USER and state.unchecked_embed_token is not None:
            token = await self.svc.widget.handshake_token(state.unchecked_embed_token, state.origin)
            state.embed_token_id, state.unchecked_embed_token = token.id, None
            actor = self._actor_for(state, data, sender_type)
        return actor

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
        proof = IdentityProof.of(data) or state.proof
        return EndUserActor(external_id, state.embed_token_id, state.origin, proof)

    async def _check_access(
        self, state: ClientState, actor: Actor, conversation_id: str
    ) -> ConversationFacts | None:
        """Authorization facts are cached per socket: typing must not cost a query. An end
        user's are its facts (organization, embed token); the sweep ends them on revocation.
        An agent's are its organization's (None is returned)."""
        if actor.kind is ActorKind.AGENT:
            if conversation_id not in state.agent_convs:
                await self.svc.conversations.facts(actor, conversation_id)
                state.agent_convs.add(conversation_id)
            return None
        facts = state.visitor_facts.get(conversation_id)
        if facts is None or state.end_user_of.get(conversation_id) != actor.external_id:
            facts = await self.svc.conversations.facts(actor, conversation_id)
            state.end_user_of[conversation_id] = actor.external_id
            state.visitor_facts[conversation_id] = facts
        return facts

    async def _throttle_send(self, sid: str, facts: ConversationFacts, external_id: str) -> None:
        """The end user's limit (per organization: two organizations' visitors never share a
        bucket) and the socket's own (rotating external_ids on one connection does not help).
        The socket's slot is taken only for a send the end user's limit lets through."""
        s = self.svc.settings
        local = "send:" + sid
        local_args = (s.socket_rate_limit_messages, s.socket_rate_limit_window_seconds)
        retry = await self.socket_limiter.blocked_for(local, *local_args)
        if not retry:
            retry = await self.svc.limiter.hit(
                f"send:{facts.organization_id}:{external_id}",
                s.rate_limit_messages,
                s.rate_limit_window_seconds,
            )
        if not retry:
            retry = await self.socket_limiter.hit(local, *local_args)
        if retry:
            raise RateLimited(retry, "Too many messages; slow down.")

    # ---- events -------------------------------------------------------------------------

    async def on_send_message(self, sid: str, state: ClientState, data: dict):
        actor = await self._actor(state, data, data["sender_type"])
        if actor.kind is ActorKind.END_USER:
            facts = await self._check_access(state, actor, data["conversation_id"])
            await self._throttle_send(sid, facts, actor.external_id)
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
        return serializers.message_for_socket(message)

    async def on_claim_conversation(self, sid: str, state: ClientState, data: dict):
        agent = self._agent(state)
        result = await self.svc.conversations.assign_conversation(agent, data["conversation_id"])
        await self.enter_room(sid, rooms.conversation(data["conversation_id"]))
        state.agent_convs.add(data["conversation_id"])
        return result

    async def on_join_conversation(self, sid: str, state: ClientState, data: dict):
        conv = data["conversation_id"]
        actor = await self._actor(state, data, None)
        facts = await self.svc.conversations.facts(actor, conv)
        if actor.kind is ActorKind.AGENT:
            state.agent_convs.add(conv)
        else:
            state.end_user_of[conv] = actor.external_id
            state.visitor_facts[conv] = facts
            await self._count_present(state, conv, actor.external_id)
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
                    await manager.send_direct(
                        sid, "message_received", serializers.message_for_socket(message)
                    )
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
        state.visitor_facts.pop(conv, None)
        await self._count_absent(state, conv)
        await self.svc.typing.stopped(sid, conv)
        return {"conversation_id": conv}

    async def _count_present(self, state: ClientState, conv: str, external_id: str) -> None:
        """Count the socket as its end user's connection (push skips connected users). A
        failure to count (Redis down) never fails the join: at worst a push too many."""
        if state.present.get(conv) == external_id:
            return
        await self._count_absent(state, conv)
        try:
            await self.svc.push.presence.joined(conv, external_id)
            state.present[conv] = external_id
        except Exception as exc:  # noqa: BLE001 - see the docstring
            if infrastructure_error(exc) is None:
                raise
            log.warning("end-user presence not recorded: %s", exc)

    async def _count_absent(self, state: ClientState, conv: str) -> None:
        external_id = state.present.pop(conv, None)
        if external_id is None:
            return
        try:
            await self.svc.push.presence.left(conv, external_id)
        except Exception as exc:  # noqa: BLE001 - the store's own reaping clears it later
            if infrastructure_error(exc) is None:
                raise
            log.warning("end-user presence not cleared: %s", exc)

    async def on_register_device(self, sid: str, state: ClientState, data: dict):
        actor = await self._actor(state, data, "end_user")
        device, _created = await self.svc.push.register_device(
            actor,
            data["conversation_id"],
            data["platform"],
            data["token"],
            data["app_version"],
            data["locale"],
        )
        return device

    async def on_unregister_device(self, sid: str, state: ClientState, data: dict):
        actor = await self._actor(state, data, "end_user")
        removed = await self.svc.push.unregister_device(
            actor, data["conversation_id"], data["platform"], data["token"]
        )
        return {"conversation_id": data["conversation_id"], "removed": removed}

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
        actor = await self._actor(state, data, data["sender_type"])
        conv = data["conversation_id"]
        facts = await self._check_access(state, actor, conv)
        org = facts.organization_id if facts is not None else actor.organization_id
        await self.svc.typing.typing(sid, org, conv, actor.sender_type, actor.sender_id)
        return {"conversation_id": conv}

    async def on_mark_read(self, sid: str, state: ClientState, data: dict):
        actor = await self._actor(state, data, data["sender_type"])
        if actor.kind is ActorKind.END_USER:
            await self._check_access(state, actor, data["conversation_id"])
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
