"""PushService: push notifications for app users who are not connected.

- Devices: an app user registers its push token (FCM or APNs) for its conversation, with the
  same proof of identity as every other end-user call; a token belongs to one user of a
  channel at a time (registering it again moves it).
- Credentials: a mobile channel's FCM service account and APNs auth key, validated on entry,
  sealed with a key derived from CHATD_SECRET_KEY (server/push/sealed.py), never returned.
- Delivery: the "push" durable subscriber of the outbox. For each agent or bot message whose
  end user has no socket in the conversation on any process (EndUserPresence), one push per
  device: title the sender's name, body a preview by the channel's setting, data with the
  conversation id and seq (the app opens and catches up with last_seq), the unread count as
  badge, the conversation as collapse key. At least once: a device the log shows reached is
  skipped when the row comes again; a transient failure retries the row with the outbox's
  backoff; a token the provider says is gone is deleted. Never on the chat's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

import httpx
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import (
    Channel,
    Conversation,
    EndUser,
    Message,
    PushCredentials,
    PushDelivery,
    PushDevice,
    User,
)
from models.base import new_id, utcnow
from server.actors import AgentActor, EndUserActor
from server.db import Database
from server.domain_events import DomainEvent
from server.errors import Forbidden, InvalidInput
from server.push.providers import (
    ApnsClient,
    CredentialsInvalid,
    FcmClient,
    PushMessage,
    PushResult,
    validate_apns_credentials,
    validate_fcm_credentials,
)
from server.push.sealed import SealBroken, Sealer
from server.security import sha256_hex
from server.serializers import iso
from server.services.conversations import ConversationService
from server.services.orgs import organization_channel
from server.services.presence import EndUserPresence
from server.settings import Settings

log = logging.getLogger(__name__)

SUBSCRIBER_NAME = "push"
PUSHED_SENDERS = ("agent", "bot")
# How often each process re-reads which organizations have push credentials (saved on other
# processes); what it saves itself counts at once.
ORGS_REFRESH_SECONDS = 1.0
PREVIEW_CHARS = 180
UNREAD_WINDOW = 100
GENERIC_BODY = "New message"

_CH = Channel.__table__
_C = Conversation.__table__
_E = EndUser.__table__
_M = Message.__table__
_U = User.__table__
_PC = PushCredentials.__table__
_PD = PushDevice.__table__
_PL = PushDelivery.__table__


class PushRetry(Exception):
    """Some devices could not be reached for now: the outbox retries the row later (the
    devices already reached are skipped then)."""


def device_public(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "platform": row.platform,
        "app_version": row.app_version,
        "locale": row.locale,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def delivery_public(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "conversation_id": row.conversation_id,
        "device_id": row.device_id,
        "platform": row.platform,
        "message_id": row.message_id,
        "seq": row.seq,
        "outcome": row.outcome,
        "status_code": row.status_code,
        "detail": row.detail,
        "attempt": row.attempt,
        "created_at": iso(row.created_at),
    }


def _summary(platform: str, creds: dict[str, Any]) -> dict[str, Any]:
    """What the console may show of credentials: never a key."""
    if platform == "fcm":
        return {"project_id": creds["project_id"], "client_email": creds["client_email"]}
    return {k: creds[k] for k in ("team_id", "key_id", "bundle_id", "environment")}


def preview_of(message: dict[str, Any], mode: str) -> str | None:
    if mode == "none":
        return None
    if mode == "generic":
        return GENERIC_BODY
    text = (message.get("content") or "").strip()
    if not text:
        media = message.get("rich_media") or {}
        text = media.get("filename") or ("Sent a picture" if media.get("url") else GENERIC_BODY)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class PushService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        conversations: ConversationService,
        presence: EndUserPresence,
    ) -> None:
        self.db = db
        self.settings = settings
        self.conversations = conversations
        self.presence = presence
        self.sealer = Sealer(settings.secret_key, settings.previous_secret_keys)
        # Organizations with push credentials (a small table, unlike devices): the write path
        # asks wants() (no I/O) whether a message needs an outbox row for push.
        self._orgs: set[str] = set()
        self._refresher: asyncio.Task | None = None
        self._http: httpx.AsyncClient | None = None
        # (channel, platform) -> (credentials' updated_at, client): a client keeps its
        # provider token (OAuth access token, APNs JWT) across pushes.
        self._clients: dict[tuple[str, str], tuple[Any, FcmClient | ApnsClient]] = {}

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.presence.start()
        await self.refresh_orgs()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="push-orgs")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._clients.clear()
        await self.presence.stop()

    async def refresh_orgs(self) -> None:
        async with self.db.read() as conn:
            rows = await conn.execute(select(_PC.c.organization_id).distinct())
            self._orgs = {r.organization_id for r in rows}

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(ORGS_REFRESH_SECONDS)
            try:
                await self.refresh_orgs()
            except Exception:  # noqa: BLE001 - the database is down: keep what we know
                log.warning(
                    "push: reading the organizations with credentials failed", exc_info=True
                )

    def wants(self, event: DomainEvent) -> bool:
        """An agent's or bot's message in an organization with push credentials (no I/O)."""
        if event.organization_id not in self._orgs:
            return False
        message = getattr(event, "message", None) or {}
        return message.get("sender_type") in PUSHED_SENDERS

    # ---- devices (app users) --------------------------------------------------------------

    async def _app_users_conversation(self, actor: EndUserActor, conversation_id: str):
        facts = await self.conversations.facts(actor, conversation_id)
        async with self.db.read() as conn:
            channel = (
                await conn.execute(
                    select(_CH.c.id, _CH.c.type)
                    .select_from(_C.join(_CH, _CH.c.id == _C.c.channel_id))
                    .where(_C.c.id == conversation_id)
                )
            ).one()
        if channel.type != "mobile_sdk":
            raise InvalidInput("Push notifications are for conversations of mobile channels.")
        return facts, channel.id

    async def register_device(
        self,
        actor: EndUserActor,
        conversation_id: str,
        platform: str,
        token: str,
        app_version: str | None = None,
        locale: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Register (or refresh) the app user's push token for its conversation. The same
        token held by another user of the channel moves to this one. Raises what facts()
        raises (NotFound, Forbidden, IdentityRequired, IdentityRefused) and InvalidInput for
        a conversation of a web chat channel. Returns (device, created)."""
        facts, channel_id = await self._app_users_conversation(actor, conversation_id)
        token_hash = sha256_hex(token)
        for attempt in range(3):
            try:
                device, created = await self._upsert_device(
                    facts.organization_id,
                    channel_id,
                    conversation_id,
                    platform,
                    token,
                    token_hash,
                    app_version,
                    locale,
                )
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        return device, created

    async def _upsert_device(
        self, org_id, channel_id, conversation_id, platform, token, token_hash, version, locale
    ):
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            s = uow.conn
            key = (
                _PD.c.channel_id == channel_id,
                _PD.c.platform == platform,
                _PD.c.token_hash == token_hash,
            )
            found = (await s.execute(select(_PD.c.id).where(*key))).first()
            values = {
                "conversation_id": conversation_id,
                "token": token,
                "app_version": version,
                "locale": locale,
                "updated_at": now,
            }
            if found is None:
                device_id = new_id()
                await s.execute(
                    insert(_PD).values(
                        id=device_id,
                        organization_id=org_id,
                        channel_id=channel_id,
                        platform=platform,
                        token_hash=token_hash,
                        created_at=now,
                        **values,
                    )
                )
            else:
                device_id = found.id
                await s.execute(update(_PD).where(_PD.c.id == device_id).values(**values))
            row = (await s.execute(select(_PD).where(_PD.c.id == device_id))).one()
        return device_public(row), found is None

    async def unregister_device(
        self, actor: EndUserActor, conversation_id: str, platform: str, token: str
    ) -> bool:
        """Forget the app user's push token (sign-out, notifications turned off). Raises as
        register_device. Returns whether it was registered."""
        await self.conversations.facts(actor, conversation_id)
        async with self.db.unit_of_work() as uow:
            result = await uow.conn.execute(
                delete(_PD).where(
                    _PD.c.conversation_id == conversation_id,
                    _PD.c.platform == platform,
                    _PD.c.token_hash == sha256_hex(token),
                )
            )
        return result.rowcount > 0

    # ---- a channel's settings (owners and admins) -----------------------------------------

    @staticmethod
    def _require_admin(actor: AgentActor) -> None:
        if not actor.is_admin:
            raise Forbidden("Your role does not allow this.")

    async def _mobile_channel(self, conn, actor: AgentActor, channel_id: str):
        self._require_admin(actor)
        row = await organization_channel(conn, actor.organization_id, channel_id)
        if row.type != "mobile_sdk":
            raise InvalidInput("Push notifications are set up on mobile channels.")
        return row

    async def settings_of(self, actor: AgentActor, channel_id: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            channel = await self._mobile_channel(conn, actor, channel_id)
            creds = (await conn.execute(select(_PC).where(_PC.c.channel_id == channel.id))).all()
            devices = (
                await conn.execute(
                    select(_PD.c.platform, func.count())
                    .where(_PD.c.channel_id == channel.id)
                    .group_by(_PD.c.platform)
                )
            ).all()
        by_platform = {c.platform: c for c in creds}
        counts = dict(devices)
        return {
            "channel_id": channel.id,
            "preview": channel.push_preview,
            **{
                p: (
                    {
                        **by_platform[p].summary,
                        "updated_at": iso(by_platform[p].updated_at),
                    }
                    if p in by_platform
                    else None
                )
                for p in ("fcm", "apns")
            },
            "devices": {p: counts.get(p, 0) for p in ("fcm", "apns")},
        }

    async def set_fcm(
        self, actor: AgentActor, channel_id: str, service_account: Any
    ) -> dict[str, Any]:
        """Store the channel's FCM service account (HTTP v1). InvalidInput says what is
        wrong with it, without echoing the key."""
        try:
            creds = validate_fcm_credentials(service_account)
        except CredentialsInvalid as exc:
            raise InvalidInput(str(exc)) from None
        return await self._store(actor, channel_id, "fcm", creds)

    async def set_apns(
        self,
        actor: AgentActor,
        channel_id: str,
        team_id: str,
        key_id: str,
        private_key: str,
        bundle_id: str,
        environment: str,
    ) -> dict[str, Any]:
        """Store the channel's APNs token-based credentials (the .p8 auth key)."""
        try:
            creds = validate_apns_credentials(team_id, key_id, private_key, bundle_id, environment)
        except CredentialsInvalid as exc:
            raise InvalidInput(str(exc)) from None
        return await self._store(actor, channel_id, "apns", creds)

    async def _store(self, actor, channel_id, platform, creds) -> dict[str, Any]:
        sealed = self.sealer.seal(creds)
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            channel = await self._mobile_channel(uow.conn, actor, channel_id)
            values = {"sealed": sealed, "summary": _summary(platform, creds), "updated_at": now}
            changed = await uow.conn.execute(
                update(_PC)
                .where(_PC.c.channel_id == channel.id, _PC.c.platform == platform)
                .values(**values)
            )
            if changed.rowcount == 0:
                await uow.conn.execute(
                    insert(_PC).values(
                        id=new_id(),
                        organization_id=channel.organization_id,
                        channel_id=channel.id,
                        platform=platform,
                        created_at=now,
                        **values,
                    )
                )
        self._orgs.add(actor.organization_id)
        return await self.settings_of(actor, channel_id)

    async def delete_credentials(
        self, actor: AgentActor, channel_id: str, platform: str
    ) -> dict[str, Any]:
        async with self.db.unit_of_work() as uow:
            channel = await self._mobile_channel(uow.conn, actor, channel_id)
            await uow.conn.execute(
                delete(_PC).where(_PC.c.channel_id == channel.id, _PC.c.platform == platform)
            )
        return await self.settings_of(actor, channel_id)

    async def set_preview(self, actor: AgentActor, channel_id: str, preview: str) -> dict:
        async with self.db.unit_of_work() as uow:
            channel = await self._mobile_channel(uow.conn, actor, channel_id)
            await uow.conn.execute(
                update(_CH).where(_CH.c.id == channel.id).values(push_preview=preview)
            )
        return await self.settings_of(actor, channel_id)

    async def send_test(
        self, actor: AgentActor, channel_id: str, platform: str, token: str
    ) -> dict[str, Any]:
        """Send a test push to a device token with the stored credentials and report the
        provider's answer (the console's "send test push")."""
        async with self.db.read() as conn:
            channel = await self._mobile_channel(conn, actor, channel_id)
        client = await self._client(channel.id, platform)
        if client is None:
            raise InvalidInput(f"This channel has no {platform.upper()} credentials.")
        result = await client.send(
            PushMessage(
                token=token,
                title=channel.name,
                body="Test notification: push works for this channel.",
                data={"test": "1"},
                badge=None,
                collapse_key="test",
            )
        )
        return {
            "outcome": result.outcome,
            "status_code": result.status,
            "detail": result.detail,
        }

    async def deliveries(
        self, actor: AgentActor, channel_id: str, limit: int = 50, before: int | None = None
    ) -> dict[str, Any]:
        """The channel's delivery log, newest first."""
        async with self.db.read() as conn:
            channel = await self._mobile_channel(conn, actor, channel_id)
            stmt = select(_PL).where(_PL.c.channel_id == channel.id)
            if before is not None:
                stmt = stmt.where(_PL.c.id < before)
            rows = (await conn.execute(stmt.order_by(_PL.c.id.desc()).limit(limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "deliveries": [delivery_public(r) for r in rows],
            "next_before": rows[-1].id if more else None,
        }

    # ---- providers ------------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            verify: Any = True
            if self.settings.push_ca_file:
                verify = ssl.create_default_context()
                verify.load_verify_locations(self.settings.push_ca_file)
            self._http = httpx.AsyncClient(
                http2=True, verify=verify, timeout=self.settings.push_timeout_seconds
            )
        return self._http

    async def _client(self, channel_id: str, platform: str) -> FcmClient | ApnsClient | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(_PC.c.sealed, _PC.c.updated_at).where(
                        _PC.c.channel_id == channel_id, _PC.c.platform == platform
                    )
                )
            ).first()
        if row is None:
            return None
        cached = self._clients.get((channel_id, platform))
        if cached is not None and cached[0] == row.updated_at:
            return cached[1]
        try:
            creds = self.sealer.open(row.sealed)
        except SealBroken:
            log.error(
                "push: the %s credentials of channel %s cannot be opened (CHATD_SECRET_KEY "
                "changed without CHATD_PREVIOUS_SECRET_KEYS?)",
                platform,
                channel_id,
            )
            return None
        http = self._http_client()
        client: FcmClient | ApnsClient
        if platform == "fcm":
            client = FcmClient(creds, http=http, api_base=self.settings.push_fcm_api_base)
        else:
            client = ApnsClient(creds, http=http, base_url=self.settings.push_apns_base_url or None)
        self._clients[(channel_id, platform)] = (row.updated_at, client)
        return client

    # ---- the outbox subscriber ------------------------------------------------------------

    async def handle(self, delivery) -> None:
        """Push an agent's or bot's message to its end user's devices if the user is not
        connected. Raises PushRetry when a provider could not be reached for some device."""
        event = delivery.event
        message = getattr(event, "message", None) or {}
        if message.get("sender_type") not in PUSHED_SENDERS:
            return
        conversation_id = event.conversation_id
        async with self.db.read() as conn:
            conv = (
                await conn.execute(
                    select(_C.c.channel_id, _E.c.external_id, _CH.c.push_preview, _CH.c.name)
                    .select_from(
                        _C.join(_E, _E.c.id == _C.c.end_user_id).join(
                            _CH, _CH.c.id == _C.c.channel_id
                        )
                    )
                    .where(_C.c.id == conversation_id)
                )
            ).first()
            if conv is None:
                return
            devices = (
                await conn.execute(select(_PD).where(_PD.c.conversation_id == conversation_id))
            ).all()
            if not devices:
                return
            reached = {
                r.device_id
                for r in await conn.execute(
                    select(_PL.c.device_id).where(
                        _PL.c.message_id == message["id"], _PL.c.outcome != "retry"
                    )
                )
            }
        devices = [d for d in devices if d.id not in reached]
        if not devices or await self.presence.connected(conversation_id, conv.external_id):
            return
        title = await self._sender_name(message, conv.name)
        badge = await self._unread(conversation_id, conv.external_id)
        push = {
            "title": title,
            "body": preview_of(message, conv.push_preview),
            "data": {
                "conversation_id": conversation_id,
                "message_id": message["id"],
                "seq": str(message["seq"]),
            },
            "badge": badge,
            "collapse_key": conversation_id,
        }
        # One credentials lookup per platform, not per device.
        clients = {p: await self._client(conv.channel_id, p) for p in {d.platform for d in devices}}
        outcomes: list[tuple[Any, PushResult]] = []
        for device in devices:
            client = clients[device.platform]
            if client is None:
                result = PushResult(
                    "no_credentials", None, f"No {device.platform.upper()} credentials."
                )
            else:
                result = await client.send(PushMessage(token=device.token, **push))
            outcomes.append((device, result))
        await self._record(event.organization_id, conv.channel_id, message, delivery, outcomes)
        retry = [r for _d, r in outcomes if r.outcome == "retry"]
        if retry:
            raise PushRetry(f"{len(retry)} device(s) not reached: {retry[0].detail}"[:500])

    async def _record(self, org_id, channel_id, message, delivery, outcomes) -> None:
        now = utcnow()
        gone = [d.id for d, r in outcomes if r.outcome == "unregistered"]
        async with self.db.unit_of_work() as uow:
            await uow.conn.execute(
                insert(_PL),
                [
                    {
                        "organization_id": org_id,
                        "channel_id": channel_id,
                        "conversation_id": message["conversation_id"],
                        "device_id": None if d.id in gone else d.id,
                        "platform": d.platform,
                        "message_id": message["id"],
                        "seq": message["seq"],
                        "outcome": r.outcome,
                        "status_code": r.status,
                        "detail": (r.detail or "")[:1000],
                        "attempt": delivery.attempt,
                        "created_at": now,
                    }
                    for d, r in outcomes
                ],
            )
            if gone:
                # The provider says the app was uninstalled or the token replaced.
                await uow.conn.execute(delete(_PD).where(_PD.c.id.in_(gone)))

    async def _sender_name(self, message: dict[str, Any], channel_name: str) -> str:
        if message.get("sender_type") == "agent":
            async with self.db.read() as conn:
                name = (
                    await conn.execute(
                        select(_U.c.display_name).where(_U.c.id == message["sender_id"])
                    )
                ).scalar_one_or_none()
            if name:
                return name
        return channel_name

    async def _unread(self, conversation_id: str, external_id: str) -> int:
        """Messages to the end user it has not read, among the latest UNREAD_WINDOW."""
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(_M.c.sender_type, _M.c.read_by)
                    .where(_M.c.conversation_id == conversation_id)
                    .order_by(_M.c.seq.desc())
                    .limit(UNREAD_WINDOW)
                )
            ).all()
        return sum(
            1 for r in rows if r.sender_type != "end_user" and external_id not in (r.read_by or {})
        )
