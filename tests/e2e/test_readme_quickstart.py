"""The README's quick start, copied verbatim, on a system Python: a throw-away virtual
environment made with /usr/bin/python3, the install commands, and `chatd serve --help`.

Needs PyPI and the npm registry (CI has them); runs once, in the embedded pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.e2e.procs import ROOT

SYSTEM_PYTHON = "/usr/bin/python3"


def _quick_start_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def _quick_start_script() -> str:
    """The venv step and the run command as the README gives them, with `chatd serve` asked
    for its help instead of serving."""
    blocks = _quick_start_blocks()
    venv = [b for b in blocks if "-m venv" in b]
    run = [b for b in blocks if re.search(r"&& chatd serve\s*$", b.strip())]
    assert len(venv) == 1 and len(run) == 1, blocks
    command = run[0].strip()
    assert command.startswith("npm ci") and "pip install" in command
    return "set -e\n" + venv[0].strip() + "\n" + command + " --help\n"


def test_readme_quick_start_blocks_are_found():
    script = _quick_start_script()
    assert "python3 -m venv .venv" in script and script.rstrip().endswith("chatd serve --help")


def test_readme_quick_start_installs_into_a_fresh_venv_with_the_system_python(
    single_pass, tmp_path
):
    # Debian's own Python, as a newcomer has it (.ci/run installs python3-venv for it).
    assert os.path.exists(SYSTEM_PYTHON), "apt-get install python3-venv (Debian's python3)"
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "chatd-data", "__pycache__", "*.egg-info",
            ".pytest_cache", ".ruff_cache", "test-artifacts", "bench",
        ),
    )
    # The system Python first on PATH, as on a fresh machine: no venv of the suite's own.
    tools = {os.path.dirname(shutil.which(t) or "/usr/bin/x") for t in ("node", "npm")}
    path = ":".join(["/usr/bin", "/bin", *sorted(tools - {"/usr/bin", "/bin"})])
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "DATABASE_URL", "REDIS_URL")
    }
    env["PATH"] = path
    done = subprocess.run(
        ["bash", "-c", _quick_start_script()],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "--wait-for-services" in done.stdout and "usage: chatd serve" in done.stdout
    venv_python = checkout / ".venv" / "bin" / "python"
    base = subprocess.run(
        [str(venv_python), "-c", "import sys; print(sys.base_prefix)"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert base.stdout.strip() == "/usr"
