"""sdk.py -- run the official client SDKs (tests/sdk, npm) against a gateway.

    results = sdk.run("openai", gw.url + "/v1", "gw-key", [{"op": "chat", "model": "echo"}])

Each call starts one `node tests/sdk/<runner>.mjs` (about 100 ms), which runs
the steps of the plan in order and prints one JSON line; `run` returns its
list of per-step results (see tests/sdk/common.mjs for their shape). A test
using the SDKs calls `sdk.require()` first: it skips when node or
tests/sdk/node_modules is missing (`scripts/setup.sh test` installs both).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from typing import List, Optional

import pytest

import harness

SDK_DIR = harness.REPO_ROOT / "tests" / "sdk"
PACKAGES = {"openai": "openai", "anthropic": "@anthropic-ai/sdk"}


def node() -> Optional[str]:
    return shutil.which("node") or shutil.which("nodejs")


def require(runner: str):
    """Skip the calling test unless node and the runner's SDK package are installed."""
    if node() is None:
        pytest.skip("node not found: run scripts/setup.sh test (Debian packages nodejs npm)")
    pkg = SDK_DIR / "node_modules" / PACKAGES[runner] / "package.json"
    if not pkg.is_file():
        pytest.skip("%s not installed in tests/sdk/node_modules: run scripts/setup.sh test "
                    "(or npm ci in tests/sdk)" % PACKAGES[runner])


def run(runner: str, base_url: str, api_key: str, plan: List[dict],
        timeout: float = 30.0) -> List[dict]:
    """Run the plan's steps with tests/sdk/<runner>.mjs; one result dict per step."""
    require(runner)
    env = dict(os.environ)
    env.update({"AIGW_SDK_BASE_URL": base_url, "AIGW_SDK_API_KEY": api_key,
                "AIGW_SDK_PLAN": json.dumps(plan)})
    # Keep SDK settings from the environment out of the way.
    for k in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY",
              "ANTHROPIC_AUTH_TOKEN", "OPENAI_LOG", "ANTHROPIC_LOG"):
        env.pop(k, None)
    proc = subprocess.Popen([node(), str(SDK_DIR / ("%s.mjs" % runner))], cwd=str(SDK_DIR),
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(10)
        raise AssertionError("node %s.mjs did not finish within %.0fs\nstdout: %s\nstderr: %s"
                             % (runner, timeout, out.decode(errors="replace")[-2000:],
                                err.decode(errors="replace")[-4000:]))
    lines = [l for l in out.decode(errors="replace").splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise AssertionError("node %s.mjs exited with %s\nstdout: %s\nstderr: %s"
                             % (runner, proc.returncode, out.decode(errors="replace")[-2000:],
                                err.decode(errors="replace")[-4000:]))
    results = json.loads(lines[-1])["results"]
    assert len(results) == len(plan), results
    return results


def ok(result: dict) -> dict:
    """The result of a step that must have succeeded (a readable failure otherwise)."""
    assert result["ok"], "SDK step %r failed: %s" % (
        result.get("op"), json.dumps(result.get("error"), indent=1)[:3000])
    return result


def err(result: dict) -> dict:
    """The error of a step that must have failed."""
    assert not result["ok"], "SDK step %r succeeded, an error was expected: %s" % (
        result.get("op"), json.dumps(result)[:3000])
    return result["error"]
