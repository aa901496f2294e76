"""conftest.py -- fixtures for the integration suite.

    def test_something(gateway, upstream):
        gw = gateway(upstream=upstream, server={"max_body_size": "1k"})
        r = gw.chat(model="gpt-test")

`gateway(...)` writes a Lua config (harness.base_config deep-merged with the
keyword arguments), starts `aigw run` with AIGW_PREFIX set to the repo root,
waits for GET /health == 200, and returns a harness.GatewayProcess. At teardown
every gateway still running gets SIGTERM, is waited for (SIGKILL past a
deadline) and the test fails if it did not exit 0, if its log has an
`error`-level line (unless started with expect_errors=True, or the test set
gw.expect_errors), or if a sanitizer report shows up.

Every test has a time limit: pytest-timeout's `timeout` from pytest.ini when
the plugin is installed (Debian: python3-pytest-timeout), else a SIGALRM
fallback defined here that reads the same setting and `@pytest.mark.timeout(N)`.
"""
from __future__ import annotations

import atexit
import os
import resource
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from mock_upstream import MockUpstream  # noqa: E402

# 1,000-connection tests need more descriptors than a default soft limit of 1024;
# the gateway inherits the raised limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))

_ALL_GATEWAYS = []


@atexit.register
def _kill_leftovers():
    for gw in _ALL_GATEWAYS:
        if gw.proc.poll() is None:
            try:
                os.kill(gw.pid, signal.SIGKILL)
                gw.proc.wait(5)
            except (OSError, Exception):  # noqa: BLE001
                pass


def _terminated(_sig, _frame):
    # SIGTERM (e.g. from scripts/integration.sh's overall timeout): unwind like
    # Ctrl-C so fixture finalizers and the atexit hook stop every gateway by PID.
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _terminated)


# ---------------------------------------------------------------------------
# Per-test time limit


def pytest_addoption(parser, pluginmanager):
    if not pluginmanager.hasplugin("timeout"):
        parser.addini("timeout", "per-test time limit in seconds (SIGALRM fallback used "
                      "when pytest-timeout is not installed)", default="120")


class _AlarmTimeout:
    """Fails a test phase that runs past its limit (when pytest-timeout is absent)."""

    def __init__(self, config):
        self.default = float(config.getini("timeout") or 0)

    def _limit(self, item):
        m = item.get_closest_marker("timeout")
        if m is not None and m.args:
            return float(m.args[0])
        return self.default

    def _run(self, item):
        limit = self._limit(item)
        if limit <= 0:
            yield
            return

        def on_alarm(_sig, _frame):
            pytest.fail("Timeout: test phase ran longer than %.0fs" % limit, pytrace=True)

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        yield from self._run(item)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        yield from self._run(item)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item):
        yield from self._run(item)


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line("markers", "timeout(seconds): time limit for one test")
        config.pluginmanager.register(_AlarmTimeout(config), "aigw-alarm-timeout")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for gw in getattr(item, "_aigw_gateways", []):
            rep.sections.append(("aigw pid %d log (%s)" % (gw.pid, gw.log_path),
                                 gw.log()[-12000:] or "(empty)"))


# ---------------------------------------------------------------------------
# Paths, ports, certificates


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return harness.REPO_ROOT


@pytest.fixture(scope="session")
def aigw_path() -> Path:
    p = harness.aigw_bin()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail("aigw binary not found at %s: build it (make build) or set AIGW_BIN" % p,
                    pytrace=False)
    return p


@pytest.fixture
def free_port() -> int:
    return harness.free_port()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> harness.PKI:
    return harness.make_pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------
# Mock upstreams


@pytest.fixture
def make_upstream():
    """Factory: make_upstream(ssl_context=None, **kw) -> a started MockUpstream."""
    mocks = []

    def make(**kw) -> MockUpstream:
        m = MockUpstream(**kw).start()
        mocks.append(m)
        return m

    yield make
    for m in mocks:
        m.stop()


@pytest.fixture
def upstream(make_upstream) -> MockUpstream:
    return make_upstream()


@pytest.fixture
def tls_upstream(make_upstream, pki) -> MockUpstream:
    return make_upstream(ssl_context=harness.server_ssl_context(pki.cert, pki.key))


# ---------------------------------------------------------------------------
# The gateway


@pytest.fixture
def gateway(request, tmp_path, aigw_path):
    """Factory: gateway(config=None, *, upstream=None, expect_errors=False, env=None,
    conf_path=None, port=None, args=None, wait=True, cwd=None, **overrides) -> GatewayProcess.

    config: a whole config dict (default harness.base_config); overrides are
    deep-merged into it (server={...}, api_keys=[...], workers=2, ...).
    conf_path: run an existing config file instead (give port= to poll /health).
    wait: poll GET /health until 200 before returning.
    cwd: the process's working directory (default: the test's tmp_path).
    """
    started = []
    request.node._aigw_gateways = started

    def start(config=None, *, upstream=None, expect_errors=False, env=None, conf_path=None,
              port=None, args=None, wait=True, cwd=None, **overrides) -> harness.GatewayProcess:
        n = len(started) + 1
        drain = 10.0
        if conf_path is None:
            if config is None:
                port = port or harness.free_port()
                config = harness.base_config(port, upstream.base_url if upstream else None)
            config = harness.deep_merge(config, overrides)
            if port is None:
                port = int(str(config["listen"]).rsplit(":", 1)[1])
            drain = float(config.get("server", {}).get("drain_timeout", 10))
            conf_path = tmp_path / ("gateway-%d.lua" % n)
            conf_path.write_text(harness.render_config(config))
        gw = harness.GatewayProcess(aigw_path, Path(conf_path), tmp_path, port, env=env,
                                    args=args, expect_errors=expect_errors,
                                    name="aigw-%d" % n, drain_timeout=drain, cwd=cwd)
        started.append(gw)
        _ALL_GATEWAYS.append(gw)
        if wait:
            gw.wait_healthy()
        return gw

    yield start

    problems = []
    for gw in started:
        if gw.alive():
            rc = gw.stop()
            if gw.killed:
                problems.append("aigw pid %d did not exit within %.0fs of SIGTERM: killed"
                                % (gw.pid, gw.drain_timeout + 10))
            elif rc != 0:
                problems.append("aigw pid %d exited with %d after SIGTERM" % (gw.pid, rc))
        crashes = gw.crash_lines()
        if crashes:
            problems.append("aigw pid %d reported a crash/sanitizer error:\n  %s"
                            % (gw.pid, "\n  ".join(crashes[:20])))
        if not gw.expect_errors:
            errors = gw.error_lines()
            if errors:
                problems.append("aigw pid %d logged error-level lines (pass expect_errors=True "
                                "if the test provokes them):\n  %s"
                                % (gw.pid, "\n  ".join(errors[:20])))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
