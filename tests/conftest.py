"""Test fixtures: a real server on a real port, real Socket.IO clients, real databases.

The suite runs on the embedded default (a fresh SQLite file) unless DATABASE_URL is set, and
uses Redis (Socket.IO fan-out, presence, rate limits) when REDIS_URL is set. `.ci/run` runs
it both ways.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from chatd.app import create_app
from server import migrate
from server.settings import Settings
from tests.factories import Factory

_TMP = Path(tempfile.mkdtemp(prefix="chatd-tests-"))


def _database_url() -> str:
    return os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{_TMP / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    env = {
        "DATABASE_URL": _database_url(),
        "CHATD_DATA_DIR": str(_TMP),
        "CHATD_TYPING_TIMEOUT_SECONDS": "0.6",
        "CHATD_PRESENCE_TTL_SECONDS": "3",
        # The suite opens many conversations and uploads from 127.0.0.1. Off, not raised: with
        # Redis every attempt would still be recorded, and `chatd serve` processes of the
        # multi-process tests (default limits, same Redis) would find 127.0.0.1 over its limit.
        # tests/rest/test_abuse_limits.py turns them on.
        "CHATD_NEW_CONVERSATIONS_PER_ADDRESS": "0",
        "CHATD_NEW_CONVERSATIONS_PER_TOKEN": "0",
        "CHATD_VISITOR_UPLOADS_PER_ADDRESS": "0",
        "CHATD_VISITOR_UPLOADS_PER_VISITOR": "0",
    }
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    settings = Settings.from_env(env)
    migrate.upgrade(settings.database_url)
    return settings


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """Override per test with `settings.with_overrides(...)` through an indirect fixture."""
    return base_settings


@pytest.fixture
async def server(aiohttp_server, settings: Settings):
    """The whole application on 127.0.0.1 and a random free port."""
    app = create_app(settings)
    srv = await aiohttp_server(app, host="127.0.0.1")
    srv.base_url = str(srv.make_url("")).rstrip("/")
    return srv


@pytest.fixture
async def factory(server):
    f = Factory(server)
    yield f
    await f.close()


@pytest.fixture
async def push_fakes():
    """Local fake FCM and APNs (tests/e2e/fake_push.py): (fcm, apns)."""
    from tests.e2e.fake_push import FakeApns, FakeFcm

    async with FakeFcm() as fcm, FakeApns(bundle_id="com.example.shop") as apns:
        yield fcm, apns


@pytest.fixture
async def push_factory(aiohttp_server, base_settings, push_fakes, tmp_path):
    """The whole application pointed at the fake push providers, with short outbox
    backoffs (a failed push is retried within a second)."""
    fcm, apns = push_fakes
    ca = tmp_path / "push-ca.pem"
    ca.write_bytes(apns.ca_pem)
    settings = base_settings.with_overrides(
        push_fcm_api_base=fcm.base_url,
        push_apns_base_url=apns.base_url,
        push_ca_file=str(ca),
        outbox_backoff_base_seconds=0.2,
        outbox_backoff_cap_seconds=1.0,
    )
    srv = await aiohttp_server(create_app(settings), host="127.0.0.1")
    srv.base_url = str(srv.make_url("")).rstrip("/")
    f = Factory(srv)
    yield f
    await f.close()


@pytest.fixture
def uses_redis(base_settings: Settings) -> bool:
    return base_settings.redis_url is not None


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own on a free port, for outages: `.stop()`, `.start()`."""
    from tests.e2e.services import PrivateRedis

    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def private_pg_cluster(tmp_path_factory):
    """A PostgreSQL cluster of the suite's own on a free port (initdb once per run), for
    outages and restarts; tests take a fresh database with `.create_database()`."""
    from tests.e2e.services import PrivatePostgres

    pg = PrivatePostgres(tmp_path_factory.mktemp("pg"))
    pg.start()
    yield pg
    pg.destroy()


@pytest.fixture
def private_pg(private_pg_cluster):
    """The private cluster, running when the test starts (a test may stop or restart it)."""
    private_pg_cluster.start_if_stopped()
    return private_pg_cluster


@pytest.fixture
def single_pass():
    """For tests that bring their own servers (private PostgreSQL and Redis, browsers): CI
    runs the suite twice, and these run in the first pass only (DATABASE_URL unset)."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("runs once, in the embedded-default pass (it starts its own services)")
