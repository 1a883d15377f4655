"""The guide's flow driven by the official JavaScript socket.io-client (npm), in Node."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).parent / "js" / "guide_flow.mjs"


@pytest.mark.parametrize("mode", ["default", "websocket"])
async def test_official_javascript_client_runs_the_guide_flow(factory, mode):
    node = shutil.which("node")
    assert node, "Node.js is required (the README's test command installs it)"
    assert (ROOT / "node_modules" / "socket.io-client").is_dir(), "run `npm ci` first"
    org = await factory.org()

    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        factory.url,
        org.embed_token,
        org.owner_email,
        PASSWORD,
        mode,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 0, err.decode() + out.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["ok"] is True
    expected = "websocket"  # the default client upgrades from polling to websocket
    assert report["transport"] == {"agent": expected, "visitor": expected}
