"""The log phase: it runs after every request that reached the plugin chain,
also when the request is cut short (client gone mid-stream or before any
response), with the status the client got, or 499 when it got none."""
import re
import time

import httpc
from harness import REPO_ROOT
from test_proxy import chat_request

LOGGER = '''
local aigw = require "aigw"
return {
  name = "logger", priority = 10,
  access = function(conf, ctx) ctx.tag = aigw.request.get_header("x-tag") end,
  log = function(conf, ctx) aigw.log.warn("logphase tag=", ctx.tag, " status=", ctx.status) end,
}
'''


def logger_prefix(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True)
    (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    (prefix / "plugins" / "key-auth.lua").write_bytes((REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    (prefix / "plugins" / "logger.lua").write_text(LOGGER)
    return prefix


def wait_log(gw, pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, gw.log())
        if m:
            return m
        time.sleep(0.02)
    return None


def start(gateway, upstream, tmp_path):
    return gateway(upstream=upstream, plugins=["key-auth", "logger"],
                   env={"AIGW_PREFIX": str(logger_prefix(tmp_path))})


def test_log_phase_after_a_complete_request(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path)
    c = gw.connect()
    c.send(chat_request(headers=[("x-tag", "done")]))
    assert c.read_response(timeout=10).status == 200
    assert wait_log(gw, r"logphase tag=done status=200")


def test_log_phase_when_client_leaves_mid_stream(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path)
    c = gw.connect()
    c.send(chat_request(behavior="hold", key="mid", stream=True, headers=[("x-tag", "mid")]))
    head = c.read_head(timeout=10)
    next(c.iter_body(head, timeout=10))
    assert upstream.wait_held("mid", 5)
    c.close()
    # The response had started: the log phase sees its status.
    assert wait_log(gw, r"logphase tag=mid status=200"), gw.log()
    upstream.release("mid")


def test_log_phase_499_when_client_leaves_before_any_response(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path)
    c = gw.connect()
    c.send(chat_request(behavior="delay-headers=30", headers=[("x-tag", "early")]))
    assert upstream.wait_requests(1, 5)
    c.close()
    assert wait_log(gw, r"logphase tag=early status=499"), gw.log()
