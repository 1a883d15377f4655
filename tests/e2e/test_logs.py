"""Logs of a real `chatd serve`: JSON lines with an access line per request and its id."""

from __future__ import annotations

import json

import aiohttp
import pytest

from server.settings import Settings, SettingsError
from tests.e2e.procs import ServerProcess


def _json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


async def test_json_logs_carry_an_access_line_per_request(single_pass, tmp_path):
    env = {
        "CHATD_DATA_DIR": str(tmp_path / "data"),
        "CHATD_LOG_FORMAT": "json",
        "CHATD_LOG_LEVEL": "INFO",
        "CHATD_DEMO": "false",
    }
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        await server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            async with http.get(
                server.url + "/chat-widget/history/not-a-uuid?embed_token=secret-token&x=1",
                headers={"X-Request-Id": "client-chosen"},  # not a trusted proxy: replaced
            ) as resp:
                status = resp.status
                rid = resp.headers["X-Request-Id"]
    finally:
        server.stop()
    assert rid != "client-chosen"
    lines = _json_lines(server.log_path.read_text())
    access = [r for r in lines if r.get("logger") == "chatd.access" and r.get("request_id") == rid]
    assert len(access) == 1, lines
    line = access[0]
    assert line["method"] == "GET"
    assert line["path"] == "/chat-widget/history/not-a-uuid"  # never the query
    assert line["status"] == status
    assert isinstance(line["duration_ms"], float | int)
    assert "secret-token" not in server.log_path.read_text()
    assert {"time", "level", "message"} <= line.keys()


@pytest.mark.parametrize(
    "name,value",
    [
        ("CHATD_LOG_FORMAT", "xml"),
        ("CHATD_LOG_LEVEL", "chatty"),
        ("CHATD_TRUSTED_PROXIES", "nginx"),
    ],
)
def test_operations_settings_are_validated(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})
