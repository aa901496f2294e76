"""Proxying to an OpenAI-compatible upstream over plain HTTP: byte-for-byte
bodies, streaming in real time, headers, credentials, connection reuse, upstream
failures, client disconnects, and 1,000 concurrent clients."""
import asyncio
import json
import threading

import pytest

import httpc
from harness import Elapsed, free_port, json_error
from mock_upstream import big_body, chat_completion_body, sse_events

CT_JSON = ("Content-Type", "application/json")
PATH = "/v1/chat/completions"

# Unusual but valid JSON: spacing, escapes, raw UTF-8, a number format a
# re-encoder would change. The upstream must see exactly these bytes.
ODD_BODY = ('{ "model" : "gpt-test",\n  "messages":[{"role":"user","content":"caf\u00e9 \\u00e9 '
            '\U0001f600 \\"q\\""}],  "temperature": 1.50, "x_extra": [1e2, null, {}] }').encode()


def chat_request(model="gpt-test", behavior=None, stream=False, headers=(), body=None, key=None):
    hdrs = [CT_JSON]
    if behavior:
        hdrs.append(("x-mock-behavior", behavior))
    if key:
        hdrs.append(("x-mock-key", key))
    hdrs += list(headers)
    return httpc.build_request("POST", PATH, hdrs, body or httpc.chat_body(model, "hi", stream))


def proxied(gw, behavior=None, stream=False, headers=(), body=None, timeout=10):
    with gw.connect() as c:
        c.send(chat_request(behavior=behavior, stream=stream, headers=headers, body=body))
        return c.read_response(timeout=timeout)


# ---------------------------------------------------------------------------
# Pass-through


def test_json_byte_for_byte(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, body=ODD_BODY)
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.body == ODD_BODY
    assert r.body == rec.sent_body == chat_completion_body("gpt-test")
    assert r.header("content-type") == "application/json"
    assert rec.header("host") == "127.0.0.1:%d" % upstream.port


def test_chunked_upstream_response_byte_for_byte(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, behavior="chunked-json")
    assert r.status == 200 and r.body == chat_completion_body("gpt-test")


def test_large_bodies_byte_for_byte(gateway, upstream):
    gw = gateway(upstream=upstream)
    pad = "".join(chr(0x20 + i % 90) for i in range(1024 * 1024)).replace('"', "'").replace("\\", "/")
    body = json.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": pad}]}).encode()
    r = proxied(gw, behavior="big-body=5000000", body=body, timeout=30)
    assert r.status == 200
    assert upstream.last_request().body == body
    assert r.body == big_body(5000000)


def test_chunked_client_body_reaches_upstream_intact(gateway, upstream):
    gw = gateway(upstream=upstream)
    with gw.connect() as c:
        r = c.request("POST", PATH, [CT_JSON, ("Transfer-Encoding", "chunked")],
                      httpc.chunked([ODD_BODY[:10], ODD_BODY[10:50], ODD_BODY[50:]]))
    assert r.status == 200, r
    assert upstream.last_request().body == ODD_BODY


def test_sse_stream_byte_for_byte(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, behavior="stream", stream=True)
    assert r.status == 200, r
    assert r.header("content-type") == "text/event-stream"
    assert r.body == b"".join(sse_events("gpt-test"))
    assert r.body.endswith(b"data: [DONE]\n\n")
    assert r.framing in ("chunked", "close")


def test_first_event_arrives_while_upstream_still_streams(gateway, upstream):
    gw = gateway(upstream=upstream)
    with gw.connect() as c:
        c.send(chat_request(behavior="hold", key="rt", stream=True))
        head = c.read_head(timeout=10)
        assert head.status == 200
        body = c.iter_body(head, timeout=15)
        got = b""
        while b"\n\n" not in got:
            got += next(body)        # would time out if the gateway buffered the stream
        assert got == sse_events("gpt-test")[0]
        assert upstream.wait_held("rt", 1)
        assert not upstream.last_request().completed
        upstream.release("rt")
        got += b"".join(body)
    assert got == b"".join(sse_events("gpt-test"))


def test_custom_route(gateway, upstream):
    gw = gateway(upstream=upstream, routes=[{"path": "/stream/v1/chat/completions",
                                             "provider": "openai",
                                             "endpoint": "chat/completions"}])
    r = gw.request("POST", "/stream/v1/chat/completions", [CT_JSON], ODD_BODY)
    assert r.status == 200, r
    assert upstream.last_request().path == "/v1/chat/completions"
    assert upstream.last_request().body == ODD_BODY


def test_upstream_error_status_relayed(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, behavior="status=429")
    assert r.status == 429, r
    assert r.header("retry-after") == "7"
    # Relayed byte for byte, or re-shaped into the envelope (DESIGN.md): either
    # way the provider's message is kept.
    err = json_error(r)["error"]
    assert "mock upstream error 429" in err["message"]
    assert err.get("request_id") in (None, r.request_id)


# ---------------------------------------------------------------------------
# Headers and credentials


def test_request_id_forwarded_upstream(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, headers=[("x-request-id", "rid-from-client-42")])
    assert r.request_id == "rid-from-client-42"
    assert upstream.last_request().header_all("x-request-id") == ["rid-from-client-42"]
    r = proxied(gw)
    assert r.request_id
    assert upstream.last_request().header_all("x-request-id") == [r.request_id]


def test_hop_by_hop_request_headers_removed(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, headers=[
        ("Connection", "keep-alive, X-Hop-Client"),
        ("X-Hop-Client", "must-not-pass"),
        ("Keep-Alive", "timeout=9"),
        ("TE", "trailers"),
        ("Trailer", "X-Client-Trailer"),
        ("Upgrade", "websocket"),
        ("Proxy-Authorization", "Basic cHJveHk6cHc="),
        ("Proxy-Connection", "keep-alive"),
        ("X-End-To-End", "passes"),
        ("OpenAI-Organization", "org-test"),
        ("User-Agent", "aigw-integration/1"),
    ])
    assert r.status == 200, r
    rec = upstream.last_request()
    for name in ("x-hop-client", "keep-alive", "te", "trailer", "upgrade",
                 "proxy-authorization", "proxy-connection"):
        assert not rec.has_header(name), "%s was forwarded upstream: %r" % (name, rec.headers)
    conn = ",".join(rec.header_all("connection")).lower()
    assert "x-hop-client" not in conn
    assert rec.header("x-end-to-end") == "passes"
    assert rec.header("openai-organization") == "org-test"
    assert rec.header("user-agent") == "aigw-integration/1"
    assert rec.header_all("host") == ["127.0.0.1:%d" % upstream.port]
    assert len(rec.header_all("content-length")) + len(rec.header_all("transfer-encoding")) == 1


def test_hop_by_hop_response_headers_removed(gateway, upstream):
    gw = gateway(upstream=upstream)
    with gw.connect() as c:
        c.send(chat_request(behavior="hop-headers"))
        r = c.read_response()
        assert r.status == 200, r
        for name in ("x-hop-server", "proxy-authenticate", "upgrade", "trailer"):
            assert not r.has_header(name), "%s reached the client: %r" % (name, r.headers)
        assert "x-hop-server" not in r.connection_tokens()
        assert "max=7" not in ",".join(r.header_all("keep-alive"))
        assert r.header("x-end-to-end-response") == "kept"
        assert r.body == chat_completion_body("gpt-test")
        # the client connection is still usable
        if not r.will_close():
            assert c.request("GET", "/health").status == 200


@pytest.mark.parametrize("cred", [("Authorization", "Bearer gw-key-1"), ("x-api-key", "gw-key-1")])
def test_gateway_key_not_forwarded_provider_key_injected(gateway, upstream, cred):
    gw = gateway(upstream=upstream, api_keys=["gw-key-1"],
                 providers={"openai": {"api_key": "sk-upstream-only"}})
    r = proxied(gw, headers=[cred])
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.header_all("authorization") == ["Bearer sk-upstream-only"]
    assert not rec.has_header("x-api-key")
    assert b"gw-key-1" not in rec.raw_head


# ---------------------------------------------------------------------------
# Upstream connections


def test_keepalive_reuse_upstream(gateway, upstream):
    gw = gateway(upstream=upstream, workers=1)
    for i in range(20):
        r = proxied(gw, stream=(i % 2 == 1), behavior="stream" if i % 2 else None)
        assert r.status == 200, r
    assert len(upstream.request_list()) == 20
    assert upstream.accepted == 1, "20 sequential requests used %d upstream connections" \
        % upstream.accepted


def test_upstream_connection_close_is_honoured(gateway, upstream):
    gw = gateway(upstream=upstream)
    r = proxied(gw, behavior="json,connection-close")
    assert r.status == 200 and r.body == chat_completion_body("gpt-test")
    assert proxied(gw).status == 200
    assert upstream.accepted == 2


def test_upstream_closed_idle_connection_is_not_reused(gateway, upstream):
    """The upstream drops an idle keep-alive connection without notice; the next
    request must still succeed (on a fresh connection)."""
    gw = gateway(upstream=upstream)
    assert proxied(gw, behavior="json,close-after=0").status == 200
    first = upstream.last_request()
    assert upstream.wait_conn_closed(first.conn_id, 5)
    r = proxied(gw)
    assert r.status == 200, r
    assert upstream.last_request().conn_id != first.conn_id


def test_upstream_pool_keeps_at_most_max_idle(gateway, upstream):
    gw = gateway(upstream=upstream, providers={"openai": {"keepalive": {"max_idle": 2,
                                                                        "idle_timeout": 60}}})
    results = []

    def one():
        results.append(proxied(gw, behavior="delay-headers=0.5").status)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [200] * 6
    assert upstream.accepted == 6
    upstream.wait_closed_count(4, timeout=5)
    assert upstream.open_conns == 2


# ---------------------------------------------------------------------------
# Upstream failures


def assert_502(r):
    assert r.status == 502, r
    err = json_error(r)["error"]
    assert err["request_id"] == r.request_id and err["message"] and err["type"]


def test_upstream_refused_502(gateway):
    gw = gateway(providers={"openai": {"base_url": "http://127.0.0.1:%d/v1" % free_port()}},
                 expect_errors=True)
    with Elapsed() as t:
        assert_502(gw.chat("gpt-test", "x"))
    assert t.seconds < 3


@pytest.mark.parametrize("behavior", ["bad-response", "close", "close,delay-headers=0.1"])
def test_bad_or_missing_upstream_response_502(gateway, upstream, behavior):
    gw = gateway(upstream=upstream, expect_errors=True)
    assert_502(proxied(gw, behavior=behavior))
    assert proxied(gw).status == 200


@pytest.mark.parametrize("behavior", ["close-mid-stream", "reset-mid-stream"])
def test_upstream_closes_mid_stream(gateway, upstream, behavior):
    gw = gateway(upstream=upstream, expect_errors=True)
    with gw.connect() as c:
        c.send(chat_request(behavior=behavior, stream=True))
        head = c.read_head(timeout=10)
        assert head.status == 200
        got = b""
        try:
            for piece in c.iter_body(head, timeout=10):
                got += piece
        except httpc.Closed:
            pass
        # The events that arrived, then an error event in OpenAI's in-stream
        # form (the SDKs raise on it), never a [DONE] that would make the
        # truncated answer look whole.
        first = b"".join(sse_events("gpt-test")[:2])
        assert got.startswith(first), got
        tail = got[len(first):]
        assert tail.startswith(b'data: {"error":') and tail.endswith(b"\n\n"), tail
        assert b"upstream closed the connection" in tail
        assert b"[DONE]" not in got
        assert head.complete, "the stream ends cleanly after its error event"
    r = proxied(gw, behavior="stream", stream=True)
    assert r.status == 200 and r.body == b"".join(sse_events("gpt-test"))


def test_client_disconnect_mid_stream_cancels_upstream(gateway, upstream):
    gw = gateway(upstream=upstream)
    c = gw.connect()
    c.send(chat_request(behavior="hold", key="gone", stream=True))
    head = c.read_head(timeout=10)
    next(c.iter_body(head, timeout=10))
    assert upstream.wait_held("gone", 5)
    conn_id = upstream.last_request().conn_id
    c.close()
    assert upstream.wait_conn_closed(conn_id, 5), "upstream request outlived its client"
    assert proxied(gw).status == 200


def test_client_disconnect_before_headers_cancels_upstream(gateway, upstream):
    gw = gateway(upstream=upstream)
    c = gw.connect()
    c.send(chat_request(behavior="delay-headers=30"))
    rec = upstream.wait_requests(1, 10)[0]
    c.close()
    assert upstream.wait_conn_closed(rec.conn_id, 5), "upstream request outlived its client"


# ---------------------------------------------------------------------------
# Load


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = {}
    for line in head[:-4].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.read()
    return status, body


async def _concurrent(port, n, req):
    conns = await asyncio.gather(*[asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
                                   for _ in range(n)])
    for _, w in conns:
        w.write(req)
    results = await asyncio.gather(*[asyncio.wait_for(_read_response(r), 60) for r, _ in conns],
                                   return_exceptions=True)
    for _, w in conns:
        w.close()
    return results


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("model", ["gpt-test", "echo"])
def test_1000_concurrent_connections(gateway, upstream, model):
    gw = gateway(upstream=upstream, workers=2)
    req = httpc.build_request("POST", PATH, [CT_JSON], httpc.chat_body(model, "concurrent"))
    results = asyncio.run(asyncio.wait_for(_concurrent(gw.port, 1000, req), 180))
    failures = [x for x in results if isinstance(x, BaseException) or x[0] != 200]
    assert not failures, "%d of 1000 failed, e.g. %r" % (len(failures), failures[:3])
    if model == "echo":
        assert all(json.loads(b)["choices"][0]["message"]["content"] == "concurrent"
                   for _, b in results)
    else:
        assert all(b == chat_completion_body(model) for _, b in results)
        assert len(upstream.request_list()) == 1000
    assert gw.request("GET", "/health").status == 200
