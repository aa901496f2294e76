"""Client-side timeouts (header, body, keep-alive, send) and upstream ones
(connect, read, total, pooled-connection idle). Bounds are generous on the high
side (slow CI, sanitizer builds) and keep a floor so a test cannot pass by the
gateway closing at once."""
import time

import pytest

import httpc
from harness import BlackholeListener, Elapsed

pytestmark = pytest.mark.slow

CT_JSON = ("Content-Type", "application/json")


def closed_within(c, low, high):
    with Elapsed() as t:
        data = c.read_until_closed(timeout=high + 2)
    assert low <= t.seconds <= high, "closed after %.2fs, expected %.1f..%.1fs" % (t.seconds, low, high)
    return data


def assert_408_or_nothing(data):
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]


# ---------------------------------------------------------------------------
# Client side


def test_client_header_timeout_partial_headers(gateway):
    gw = gateway(server={"client_header_timeout": 1, "keepalive_timeout": 30})
    with gw.connect() as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        assert_408_or_nothing(closed_within(c, 0.7, 4))
    assert gw.request("GET", "/health").status == 200


def test_client_header_timeout_silent_connection(gateway):
    gw = gateway(server={"client_header_timeout": 1, "keepalive_timeout": 30})
    with gw.connect() as c:
        assert_408_or_nothing(closed_within(c, 0.7, 4))


def test_client_header_timeout_is_not_reset_by_trickling(gateway):
    """Slowloris: one byte every 0.2s must not keep a request alive past the
    header timeout (it bounds the whole head, not each read)."""
    gw = gateway(server={"client_header_timeout": 1, "keepalive_timeout": 30})
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    with gw.connect() as c, Elapsed() as t:
        closed = False
        for b in head:
            try:
                c.send(bytes([b]))
            except OSError:
                closed = True
                break
            if not c.is_open(0.2):     # paces the trickle and notices a close
                closed = True
                break
            if t.now() > 6:
                break
        assert closed or c.wait_closed(1), "still open after %.1fs of trickling" % t.now()
        assert t.now() <= 4, "closed only after %.2fs" % t.now()


def test_client_body_timeout(gateway):
    gw = gateway(server={"client_body_timeout": 1, "client_header_timeout": 30})
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("Content-Length", "100")], None) + b'{"model":')
        assert_408_or_nothing(closed_within(c, 0.7, 4))


def test_client_body_timeout_chunked(gateway):
    gw = gateway(server={"client_body_timeout": 1, "client_header_timeout": 30})
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("Transfer-Encoding", "chunked")], None)
               + b"5\r\n{\"mod\r\n")
        assert_408_or_nothing(closed_within(c, 0.7, 4))


def test_keepalive_timeout(gateway):
    gw = gateway(server={"keepalive_timeout": 1, "client_header_timeout": 30})
    with gw.connect() as c:
        assert c.request("GET", "/health").status == 200
        assert closed_within(c, 0.7, 4) == b""


def test_send_timeout_cuts_off_a_client_that_never_reads(gateway, upstream):
    """A client that stops reading a large stream is cut off after send_timeout,
    and the gateway lets go of the upstream too."""
    gw = gateway(upstream=upstream, server={"send_timeout": 1})
    total = 256 * 1024 * 1024
    c = gw.connect(rcvbuf=4096)
    try:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("x-mock-behavior", "big-stream=%d" % total)],
                                   httpc.chat_body("gpt-test", "flood", stream=True)))
        rec = upstream.wait_requests(1, 10)[0]
        assert upstream.wait_conn_closed(rec.conn_id, 15), \
            "the upstream stream was not cancelled after the client stopped reading"
        got = len(c.read_until_closed(timeout=15))
        assert got < total
        assert rec.sent_bytes < total
    finally:
        c.close()
    assert gw.request("GET", "/health").status == 200


# ---------------------------------------------------------------------------
# Upstream side


def upstream_cfg(base_url, **timeouts):
    t = {"connect": 5, "read": 30, "total": 60}
    t.update(timeouts)
    return {"openai": {"base_url": base_url, "timeouts": t}}


def assert_504(r):
    assert r.status == 504, r
    err = r.json()["error"]
    assert err["request_id"] == r.request_id and err["message"]


def test_upstream_connect_timeout_504(gateway):
    hole = BlackholeListener()
    try:
        gw = gateway(providers=upstream_cfg("http://127.0.0.1:%d/v1" % hole.port, connect=1),
                     expect_errors=True)
        with Elapsed() as t:
            r = gw.chat("gpt-test", "x", timeout=15)
        assert_504(r)
        assert 0.7 <= t.seconds <= 4, t.seconds
    finally:
        hole.close()


def test_upstream_read_timeout_504(gateway, upstream):
    gw = gateway(upstream=upstream, providers=upstream_cfg(upstream.base_url, read=1),
                 expect_errors=True)
    with Elapsed() as t:
        r = gw.chat("gpt-test", "x", headers={"x-mock-behavior": "delay-headers=10"}, timeout=15)
    assert_504(r)
    assert 0.7 <= t.seconds <= 4, t.seconds
    rec = upstream.last_request()
    assert upstream.wait_conn_closed(rec.conn_id, 5), "timed-out upstream connection left open"


def test_upstream_total_timeout_504(gateway, upstream):
    gw = gateway(upstream=upstream, providers=upstream_cfg(upstream.base_url, read=10, total=1),
                 expect_errors=True)
    with Elapsed() as t:
        r = gw.chat("gpt-test", "x", headers={"x-mock-behavior": "delay-headers=5"}, timeout=15)
    assert_504(r)
    assert 0.7 <= t.seconds <= 3.5, t.seconds


def test_upstream_read_timeout_mid_stream_ends_the_stream(gateway, upstream):
    gw = gateway(upstream=upstream, providers=upstream_cfg(upstream.base_url, read=1),
                 expect_errors=True)
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("x-mock-behavior", "hold"), ("x-mock-key", "rt")],
                                   httpc.chat_body("gpt-test", "x", stream=True)))
        head = c.read_head(timeout=10)
        assert head.status == 200
        got = b""
        with Elapsed() as t:
            try:
                for piece in c.iter_body(head, timeout=8):
                    got += piece
            except httpc.Closed:
                pass
        # A stream cut by a timeout ends with an error event, never [DONE].
        assert b"[DONE]" not in got
        assert b'data: {"error":' in got and b"upstream read timeout" in got, got
        assert 0.5 <= t.seconds <= 4, t.seconds
    upstream.release("rt")


def test_upstream_total_timeout_mid_stream_ends_the_stream(gateway, upstream):
    gw = gateway(upstream=upstream, providers=upstream_cfg(upstream.base_url, read=10, total=1.5),
                 expect_errors=True)
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("x-mock-behavior", "slow-stream=0.5")],
                                   httpc.chat_body("gpt-test", "x", stream=True)))
        with Elapsed() as t:
            head = c.read_head(timeout=10)
            got = b""
            try:
                for piece in c.iter_body(head, timeout=10):
                    got += piece
            except httpc.Closed:
                pass
        assert b"[DONE]" not in got
        assert 1.0 <= t.seconds <= 4.5, t.seconds


def test_upstream_idle_keepalive_timeout_closes_pooled_connection(gateway, upstream):
    gw = gateway(upstream=upstream,
                 providers={"openai": {"keepalive": {"max_idle": 8, "idle_timeout": 1}}})
    assert gw.chat("gpt-test", "x").status == 200
    rec = upstream.last_request()
    start = time.monotonic()
    assert upstream.wait_conn_closed(rec.conn_id, 6), "idle pooled connection never closed"
    waited = time.monotonic() - start
    assert 0.5 <= waited <= 4, waited
