"""`python -m tests.e2e.outbox_app serve --host H --port P`: the platform as `chatd serve`
runs it, plus a durable subscriber that records every delivery, for the outbox's end-to-end
tests (tests/e2e/test_outbox_*.py).

Environment, besides the server's own:
  OUTBOX_TEST_SUBSCRIBER  the subscriber's name (unique per test: its outbox rows are its own)
  OUTBOX_TEST_LOG         a file: one JSON line per delivery, appended once handled
  OUTBOX_TEST_HOLD        a file: while it exists, deliveries wait (commits go on, deliveries
                          do not: the state in which a test kills the process)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from pathlib import Path

from aiohttp import web

from chatd.app import create_app
from server import migrate
from server.bus import DurableSubscriber
from server.outbox import Delivery
from server.settings import Settings

HOLD_POLL_SECONDS = 0.05


class RecordingSubscriber:
    def __init__(self, log_path: Path, hold_path: Path | None) -> None:
        self.log_path = log_path
        self.hold_path = hold_path

    async def handle(self, delivery: Delivery) -> None:
        # A marker file, not an in-process event: the test process creates and removes it.
        while self.hold_path is not None and self.hold_path.exists():  # noqa: ASYNC110
            await asyncio.sleep(HOLD_POLL_SECONDS)
        ev = delivery.event
        line = {
            "outbox_id": delivery.outbox_id,
            "event": ev.name,
            "conversation_id": ev.conversation_id,
            "seq": ev.message["seq"] if ev.name == "message.created" else None,
            "attempt": delivery.attempt,
            "pid": os.getpid(),
        }
        await asyncio.to_thread(self._append, json.dumps(line) + "\n")

    def _append(self, line: str) -> None:
        # One write of one line in append mode: lines of several processes do not interleave.
        with open(self.log_path, "a") as f:
            f.write(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    settings = Settings.from_env()
    migrate.upgrade(settings.database_url)
    hold = os.environ.get("OUTBOX_TEST_HOLD")
    recorder = RecordingSubscriber(
        Path(os.environ["OUTBOX_TEST_LOG"]), Path(hold) if hold else None
    )
    subscriber = DurableSubscriber(os.environ["OUTBOX_TEST_SUBSCRIBER"], recorder.handle)
    app = create_app(settings, durable=[subscriber])
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
