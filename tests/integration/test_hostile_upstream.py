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
import ssl

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


def test_endless_interim_answers_are_bounded(gateway, raw):
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </%s>; rel=preload\r\n\r\n" % (b"a" * 200)
    up = raw(plays(hint * (2 * HEAD_MAX // len(hint)) + CHAT_OK))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert_bad_gateway(raw_bytes, resp, "upstream response head too large")


# --- malformed answers ------------------------------------------------------------

MALFORMED = {
    "length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhello\r\n0\r\n\r\n",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "status-0": b"HTTP/1.1 000 Nothing\r\nContent-Length: 5\r\n\r\nhello",
    "status-600": b"HTTP/1.1 600 Beyond\r\nContent-Length: 5\r\n\r\nhello",
    "status-999": b"HTTP/1.1 999 Beyond\r\nContent-Length: 5\r\n\r\nhello",
    "reason-control": b"HTTP/1.1 200 O\x01K\x1b[2J\r\nContent-Length: 5\r\n\r\nhello",
    "reason-nul": b"HTTP/1.1 200 O\x00K\r\nContent-Length: 5\r\n\r\nhello",
    "value-cr": b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: evil=1\r\nContent-Length: 5\r\n\r\nhello",
    "value-nul": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
    "value-ctl": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 5\r\n\r\nhello",
    "interim-with-body": EARLY_HINTS_WITH_BODY + ok(b"hello"),
    "interim-chunked": b"HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"4\r\nABCD\r\n0\r\n\r\n" + ok(b"hello"),
    "status-1xx-then-garbage": b"HTTP/1.1 199 Odd\r\n\r\nnot http\r\n\r\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_answer_is_a_502(gateway, raw, kind):
    up = raw(plays(MALFORMED[kind]))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert_bad_gateway(raw_bytes, resp)
    assert b"hello" not in raw_bytes and b"evil" not in raw_bytes
    assert gw.alive()


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_answer_fails_aigw_http(gateway, raw, tmp_path, kind):
    up = raw(plays(MALFORMED[kind]))
    gw = fetch_gw(gateway, tmp_path)
    res = fetch(gw, "http://127.0.0.1:%d/x" % up.port)
    assert res == {"err": "bad response"}, res


def test_folded_header_reaches_the_client_as_one_line(gateway, raw):
    # RFC 9112 5.2 lets a gateway replace obs-fold with spaces instead of a 502:
    # what matters is that no CR or LF of a value reaches the client.
    up = raw(plays(b"HTTP/1.1 200 OK\r\nX-A: a\r\n Set-Cookie: evil=1\r\nContent-Length: 5\r\n"
                   b"\r\nhello"))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert resp is not None and resp.status == 200 and resp.body == b"hello", raw_bytes[:300]
    assert resp.header("set-cookie") is None
    assert resp.header("x-a").endswith("Set-Cookie: evil=1"), resp


def big_head(n_bytes=0, n_lines=0, body=b"hello") -> bytes:
    lines = b"".join(b"X-Line-%d: v\r\n" % i for i in range(n_lines))
    if n_bytes:
        lines += b"X-Big: " + b"b" * n_bytes + b"\r\n"
    return b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_head_just_under_the_cap_is_relayed(gateway, raw):
    up = raw(plays(big_head(n_bytes=HEAD_MAX - 200)))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert resp is not None and resp.status == 200 and resp.body == b"hello", raw_bytes[:200]
    assert len(resp.header("x-big")) == HEAD_MAX - 200


@pytest.mark.parametrize("head", [big_head(n_bytes=HEAD_MAX + 1), big_head(n_bytes=4 * 1024 * 1024),
                                  big_head(n_lines=1000)], ids=["64k", "4m", "1000-lines"])
def test_head_over_the_cap_is_a_502(gateway, raw, head):
    up = raw(plays(head))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert_bad_gateway(raw_bytes, resp, "upstream response head too large")


def test_head_over_the_cap_fails_aigw_http(gateway, raw, tmp_path):
    up = raw(plays(big_head(n_bytes=HEAD_MAX + 1)))
    gw = fetch_gw(gateway, tmp_path)
    res = fetch(gw, "http://127.0.0.1:%d/x" % up.port)
    assert res == {"err": "response head too large"}, res


def test_head_over_the_cap_is_a_502_when_translated(gateway, raw):
    up = raw(plays(big_head(n_bytes=HEAD_MAX + 1, body=anthropic_body("claude-x", 2))))
    gw = anthropic_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw, model="claude-x")
    assert raw_bytes.startswith(b"HTTP/1.1 502 "), raw_bytes[:300]


# --- trailers and chunk extensions ------------------------------------------------


def chunked_answer(status: bytes, body: bytes, trailers: bytes = b"", ext: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" +
            b"%x" % len(body) + ext + b"\r\n" + body + b"\r\n0\r\n" + trailers + b"\r\n")


ERROR_BODY = b'{"error":{"message":"upstream broke","type":"server_error","code":null}}'
EVIL_TRAILERS = b"X-Trailer-Evil: 1\r\nSet-Cookie: evil=1\r\n"


def test_trailers_of_a_held_error_are_not_headers(gateway, raw):
    # error-mapping holds error answers whole (filter_errors) and re-shapes them
    up = raw(plays(chunked_answer(b"500 Internal Server Error", ERROR_BODY, EVIL_TRAILERS)))
    gw = proxy_gw(gateway, up, plugins=["key-auth", "error-mapping"])
    raw_bytes, resp = chat_raw(gw)
    assert resp is not None and resp.status == 502 and resp.complete, raw_bytes[:400]
    assert resp.header("x-trailer-evil") is None and resp.header("set-cookie") is None, resp
    assert "upstream broke" in json.loads(resp.body)["error"]["message"]


def test_trailers_of_an_attempt_error_are_not_headers(gateway, raw):
    # an alias relays a client error (not retried) with the head it held
    up = raw(plays(chunked_answer(b"400 Bad Request", ERROR_BODY, EVIL_TRAILERS)))
    providers = {"a": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-a"},
                 "mock": {"kind": "mock"}}
    gw = gateway(providers=providers, models={"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a"}]}}, plugins=["key-auth", "error-mapping"],
        expect_errors=True)
    raw_bytes, resp = chat_raw(gw, model="pool")
    assert resp is not None and resp.status == 400 and resp.complete, raw_bytes[:400]
    assert resp.header("x-trailer-evil") is None and resp.header("set-cookie") is None, resp


def test_trailers_on_the_proxy_path_are_dropped(gateway, raw):
    up = raw(plays(chunked_answer(b"200 OK", b"hello", EVIL_TRAILERS)))
    gw = proxy_gw(gateway, up)
    raw_bytes, resp = chat_raw(gw)
    assert resp is not None and resp.status == 200 and resp.complete and resp.body == b"hello"
    assert b"evil" not in raw_bytes


def hangs(*pieces: bytes):
    """Sends the pieces, then keeps the connection open until the peer closes."""
    def respond(conn, req):
        conn.send(*pieces)
        conn.sock.settimeout(30)
        while conn.sock.recv(4096):
            pass
        return "done"
    return respond


@pytest.mark.parametrize("what", ["trailers", "extension"])
def test_endless_trailers_or_chunk_extensions_are_bounded(gateway, raw, what):
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n")
    if what == "trailers":
        flood = b"0\r\n" + b"".join(b"X-T-%d: %s\r\n" % (i, b"t" * 100) for i in range(4000))
    else:
        flood = b"5;e=" + b"x" * (1024 * 1024)
    up = raw(hangs(head, flood))
    gw = proxy_gw(gateway, up)
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions", [CT_JSON],
                                   json.dumps({"model": "gpt-x", "messages": PROMPT}).encode()))
        resp = c.read_head(5)
        assert resp.status == 200
        # The answer had begun: it is cut, not ended as if complete, and at once
        # (unfixed: the gateway kept reading until a timeout).
        with pytest.raises(httpc.Closed):
            c.read_body(resp, 5)
        assert not resp.complete
    assert up.conns[1].closed.wait(5), "the upstream connection is closed"


def test_endless_chunk_extension_fails_aigw_http(gateway, raw, tmp_path):
    up = raw(hangs(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=" + b"x" * (1024 * 1024)))
    gw = fetch_gw(gateway, tmp_path)
    res = fetch(gw, "http://127.0.0.1:%d/x" % up.port, timeout=10)
    assert res == {"err": "bad response"}, res


# --- TLS: a close-delimited body ends with close_notify, not a bare FIN ------------


def close_notify(conn):
    try:
        conn.tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    conn._flush()


def close_delimited(body: bytes, clean: bool):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"

    def respond(conn, req):
        conn.send(head, body)
        if clean:
            close_notify(conn)
        return "done"
    return respond


def tls_gw(gateway, up, pki, **kw):
    providers = {"openai": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-a",
                            "ca_file": str(pki.ca)},
                 "anthropic": {"kind": "anthropic", "base_url": "https://127.0.0.1:%d" % up.port,
                               "api_key": "sk-ant", "ca_file": str(pki.ca)},
                 "mock": {"kind": "mock"}}
    return gateway(providers=providers, expect_errors=True, **kw)


@pytest.mark.parametrize("clean", [True, False], ids=["close_notify", "bare-fin"])
def test_tls_close_delimited_body(gateway, raw, pki, clean):
    up = raw(close_delimited(chat_completion_body("gpt-x"), clean),
             ssl_context=server_ssl_context(pki.cert, pki.key))
    gw = tls_gw(gateway, up, pki)
    raw_bytes, resp = chat_raw(gw)
    assert resp is not None and resp.status == 200, raw_bytes[:300]
    if clean:
        assert resp.complete and resp.body == chat_completion_body("gpt-x")
    else:
        # unfixed: ended as complete; a truncation must not look like an end
        assert not resp.complete, raw_bytes[-200:]


@pytest.mark.parametrize("clean", [True, False], ids=["close_notify", "bare-fin"])
def test_tls_close_delimited_body_for_aigw_http(gateway, raw, pki, tmp_path, clean):
    up = raw(close_delimited(b"the whole body", clean),
             ssl_context=server_ssl_context(pki.cert, pki.key))
    gw = fetch_gw(gateway, tmp_path)
    res = fetch(gw, "https://127.0.0.1:%d/x" % up.port, ca_file=str(pki.ca))
    if clean:
        assert res["status"] == 200 and res["body"] == "the whole body", res
    else:
        assert res == {"err": "closed mid-response"}, res


def test_tls_close_delimited_body_cut_is_a_502_when_translated(gateway, raw, pki):
    up = raw(close_delimited(anthropic_body("claude-x", 2), False),
             ssl_context=server_ssl_context(pki.cert, pki.key))
    gw = tls_gw(gateway, up, pki)
    raw_bytes, resp = chat_raw(gw, model="claude-x")
    assert raw_bytes.startswith(b"HTTP/1.1 502 "), raw_bytes[:300]


# --- failover: nothing of a failed attempt reaches the client ----------------------


@pytest.mark.parametrize("kind", ["interim-with-body", "status-600", "reason-control",
                                  "length-and-chunked", "big-head"])
def test_malformed_answer_fails_over_to_the_next_target(gateway, raw, make_upstream, kind):
    bad = big_head(n_bytes=HEAD_MAX + 1) if kind == "big-head" else MALFORMED[kind]
    up = raw(plays(bad))
    good = make_upstream()
    providers = {"a": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-a"},
                 "b": {"kind": "openai", "base_url": good.base_url, "api_key": "sk-b"},
                 "mock": {"kind": "mock"}}
    gw = gateway(providers=providers, models={"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a"}, {"provider": "b", "model": "m-b"}]}},
        expect_errors=True)
    raw_bytes, resp = chat_raw(gw, model="pool")
    assert resp is not None and resp.status == 200 and resp.complete, raw_bytes[:400]
    assert raw_bytes.startswith(b"HTTP/1.1 200 OK\r\n")
    assert resp.body == chat_completion_body("m-b")
    assert resp.header("x-aigw-provider") == "b" and resp.header("x-aigw-attempts") == "2"
    assert len(up.request_list()) == 1


# --- targets: nothing is truncated -------------------------------------------------


def test_target_with_a_host_too_long_is_refused(tmp_path):
    host = "h" * 300 + ".example"
    conf = tmp_path / "long-host.lua"
    conf.write_text(harness.render_config({
        "listen": "127.0.0.1:%d" % harness.free_port(), "admin_listen": False, "workers": 1,
        "plugins": ["key-auth"],
        "providers": {"openai": {"kind": "openai", "base_url": "http://%s/v1" % host,
                                 "api_key": "sk"}}}))
    out = harness.run_cli(["check", str(conf)])
    assert out.returncode != 0, out
    assert "host longer than 255 bytes" in out.stderr + out.stdout, out


def test_a_long_ca_path_keeps_verified_and_unverified_pools_apart(gateway, raw, pki, tmp_path):
    # A CA path long enough to overflow the former fixed-size pool key, which
    # then lost the verify flag: a connection made without verification was
    # handed to the verifying target.
    d = tmp_path
    for i in range(8):
        d = d / (("d%d" % i) * 60)
    d.mkdir(parents=True)
    ca = d / "ca.pem"
    ca.write_bytes(pki.ca.read_bytes())
    assert len(str(ca)) > 700
    up = raw(plays(CHAT_OK), ssl_context=server_ssl_context(pki.wrong_cert, pki.wrong_key))
    providers = {"loose": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-l",
                           "ca_file": str(ca), "tls_verify": False},
                 "strict": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-s",
                            "ca_file": str(ca)},
                 "mock": {"kind": "mock"}}
    gw = gateway(providers=providers, expect_errors=True)
    _, resp = chat_raw(gw, model="loose/gpt-x")
    assert resp is not None and resp.status == 200, resp
    _, resp = chat_raw(gw, model="strict/gpt-x")
    assert resp is not None and resp.status == 502, resp
    assert "certificate" in json.loads(resp.body)["error"]["message"], resp.body
    assert len(up.request_list()) == 1, "the verifying target never sent on the loose connection"
