"""Private PostgreSQL and Redis servers for fault tests: started by the tests on free ports,
stopped and restarted at will, never the machine's shared servers.

    redis = PrivateRedis(tmp_path); redis.start(); ...; redis.stop(); redis.start()
    pg = PrivatePostgres(tmp_path); pg.start(); url = pg.create_database(); pg.restart()

PostgreSQL refuses to run as root; when the tests run as root, the cluster is created and
run as the `postgres` system user (Debian's postgresql package creates it).
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path


def restartable_port() -> int:
    """A free port outside the kernel's ephemeral range, for a server that is stopped and
    started again on the same port. free_port() gets one from the ephemeral range, which the
    kernel also hands out as the local port of outgoing connections: while the server is down,
    one of the suite's many client connections could take it, and the restart would fail with
    "address already in use"."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    below = (10_000, low) if low > 12_000 else (high + 1, 65_535)
    for _ in range(200):
        port = random.randrange(*below)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port outside the ephemeral range")


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for version in sorted(root.iterdir(), key=lambda p: p.name, reverse=True):
            candidate = version / "bin" / name
            if candidate.exists():
                return str(candidate)
    raise RuntimeError(f"{name} not found (install postgresql / redis-server)")


def _wait_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def _wait_closed(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.05)
        except OSError:
            return


class PrivateRedis:
    """One redis-server, in-memory only, on a free port that stays the same across restarts
    (clients reconnect to the same URL, as they would to a restarted production Redis)."""

    def __init__(self, workdir: Path) -> None:
        self.port = restartable_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = Path(workdir)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.running:
            return
        self.proc = subprocess.Popen(
            [
                _bin("redis-server"),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, 10, "redis-server")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Kill it (an outage, not a graceful shutdown) and wait until the port is free."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        _wait_closed(self.port, 5)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb in a temporary folder, trust auth)."""

    def __init__(self, workdir: Path) -> None:
        self.port = restartable_port()
        self.dir = Path(workdir) / f"pg-{uuid.uuid4().hex[:8]}"
        self.data = self.dir / "data"
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        self._initialised = False

    def _run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)

    def _init(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            pw = pwd.getpwnam(self._user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            # The cluster's user must be able to reach the folder through its parents.
            for parent in self.dir.parents:
                if str(parent) in ("/", "/tmp"):
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o011)
        self._run(
            _bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._init()
        started = self._run(
            _bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "30",
            # fsync off: a crash of the server process (what the tests cause) loses nothing
            # the OS holds. synchronous_commit stays on: an acknowledged commit is in the WAL
            # before the client hears of it, so "nothing acknowledged is lost" holds here too.
            "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off",
            "start",
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(
                f"pg_ctl start exited with {started.returncode} (port {self.port}): "
                f"{started.stderr.strip()}\nserver log:\n{self.log_tail()}"
            )
        _wait_port(self.port, 30, "postgres")

    def log_tail(self, size: int = 3000) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")[-size:]
        except OSError as exc:
            return f"(no log: {exc})"

    @property
    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start_if_stopped(self) -> None:
        if not self.running:
            self.start()

    def stop(self, mode: str = "immediate") -> None:
        """`immediate` is a crash as clients see it: connections drop without a goodbye."""
        if self.data.exists():
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
        _wait_closed(self.port, 10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str | None = None) -> str:
        name = name or f"chatd_{uuid.uuid4().hex[:10]}"
        self._run(
            _bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"',
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
