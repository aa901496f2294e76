"""Self-tests of the suite's own tools: the mock upstream, the raw client, the
Lua config renderer, the PKI and the blackhole listener. They need no aigw
binary, so they tell a broken harness apart from a broken gateway."""
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

import harness
import httpc
from mock_upstream import (MockUpstream, big_body, chat_completion_body, parse_behavior,
                           sse_events)


def post(mock, behavior=None, body=None, key=None):
    hdrs = {"Content-Type": "application/json"}
    if behavior:
        hdrs["x-mock-behavior"] = behavior
    if key:
        hdrs["x-mock-key"] = key
    c = httpc.Conn.open(mock.port)
    c.send(httpc.build_request("POST", "/v1/chat/completions", hdrs,
                               body or httpc.chat_body("gpt-test")))
    return c


def test_mock_json_is_byte_exact_and_keep_alive(upstream):
    body = httpc.chat_body("gpt-test", "hi")
    req = urllib.request.Request(upstream.base_url + "/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
        assert r.read() == chat_completion_body("gpt-test")
    rec = upstream.last_request()
    assert (rec.method, rec.path, rec.body) == ("POST", "/v1/chat/completions", body)

    with httpc.Conn.open(upstream.port) as c:
        for _ in range(3):
            r = c.request("POST", "/v1/chat/completions", None, body)
            assert r.status == 200 and r.framing == "length"
    assert upstream.accepted == 2


def test_mock_stream_one_event_per_chunk(upstream):
    with post(upstream, "stream") as c:
        r = c.read_response(5)
    assert r.header("content-type") == "text/event-stream"
    assert r.chunks == sse_events("gpt-test")
    assert r.body.endswith(b"data: [DONE]\n\n")
    assert b'"usage"' not in r.body       # only asked for (or `usage-always`)
    assert upstream.last_request().sent_body == r.body
    with post(upstream, "stream,usage-always") as c:
        r = c.read_response(5)
    assert r.chunks == sse_events("gpt-test", usage_always=True)
    assert b'"usage"' in r.chunks[-2]


def test_mock_hold_waits_for_release(upstream):
    with post(upstream, "hold", key="h") as c:
        head = c.read_head(5)
        it = c.iter_body(head, 10)
        first = next(it)
        assert upstream.wait_held("h", 5)
        assert upstream.last_request().completed is False
        upstream.release("h")
        rest = b"".join(it)
    assert first + rest == b"".join(sse_events("gpt-test"))


def test_mock_sees_client_close_while_holding(upstream):
    c = post(upstream, "hold", key="gone")
    c.read_head(5)
    assert upstream.wait_held("gone", 5)
    conn_id = upstream.last_request().conn_id
    c.close()
    assert upstream.wait_conn_closed(conn_id, 5)


def test_mock_sees_client_close_while_delaying(upstream):
    c = post(upstream, "delay-headers=30")
    upstream.wait_requests(1, 5)
    c.close()
    assert upstream.wait_conn_closed(upstream.last_request().conn_id, 5)


@pytest.mark.parametrize("behavior", ["close-mid-stream", "reset-mid-stream"])
def test_mock_mid_stream_close(upstream, behavior):
    with post(upstream, behavior) as c:
        head = c.read_head(5)
        got = []
        with pytest.raises(httpc.Closed):
            for piece in c.iter_body(head, 5):
                got.append(piece)
    assert got == sse_events("gpt-test")[:2]


def test_mock_misc_behaviors(upstream):
    with post(upstream, "close") as c:
        assert c.read_until_closed(5) == b""
    with post(upstream, "bad-response") as c:
        assert not c.read_until_closed(5).startswith(b"HTTP/")
    with post(upstream, "big-body=100000") as c:
        r = c.read_response(5)
        assert r.body == big_body(100000) and len(r.body) == 100000
    with post(upstream, "status=429") as c:
        r = c.read_response(5)
        assert r.status == 429 and r.header("retry-after") == "7"
    with post(upstream, "chunked-json") as c:
        r = c.read_response(5)
        assert r.framing == "chunked" and r.body == chat_completion_body("gpt-test")
    with post(upstream, "json,connection-close") as c:
        r = c.read_response(5)
        assert "close" in r.connection_tokens()
        assert c.wait_closed(5)
    with post(upstream, "json,close-after=0.1") as c:
        assert c.read_response(5).status == 200
        assert c.wait_closed(5)
    with post(upstream, "hop-headers") as c:
        r = c.read_response(5)
        assert r.header("x-hop-server") == "secret"
    with post(upstream, "delay-headers=0.3") as c:
        t0 = time.monotonic()
        assert c.read_response(5).status == 200
        assert time.monotonic() - t0 >= 0.25


def test_mock_big_stream_stops_when_reader_goes(upstream):
    c = httpc.Conn.open(upstream.port, rcvbuf=4096)
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               {"x-mock-behavior": "big-stream=268435456"}, b"{}"))
    upstream.wait_requests(1, 5)
    c.read_head(5)
    c.close()
    assert upstream.wait_conn_closed(upstream.last_request().conn_id, 10)
    assert upstream.last_request().sent_bytes < 268435456


def test_mock_chunked_request_body(upstream):
    body = httpc.chat_body("gpt-test")
    with httpc.Conn.open(upstream.port) as c:
        r = c.request("POST", "/v1/chat/completions", {"Transfer-Encoding": "chunked"},
                      httpc.chunked([body[:7], body[7:]]))
    assert r.status == 200
    assert upstream.last_request().body == body and upstream.last_request().chunked


def test_tls_mock_and_pki(tls_upstream, pki):
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    req = urllib.request.Request(tls_upstream.base_url + "/chat/completions",
                                 data=httpc.chat_body("gpt-test"))
    with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
        assert r.read() == chat_completion_body("gpt-test")
    # the same cert must verify by name too
    with socket.create_connection(("127.0.0.1", tls_upstream.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version()
    assert "localhost" in tls_upstream.sni_names
    # the wrong-name cert is signed by the CA but fails hostname checks
    bad = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    bad.load_cert_chain(str(pki.wrong_cert), str(pki.wrong_key))
    with MockUpstream(ssl_context=bad) as m:
        with socket.create_connection(("127.0.0.1", m.port), timeout=5) as s:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(s, server_hostname="127.0.0.1")


def test_blackhole_listener_hangs_connect():
    b = harness.BlackholeListener()
    try:
        s = socket.socket()
        s.settimeout(1.0)
        with pytest.raises(socket.timeout):
            s.connect(("127.0.0.1", b.port))
        s.close()
    finally:
        b.close()


def test_parse_behavior():
    assert parse_behavior("") == ("json", None, {})
    assert parse_behavior("stream, delay-headers=2") == ("stream", None, {"delay-headers": "2"})
    assert parse_behavior("big-body=10") == ("big-body", "10", {})


def test_lua_rendering():
    cfg = {"listen": "127.0.0.1:1", "admin_listen": False, "api_keys": ["a\"b", "c\\d"],
           "server": {"max_body_size": "1k", "drain_timeout": 0.5}, "plugins": [],
           "routes": [{"path": "/x", "provider": "openai"}], "end": 1, "not-ident": True,
           "skip": None}
    src = harness.render_config(cfg)
    assert 'api_keys = {\n    "a\\"b",\n    "c\\\\d",\n  }' in src
    assert '["end"] = 1' in src and '["not-ident"] = true' in src
    assert "skip" not in src and "plugins = {}" in src and "drain_timeout = 0.5" in src
    lua = shutil.which("luajit") or shutil.which("lua5.1") or shutil.which("lua")
    if lua:
        r = subprocess.run([lua, "-e", "local f = assert(loadstring or load)(io.read('*a'))"
                            " local t = f() assert(t.server.drain_timeout == 0.5)"
                            " assert(t.api_keys[1] == 'a\"b') assert(t['end'] == 1)"],
                           input=src.encode(), capture_output=True, timeout=10)
        assert r.returncode == 0, r.stderr


def test_httpc_parse_sse():
    body = b"".join(sse_events("m"))
    datas = httpc.parse_sse(body)
    assert datas[-1] == b"[DONE]" and len(datas) == len(sse_events("m")) - 1
