"""The operator CLI as scripts use it, and the embedded default a newcomer starts."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

import aiohttp
import pytest

from tests.e2e.procs import ROOT, ServerProcess, run_cli
from tests.factories import PASSWORD, uid


def _embedded_env(tmp_path) -> dict[str, str]:
    # The embedded default: no DATABASE_URL, no REDIS_URL, data under CHATD_DATA_DIR.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["CHATD_DATA_DIR"] = str(tmp_path / "data")
    return env


async def test_serve_on_a_fresh_machine_prints_a_working_demo_login_and_token(tmp_path):
    server = ServerProcess(_embedded_env(tmp_path), tmp_path / "serve.log", inherit_env=False)
    try:
        await server.wait_healthy()
        printed = server.log_path.read_text()
        email = re.search(r"email\s+(\S+)", printed).group(1)
        password = re.search(r"password\s+(\S+)", printed).group(1)
        token = re.search(r"embed token\s+(ew_\S+)", printed).group(1)
        # Ready to paste: the widget snippet with this token, and where agents answer.
        snippet = re.search(r'<script src="([^"]+)" data-embed-token="([^"]+)"></script>', printed)
        assert snippet and snippet.group(1) == server.url + "/chat-widget/embed.js"
        assert snippet.group(2) == token
        assert re.search(r"inbox\s+" + re.escape(server.url + "/inbox"), printed)
        assert "owner login" in printed and "agent login" not in printed
        assert (tmp_path / "data" / "chatd.sqlite3").exists()
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/healthz") as resp:
                assert (await resp.json())["redis"] == "not configured"
            async with http.post(
                server.url + "/auth/login", json={"email": email, "password": password}
            ) as resp:
                assert resp.status == 200
                assert (await resp.json())["user"]["role"] == "owner"
            async with http.get(snippet.group(1)) as resp:
                assert resp.status == 200
            async with http.post(
                server.url + "/chat-widget/conversations",
                json={"embed_token": token, "external_id": "newcomer"},
            ) as resp:
                assert resp.status == 201
    finally:
        server.stop()


def test_bootstrap_and_add_user_print_one_json_line_each(tmp_path):
    env = _embedded_env(tmp_path)
    org = uid("Org ")
    out = run_cli(
        "bootstrap",
        "--org",
        org,
        "--email",
        "boss@example.com",
        "--password",
        PASSWORD,
        "--allowed-origin",
        "https://shop.example",
        "--json",
        env=env,
        inherit_env=False,
    )
    lines = out.strip().splitlines()
    assert len(lines) == 1
    first = json.loads(lines[0])
    assert set(first) == {"org_id", "user_id", "channel_id", "embed_token"}
    assert first["embed_token"].startswith("ew_")

    again = json.loads(
        run_cli(
            "bootstrap",
            "--org",
            org,
            "--email",
            "boss@example.com",
            "--password",
            PASSWORD,
            "--json",
            env=env,
            inherit_env=False,
        )
    )
    assert (again["org_id"], again["user_id"], again["channel_id"]) == (
        first["org_id"],
        first["user_id"],
        first["channel_id"],
    )
    assert again["embed_token"] != first["embed_token"]

    out = run_cli(
        "add-user",
        "--org-id",
        first["org_id"],
        "--email",
        "agent@example.com",
        "--password",
        PASSWORD,
        "--role",
        "agent",
        "--json",
        env=env,
        inherit_env=False,
    )
    assert set(json.loads(out)) == {"user_id"}

    dup = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatd",
            "add-user",
            "--org-id",
            first["org_id"],
            "--email",
            "agent@example.com",
            "--password",
            PASSWORD,
            "--role",
            "agent",
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dup.returncode != 0 and "already exists" in dup.stderr


def test_migrate_is_idempotent(tmp_path):
    env = _embedded_env(tmp_path)
    assert "up to date" in run_cli("migrate", env=env, inherit_env=False)
    assert "up to date" in run_cli("migrate", env=env, inherit_env=False)


@pytest.mark.parametrize("value", ["mysql://x", "not-a-url"])
def test_serve_refuses_an_unsupported_database_url(tmp_path, value):
    env = {**_embedded_env(tmp_path), "DATABASE_URL": value}
    done = subprocess.run(
        [sys.executable, "-m", "chatd", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "DATABASE_URL" in done.stderr


def test_production_refuses_the_placeholder_secret(tmp_path):
    env = {**_embedded_env(tmp_path), "CHATD_ENV": "production"}
    env.pop("CHATD_SECRET_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "chatd", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "CHATD_SECRET_KEY" in done.stderr


async def test_chatd_console_script_is_installed():
    chatd = os.path.join(os.path.dirname(sys.executable), "chatd")
    proc = await asyncio.create_subprocess_exec(
        chatd, "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"bootstrap" in out
