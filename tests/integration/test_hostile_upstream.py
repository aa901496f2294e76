"""Hostile upstreams: whatever a provider's server sends, the gateway neither
crashes nor relays it as something else nor holds unbounded memory for it.

Each answer below is a byte script played by a raw-socket upstream
(`ScriptedUpstream`, threads on 127.0.0.1; TLS through ssl.MemoryBIO so a
test decides whether the close carries a close_notify). Each hole is tried on
the plain proxy path and on the paths whose sink is Lua: a translated answer
(an OpenAI client asking `claude-x` of an Anthropic-kind provider),
`aigw.http.request` from a plugin, and an active health check.

The rule they check (DESIGN.md, "Admin and edge rules"): interim 1xx answers
carry no body; malformed, oversized (head > 64 KiB) or truncated answers are
502s; nothing of a failed attempt reaches the client.
"""
import json

import pytest

import harness
import httpc
from harness import REPO_ROOT, plugin_prefix, server_ssl_context, wait_until
from mock_upstream import anthropic_body, chat_completion_body
from test_upstream_reuse import ScriptedUpstream

CT_JSON = ("Content-Type", "application/json")
PROMPT = [{"role": "user", "content": "hello there"}]
HEAD_MAX = 64 * 1024


def ok(body: bytes, ctype: bytes = b"application/json", extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\n" + extra +
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


CHAT_OK = ok(chat_completion_body("gpt-x"))
ANTHROPIC_OK = ok(anthropic_body("claude-x", 2))
EARLY_HINTS_WITH_BODY = b"HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\n\r\nABCD"
EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


def plays(*pieces: bytes, close: bool = False):
    """A responder that answers every request with these bytes (TLS: one record
    each), then closes the connection (a bare FIN) when `close`."""
    def respond(conn, req):
        conn.send(*pieces)
        return "done" if close else None
    return respond


@pytest.fixture
def raw():
    made = []

    def make(respond, ssl_context=None) -> ScriptedUpstream:
        up = ScriptedUpstream(respond, ssl_context).start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


def chat_raw(gw, model="gpt-x", stream=False, path="/v1/chat/completions", timeout=10):
    """POST a chat request and return everything the gateway sent until it
    closed or answered in full, as raw bytes plus the parsed response (None
    when the bytes are not one)."""
    body = {"model": model, "messages": PROMPT}
    if stream:
        body["stream"] = True
    with gw.connect() as c:
        c.send(httpc.build_request("POST", path, [CT_JSON, ("Connection", "close")],
                                   json.dumps(body).encode()))
        raw_bytes = c.read_until_closed(timeout)
    try:
        c2 = httpc.Conn(None)
        c2.buf = bytearray(raw_bytes)
        c2.eof = True
        resp = c2.read_head(1)
        try:
            c2.read_body(resp, 1)
        except httpc.Closed:
            pass
    except (httpc.Closed, ValueError, IndexError):
        resp = None
    return raw_bytes, resp


def assert_bad_gateway(raw_bytes, resp, why=None):
    assert raw_bytes.startswith(b"HTTP/1.1 502 "), raw_bytes[:300]
    assert resp is not None and resp.complete, raw_bytes[:600]
    err = json.loads(resp.body)["error"]
    assert err["type"] == "bad_gateway" or err.get("code") == "bad_gateway", err
    if why:
        assert why in err["message"], err


def proxy_gw(gateway, up, **kw):
    return gateway(upstream=up, expect_errors=True, **kw)


def anthropic_gw(gateway, up, **kw):
    providers = {"anthropic": {"kind": "anthropic", "base_url": "http://127.0.0.1:%d" % up.port,
                               "api_key": "sk-ant", "timeouts": {"connect": 5, "read": 10,
                                                                 "total": 20}},
                 "mock": {"kind": "mock"}}
    return gateway(providers=providers, expect_errors=True, **kw)


# A plugin that fetches POST /fetch {"url": ..., "opts": {...}} with aigw.http.request
# and answers with what it got.
FETCH_PLUGIN = r'''
local aigw = require "aigw"
local json = require "cjson"
return {
  name = "fetch", priority = 100,
  access = function(conf, ctx)
    if aigw.request.get_path() ~= "/fetch" then return end
    local spec = json.decode(aigw.request.get_body())
    local opts = spec.opts or {}
    opts.url = spec.url
    local res, err = aigw.http.request(opts)
    local out = { err = err }
    if res then out.status, out.body, out.headers = res.status, res.body, res.headers end
    return 200, json.encode(out), "Content-Type: application/json\r\n"
  end,
}
'''


def fetch_gw(gateway, tmp_path, up=None, **kw):
    prefix = plugin_prefix(tmp_path, {
        "fetch.lua": FETCH_PLUGIN,
        "key-auth.lua": (REPO_ROOT / "plugins" / "key-auth.lua").read_text()})
    return gateway(upstream=up, plugins=["key-auth", "fetch"], expect_errors=True,
                   env={"AIGW_PREFIX": str(prefix)}, **kw)


def fetch(gw, url, **opts):
    r = gw.request("POST", "/fetch", [CT_JSON], json.dumps({"url": url, "opts": opts}).encode(),
                   timeout=20)
    assert r.status == 200, r
    return r.json()


# --- interim answers (1xx) --------------------------------------------------------


def test_interim_answer_with_a_body_is_a_502_on_the_proxy_path(gateway, raw):
    up = raw(plays(EARLY_HINTS_WITH_BODY + CHAT_OK))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    # Unfixed: "ABCD" reached the client before any status line.
    assert_bad_gateway(raw_bytes, resp)
    assert b"ABCD" not in raw_bytes
    assert gw.alive()


def test_interim_answer_with_a_body_is_a_502_when_translated(gateway, raw):
    up = raw(plays(EARLY_HINTS_WITH_BODY + ANTHROPIC_OK))
    gw = anthropic_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw, model="claude-x")   # unfixed: the gateway crashed here
    assert raw_bytes.startswith(b"HTTP/1.1 502 "), raw_bytes[:300]
    assert gw.alive()
    assert up.request_list()[0].target == "/v1/messages"


def test_interim_answer_with_a_body_fails_aigw_http(gateway, raw, tmp_path):
    up = raw(plays(EARLY_HINTS_WITH_BODY + ok(b"fine", b"text/plain")))
    gw = fetch_gw(gateway, tmp_path)
    res = fetch(gw, "http://127.0.0.1:%d/x" % up.port)   # unfixed: crashed
    assert res == {"err": "bad response"}, res
    assert gw.alive()


def test_interim_answer_with_a_body_fails_a_health_check(gateway, raw):
    up = raw(plays(EARLY_HINTS_WITH_BODY + CHAT_OK))
    hc = {"path": "/models", "interval": 0.2, "timeout": 2, "healthy": 1, "unhealthy": 1}
    admin = harness.free_port()
    providers = {"a": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-a",
                       "health_check": hc}, "mock": {"kind": "mock"}}
    gw = gateway(providers=providers, models={"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a"}]}}, admin_listen="127.0.0.1:%d" % admin,
        expect_errors=True)

    def status():
        r = httpc.request(admin, "GET", "/status", timeout=5)
        return {t["provider"]: t for t in r.json()["targets"]}["a"]
    wait_until(lambda: len(up.request_list()) >= 2, 10, "two probes")   # unfixed: crashed at the first
    assert gw.alive()
    wait_until(lambda: not status()["healthy"], 5, "a marked down")


def test_interim_answers_without_a_body_are_skipped(gateway, raw, tmp_path):
    continue_ = b"HTTP/1.1 100 Continue\r\n\r\n"
    dated = b"HTTP/1.1 103 Early Hints\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\n\r\n"
    up = raw(plays(continue_ + EARLY_HINTS + dated + CHAT_OK))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert resp is not None and resp.status == 200 and resp.complete, raw_bytes[:400]
    assert resp.body == chat_completion_body("gpt-x")
    assert resp.informational == [], "interim answers are not relayed"
    assert resp.header("link") is None, "an interim answer's headers are not the answer's"
    # The 103's Date is not the answer's: the gateway adds its own.
    assert resp.header("date") and "2001" not in resp.header("date"), resp


def test_interim_answers_without_a_body_are_skipped_when_translated(gateway, raw):
    up = raw(plays(EARLY_HINTS + ANTHROPIC_OK))
    gw = anthropic_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw, model="claude-x")
    assert resp is not None and resp.status == 200, raw_bytes[:400]
    assert json.loads(resp.body)["choices"][0]["message"]["content"]


def test_switching_protocols_is_a_502(gateway, raw):
    up = raw(plays(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                   b"Upgrade: websocket\r\n\r\n\x81\x05hello"))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert_bad_gateway(raw_bytes, resp)
    assert b"hello" not in raw_bytes


def test_switching_protocols_fails_aigw_http(gateway, raw, tmp_path):
    up = raw(plays(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n"
                   b"Upgrade: websocket\r\n\r\n"))
    gw = fetch_gw(gateway, tmp_path)
    res = fetch(gw, "http://127.0.0.1:%d/x" % up.port)
    assert res.get("status") is None and res["err"], res

