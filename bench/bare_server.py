"""The ceiling: a bare python-socketio server on aiohttp with the platform's event names and
room shapes, but no validation, authorization, storage or rate limits.

    python bench/bare_server.py --port 8090 [--redis redis://127.0.0.1:6379/0]

It runs on the same stack as the platform (uvloop, orjson, the same GC tuning) so that the
ratio between the two measures what the platform's own work costs.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis
import socketio
import uvloop
from aiohttp import web

from realtime.upstream.server import _OrjsonModule
from realtime.upstream.transport import UncompressedWebSocket


class PooledRedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager on a blocking pool, as the platform's.

    With redis-py's default pool, a burst of concurrent emits opens connections until the
    pool's limit (100) and then fails ("Cannot publish to redis... retrying"): the 2-process
    ceiling measured redis-py's default, not python-socketio. The platform waits for a pooled
    connection instead (CHATD_REDIS_MAX_CONNECTIONS); the ceiling gets the same pool.
    """

    def _redis_connect(self):
        pool = aioredis.BlockingConnectionPool.from_url(
            self.redis_url, max_connections=32, timeout=10
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True


def build(redis_url: str | None) -> web.Application:
    manager = (
        PooledRedisManager(redis_url, channel="chatd-bare", json=_OrjsonModule)
        if redis_url
        else None
    )
    sio = socketio.AsyncServer(
        async_mode="aiohttp", client_manager=manager, json=_OrjsonModule, cors_allowed_origins="*"
    )
    # The same transport as the platform: permessage-deflate declined. With the stock driver
    # every frame is deflated on both ends and the load generator, not the server, becomes the
    # limit (zlib was 56% of its CPU): the ceiling would be lowered by a cost we do not pay.
    sio.eio._async = {**sio.eio._async, "websocket": UncompressedWebSocket}
    seqs: dict[str, itertools.count] = {}

    @sio.on("join_conversation")
    async def join_conversation(sid, data):
        await sio.enter_room(sid, "conv:" + data["conversation_id"])
        return {"conversation_id": data["conversation_id"], "last_seq": 0, "replayed": 0}

    @sio.on("join_queue")
    async def join_queue(sid, data):
        await sio.enter_room(sid, "org:" + data["org_id"] + ":queue")
        return {"organization_id": data["org_id"]}

    @sio.on("send_message")
    async def send_message(sid, data):
        conv = data["conversation_id"]
        seq = next(seqs.setdefault(conv, itertools.count(1)))
        message = {
            "id": str(uuid.uuid4()),
            "conversation_id": conv,
            "session_id": conv,
            "seq": seq,
            "sender_type": data["sender_type"],
            "sender_id": data.get("external_id") or sid,
            "content_type": data.get("content_type", "text"),
            "content": data["content"],
            "rich_media": data.get("rich_media"),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
        }
        await sio.emit("message_received", message, room="conv:" + conv)
        await sio.emit(
            "conversation_updated",
            {
                "conversation_id": conv,
                "sender_type": message["sender_type"],
                "content_type": message["content_type"],
                "content": message["content"],
            },
            room="org:" + data["org_id"] + ":queue",
        )
        return message

    app = web.Application()
    sio.attach(app)

    async def healthz(_request):
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)

    async def tune_gc(_app):
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, *gc.get_threshold()[1:])

    app.on_startup.append(tune_gc)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    web.run_app(
        build(args.redis),
        host=args.host,
        port=args.port,
        access_log=None,
        loop=uvloop.new_event_loop(),
        print=None,
    )


if __name__ == "__main__":
    main()
