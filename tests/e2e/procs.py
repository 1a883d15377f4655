"""Start real `chatd serve` processes for multi-process tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every test process talks from 127.0.0.1: the per-address limits on new conversations and
# uploads would make one bucket of the whole suite. Tests of those limits set them again.
TEST_LIMITS = {
    "CHATD_NEW_CONVERSATIONS_PER_ADDRESS": "0",
    "CHATD_NEW_CONVERSATIONS_PER_TOKEN": "0",
    "CHATD_VISITOR_UPLOADS_PER_ADDRESS": "0",
}


class ServerProcess:
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        inherit_env: bool = True,
        module: str = "chatd",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """`module`: what `python -m` runs (another entry module that takes `serve --host
        --port`, e.g. the outbox tests' app with a durable subscriber). `extra_args`: more
        arguments of `serve`."""
        env = {**TEST_LIMITS, **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *extra_args,
            ],
            cwd=ROOT,
            env={**os.environ, **env} if inherit_env else env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_path.read_text()}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"server not healthy in time: {self.log_path.read_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def run_cli(*args: str, env: dict[str, str], inherit_env: bool = True) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "chatd", *args],
        cwd=ROOT,
        env={**os.environ, **env} if inherit_env else env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        # What the command said, in the test's failure (CalledProcessError shows neither).
        raise AssertionError(
            f"chatd {args[0]} exited with {out.returncode}\n"
            f"stdout: {out.stdout[-2000:]}\nstderr: {out.stderr[-4000:]}"
        )
    return out.stdout
