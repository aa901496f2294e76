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


# The oldest node these tests are known to pass on. The SDKs' own floors:
# @anthropic-ai/sdk 1.x Node 20, openai 7.x Node 22 (declared; 20 works).
# Debian 12's nodejs is 18: too old, the tests are skipped there.
MIN_NODE = 20
_node_major = None


def node_major() -> int:
    global _node_major
    if _node_major is None:
        try:
            v = subprocess.run([node(), "--version"], capture_output=True, timeout=10).stdout
            _node_major = int(v.decode().strip().lstrip("v").split(".")[0])
        except (OSError, ValueError, subprocess.TimeoutExpired):
            _node_major = 0
    return _node_major


def require(runner: str):
    """Skip the calling test unless node and the runner's SDK package are installed."""
    if node() is None:
        pytest.skip("node not found: run scripts/setup.sh test (Debian packages nodejs npm)")
    major = node_major()
    if major < MIN_NODE:
        pytest.skip("node %d is too old for the SDKs in tests/sdk (need %d or newer, "
                    "e.g. from NodeSource)" % (major, MIN_NODE))
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


# How each provider kind is configured on the mock, the model name a client
# sends to reach it, and what the gateway must send upstream.
KINDS = {
    "openai": dict(model="gpt-4o-mini", path="/v1/chat/completions",
                   stream_path="/v1/chat/completions",
                   auth=("authorization", "Bearer sk-upstream-test")),
    "anthropic": dict(model="claude-3-5-haiku-latest", path="/v1/messages",
                      stream_path="/v1/messages", auth=("x-api-key", "sk-ant-upstream")),
    "gemini": dict(model="gemini-2.0-flash",
                   path="/v1beta/models/gemini-2.0-flash:generateContent",
                   stream_path="/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                   auth=("x-goog-api-key", "gm-upstream")),
    "azure": dict(model="az/gpt-4o", path="/openai/deployments/my-deployment/chat/completions",
                  stream_path="/openai/deployments/my-deployment/chat/completions",
                  auth=("api-key", "az-upstream")),
}

TIMEOUTS = {"connect": 5, "read": 30, "total": 60}


def provider_config(kind: str, upstream, **timeouts) -> dict:
    """The `providers` override that adds the provider of this kind on the mock."""
    t = dict(TIMEOUTS, **timeouts)
    if kind == "openai":
        return {"openai": {"base_url": upstream.base_url, "timeouts": t}}
    if kind == "anthropic":
        return {"anthropic": {"kind": "anthropic", "base_url": upstream.url,
                              "api_key": "sk-ant-upstream", "version": "2023-06-01",
                              "max_tokens": 1024, "timeouts": t}}
    if kind == "gemini":
        return {"gemini": {"kind": "gemini", "base_url": upstream.url, "api_key": "gm-upstream",
                           "timeouts": t}}
    if kind == "azure":
        return {"az": {"kind": "azure-openai", "base_url": upstream.url, "api_key": "az-upstream",
                       "api_version": "2024-10-21", "deployments": {"gpt-4o": "my-deployment"},
                       "timeouts": t}}
    raise ValueError(kind)


# The plugins of the default conf/gateway.lua that shape what an SDK sees:
# gateway keys, and provider errors in the client's envelope (502 for a
# provider 5xx, request_id, Retry-After).
PLUGINS = ["key-auth", "error-mapping"]


def start_gateway(gateway, upstream, kind, key, expect_errors=False, timeouts=None, **kw):
    """A gateway with one gateway key, the default config's plugins and, on
    `upstream`, the provider of this kind (the `openai` one of the base config
    is always there too)."""
    providers = kw.pop("providers", {})
    if upstream is not None:
        providers = harness.deep_merge(provider_config(kind, upstream, **(timeouts or {})), providers)
    kw.setdefault("plugins", PLUGINS)
    return gateway(upstream=upstream, api_keys=[key], providers=providers,
                   expect_errors=expect_errors, **kw)


def upstream_usage(kind: str, rec) -> tuple:
    """(input tokens, output tokens) as the mock reported them in its answer to
    `rec` (a MockRequest), JSON or stream: what the client must be told."""
    body = rec.sent_body.decode("utf-8")
    if body.lstrip().startswith("{"):
        docs = [json.loads(body)]
    else:
        docs = [json.loads(l[5:]) for l in body.splitlines()
                if l.startswith("data:") and l[5:].strip() not in ("", "[DONE]")]
    inp = out = None
    for d in docs:
        if kind == "anthropic":
            u = (d.get("message") or {}).get("usage") if d.get("type") == "message_start" \
                else d.get("usage")
            if u:
                inp = u.get("input_tokens", inp)
                out = u.get("output_tokens", out)
        elif kind == "gemini":
            u = d.get("usageMetadata")
            if u:
                inp, out = u.get("promptTokenCount"), u.get("candidatesTokenCount")
        else:
            u = d.get("usage")
            if u:
                inp, out = u.get("prompt_tokens"), u.get("completion_tokens")
    return inp, out
