"""Starting `chatd serve` as operators and orchestrators do: replicas started together on an
empty database, every infrastructure failure as one line and status 2, misspelt settings,
services that come up after the server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import psycopg

from tests.e2e.procs import ROOT, ServerProcess, free_port


def _env(tmp_path, **extra: str) -> dict[str, str]:
    # No DATABASE_URL/REDIS_URL/CHATD_* of the calling shell: each test says what it sets.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("CHATD_")
    }
    env["CHATD_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatd", "serve", "--host", "127.0.0.1", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_line_exit_2(done: subprocess.CompletedProcess, *words: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    line = lines[0]
    assert line.startswith("chatd: ") and "Traceback" not in done.stderr
    for word in words:
        assert word in line, line
    return line


def _wait_for_text(path, text: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, path.read_text()
        time.sleep(0.05)


async def test_two_replicas_started_together_on_an_empty_database_create_one_demo_org(
    single_pass, private_pg, tmp_path
):
    url = private_pg.create_database()
    env = _env(tmp_path, DATABASE_URL=url, CHATD_DEMO="true")
    procs = [
        ServerProcess(env, tmp_path / f"replica-{i}.log", inherit_env=False) for i in range(3)
    ]
    try:
        await asyncio.gather(*(p.wait_healthy(timeout=120) for p in procs))
        logs = [p.log_path.read_text() for p in procs]
    finally:
        for p in procs:
            p.stop()
    assert all(p.proc.returncode in (0, -15) for p in procs)
    assert sum("created a demo organization" in log for log in logs) == 1, logs
    assert not any("Traceback" in log for log in logs), logs
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM organizations").fetchone()[0] == 1


def test_postgresql_unreachable_is_one_line_naming_database_url(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/chatd"
    done = _serve(_env(tmp_path, DATABASE_URL=url), "--port", str(free_port()))
    _assert_one_line_exit_2(done, "PostgreSQL", "DATABASE_URL")


def test_redis_unreachable_is_one_line_naming_redis_url(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = _serve(_env(tmp_path, REDIS_URL=url), "--port", str(free_port()))
    _assert_one_line_exit_2(done, "Redis", "REDIS_URL")


def test_port_in_use_is_one_line_naming_the_port_option(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(_env(tmp_path), "--port", str(port))
    _assert_one_line_exit_2(done, str(port), "in use", "--port")


def test_unusable_data_directory_is_one_line_naming_chatd_data_dir(tmp_path):
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    env = _env(tmp_path, CHATD_DATA_DIR=str(not_a_dir / "data"))
    done = _serve(env, "--port", str(free_port()))
    _assert_one_line_exit_2(done, "data directory", "CHATD_DATA_DIR")


def test_bad_setting_is_one_line_naming_it(tmp_path):
    done = _serve(_env(tmp_path, CHATD_LOGIN_ATTEMPTS="many"), "--port", str(free_port()))
    _assert_one_line_exit_2(done, "CHATD_LOGIN_ATTEMPTS")


async def test_a_misspelt_setting_is_warned_about_with_the_closest_name(tmp_path):
    env = _env(tmp_path, CHATD_RATE_LIMT_MESSAGES="5", CHATD_DEMO="false")
    server = ServerProcess(env, tmp_path / "serve.log", inherit_env=False)
    try:
        await server.wait_healthy()
    finally:
        server.stop()
    warnings = [
        line for line in server.log_path.read_text().splitlines() if "CHATD_RATE_LIMT" in line
    ]
    assert len(warnings) == 1
    assert "warning" in warnings[0] and "CHATD_RATE_LIMIT_MESSAGES" in warnings[0]


async def test_wait_for_services_waits_for_postgresql_and_redis_started_late(
    single_pass, private_pg, private_redis, tmp_path
):
    url = private_pg.create_database()
    private_pg.stop()
    private_redis.stop()
    assert not private_pg.running and not private_redis.running
    env = _env(tmp_path, DATABASE_URL=url, REDIS_URL=private_redis.url, CHATD_DEMO="false")
    log = tmp_path / "serve.log"
    server = ServerProcess(
        env, log, inherit_env=False, extra_args=("--wait-for-services", "90")
    )
    try:
        _wait_for_text(log, "waiting for PostgreSQL")
        private_pg.start()
        _wait_for_text(log, "waiting for Redis")
        assert server.proc.poll() is None
        private_redis.start()
        await server.wait_healthy(timeout=120)
    finally:
        server.stop()
