"""`python bench/outbox_server.py serve --port P`: `chatd serve` exactly (same start-up, GC
tuning, event loop), with one no-op durable subscriber registered, so that every durable event
writes an outbox row and the dispatcher delivers it. The `pg-1+outbox` target of bench/run.py.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chatd.app  # noqa: E402
from chatd.__main__ import main  # noqa: E402
from server.bus import DurableSubscriber  # noqa: E402


async def _noop(_delivery) -> None:
    return None


# `chatd serve` builds its app with chatd.app.create_app: the same call, plus the subscriber.
chatd.app.create_app = functools.partial(
    chatd.app.create_app, durable=[DurableSubscriber("bench-noop", _noop)]
)

if __name__ == "__main__":
    sys.exit(main())
