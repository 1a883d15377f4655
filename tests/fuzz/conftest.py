"""Fixtures and the hypothesis profiles of the fuzz tests.

Profiles (pick one with CHATD_FUZZ_PROFILE; `fuzz` is the default):
- `fuzz`: what CI runs, a bounded and reproducible run (derandomized, no example database),
- `fuzz-long`: many more examples, for a search by hand before a release.

CHATD_FUZZ_SURVEY=1 runs every example instead of stopping at the first failure and lists each
distinct fault with its shortest example (harness.search): an audit of what is still broken.
Each test tries the issue's known attacks first (explicit examples), then searches.
"""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings

from server.settings import Settings

_COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    # Every example is a real request to a real server: slow by hypothesis's standards.
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
hypothesis_settings.register_profile("fuzz", max_examples=60, **_COMMON)
hypothesis_settings.register_profile("fuzz-long", max_examples=1000, **_COMMON)
PROFILE = os.environ.get("CHATD_FUZZ_PROFILE", "fuzz")


@pytest.fixture
def settings(base_settings: Settings, tmp_path) -> Settings:
    """The suite's settings with limits out of the way of the search (a fuzzer that is
    throttled after 20 sends reaches no deep path) and uploads kept where a test can count
    them."""
    return base_settings.with_overrides(
        rate_limit_messages=1_000_000,
        login_attempts=1_000_000,
        upload_dir=tmp_path / "uploads",
    )


@pytest.fixture
def log_watch():
    """Errors the server logs while the test runs (it runs in this process)."""
    from tests.fuzz.harness import LogWatch

    watch = LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    yield watch
    root.removeHandler(watch)


@pytest.fixture
async def world(factory, settings: Settings, log_watch):
    from tests.fuzz.world import make_world

    settings.uploads_path.mkdir(parents=True, exist_ok=True)
    return await make_world(factory, settings.uploads_path, log_watch)
