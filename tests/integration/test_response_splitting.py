"""Nothing a client, an upstream or a plugin sends can add a header line.

A model name holding a control character (or longer than 256 bytes) is a 400
in the client's envelope before any routing, on the proxy path and on the
paths where Lua fetches and translates the answer. Behind that, the core
refuses any header line with CR, LF or NUL, whatever made it: response heads
(lines Lua adds to every head, aigw.exit, handler results, header_filter),
the upstream request line, path and extra lines, and aigw.http requests. A
refused head is never sent: the client gets a 500 in its envelope, with
nothing of the refused head on the wire (each test reads the raw bytes).

Last, a coroutine a plugin keeps past its request reads the request that
resumes it, never the ended one's (recycled) struct."""
import json
import re
import socket
import threading

import pytest

import harness
import httpc
from harness import plugin_prefix

CT_JSON = ("Content-Type", "application/json")
PROMPT = [{"role": "user", "content": "hi"}]
INJECTED = "x\r\nSet-Cookie: evil=1\r\nX-Injected: yes"


def raw_request(gw, path, body: bytes, headers=(), method="POST"):
    """One request on its own connection: the parsed response, and every byte
    the gateway sent on that connection (read until the response ends and a
    little after, so bytes past the response would show)."""
    with gw.connect() as c:
        c.send(httpc.build_request(method, path, [CT_JSON] + list(headers), body))
        r = c.read_response(timeout=10, method=method)
        c.is_open(0.05)
        extra = bytes(c.buf)
    raw = r.raw_head + r.body + extra
    assert not extra, "bytes after the response: %r" % extra
    return r, raw


def assert_clean(raw: bytes):
    low = raw.lower()
    for bad in (b"set-cookie", b"x-injected", b"injected:", b"evil=1"):
        assert bad not in low, "%r reached the client:\n%r" % (bad, raw)


def chat_body(model, stream=False):
    doc = {"model": model, "messages": PROMPT}
    if stream:
        doc["stream"] = True
    return json.dumps(doc).encode()


def messages_body(model):
    return json.dumps({"model": model, "max_tokens": 16, "messages": PROMPT}).encode()


def assert_invalid_model(r, raw, anthropic=False):
    assert_clean(raw)
    assert r.status == 400, r
    doc = json.loads(r.body)
    if anthropic:
        assert doc["type"] == "error", doc
        assert doc["error"]["type"] == "invalid_request_error", doc
        assert doc["request_id"] == r.header("x-request-id")
    else:
        assert doc["error"]["type"] == "invalid_request_error", doc
        assert doc["error"]["code"] == "invalid_model", doc
        assert doc["error"]["request_id"] == r.header("x-request-id")
    assert r.header("x-aigw-model") is None


# ---------------------------------------------------------------------------
# the model name


def test_issue_repro_model_with_crlf_unreachable_openai(gateway):
    """The issue's repro: OPENAI_BASE_URL unreachable, the model's JSON-escaped
    CR/LF used to reach the 502's head as Set-Cookie and X-Injected lines."""
    gw = gateway()    # base_config: openai points at a port where nothing listens
    r, raw = raw_request(gw, "/v1/chat/completions", chat_body(INJECTED))
    assert_invalid_model(r, raw)


def providers(upstream):
    return {
        "openai": {"kind": "openai", "base_url": upstream.base_url, "api_key": "sk-openai"},
        "anthropic": {"kind": "anthropic", "base_url": upstream.url, "api_key": "sk-ant"},
        "gemini": {"kind": "gemini", "base_url": upstream.url, "api_key": "g-key"},
        "az": {"kind": "azure-openai", "base_url": upstream.url, "api_key": "az-key",
               "api_version": "2024-10-21"},
        "mock": {"kind": "mock"},
    }


# (path, model, stream, anthropic envelope): the proxy path (same format), and
# the Lua sinks (a translated answer fetched whole, and a translated stream).
MODEL_CASES = [
    ("/v1/chat/completions", INJECTED, False, False),                    # proxy, openai
    ("/v1/chat/completions", "claude-" + INJECTED, False, False),        # fetched, anthropic
    ("/v1/chat/completions", "claude-" + INJECTED, True, False),         # stream, anthropic
    ("/v1/chat/completions", "gemini-" + INJECTED, False, False),        # fetched, gemini path
    ("/v1/chat/completions", "az/" + INJECTED, False, False),            # azure deployment path
    ("/v1/messages", "claude-" + INJECTED, False, True),                 # proxy, anthropic
    ("/v1/messages", INJECTED, False, True),                             # fetched, openai
    ("/v1/messages", "gemini-" + INJECTED, True, True),                  # stream, gemini
]


@pytest.mark.parametrize("path,model,stream,anthropic", MODEL_CASES,
                         ids=["proxy-openai", "fetch-anthropic", "stream-anthropic", "fetch-gemini",
                              "azure", "messages-proxy", "messages-fetch-openai",
                              "messages-stream-gemini"])
def test_model_with_crlf_is_a_400_on_every_path(gateway, upstream, path, model, stream, anthropic):
    gw = gateway(upstream=upstream, providers=providers(upstream))
    if path == "/v1/messages":
        doc = json.loads(messages_body(model))
        if stream:
            doc["stream"] = True
        body = json.dumps(doc).encode()
    else:
        body = chat_body(model, stream)
    r, raw = raw_request(gw, path, body)
    assert_invalid_model(r, raw, anthropic)
    assert upstream.request_list() == [], "the bad model reached the upstream"


@pytest.mark.parametrize("model", ["a\tb", "a\x7fb", "a\x00b", "a\x1bb", "a\nb", "x" * 257],
                         ids=["tab", "del", "nul", "esc", "lf", "257-bytes"])
def test_control_characters_and_long_names_are_400(gateway, upstream, model):
    gw = gateway(upstream=upstream, providers=providers(upstream))
    r, raw = raw_request(gw, "/v1/chat/completions", chat_body(model))
    assert_invalid_model(r, raw)
    r, raw = raw_request(gw, "/v1/messages", messages_body(model))
    assert_invalid_model(r, raw, anthropic=True)
    assert upstream.request_list() == []


def test_names_up_to_256_bytes_and_unicode_still_route(gateway, upstream):
    gw = gateway(upstream=upstream, providers=providers(upstream))
    for model in ["m" * 256, "gpt-\u00e9t\u00e9 \u6a21\u578b"]:
        r, raw = raw_request(gw, "/v1/chat/completions", chat_body(model))
        assert r.status == 200, r
        assert r.header("x-aigw-model") == model.encode().decode("latin-1")
        assert upstream.last_request().json()["model"] == model


# ---------------------------------------------------------------------------
# lines made by plugins: refused by the core

SPLITTER = r'''
local aigw = require "aigw"
local response = require "aigw.response"
local P = { name = "splitter", priority = 100 }

local BAD = {
  lf = "X-A: 1\nInjected: yes\r\n",
  cr = "X-A: 1\rInjected: yes\r\n",
  nul = "X-A: 1\0Injected: yes\r\n",
  blank = "X-A: 1\r\n\r\nInjected: yes\r\n",
  noname = ": x\r\nInjected: yes\r\n",
  nocolon = "Injected yes\r\n",
  badname = "X A: 1\r\nInjected: yes\r\n",
  nocrlf = "X-A: 1\r\nInjected: yes",
}

function P.access(conf, ctx)
  local act = aigw.request.get_header("x-act")
  local kind = aigw.request.get_header("x-kind") or "lf"
  ctx.act, ctx.kind = act, kind
  if act == "exit" then aigw.exit(200, "ok\n", BAD[kind]) end
  if act == "return" then return 200, "ok\n", BAD[kind] end
  if act == "http" then
    local origin = aigw.request.get_header("x-origin")
    local t = aigw_core.target { url = origin }
    local method, path, lines = "GET", "/v1/models", "x-ok: 1\r\n"
    if kind == "method" then method = "GET /v1/models HTTP/1.1\r\nInjected: yes\r\nX-Pad:" end
    if kind == "path" then path = "/v1/models HTTP/1.1\r\nInjected: yes\r\nX-Pad: x" end
    if kind == "space" then path = "/v1/models x" end
    if kind == "headers" then lines = BAD.lf end
    local op = aigw_core.http_op()
    local status, err = aigw_core.http_request(op, t, method, path, lines, nil, 5, 1e6,
                                               false, true, true, true, false)
    return 200, { status = status, err = err }
  end
end

function P.upstream(conf, ctx)
  local act, up = ctx.act, ctx.upstream
  if act == "up-path" then up.path = "/chat/completions HTTP/1.1\r\nInjected: yes\r\nX-Pad: x" end
  if act == "up-space" then up.path = "/chat completions" end
  if act == "up-url" then
    up.url = aigw.request.get_header("x-origin") .. "/v1/chat/completions\r\nInjected: yes"
  end
  if act == "up-header" then up.headers["x-a"] = "1\r\nInjected: yes" end
end

function P.header_filter(conf, ctx)
  if ctx.act == "hf-exit" then aigw.exit(200, "ok\n", BAD[ctx.kind]) end
  if ctx.act == "resp-lines" then
    -- The lines the runtime adds to every head (x-aigw-*), written badly
    -- after routing set them.
    ctx._bad = "x-aigw-model: a\nInjected: yes\r\n"
    response._response_lines(ctx, ctx._bad)
  end
end

return P
'''


@pytest.fixture
def gw(gateway, tmp_path, upstream):
    prefix = plugin_prefix(tmp_path, {"splitter.lua": SPLITTER})
    (prefix / "plugins" / "key-auth.lua").write_bytes(
        (harness.REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    g = gateway(upstream=upstream, providers=providers(upstream), plugins=["key-auth", "splitter"],
                models={"two": {"targets": [{"provider": "openai", "model": "gpt-x"},
                                            {"provider": "openai", "model": "gpt-y"}]}},
                env={"AIGW_PREFIX": str(prefix)}, expect_errors=True)
    g.upstream = upstream
    return g


def act(gw, act, kind="lf", model="echo", path="/v1/chat/completions", extra=()):
    headers = [("x-act", act), ("x-kind", kind), ("x-origin", gw.upstream.url)] + list(extra)
    if path == "/v1/messages":
        body = messages_body(model)
    else:
        body = chat_body(model)
    return raw_request(gw, path, body, headers)


def assert_refused(gw, r, raw, anthropic=False):
    """A 500 in the client's envelope in place of the refused head, logged as
    an error with the request id."""
    assert_clean(raw)
    assert r.status == 500, r
    assert r.header("x-a") is None
    rid = r.header("x-request-id")
    doc = json.loads(r.body)
    if anthropic:
        assert doc["type"] == "error" and doc["error"]["type"] == "api_error", doc
        assert doc["request_id"] == rid
    else:
        assert doc["error"]["type"] == "server_error", doc
        assert doc["error"]["code"] == "internal_error", doc
        assert doc["error"]["request_id"] == rid
    harness.wait_until(lambda: re.search(r"error \[w\d+\] request %s: " % rid, gw.log()),
                       5, "the refusal in the log")


KINDS = ["lf", "cr", "nul", "blank", "noname", "nocolon", "badname", "nocrlf"]


@pytest.mark.parametrize("where", ["exit", "return"])
def test_plugin_response_lines_are_refused(gw, where):
    for kind in KINDS:
        r, raw = act(gw, where, kind)
        assert_refused(gw, r, raw)
    r, raw = act(gw, where, "lf", model="claude-x", path="/v1/messages")
    assert_refused(gw, r, raw, anthropic=True)


@pytest.mark.parametrize("model", ["echo", "gpt-x"], ids=["lua-response", "proxied"])
def test_header_filter_lines_are_refused(gw, model):
    """aigw.exit from header_filter, on a response made in Lua and on an
    upstream's (whose own head must not leak either)."""
    # lf, nul and blank raise in aigw.exit; the others pass it, the core refuses them
    for kind in ("lf", "nul", "blank", "nocolon", "badname", "noname"):
        r, raw = act(gw, "hf-exit", kind, model=model)
        assert_refused(gw, r, raw)
        assert b"Hello from the mock" not in raw


@pytest.mark.parametrize("model", ["echo", "gpt-x", "claude-x"],
                         ids=["lua-response", "proxied", "fetched"])
def test_bad_response_lines_are_refused(gw, model):
    """The lines the runtime adds to every head (r->resp_lines), checked by the
    core itself: on a Lua response, a proxied head and a fetched answer."""
    r, raw = act(gw, "resp-lines", model=model)
    assert_refused(gw, r, raw)
    assert b"x-aigw-model" not in raw.lower()


@pytest.mark.parametrize("model", ["gpt-x", "two"], ids=["routed", "alias"])
@pytest.mark.parametrize("what", ["up-path", "up-space", "up-url", "up-header"])
def test_bad_upstream_request_lines_never_leave(gw, what, model):
    """For an alias, the refused attempt is the gateway's fault: no other
    target is tried with it."""
    r, raw = act(gw, what, model=model)
    assert_refused(gw, r, raw)
    if what != "up-header":   # (refused in Lua, before the core)
        refusals = re.findall(r"request %s: refused upstream request head" % r.header("x-request-id"),
                              gw.log())
        assert len(refusals) == 1, gw.log()
    assert gw.upstream.request_list() == [], "a refused request reached the upstream"
    assert gw.upstream.accepted == 0


@pytest.mark.parametrize("kind", ["method", "path", "space", "headers"])
def test_bad_aigw_http_requests_never_leave(gw, kind):
    r, raw = act(gw, "http", kind)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert "status" not in doc, doc
    assert doc["err"].startswith("bad request head: "), doc
    assert gw.upstream.request_list() == [], "a refused request reached the upstream"
    assert gw.upstream.accepted == 0
    # and a good one goes out on the same path
    r, raw = act(gw, "http", "good")
    assert r.status == 200 and json.loads(r.body)["status"] == 200, r


class RawUpstream:
    """Answers every request on 127.0.0.1 with fixed bytes, then closes."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            while True:
                c, _ = self.sock.accept()
                with c:
                    c.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        piece = c.recv(65536)
                        if not piece:
                            break
                        data += piece
                    c.sendall(self.answer)
                    self.served += 1
        except OSError:
            return

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept (Linux)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_upstream_reason_phrase_with_nul_is_refused(gateway):
    """llhttp lets a reason phrase hold NUL; the gateway takes it for the bad
    answer it is (a 502) and sends nothing of it on."""
    up = RawUpstream(b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nhi")
    try:
        gw = gateway(providers={"openai": {"kind": "openai", "base_url": "http://127.0.0.1:%d/v1" % up.port,
                                           "api_key": "k"}})
        r, raw = raw_request(gw, "/v1/chat/completions", chat_body("gpt-x"))
        assert up.served == 1
        assert r.status == 502 and b"\x00" not in raw and b"hi" != r.body, r
        assert json.loads(r.body)["error"]["code"] == "bad_gateway"
    finally:
        up.close()


# ---------------------------------------------------------------------------
# a plugin's own coroutine, kept past its request

KEEPER = r'''
local aigw = require "aigw"
local P = { name = "keeper", priority = 100 }

-- Module-level: lives as long as the generation, past the request that
-- made it (what the docs tell plugins not to do, and what some will).
local saved, wrapped

local function reader()
  while true do
    local ok, who = pcall(aigw.request.get_header, "x-who")
    coroutine.yield(ok and (who or "none") or ("error: " .. tostring(who)))
  end
end

function P.access(conf, ctx)
  local act = aigw.request.get_header("x-co")
  if act == "make" then
    saved, wrapped = coroutine.create(reader), coroutine.wrap(reader)
    local _, who = coroutine.resume(saved)
    return 200, { who = who, wrapped = wrapped() }
  elseif act == "resume" then
    local _, who = coroutine.resume(saved)
    return 200, { who = who, wrapped = wrapped() }
  elseif act == "timer" then
    aigw.timer.at(0, function()
      local _, who = coroutine.resume(saved)
      aigw.shared.cache:set("timer", who .. "|" .. wrapped())
    end)
    return 200, {}
  elseif act == "timer-result" then
    return 200, { got = aigw.shared.cache:get("timer") }
  end
end

return P
'''


def test_a_kept_coroutine_reads_the_request_resuming_it(gateway, tmp_path, upstream):
    """A coroutine made in request A and resumed in request C used to read
    A's request struct, which the worker had recycled for request B, still
    in flight: C saw B's header (and an ASan build, which recycles nothing,
    a use after free). It reads the request resuming it, or none."""
    prefix = plugin_prefix(tmp_path, {"keeper.lua": KEEPER})
    (prefix / "plugins" / "key-auth.lua").write_bytes(
        (harness.REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    gw = gateway(upstream=upstream, providers=providers(upstream), plugins=["key-auth", "keeper"],
                 shared={"cache": "1m"}, env={"AIGW_PREFIX": str(prefix)})

    def co(act, who):
        return gw.request("POST", "/v1/chat/completions",
                          [CT_JSON, ("x-co", act), ("x-who", who)], chat_body("echo"))

    r = co("make", "alice")
    assert r.status == 200 and json.loads(r.body) == {"who": "alice", "wrapped": "alice"}, r
    # B: in flight (its upstream holds the stream) on the request struct A had.
    b = gw.connect()
    b.send(httpc.build_request("POST", "/v1/chat/completions",
                               [CT_JSON, ("x-who", "bob"), ("x-mock-behavior", "hold"),
                                ("x-mock-key", "b")], chat_body("gpt-x", stream=True)))
    assert upstream.wait_held("b", 10)
    r = co("resume", "carol")
    assert r.status == 200 and json.loads(r.body) == {"who": "carol", "wrapped": "carol"}, r
    upstream.release("b")
    rb = b.read_response(timeout=10)
    assert rb.status == 200 and b"[DONE]" in rb.body, rb
    b.close()
    # From a timer there is no request at all.
    assert co("timer", "dave").status == 200
    got = harness.wait_until(lambda: json.loads(co("timer-result", "erin").body).get("got"), 5,
                             "the timer's resume")
    assert got == "error: no request in this context|error: no request in this context", got
