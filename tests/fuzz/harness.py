"""Running a hypothesis search against a live test server, and the checks every answer
must pass whatever the input: no 5xx, no `internal_error`, no traceback in the server's log,
and nothing stored when the request was refused.

Hypothesis drives a synchronous test; the server and the clients live on the test's event
loop. `search` runs hypothesis in a worker thread and hands each example to the loop with
run_coroutine_threadsafe, so one real server (and one set-up) serves every example of a test,
and hypothesis still shrinks a failure to a minimal input.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from hypothesis import example as hypothesis_example
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import and_, func, select

from models import (
    AuthSession,
    Channel,
    Conversation,
    ConversationSession,
    EmbedToken,
    EndUser,
    Message,
    User,
)
from tests.factories import Factory
from tests.fuzz.conftest import PROFILE

# CHATD_FUZZ_SURVEY=1: instead of stopping at the first fault and shrinking it, run every
# example and list each distinct fault with its shortest example (for an audit).
SURVEY = os.environ.get("CHATD_FUZZ_SURVEY") == "1"

# One example: a request, its answer and the checks after it. A request must be answered in
# far less; a lost answer fails on the client's own, shorter time-out first.
EXAMPLE_TIMEOUT = 30.0


async def search(
    name: str,
    strategy: st.SearchStrategy,
    check: Callable[[Any], Awaitable[None]],
    seeds: Iterable[Any] = (),
    **overrides: Any,
) -> None:
    """Run `check` on every example hypothesis draws from `strategy` (profile PROFILE),
    after the `seeds`: known attacks, always tried first (hypothesis's explicit examples)."""
    loop = asyncio.get_running_loop()
    survey: dict[str, tuple[str, str]] = {}

    def example(case: Any) -> None:
        future = asyncio.run_coroutine_threadsafe(check(case), loop)
        try:
            future.result(EXAMPLE_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"the example took longer than {EXAMPLE_TIMEOUT}s") from None
        except AssertionError as exc:
            if not SURVEY:
                raise
            # Keep the shortest example of each distinct fault and search on.
            kind, text = type(exc).__name__, repr(case)
            if kind not in survey or len(text) < len(survey[kind][0]):
                survey[kind] = (text, str(exc)[:600])

    example.__name__ = example.__qualname__ = name
    profile = hypothesis_settings(hypothesis_settings.get_profile(PROFILE), **overrides)
    test = given(case=strategy)(example)
    for seed in reversed(list(seeds)):
        test = hypothesis_example(case=seed)(test)
    await asyncio.to_thread(profile(test))
    if survey:
        lines = [f"{len(survey)} distinct faults:"]
        for kind, (text, message) in sorted(survey.items()):
            lines.append(f"- {kind}\n    example: {text[:400]}\n    {message}")
        raise AssertionError("\n".join(lines))


# ---- the server's log ---------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Errors and tracebacks the server logs: bad input must never produce one."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The test's own clients log through these; only the server's records count.
        if not record.name.startswith(("socketio.client", "engineio.client")):
            self.records.append(record)

    def mark(self) -> int:
        return len(self.records)

    def cause(self, mark: int) -> str:
        """A short name for what went wrong, from the first error logged since `mark`."""
        for r in self.records[mark:]:
            if r.exc_info and r.exc_info[1] is not None:
                exc = r.exc_info[1]
                words = re.findall(r"[A-Za-z]{2,}", str(exc))[:3]
                return "_".join([type(exc).__name__, *words])
        return self.records[mark].name if len(self.records) > mark else "none"

    def since(self, mark: int) -> list[str]:
        out = []
        for r in self.records[mark:]:
            text = f"{r.name}: {r.getMessage()}"
            if r.exc_info and r.exc_info[1] is not None:
                exc = r.exc_info[1]
                text += f" [{type(exc).__name__}: {exc}]"
            out.append(text)
        return out


_FAULTS: dict[str, type[AssertionError]] = {}


def fault(prop: str, cause: str = "") -> type[AssertionError]:
    """An AssertionError subclass per broken property and cause. Hypothesis tells bugs apart
    by exception type and place, so each distinct defect a test finds is shrunk and reported
    on its own instead of the first one hiding the others."""
    name = re.sub(r"\W+", "_", f"{prop}__{cause}" if cause else prop)[:100]
    if name not in _FAULTS:
        _FAULTS[name] = type(name, (AssertionError,), {})
    return _FAULTS[name]


# ---- what a request may have stored -------------------------------------------------------


class Snapshot:
    """Every row of the test's organizations that a request could add or change, plus the
    files in the upload directory. Equal before and after a refused request."""

    def __init__(self, factory: Factory, org_ids: Iterable[str], upload_dir: Path) -> None:
        self.factory = factory
        self.org_ids = tuple(org_ids)
        self.upload_dir = upload_dir
        self._last: dict[str, Any] | None = None

    async def current(self) -> dict[str, Any]:
        """The state now: the last snapshot taken, if nothing ran since (each check ends
        with a `take`), else a fresh one."""
        if self._last is None:
            return await self.take()
        return self._last

    def invalidate(self) -> None:
        self._last = None

    async def take(self) -> dict[str, Any]:
        orgs = self.org_ids
        queries = {
            "users": select(User.id, User.email, User.role, User.display_name).where(
                User.organization_id.in_(orgs)
            ),
            "channels": select(Channel.id, Channel.type, Channel.name).where(
                Channel.organization_id.in_(orgs)
            ),
            "embed_tokens": select(
                EmbedToken.id, EmbedToken.name, EmbedToken.allowed_origins, EmbedToken.revoked_at
            ).where(EmbedToken.organization_id.in_(orgs)),
            "auth_sessions": select(func.count())
            .select_from(AuthSession)
            .join(User, User.id == AuthSession.user_id)
            .where(User.organization_id.in_(orgs)),
            "end_users": select(EndUser.id, EndUser.external_id, EndUser.display_name).where(
                EndUser.organization_id.in_(orgs)
            ),
            "conversations": select(Conversation.id, Conversation.last_seq).where(
                Conversation.organization_id.in_(orgs)
            ),
            "sessions": select(
                ConversationSession.id,
                ConversationSession.status,
                ConversationSession.assigned_agent_id,
                ConversationSession.tags,
            ).where(ConversationSession.organization_id.in_(orgs)),
            "messages": select(
                Message.id,
                Message.seq,
                Message.content,
                Message.rich_media,
                Message.client_message_id,
                Message.read_by,
            )
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(and_(Conversation.organization_id.in_(orgs))),
        }
        out: dict[str, Any] = {}
        async with self.factory.services.db.read() as conn:
            for key, stmt in queries.items():
                rows = (await conn.execute(stmt)).all()
                out[key] = sorted(repr(tuple(r)) for r in rows)
        out["files"] = self._files()
        self._last = out
        return out

    def _files(self) -> list[str]:
        return sorted(
            os.path.relpath(os.path.join(d, f), self.upload_dir)
            for d, _dirs, files in os.walk(self.upload_dir)
            for f in files
        )


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs between two snapshots, table by table (added and removed rows)."""
    diff = {}
    for key in before:
        added = sorted(set(after[key]) - set(before[key]))
        removed = sorted(set(before[key]) - set(after[key]))
        if added or removed:
            diff[key] = {"added": added[:3], "removed": removed[:3]}
    return diff


def short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
