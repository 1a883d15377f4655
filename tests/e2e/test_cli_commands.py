"""The operator commands added for packaging: --version, help on every option,
--password-stdin, and `chatd token create|revoke|list` against the suite's database."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from importlib.metadata import version

from chatd.__main__ import build_parser
from tests.e2e.procs import ROOT
from tests.factories import PASSWORD, uid


def _cli_env(base_settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("CHATD_")
    }
    env["DATABASE_URL"] = base_settings.database_url
    env["CHATD_DATA_DIR"] = str(base_settings.data_dir)
    return env


def _chatd(env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chatd", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _json_line(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def test_version_is_the_installed_package_version():
    done = subprocess.run(
        [sys.executable, "-m", "chatd", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"chatd {version('chatd')}"


def _walk(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions}
            for name, sub in action.choices.items():
                assert name in helped, f"{path} {name} has no help"
                yield from _walk(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_option_of_every_command_has_help():
    seen = set()
    for path, action in _walk(build_parser(), "chatd"):
        seen.add(f"{path} {'/'.join(action.option_strings)}")
        assert action.help and action.help != argparse.SUPPRESS, (path, action.option_strings)
    assert "chatd serve --wait-for-services" in seen
    assert "chatd token create --org-id" in seen
    assert "chatd --version" in seen


async def test_password_stdin_sets_the_password_of_bootstrap_and_add_user(
    base_settings, factory
):
    env = _cli_env(base_settings)
    owner_email = f"{uid('owner')}@example.com"
    out = _json_line(
        _chatd(
            env, "bootstrap", "--org", uid("Org "), "--email", owner_email,
            "--password-stdin", "--json", stdin=PASSWORD + "\n",
        )
    )
    agent_email = f"{uid('agent')}@example.com"
    _json_line(
        _chatd(
            env, "add-user", "--org-id", out["org_id"], "--email", agent_email,
            "--password-stdin", "--role", "agent", "--json", stdin=PASSWORD + "\n",
        )
    )
    for email in (owner_email, agent_email):
        async with factory.http.post(
            factory.url + "/auth/login", json={"email": email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200, await resp.text()
    both = _chatd(
        env, "add-user", "--org-id", out["org_id"], "--email", agent_email,
        "--password", PASSWORD, "--password-stdin", stdin=PASSWORD + "\n",
    )
    assert both.returncode == 2 and "not allowed with" in both.stderr


async def test_token_create_list_and_revoke_manage_the_widget_tokens(base_settings, factory):
    env = _cli_env(base_settings)
    org = _json_line(
        _chatd(
            env, "bootstrap", "--org", uid("Org "), "--email", f"{uid('o')}@example.com",
            "--password", PASSWORD, "--json",
        )
    )
    created = _json_line(
        _chatd(
            env, "token", "create", "--org-id", org["org_id"], "--name", "Shop",
            "--allowed-origin", "https://shop.example", "--json",
        )
    )
    assert created["token"].startswith("ew_") and created["channel_id"] == org["channel_id"]
    assert created["allowed_origins"] == ["https://shop.example"]

    async def open_conversation() -> int:
        async with factory.http.post(
            factory.url + "/chat-widget/conversations",
            json={"embed_token": created["token"], "external_id": uid("v")},
        ) as resp:
            return resp.status

    assert await open_conversation() == 201

    listed = _json_line(_chatd(env, "token", "list", "--org-id", org["org_id"], "--json"))
    by_id = {t["id"]: t for t in listed["tokens"]}
    assert set(by_id) >= {created["id"]} and len(by_id) == 2  # bootstrap's and this one
    assert all("token" not in t for t in listed["tokens"])
    assert by_id[created["id"]]["revoked_at"] is None

    revoked = _json_line(
        _chatd(
            env, "token", "revoke", "--org-id", org["org_id"], "--token-id", created["id"],
            "--json",
        )
    )
    assert revoked["id"] == created["id"] and revoked["revoked_at"]
    assert await open_conversation() in (401, 403)
    listed = _json_line(_chatd(env, "token", "list", "--org-id", org["org_id"], "--json"))
    assert {t["id"]: t for t in listed["tokens"]}[created["id"]]["revoked_at"]


def test_token_commands_are_scoped_to_the_named_organization(base_settings):
    env = _cli_env(base_settings)
    a, b = (
        _json_line(
            _chatd(
                env, "bootstrap", "--org", uid("Org "), "--email", f"{uid('o')}@example.com",
                "--password", PASSWORD, "--json",
            )
        )
        for _ in range(2)
    )
    token_of_a = _json_line(_chatd(env, "token", "list", "--org-id", a["org_id"], "--json"))
    other = _chatd(
        env, "token", "revoke", "--org-id", b["org_id"],
        "--token-id", token_of_a["tokens"][0]["id"],
    )
    assert other.returncode == 2 and other.stderr.strip() == "chatd: Embed token not found."
    missing = _chatd(env, "token", "create", "--org-id", "no-such-org")
    assert missing.returncode == 2 and other.stderr.count("\n") == 1
    assert "Organization not found" in missing.stderr
    foreign_channel = _chatd(
        env, "token", "create", "--org-id", a["org_id"], "--channel-id", b["channel_id"]
    )
    assert foreign_channel.returncode == 2 and "Channel not found" in foreign_channel.stderr


async def test_api_key_create_list_and_revoke_from_the_cli(base_settings, factory):
    env = _cli_env(base_settings)
    org, other = (
        _json_line(
            _chatd(
                env, "bootstrap", "--org", uid("Org "), "--email", f"{uid('o')}@example.com",
                "--password", PASSWORD, "--json",
            )
        )
        for _ in range(2)
    )
    created = _json_line(
        _chatd(
            env, "api-key", "create", "--org-id", org["org_id"], "--name", "Game backend",
            "--scope", "conversations:read", "--json",
        )
    )
    assert set(created) >= {"id", "key"} and created["key"].startswith("ck_")
    assert created["scopes"] == ["conversations:read"] and created["created_by"] is None
    async with factory.http.post(
        factory.url + "/chat-widget/conversations",
        json={"embed_token": org["embed_token"], "external_id": uid("v")},
    ) as resp:
        assert resp.status == 201
        conv = await resp.json()

    async def v1_status(key: str) -> int:
        async with factory.http.get(
            f"{factory.url}/api/v1/conversations/{conv['id']}",
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            return resp.status

    assert await v1_status(created["key"]) == 200
    listed = _json_line(_chatd(env, "api-key", "list", "--org-id", org["org_id"], "--json"))
    assert [k["id"] for k in listed["api_keys"]] == [created["id"]]
    assert created["key"] not in json.dumps(listed)

    foreign = _chatd(
        env, "api-key", "revoke", "--org-id", other["org_id"], "--key-id", created["id"]
    )
    assert foreign.returncode == 2 and foreign.stderr.strip() == "chatd: API key not found."
    assert await v1_status(created["key"]) == 200
    bad_scope = _chatd(env, "api-key", "create", "--org-id", org["org_id"], "--name", "x",
                       "--scope", "everything")
    assert bad_scope.returncode == 2

    revoked = _json_line(
        _chatd(
            env, "api-key", "revoke", "--org-id", org["org_id"], "--key-id", created["id"],
            "--json",
        )
    )
    assert revoked["revoked_at"]
    assert await v1_status(created["key"]) == 401
