"""The plugin runtime: every phase, aigw.exit, aigw.sleep, timers, plugin
errors and runaway loops, VM memory in the admin status."""
import json
import re
import threading
import time

import httpc
import pytest
from harness import REPO_ROOT, free_port, wait_logged, wait_until

PROBE = r'''
local aigw = require "aigw"
local P = { name = "probe", priority = 100,
            schema = { tag = { type = "string", default = "__TAG__" } } }

function P.init_worker(conf)
  aigw.timer.every(0.02, function(premature, tag)
    aigw.shared.cache:incr("ticks:" .. tag, 1, 0)
  end, conf.tag)
  aigw.timer.at(0, function()
    aigw.sleep(0.01)   -- a timer callback may wait
    aigw.shared.cache:set("at_ran:" .. conf.tag, "yes")
  end)
  local id = aigw.timer.at(3600, function() error("cancelled timers never run") end)
  assert(aigw.timer.cancel(id) == true)
end

function P.access(conf, ctx)
  local h = aigw.request.get_header
  local act = h("x-probe")
  if not act then return end
  ctx.act = act
  if act == "tag" then return 200, { tag = conf.tag, worker = aigw.worker.id } end
  if act == "sleep" then
    local t0 = aigw.monotonic()
    aigw.sleep(tonumber(h("x-seconds")))
    return 200, { tag = conf.tag, slept = aigw.monotonic() - t0 }
  end
  if act == "exit" then
    pcall(aigw.exit, 202, { exited = true }, { ["x-exit"] = "yes" })
    error("not reached: a plugin's pcall cannot catch aigw.exit")
  end
  if act == "error" then error("boom from probe") end
  if act == "return-tables" then return 201, { ok = true }, { ["x-r"] = "1" } end
  if act == "loop" then local n = 0 while true do n = n + 1 end end
  if act == "pcall-loop" then while true do pcall(function() while true do end end) end end
  if act == "jit-loop" then loadstring("local n = 0 while true do n = n + 1 end")() end
  if act == "ticks" then
    return 200, { ticks = aigw.shared.cache:get("ticks:" .. conf.tag),
                  at = aigw.shared.cache:get("at_ran:" .. conf.tag),
                  pending = aigw.timer.pending() }
  end
  if act == "filter" then assert(aigw.response.filter_body() == true) end
  if act == "yield" then coroutine.yield() end
  if act == "sleep-in-coroutine" then
    local co = coroutine.create(function() return aigw.sleep(0) end)
    local ok, err = coroutine.resume(co)
    return 200, { ok = ok, err = tostring(err) }
  end
  if act == "req" then
    local addr, port = aigw.request.get_client_addr()
    aigw.log.warn("fields", { act = act, note = "two words", n = 3 })
    return 200, { q = aigw.request.get_query_args(), addr = addr, port = port,
                  model = aigw.request.get_json(ctx).model }
  end
  if act == "now" then return 200, { now = aigw.now(), mono = aigw.monotonic() } end
end

function P.upstream(conf, ctx)
  if ctx.act == "reroute" then
    ctx.upstream.path = "/rerouted"
    ctx.upstream.headers["x-added"] = "by-upstream-phase"
  elseif ctx.act == "upstream-exit" then
    aigw.exit(403, { blocked = ctx.upstream.path })
  elseif ctx.act == "upstream-body" then
    ctx.upstream.body = '{"model":"gpt-test","messages":[{"role":"user","content":"replaced"}]}'
  end
end

function P.header_filter(conf, ctx)
  aigw.response.set_header("x-probe-tag", conf.tag)
  if ctx.act == "hf-exit" then aigw.exit(451, "replaced by header_filter\n") end
  if ctx.act == "hf-status" then
    aigw.response.set_status(299)
    aigw.response.add_header("x-seen-type", tostring(aigw.response.get_header("Content-Type")))
    aigw.response.set_header("content-type", nil)
  end
  if ctx.act == "hf-error" then error("header_filter boom") end
end

function P.body_filter(conf, ctx, chunk, eof)
  if ctx.act == "filter" then return chunk:upper() .. (eof and "[EOF]" or "") end
end

function P.log(conf, ctx)
  if ctx.act then aigw.log.warn("probe log act=", ctx.act, " status=", ctx.status) end
end

return P
'''


def probe_source(tag="v1", jit=False):
    src = PROBE.replace("__TAG__", tag)
    if jit:
        src = src.replace('local P = { name = "probe", priority = 100,',
                          'local P = { name = "probe", priority = 100, jit = true,', 1)
    return src


def make_prefix(tmp_path, source=None):
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True, exist_ok=True)
    if not (prefix / "lua").exists():
        (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    (prefix / "plugins" / "key-auth.lua").write_bytes((REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    (prefix / "plugins" / "probe.lua").write_text(source or probe_source())
    return prefix


def start(gateway, tmp_path, upstream=None, expect_errors=False, source=None, **overrides):
    prefix = make_prefix(tmp_path, source)
    cfg = dict(plugins=["key-auth", "probe"], shared={"cache": "1m"},
               admin_listen="127.0.0.1:%d" % free_port())
    cfg.update(overrides)
    gw = gateway(upstream=upstream, env={"AIGW_PREFIX": str(prefix)}, expect_errors=expect_errors, **cfg)
    gw.prefix = prefix
    gw.admin_port = int(cfg["admin_listen"].rsplit(":", 1)[1]) if cfg["admin_listen"] else None
    return gw


def probe(gw, act, path="/v1/chat/completions", headers=(), model="echo", timeout=10, **kw):
    hdrs = [("x-probe", act)] + list(headers)
    return gw.chat(model=model, headers=hdrs, path=path, timeout=timeout, **kw)


def admin(gw, method, path, timeout=20):
    return httpc.request(gw.admin_port, method, path, timeout=timeout)


# ---------------------------------------------------------------------------
# access, exit, sleep


def test_exit_cannot_be_swallowed_by_pcall(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    r = probe(gw, "exit")
    assert r.status == 202, r
    assert json.loads(r.body) == {"exited": True}
    assert r.header("x-exit") == "yes"
    assert r.header("x-probe-tag") == "v1"       # header_filter ran on it too


def test_access_returns_table_body_and_headers(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    r = probe(gw, "return-tables")
    assert r.status == 201 and json.loads(r.body) == {"ok": True}
    assert r.header("x-r") == "1" and r.header("content-type") == "application/json"


def test_sleep_yields_to_other_requests(gateway, tmp_path):
    gw = start(gateway, tmp_path)           # one worker
    slow = gw.connect()
    slow.send(httpc.build_request("POST", "/v1/chat/completions",
                                  [("x-probe", "sleep"), ("x-seconds", "3")],
                                  httpc.chat_body("echo", "hi", False)))
    # While the first request sleeps, the same worker answers others.
    for _ in range(5):
        assert probe(gw, "tag", timeout=2).status == 200
    slow.is_open(0.01)
    assert not slow.buf, "the sleeping request answered before the others"
    r = slow.read_response(timeout=10)
    assert r.status == 200
    assert json.loads(r.body)["slept"] >= 2.9


def test_sleep_cancelled_when_client_leaves(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               [("x-probe", "sleep"), ("x-seconds", "30")],
                               httpc.chat_body("echo", "hi", False)))
    # Once another request on the same (only) worker has been answered, the
    # first one is inside its sleep.
    assert probe(gw, "tag").status == 200
    c.close()
    assert wait_until(lambda: re.search(r"probe log act=sleep status=499", gw.log()), 5, "log phase")
    assert probe(gw, "tag").status == 200


def test_yield_outside_the_api_and_waiting_in_a_plugin_coroutine(gateway, tmp_path):
    gw = start(gateway, tmp_path, expect_errors=True)
    r = probe(gw, "yield")
    assert r.status == 500
    wait_logged(gw, "outside the aigw API")
    r = probe(gw, "sleep-in-coroutine")
    body = json.loads(r.body)
    assert body["ok"] is False and "coroutine created by a plugin" in body["err"]


def test_request_accessors_and_log_fields(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    r = probe(gw, "req", path="/v1/chat/completions?a=1&b=x%20y&a=2&flag&c=%C3%A9+z")
    assert r.status == 200, r
    body = json.loads(r.body)
    assert body["q"] == {"a": ["1", "2"], "b": "x y", "flag": True, "c": "\u00e9 z"}
    assert body["addr"] == "127.0.0.1" and 0 < body["port"] < 65536
    assert body["model"] == "echo"
    wait_logged(gw, 'fields act=req n=3 note="two words"')


def test_clocks(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    body = json.loads(probe(gw, "now").body)
    assert abs(body["now"] - time.time()) < 5
    assert body["mono"] > 0


# ---------------------------------------------------------------------------
# upstream, header_filter, body_filter


def test_upstream_phase_changes_path_and_headers(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    r = probe(gw, "reroute", model="gpt-test", headers=[("X-Added", "from-client")])
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == "/v1/rerouted"
    # The plugin's header replaces the client's of the same name.
    assert rec.header_all("x-added") == ["by-upstream-phase"]


def test_upstream_phase_replaces_body(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    assert probe(gw, "upstream-body", model="gpt-test").status == 200
    assert json.loads(upstream.last_request().body)["messages"][0]["content"] == "replaced"


def test_upstream_phase_exit(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    r = probe(gw, "upstream-exit", model="gpt-test")
    assert r.status == 403
    assert json.loads(r.body) == {"blocked": "/chat/completions"}
    assert upstream.request_list() == []


def test_header_filter_on_upstream_and_lua_responses(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    r = probe(gw, "plain", model="gpt-test")
    assert r.status == 200 and r.header("x-probe-tag") == "v1"
    r = probe(gw, "plain", model="echo")
    assert r.status == 200 and r.header("x-probe-tag") == "v1"
    r = probe(gw, "hf-status", model="echo")
    assert r.status == 299
    assert r.header("content-type") is None
    assert r.header("x-seen-type") == "application/json"


def test_header_filter_sees_errors_made_by_the_core(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream, expect_errors=True)
    r = probe(gw, "plain", model="gpt-test", headers=[("x-mock-behavior", "close")])
    assert r.status == 502
    assert r.header("x-probe-tag") == "v1"
    assert json.loads(r.body)["error"]["type"] == "server_error"
    r = probe(gw, "error")          # a plugin error's 500
    assert r.status == 500 and r.header("x-probe-tag") == "v1"
    # A failing header_filter runs once; its 500 is sent unfiltered.
    r = probe(gw, "hf-error", model="gpt-test")
    assert r.status == 500 and r.header("x-probe-tag") is None
    assert wait_logged(gw, "header_filter boom").count("header_filter boom") == 1


def test_header_filter_exit_replaces_the_response(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    for model in ("echo", "gpt-test"):
        r = probe(gw, "hf-exit", model=model)
        assert r.status == 451, (model, r)
        assert r.body == b"replaced by header_filter\n"
    # The connection that carried it still serves.
    assert probe(gw, "tag").status == 200


def test_header_filter_error_is_a_500(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream, expect_errors=True)
    for model in ("echo", "gpt-test"):
        r = probe(gw, "hf-error", model=model)
        assert r.status == 500, (model, r)
    wait_logged(gw, "header_filter boom")


def test_body_filter_only_when_asked(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    r = probe(gw, "filter", model="echo", content="make me loud")
    assert r.status == 200
    assert b"MAKE ME LOUD" in r.body and r.body.endswith(b"[EOF]")
    r = probe(gw, "plain", model="echo", content="stay quiet")
    assert b"stay quiet" in r.body


def test_body_filter_on_an_upstream_stream(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream)
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [("x-probe", "filter"), ("x-mock-behavior", "stream")],
                                   httpc.chat_body("gpt-test", "hi", True)))
        r = c.read_response(timeout=10)
    assert r.status == 200
    assert r.header("content-length") is None
    assert b"DATA: [DONE]" in r.body and r.body.endswith(b"[EOF]")


# ---------------------------------------------------------------------------
# faults


def test_plugin_error_is_a_500_with_the_request_id(gateway, tmp_path):
    gw = start(gateway, tmp_path, expect_errors=True)
    r = probe(gw, "error", headers=[("x-request-id", "req-boom-1")])
    assert r.status == 500
    assert json.loads(r.body)["error"]["request_id"] == "req-boom-1"
    wait_logged(gw, r"req-boom-1.*boom from probe", regex=True)
    assert probe(gw, "tag").status == 200


@pytest.mark.parametrize("act", ["loop", "pcall-loop"])
def test_runaway_loop_is_stopped(gateway, tmp_path, act):
    gw = start(gateway, tmp_path, expect_errors=True, server={"drain_timeout": 5, "lua_time_limit": 0.3})
    r = probe(gw, act, headers=[("x-request-id", "req-loop-1")], timeout=15)
    assert r.status == 500
    assert json.loads(r.body)["error"]["request_id"] == "req-loop-1"
    wait_logged(gw, "lua_time_limit")
    # The worker (the only one) serves on, and the hook is gone.
    for _ in range(3):
        assert probe(gw, "tag").status == 200


@pytest.mark.parametrize("act,plugin_jit,declared", [("jit-loop", False, False), ("loop", True, False),
                                                     ("loop", False, True)])
def test_runaway_compiled_loop_aborts_the_process(gateway, tmp_path, act, plugin_jit, declared):
    """Code compiled by the JIT never sees the hook (code a plugin loads
    itself, plugin files with server.plugin_jit, a plugin that declares
    jit = true): past lua_kill_after the process aborts rather than serve on
    with a wedged worker."""
    gw = start(gateway, tmp_path, expect_errors=True, source=probe_source(jit=declared),
               server={"drain_timeout": 5, "lua_time_limit": 0.2, "lua_kill_after": 1,
                       "plugin_jit": plugin_jit})
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions", [("x-probe", act)],
                               httpc.chat_body("echo", "hi", False)))
    assert gw.wait_exit(15) == -6      # SIGABRT
    assert "aborting the process" in gw.log()
    assert c.wait_closed(5)


# ---------------------------------------------------------------------------
# timers and status


def test_timers_run_per_worker(gateway, tmp_path):
    gw = start(gateway, tmp_path, workers=2)
    def ticks():
        b = json.loads(probe(gw, "ticks").body)
        return b if (b.get("ticks") or 0) >= 20 and b.get("at") == "yes" else None
    b = wait_until(ticks, 10, "timers ticking")
    assert b["pending"] == 1          # the `every` timer; `at` fired, the third was cancelled


def test_admin_status_reports_generations_and_vm_memory(gateway, tmp_path):
    gw = start(gateway, tmp_path, workers=2)
    r = admin(gw, "GET", "/admin/status")
    assert r.status == 200
    st = json.loads(r.body)
    assert st["generation"] == 1
    assert len(st["workers"]) == 2
    for w in st["workers"]:
        assert w["generation"] == 1
        assert 50 < w["lua_memory_kb"] < 100000
    assert admin(gw, "POST", "/admin/status").status == 405


def test_check_runs_init_worker_with_timers(tmp_path):
    """aigw check builds a worker VM: a plugin's init_worker may start timers."""
    from harness import run_cli
    prefix = make_prefix(tmp_path)
    conf = tmp_path / "check.lua"
    conf.write_text('return { listen = "127.0.0.1:1", admin_listen = false, workers = 1, '
                    'plugins = { "key-auth", "probe" }, shared = { cache = "1m" } }')
    r = run_cli(["check", str(conf)], env={"AIGW_PREFIX": str(prefix)})
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
