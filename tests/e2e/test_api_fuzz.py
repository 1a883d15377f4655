"""A property-based fuzzer (schemathesis) over the OpenAPI document, against a real server:
every documented operation, with an owner's session and an API key of every scope, and no
answer may be a 5xx."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import aiohttp

from tests.e2e.procs import ServerProcess, run_cli
from tests.factories import PASSWORD

# The run's budget: fuzzing repeats until it is spent (CI runs this once, on SQLite).
FUZZ_SECONDS = int(os.environ.get("CHATD_API_FUZZ_SECONDS", "75"))


async def test_no_documented_operation_answers_5xx_to_generated_input(tmp_path, single_pass):
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or shutil.which("st")
    assert st, "schemathesis is part of the test extra (pip install -e '.[test]')"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        CHATD_DATA_DIR=str(tmp_path / "data"),
        # The fuzzer sends thousands of requests from one address and one key.
        CHATD_API_REQUESTS_PER_KEY="0",
        CHATD_RATE_LIMIT_MESSAGES="100000",
    )
    boot = json.loads(
        run_cli(
            "bootstrap",
            "--org",
            "Fuzz",
            "--email",
            "owner@example.com",
            "--password",
            PASSWORD,
            "--json",
            env=env,
            inherit_env=False,
        )
    )
    server = ServerProcess(env, tmp_path / "serve.log", inherit_env=False)
    try:
        await server.wait_healthy()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                server.url + "/auth/login",
                json={"email": "owner@example.com", "password": PASSWORD},
            ) as resp:
                assert resp.status == 200
                csrf = (await resp.json())["csrf_token"]
                cookie = resp.cookies["session"].value
            async with http.post(
                server.url + "/api/admin/api-keys",
                json={
                    "name": "fuzz",
                    "scopes": ["conversations:read", "conversations:write", "webhooks:manage"],
                },
                headers={"Cookie": f"session={cookie}", "X-CSRFToken": csrf},
            ) as resp:
                assert resp.status == 201
                key = (await resp.json())["key"]
        report = tmp_path / "fuzz.json"
        run = await asyncio.to_thread(
            subprocess.run,
            [
                st,
                "run",
                server.url + "/api/openapi.json",
                "-H",
                f"Cookie: session={cookie}",
                "-H",
                f"X-CSRFToken: {csrf}",
                "-H",
                f"Authorization: Bearer {key}",
                "--checks",
                "not_a_server_error",
                "--exclude-path",
                "/auth/logout",  # would end the session the run uses
                "--max-examples",
                "25",
                "--max-time",
                str(FUZZ_SECONDS),
                "--workers",
                "1",
                "--seed",
                "20261130",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=FUZZ_SECONDS + 240,
        )
        summary = run.stdout[-4000:]
        assert run.returncode == 0, summary + run.stderr[-2000:]
        assert "generated" in summary and "passed" in summary, summary
        assert boot["org_id"]
    finally:
        server.stop()
    # Our error renderer logs every unexpected exception (it would also have been a 500).
    log = server.log_path.read_text()
    assert "unhandled error" not in log, log[-3000:]
