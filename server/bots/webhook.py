"""Calling a webhook bot: the organization's own service, which answers end users for it.

Each end user's message (and each hand-off) is POSTed to the bot's URL as JSON, signed as the
platform's webhooks are (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature`). The bot answers either at once, in the response body:

    {"replies": [{"content": "...", "content_type": "text", "rich_media": null}, ...],
     "handoff": false, "flag": false}

or later through the integration API with its own API key (an empty 2xx answer, 202 or 204).
Anything else within the bot's timeout (another status, a body that is not such an answer, a
refused connection, no answer) is a failure: BotService tells the end user and hands the
conversation to people. The addresses a bot may be called at are those of webhooks (no
private ones unless CHATD_WEBHOOK_ALLOW_PRIVATE_TARGETS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from marshmallow import ValidationError
from standardwebhooks.webhooks import Webhook

from server.schemas import MessageBodySchema
from server.webhook_sender import GuardedResolver

USER_AGENT = "chatd-bots/1"
MAX_ANSWER_BYTES = 256 * 1024
MAX_REPLIES = 10


class BotCallFailed(Exception):
    """The bot did not answer usably in time; the message says how."""


@dataclass(frozen=True, slots=True)
class BotAnswer:
    replies: list[dict[str, Any]] = field(default_factory=list)
    handoff: bool = False
    flag: bool = False
    # The bot will answer later through the integration API (an empty 2xx answer).
    later: bool = False


def parse_answer(status: int, body: bytes) -> BotAnswer:
    """The bot's answer from its HTTP status and body. Raises BotCallFailed."""
    if not 200 <= status < 300:
        raise BotCallFailed(f"HTTP {status}")
    if status in (202, 204) or not body.strip():
        return BotAnswer(later=True)
    try:
        data = json.loads(body)
    except ValueError:
        raise BotCallFailed("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise BotCallFailed("the answer is not a JSON object")
    replies = data.get("replies", [])
    if not isinstance(replies, list) or len(replies) > MAX_REPLIES:
        raise BotCallFailed(f"replies must be a list of at most {MAX_REPLIES} messages")
    schema = MessageBodySchema()
    checked = []
    for i, reply in enumerate(replies):
        if isinstance(reply, str):
            reply = {"content": reply}
        if not isinstance(reply, dict):
            raise BotCallFailed(f"replies[{i}] is not a message")
        try:
            loaded = schema.load({k: v for k, v in reply.items() if k != "client_message_id"})
        except ValidationError as exc:
            raise BotCallFailed(f"replies[{i}]: {exc.messages}") from None
        checked.append(
            {
                "content": loaded["content"],
                "content_type": loaded["content_type"],
                "rich_media": loaded["rich_media"],
            }
        )
    return BotAnswer(checked, bool(data.get("handoff")), bool(data.get("flag")), not checked)


class WebhookBotClient:
    """One HTTP client for every webhook bot of the process."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=None if self.allow_private else GuardedResolver(), limit=200
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": USER_AGENT}
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self, url: str, secret: str, call_id: str, payload: dict[str, Any], timeout: float
    ) -> BotAnswer:
        """POST the signed payload; the bot's answer within `timeout` seconds. Raises
        BotCallFailed."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        sent_at = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": call_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Webhook(secret).sign(call_id, sent_at, body),
        }
        try:
            async with self._client().post(
                url,
                data=body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                answer = await resp.content.read(MAX_ANSWER_BYTES + 1)
                if len(answer) > MAX_ANSWER_BYTES:
                    raise BotCallFailed(f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
                return parse_answer(resp.status, answer)
        except TimeoutError:
            raise BotCallFailed(f"no answer within {timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise BotCallFailed(f"{type(exc).__name__}: {exc}") from None
