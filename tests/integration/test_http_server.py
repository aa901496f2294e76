"""The HTTP/1.1 server: keep-alive, pipelining, chunked bodies, Expect, limits,
malformed requests, error envelopes and x-request-id."""
import threading

import pytest

import httpc

CT_JSON = ("Content-Type", "application/json")


def assert_openai_error(r, status, code=None):
    assert r.status == status, r
    rid = r.request_id
    assert rid, "every response carries x-request-id"
    doc = r.json()
    err = doc["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert "code" in err and "param" in err and err["param"] is None
    assert err["request_id"] == rid
    if code is not None:
        assert err["code"] == code
    return err


def assert_anthropic_error(r, status):
    assert r.status == status, r
    doc = r.json()
    assert doc["type"] == "error"
    assert doc["error"]["type"] and doc["error"]["message"]
    assert doc["request_id"] == r.request_id


def echo_req(content, **kw):
    return httpc.build_request("POST", "/v1/chat/completions", [CT_JSON],
                               httpc.chat_body("echo", content), **kw)


def echo_content(r):
    assert r.status == 200, r
    return r.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------------
# Basics


def test_health(gateway):
    gw = gateway()
    r = gw.request("GET", "/health")
    assert r.status == 200
    assert r.json() == {"status": "ok"}
    assert r.header("content-type", "").startswith("application/json")
    assert r.request_id


def test_keep_alive(gateway):
    gw = gateway()
    with gw.connect() as c:
        for i in range(5):
            r = c.request("GET", "/health")
            assert r.status == 200 and not r.will_close()
            c.send(echo_req("ka-%d" % i))
            assert echo_content(c.read_response()) == "ka-%d" % i
        assert c.is_open(0.2)


def test_pipelining_answers_in_order(gateway):
    gw = gateway()
    with gw.connect() as c:
        c.send(echo_req("one") + httpc.build_request("GET", "/health") + echo_req("two")
               + httpc.build_request("GET", "/no/such/path") + echo_req("three"))
        assert echo_content(c.read_response()) == "one"
        assert c.read_response().json() == {"status": "ok"}
        assert echo_content(c.read_response()) == "two"
        assert c.read_response().status == 404
        assert echo_content(c.read_response()) == "three"


def test_pipelining_slow_first_request_keeps_order(gateway, upstream):
    """A slow proxied request followed by a fast echo: answers still in order."""
    gw = gateway(upstream=upstream)
    slow = httpc.build_request("POST", "/v1/chat/completions",
                               [CT_JSON, ("x-mock-behavior", "delay-headers=0.5")],
                               httpc.chat_body("gpt-test", "slow"))
    with gw.connect() as c:
        c.send(slow + echo_req("fast"))
        first = c.read_response()
        assert first.status == 200 and first.json()["object"] == "chat.completion"
        assert first.json()["model"] == "gpt-test"
        assert echo_content(c.read_response()) == "fast"


def test_chunked_request_body(gateway):
    gw = gateway()
    body = httpc.chat_body("echo", "chunked body \u00e9")
    with gw.connect() as c:
        r = c.request("POST", "/v1/chat/completions",
                      [CT_JSON, ("Transfer-Encoding", "chunked")],
                      httpc.chunked([body[:3], body[3:20], body[20:]]))
        assert echo_content(r) == "chunked body \u00e9"
        # extensions and trailers are legal
        raw = (b"%x;ext=1\r\n" % len(body)) + body + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
        r = c.request("POST", "/v1/chat/completions",
                      [CT_JSON, ("Transfer-Encoding", "chunked")], raw)
        assert echo_content(r) == "chunked body \u00e9"


def test_expect_100_continue(gateway):
    gw = gateway()
    body = httpc.chat_body("echo", "after continue")
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("Expect", "100-continue"),
                                    ("Content-Length", str(len(body)))], None))
        interim = c.read_head(timeout=5, skip_1xx=False)
        assert interim.status == 100, interim
        c.send(body)
        assert echo_content(c.read_response()) == "after continue"


def test_expect_100_continue_with_too_large_body_gets_413_at_once(gateway):
    gw = gateway(server={"max_body_size": "1k"})
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("Expect", "100-continue"),
                                    ("Content-Length", "5000")], None))
        r = c.read_head(timeout=5, skip_1xx=False)
        assert r.status == 413, r
        c.read_body(r)
        assert_openai_error(r, 413)


def test_http10_without_keep_alive_closes(gateway):
    gw = gateway()
    with gw.connect() as c:
        c.send(b"GET /health HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json() == {"status": "ok"}
        assert c.wait_closed(3)


def test_connection_close_closes(gateway):
    gw = gateway()
    with gw.connect() as c:
        c.send(httpc.build_request("GET", "/health", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200
        assert "close" in r.connection_tokens()
        assert c.wait_closed(3)


# ---------------------------------------------------------------------------
# Errors and x-request-id


def test_404_unknown_path(gateway):
    gw = gateway()
    assert_openai_error(gw.request("GET", "/no/such/thing"), 404, code="not_found")
    assert_openai_error(gw.request("POST", "/v1/nope", [CT_JSON], b"{}"), 404, code="not_found")


def test_404_on_messages_like_path_is_anthropic_shaped(gateway):
    gw = gateway()
    assert_anthropic_error(gw.request("POST", "/v9/unknown/messages", [CT_JSON], b"{}"), 404)


def test_405_wrong_method(gateway):
    gw = gateway()
    r = gw.request("GET", "/v1/chat/completions")
    assert_openai_error(r, 405)
    assert "POST" in r.header("allow", ""), "a 405 must carry Allow (RFC 9110)"
    r = gw.request("DELETE", "/health")
    assert r.status == 405, r
    assert "GET" in r.header("allow", "")


def test_keep_alive_survives_404(gateway):
    gw = gateway()
    with gw.connect() as c:
        assert c.request("GET", "/missing").status == 404
        assert c.request("GET", "/health").status == 200


def test_request_id_echoed(gateway):
    gw = gateway()
    rid = "client-rid-0123456789"
    assert gw.request("GET", "/health", [("x-request-id", rid)]).request_id == rid
    r = gw.chat("echo", "x", headers=[("X-Request-Id", rid)])
    assert r.status == 200 and r.request_id == rid
    r = gw.request("GET", "/nope", [("x-request-id", rid)])
    assert r.request_id == rid and r.json()["error"]["request_id"] == rid


def test_request_id_generated(gateway):
    gw = gateway()
    ids = {gw.request("GET", "/health").request_id for _ in range(5)}
    ids.add(gw.chat("echo", "x").request_id)
    assert "" not in ids and None not in ids
    assert len(ids) == 6, "generated request ids must differ: %r" % ids


# ---------------------------------------------------------------------------
# Limits


def body_of_size(n):
    doc = httpc.chat_body("echo", "pad")
    assert len(doc) <= n
    return doc[:-1] + b" " * (n - len(doc)) + b"}"


def test_413_body_over_limit(gateway):
    gw = gateway(server={"max_body_size": "1k"})
    assert echo_content(gw.request("POST", "/v1/chat/completions", [CT_JSON],
                                   body_of_size(1024))) == "pad"
    assert_openai_error(gw.request("POST", "/v1/chat/completions", [CT_JSON],
                                   body_of_size(1025)), 413)


def test_413_chunked_body_over_limit(gateway):
    gw = gateway(server={"max_body_size": 2048})
    body = body_of_size(3000)
    r = gw.request("POST", "/v1/chat/completions", [CT_JSON, ("Transfer-Encoding", "chunked")],
                   httpc.chunked([body[i:i + 500] for i in range(0, len(body), 500)]))
    assert_openai_error(r, 413)


def test_413_on_messages_path_is_anthropic_shaped(gateway):
    gw = gateway(server={"max_body_size": "1k"})
    assert_anthropic_error(gw.request("POST", "/v1/messages", [CT_JSON], b"{" + b" " * 2000 + b"}"),
                           413)


def test_431_headers_over_limit(gateway):
    gw = gateway(server={"max_header_size": "1k"})
    assert gw.request("GET", "/health", [("X-Small", "a" * 300)]).status == 200
    r = gw.request("GET", "/health", [("X-Big", "a" * 2000)])
    assert r.status == 431, r
    assert r.request_id
    r = gw.request("GET", "/v1/models", [("X-H%d" % i, "v" * 60) for i in range(40)])
    assert_openai_error(r, 431)


# ---------------------------------------------------------------------------
# Malformed requests, as data: (id, raw bytes, acceptable statuses)

POST_CC = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"

MALFORMED = [
    ("garbage", b"GARBAGE\r\n\r\n", {400}),
    ("no-version", b"GET /health\r\n\r\n", {400, 505}),
    ("bad-version", b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", {400, 505}),
    ("cl-and-te", POST_CC + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     {400}),
    ("two-different-cl", POST_CC + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}}", {400}),
    ("cl-list", POST_CC + b"Content-Length: 2, 3\r\n\r\n{}}", {400}),
    ("negative-cl", POST_CC + b"Content-Length: -1\r\n\r\n", {400}),
    ("non-numeric-cl", POST_CC + b"Content-Length: 2x\r\n\r\n{}", {400}),
    ("te-not-chunked-last", POST_CC + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", {400, 501}),
    ("bad-chunk-size", POST_CC + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", {400}),
    ("chunk-missing-crlf", POST_CC + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", {400}),
    ("obs-fold", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", {400}),
    ("bare-cr-in-value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n", {400}),
    ("bare-cr-line-end", b"GET /health HTTP/1.1\rHost: x\r\n\r\n", {400}),
    ("space-before-colon", b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n", {400}),
    ("nul-in-value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", {400}),
    ("bad-header-name", b"GET /health HTTP/1.1\r\nHost: x\r\nX(Bad): 1\r\n\r\n", {400}),
    ("missing-host-http11", b"GET /health HTTP/1.1\r\nX-A: 1\r\n\r\n", {400}),
    ("space-in-target", b"GET /hea lth HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
]


@pytest.mark.parametrize("raw,statuses", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_request_400_and_close(gateway, raw, statuses):
    gw = gateway()
    with gw.connect() as c:
        c.send(raw)
        # A pipelined valid request behind the bad one must not be answered.
        c.send(httpc.build_request("GET", "/health"))
        r = c.read_response(timeout=5)
        assert r.status in statuses, r
        assert r.request_id, "every response carries x-request-id"
        if r.body and r.header("content-type", "").startswith("application/json"):
            assert r.json()["error"]["request_id"] == r.request_id
        rest = c.read_until_closed(timeout=5)
        assert b"HTTP/1.1 200" not in rest, "answered a request after a malformed one"
    # the server is still fine
    assert gw.request("GET", "/health").status == 200


def test_many_connections_with_bad_requests_do_not_hurt(gateway):
    gw = gateway()
    errors = []
    cases = [c[1] for c in MALFORMED if c[0] in ("garbage", "cl-and-te", "two-different-cl",
                                                  "bad-chunk-size", "bare-cr-in-value")]

    def bad(i):
        try:
            with gw.connect() as c:
                c.send(cases[i % len(cases)])
                c.read_until_closed(timeout=10)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=bad, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert gw.request("GET", "/health").status == 200
