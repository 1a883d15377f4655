"""Webhooks: an organization's endpoints, the fan-out of domain events onto them, and the
delivery log.

- Endpoints are managed by owners and admins (the console) and by API keys with the
  `webhooks:manage` scope (/api/v1/webhooks); each names the event types it wants.
- The "webhooks" durable subscriber (registered by the composition root) receives every
  durable event of those types from the outbox, at least once and in order per conversation,
  and writes one delivery row per enabled endpoint that wants it (idempotent on the outbox
  id), then wakes the sender (server/webhook_sender.py), which signs and POSTs them.
- Signing secrets follow Standard Webhooks (`whsec_` + base64). They are not stored: each is
  derived from CHATD_SECRET_KEY and a random salt of the endpoint (rotating the secret draws
  a new salt), so the database alone cannot sign. Changing CHATD_SECRET_KEY changes every
  endpoint's secret (docs/operations.md).
- Endpoint URLs are checked against SSRF when saved and again when connecting
  (server/webhook_sender.py): loopback, private, link-local (cloud metadata), multicast and
  unspecified addresses are refused unless CHATD_WEBHOOK_ALLOW_PRIVATE_TARGETS is on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update

from models import WebhookDelivery, WebhookEndpoint
from models.base import new_id, utcnow
from models.webhooks import WEBHOOK_EVENT_TYPES
from server.actors import AgentActor, IntegrationActor
from server.db import Database
from server.errors import Forbidden, InvalidInput, NotFound
from server.serializers import iso
from server.settings import Settings

log = logging.getLogger(__name__)

_E = WebhookEndpoint.__table__
_D = WebhookDelivery.__table__

SUBSCRIBER_NAME = "webhooks"
EVENT_TYPES = WEBHOOK_EVENT_TYPES
TEST_EVENT = "webhook.test"
MANAGE_SCOPE = "webhooks:manage"
MAX_ENDPOINTS_PER_ORGANIZATION = 20
# After a rotation the previous secret signs too, for this long by default (at most the max).
PREVIOUS_SECRET_SECONDS = 86_400
MAX_PREVIOUS_SECRET_SECONDS = 7 * 86_400
SECRET_PREFIX = "whsec_"
# Saving an endpoint resolves its host (SSRF check): at most this long.
RESOLVE_TIMEOUT_SECONDS = 5.0
# How soon an endpoint created or changed on another process starts (or stops) receiving.
TARGETS_REFRESH_SECONDS = 1.0


# ---- URLs and addresses (SSRF) ------------------------------------------------------------


def address_refused(address: str) -> str | None:
    """Why a webhook may not connect to this IP address (None: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address (this server)"
    if ip.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a unicast address"
    if ip.is_private or not ip.is_global:
        return "a private address"
    return None


def _url_error(message: str) -> InvalidInput:
    return InvalidInput(f"url: {message}", fields={"url": [message]})


def parse_url(url: str) -> tuple[str, int]:
    """The (host, port) of a webhook URL, or InvalidInput: http(s), a host, no credentials."""
    if not isinstance(url, str) or not url or len(url) > 2048 or url != url.strip():
        raise _url_error("An http:// or https:// URL of at most 2048 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _url_error("Not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _url_error("An http:// or https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise _url_error("Credentials in the URL are not allowed; the signature authenticates.")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise _url_error("Not a valid URL.")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_target(url: str, allow_private: bool) -> None:
    """Refuse a URL whose host is, or resolves to, an address webhooks may not reach."""
    host, port = parse_url(url)
    if allow_private:
        return
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                RESOLVE_TIMEOUT_SECONDS,
            )
        except (OSError, TimeoutError, UnicodeError):
            raise _url_error(f"The host {host} does not resolve.") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        why = address_refused(str(address))
        if why:
            raise _url_error(f"{host} is {why}; webhooks may not be sent there.")


# ---- shapes ---------------------------------------------------------------------------------


def previous_secret_expiry(row: Any, now: datetime):
    """When the endpoint's previous secret stops signing, if it still does (else None)."""
    expires = row.previous_secret_expires_at
    if row.previous_secret_salt is None or expires is None or expires <= now:
        return None
    return expires


def endpoint_public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "event_types": list(row.event_types or []),
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "failing_since": iso(row.failing_since),
        # Until then, requests also carry a signature made with the secret before the last
        # rotation; None: one secret.
        "previous_secret_expires_at": iso(previous_secret_expiry(row, utcnow())),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def delivery_public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "webhook_id": row.payload.get("id"),
        "event": row.event,
        "conversation_id": row.conversation_id,
        "status": {"pending": "pending", "done": "delivered", "dead": "failed"}[row.status],
        "attempts": row.attempts,
        "response_code": row.response_code,
        "latency_ms": row.latency_ms,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "last_attempt_at": iso(row.last_attempt_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "redelivery_of": row.redelivery_of,
        "payload": row.payload,
    }


def webhook_body(event_name: str, event_id: str, created_at, data: dict[str, Any]) -> dict:
    """The JSON body of a webhook (Standard Webhooks' recommended shape: type, timestamp,
    data), with the event id (also the webhook-id header) and its organization and
    conversation."""
    return {
        "id": event_id,
        "type": event_name,
        "timestamp": iso(created_at),
        "organization_id": data.get("organization_id"),
        "conversation_id": data.get("conversation_id"),
        "data": data,
    }


class WebhookService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # Set by the composition root: wakes the sender when deliveries were written.
        self.on_deliveries: Callable[[], None] | None = None
        # Which event types each organization's enabled endpoints want: read at start, after
        # every change made here, and every TARGETS_REFRESH_SECONDS (changes made by other
        # processes). The write path asks it (wants()) whether to write an outbox row at all.
        self._targets: dict[str, frozenset[str]] = {}
        self._refresher: asyncio.Task | None = None

    # ---- which organizations have endpoints -------------------------------------------------

    def wants(self, event) -> bool:
        """Whether an endpoint of the event's organization wants it (no I/O)."""
        return event.name in self._targets.get(event.organization_id, ())

    async def refresh_targets(self) -> None:
        stmt = select(_E.c.organization_id, _E.c.event_types).where(_E.c.enabled.is_(True))
        targets: dict[str, set[str]] = {}
        async with self.db.read() as conn:
            for row in await conn.execute(stmt):
                targets.setdefault(row.organization_id, set()).update(row.event_types or ())
        self._targets = {org: frozenset(types) for org, types in targets.items()}

    async def start(self) -> None:
        await self.refresh_targets()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="webhook-targets")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(TARGETS_REFRESH_SECONDS)
            try:
                await self.refresh_targets()
            except Exception:
                # The database is down: keep the last known targets, try again later.
                log.warning("webhooks: reading the endpoints failed", exc_info=True)

    async def _changed(self) -> None:
        """An endpoint was changed here: this process knows at once (others within
        TARGETS_REFRESH_SECONDS)."""
        if self._refresher is not None:
            await self.refresh_targets()

    # ---- secrets ----------------------------------------------------------------------------

    def secret_for(self, endpoint_id: str, salt: str) -> str:
        raw = hmac.new(
            self.settings.secret_key.encode(),
            f"webhook-secret:{endpoint_id}:{salt}".encode(),
            hashlib.sha256,
        ).digest()
        return SECRET_PREFIX + base64.b64encode(raw).decode()

    # ---- who manages ------------------------------------------------------------------------

    @staticmethod
    def _organization(actor: AgentActor | IntegrationActor) -> str:
        if isinstance(actor, IntegrationActor):
            if not actor.has_scope(MANAGE_SCOPE):
                raise Forbidden(f"This API key does not have the scope {MANAGE_SCOPE}.")
        elif not actor.is_admin:
            raise Forbidden("Your role does not allow this.")
        return actor.organization_id

    @staticmethod
    def _created_by(actor) -> str | None:
        return actor.user_id if isinstance(actor, AgentActor) else None

    @staticmethod
    def _event_types(values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in EVENT_TYPES]
        if unknown:
            message = f"Unknown event type {unknown[0]!r}; types are {', '.join(EVENT_TYPES)}."
            raise InvalidInput(message, fields={"event_types": [message]})
        if not values:
            message = "At least one event type."
            raise InvalidInput(message, fields={"event_types": [message]})
        return list(dict.fromkeys(values))

    async def _row(self, conn, organization_id: str, endpoint_id: str):
        row = (
            await conn.execute(
                select(_E).where(_E.c.id == endpoint_id, _E.c.organization_id == organization_id)
            )
        ).first()
        if row is None:
            raise NotFound("Webhook endpoint not found.")
        return row

    # ---- endpoints ----------------------------------------------------------------------------

    async def create(
        self,
        actor,
        url: str,
        event_types: list[str],
        description: str = "",
        enabled: bool = True,
    ) -> dict[str, Any]:
        """A new endpoint; the answer carries its signing secret ("secret")."""
        org = self._organization(actor)
        types = self._event_types(event_types)
        await check_target(url, self.settings.webhook_allow_private_targets)
        endpoint_id = new_id()
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            count = (
                await uow.conn.execute(
                    select(func.count()).select_from(_E).where(_E.c.organization_id == org)
                )
            ).scalar_one()
            if count >= MAX_ENDPOINTS_PER_ORGANIZATION:
                raise InvalidInput(
                    f"An organization has at most {MAX_ENDPOINTS_PER_ORGANIZATION} webhook "
                    "endpoints."
                )
            await uow.conn.execute(
                insert(_E).values(
                    id=endpoint_id,
                    organization_id=org,
                    url=url,
                    description=description,
                    event_types=types,
                    enabled=enabled,
                    secret_salt=secrets.token_hex(16),
                    created_by=self._created_by(actor),
                    created_at=now,
                    updated_at=now,
                )
            )
            row = await self._row(uow.conn, org, endpoint_id)
        await self._changed()
        return {**endpoint_public(row), "secret": self.secret_for(row.id, row.secret_salt)}

    async def list(self, actor) -> list[dict[str, Any]]:
        org = self._organization(actor)
        stmt = select(_E).where(_E.c.organization_id == org).order_by(_E.c.created_at, _E.c.id)
        async with self.db.read() as conn:
            return [endpoint_public(r) for r in await conn.execute(stmt)]

    async def get(self, actor, endpoint_id: str) -> dict[str, Any]:
        org = self._organization(actor)
        async with self.db.read() as conn:
            return endpoint_public(await self._row(conn, org, endpoint_id))

    async def update(self, actor, endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change url, event_types, description or enabled (turning an endpoint on clears
        the reason it was disabled; its pending deliveries resume)."""
        org = self._organization(actor)
        values: dict[str, Any] = {}
        if changes.get("url") is not None:
            await check_target(changes["url"], self.settings.webhook_allow_private_targets)
            values["url"] = changes["url"]
        if changes.get("event_types") is not None:
            values["event_types"] = self._event_types(changes["event_types"])
        if changes.get("description") is not None:
            values["description"] = changes["description"]
        if changes.get("enabled") is not None:
            values["enabled"] = changes["enabled"]
            values["disabled_reason"] = None
            if changes["enabled"]:
                values["failing_since"] = None
        async with self.db.unit_of_work() as uow:
            await self._row(uow.conn, org, endpoint_id)
            if values:
                values["updated_at"] = utcnow()
                await uow.conn.execute(update(_E).where(_E.c.id == endpoint_id).values(**values))
            row = await self._row(uow.conn, org, endpoint_id)
        await self._changed()
        if values.get("enabled"):
            self._wake()
        return endpoint_public(row)

    async def delete(self, actor, endpoint_id: str) -> None:
        """Remove an endpoint and its delivery log (pending deliveries are dropped)."""
        org = self._organization(actor)
        async with self.db.unit_of_work() as uow:
            await self._row(uow.conn, org, endpoint_id)
            await uow.conn.execute(delete(_D).where(_D.c.endpoint_id == endpoint_id))
            await uow.conn.execute(delete(_E).where(_E.c.id == endpoint_id))
        await self._changed()

    async def rotate_secret(
        self,
        actor,
        endpoint_id: str,
        expire_previous_after_seconds: int = PREVIOUS_SECRET_SECONDS,
    ) -> dict[str, Any]:
        """A new signing secret, at once (deliveries from now on are signed with it). The
        secret it replaces keeps signing too (a second signature in the same header) for
        `expire_previous_after_seconds`, so receivers switch without refusing anything; 0 ends
        it at once. Only the secret in use until now is kept: rotating twice within that time
        drops the older one."""
        org = self._organization(actor)
        if not 0 <= expire_previous_after_seconds <= MAX_PREVIOUS_SECRET_SECONDS:
            message = f"Must be between 0 and {MAX_PREVIOUS_SECRET_SECONDS}."
            raise InvalidInput(
                f"expire_previous_after_seconds: {message}",
                fields={"expire_previous_after_seconds": [message]},
            )
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            current = await self._row(uow.conn, org, endpoint_id)
            keep = expire_previous_after_seconds > 0
            await uow.conn.execute(
                update(_E)
                .where(_E.c.id == endpoint_id)
                .values(
                    secret_salt=secrets.token_hex(16),
                    previous_secret_salt=current.secret_salt if keep else None,
                    previous_secret_expires_at=(
                        now + timedelta(seconds=expire_previous_after_seconds) if keep else None
                    ),
                    updated_at=now,
                )
            )
            row = await self._row(uow.conn, org, endpoint_id)
        await self._changed()
        return {**endpoint_public(row), "secret": self.secret_for(row.id, row.secret_salt)}

    # ---- deliveries ---------------------------------------------------------------------------

    async def deliveries(
        self,
        actor,
        endpoint_id: str,
        status: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> dict[str, Any]:
        """The endpoint's delivery log, newest first; `next_before` continues (None: done)."""
        org = self._organization(actor)
        stored = {"delivered": "done", "failed": "dead", "pending": "pending"}.get(status or "")
        stmt = select(_D).where(_D.c.endpoint_id == endpoint_id)
        if stored:
            stmt = stmt.where(_D.c.status == stored)
        if before is not None:
            stmt = stmt.where(_D.c.id < before)
        stmt = stmt.order_by(_D.c.id.desc()).limit(limit + 1)
        async with self.db.read() as conn:
            await self._row(conn, org, endpoint_id)
            rows = (await conn.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "deliveries": [delivery_public(r) for r in rows],
            "next_before": rows[-1].id if more else None,
        }

    async def redeliver(self, actor, endpoint_id: str, delivery_id: int) -> dict[str, Any]:
        """Send a delivery again: a new row behind the conversation's queue, with the same
        body and webhook-id (receivers dedupe on it)."""
        org = self._organization(actor)
        async with self.db.unit_of_work() as uow:
            await self._row(uow.conn, org, endpoint_id)
            original = (
                await uow.conn.execute(
                    select(_D).where(_D.c.id == delivery_id, _D.c.endpoint_id == endpoint_id)
                )
            ).first()
            if original is None:
                raise NotFound("Delivery not found.")
            now = utcnow()
            result = await uow.conn.execute(
                insert(_D)
                .values(
                    endpoint_id=endpoint_id,
                    organization_id=org,
                    outbox_id=original.outbox_id,
                    redelivery_of=original.id,
                    event=original.event,
                    conversation_id=original.conversation_id,
                    payload=original.payload,
                    created_at=now,
                    next_attempt_at=now,
                )
                .returning(_D)
            )
            row = result.one()
        self._wake()
        return delivery_public(row)

    async def send_test(self, actor, endpoint_id: str) -> dict[str, Any]:
        """Queue a `webhook.test` event for the endpoint (it shows in the delivery log)."""
        org = self._organization(actor)
        now = utcnow()
        event_id = "evt_test_" + secrets.token_hex(8)
        body = webhook_body(
            TEST_EVENT,
            event_id,
            now,
            {"organization_id": org, "conversation_id": None, "endpoint_id": endpoint_id},
        )
        async with self.db.unit_of_work() as uow:
            await self._row(uow.conn, org, endpoint_id)
            row = (
                await uow.conn.execute(
                    insert(_D)
                    .values(
                        endpoint_id=endpoint_id,
                        organization_id=org,
                        event=TEST_EVENT,
                        conversation_id=None,
                        payload=body,
                        created_at=now,
                        next_attempt_at=now,
                    )
                    .returning(_D)
                )
            ).one()
        self._wake()
        return delivery_public(row)

    def _wake(self) -> None:
        if self.on_deliveries is not None:
            self.on_deliveries()

    # ---- the durable subscriber -------------------------------------------------------------

    async def fan_out(self, delivery) -> None:
        """The "webhooks" durable subscriber: one delivery row per enabled endpoint of the
        event's organization that wants its type. Redelivered outbox rows (at least once) find
        their rows written and add none."""
        event = delivery.event
        now = utcnow()
        async with self.db.unit_of_work() as uow:
            endpoints = (
                await uow.conn.execute(
                    select(_E.c.id, _E.c.event_types).where(
                        _E.c.organization_id == event.organization_id, _E.c.enabled.is_(True)
                    )
                )
            ).all()
            wanted = [e.id for e in endpoints if event.name in (e.event_types or ())]
            if not wanted:
                return
            written = {
                r.endpoint_id
                for r in await uow.conn.execute(
                    select(_D.c.endpoint_id).where(
                        _D.c.outbox_id == delivery.outbox_id,
                        _D.c.endpoint_id.in_(wanted),
                        _D.c.redelivery_of.is_(None),
                    )
                )
            }
            body = webhook_body(
                event.name, f"evt_{delivery.outbox_id}", delivery.created_at, event.to_dict()
            )
            rows = [
                {
                    "endpoint_id": endpoint_id,
                    "organization_id": event.organization_id,
                    "outbox_id": delivery.outbox_id,
                    "event": event.name,
                    "conversation_id": event.conversation_id,
                    "payload": body,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for endpoint_id in wanted
                if endpoint_id not in written
            ]
            if rows:
                await uow.conn.execute(insert(_D), rows)
        self._wake()
