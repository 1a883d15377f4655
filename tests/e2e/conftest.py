"""Fixtures of the multi-process tests: a module defines `cluster_env` (see
tests/e2e/test_two_processes.multi_process_env) and gets two `chatd serve` processes on it."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.procs import ServerProcess


@pytest.fixture
async def cluster(cluster_env, tmp_path):
    procs = [ServerProcess(cluster_env, tmp_path / f"server-{i}.log") for i in range(2)]
    try:
        await asyncio.gather(*(p.wait_healthy() for p in procs))
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.fixture
async def clients():
    from tests.e2e.test_two_processes import Clients

    c = Clients()
    yield c
    await c.close()
