"""Regression tests: client-side framing and connection endings.

- A pipelined pair, A with a large (3 MB) response and B an oversized upload
  sent while A streams: the client gets all of A, then B's 413. Closing with
  B's body unread would make the kernel send a reset that destroys the tail of
  A still queued for the client; the gateway must half-close and linger.
- Chunked trailers are not headers: they never reach the upstream, never
  change how the request is handled, never authenticate.
- HTTP/1.0 with Transfer-Encoding (even with Connection: keep-alive) and
  transfer codings other than a lone `chunked` end the connection after the
  first response, so nothing behind them is read as a request.
- SIGTERM while a large response is still being written: the process exits
  as soon as the body has been delivered, not at the end of drain_timeout.
"""
import re
import signal
import threading
import time

import pytest

import httpc
from harness import wait_until
from mock_upstream import big_body, chat_completion_body

PATH = "/v1/chat/completions"
CT_JSON = ("Content-Type", "application/json")
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def big_request(n: int) -> bytes:
    return httpc.build_request("POST", PATH, [CT_JSON, ("x-mock-behavior", "big-body=%d" % n)],
                               httpc.chat_body("gpt-test", "big"))


# ---------------------------------------------------------------------------
# A large response, then a 413 for a pipelined oversized upload


class Uploader(threading.Thread):
    """Sends `first`, then (if `chunks`) 64 KiB pieces of body until told to
    stop, the gateway closes, or `limit` bytes went out. Uses its own socket
    object (a dup) so that its timeouts do not disturb the reader."""

    def __init__(self, conn: httpc.Conn, first: bytes, chunks: bool, limit: int):
        super().__init__(daemon=True)
        self.sock = conn.sock.dup()
        self.sock.settimeout(30)
        self.first, self.chunks, self.limit = first, chunks, limit
        self.stop = threading.Event()
        self.sent = 0
        self.error = None

    def run(self):
        piece = b"x" * 65536
        try:
            self.sock.sendall(self.first)
            while self.chunks and not self.stop.is_set() and self.sent < self.limit:
                self.sock.sendall(piece)
                self.sent += len(piece)
        except OSError as e:       # the gateway closed: expected once it is done
            self.error = e
        finally:
            self.sock.close()


@pytest.mark.parametrize("upload", ["body-streaming", "head-only"])
def test_pipelined_large_response_then_413_delivers_both(gateway, upstream, upload):
    n = 3_000_000
    gw = gateway(upstream=upstream, server={"max_body_size": "64k"})
    oversized = httpc.build_request("POST", PATH, [CT_JSON, ("Content-Length", "50000000")], None,
                                    content_length=False)
    # A small receive buffer keeps most of A queued inside the gateway's kernel
    # socket when it is done with B: exactly what a reset would throw away.
    c = gw.connect(rcvbuf=4096)
    up = Uploader(c, big_request(n) + oversized, upload == "body-streaming", 50_000_000)
    up.start()
    try:
        a = c.read_response(timeout=30)
        assert a.status == 200, a
        assert len(a.body) == n and a.body == big_body(n), \
            "A was cut after %d of %d body bytes" % (len(a.body), n)
        b = c.read_response(timeout=10)
        assert b.status == 413, b
        assert b.json()["error"]["request_id"] == b.request_id
        assert b.will_close(), b
        assert c.wait_closed(10), "the connection stayed open after the 413"
    finally:
        up.stop.set()
        up.join(35)
        c.close()
    assert not up.is_alive()
    assert len(upstream.request_list()) == 1, "the oversized request reached the upstream"
    assert gw.request("GET", "/health").status == 200


# ---------------------------------------------------------------------------
# Chunked trailers


def chunked_post(body: bytes, trailers, headers=()) -> bytes:
    return httpc.build_request("POST", PATH,
                               [CT_JSON, ("Transfer-Encoding", "chunked")] + list(headers),
                               httpc.chunked([body[:9], body[9:]], trailers=trailers))


def test_chunked_trailers_never_reach_upstream(gateway, upstream):
    gw = gateway(upstream=upstream)
    body = httpc.chat_body("gpt-test", "trailers")
    with gw.connect() as c:
        c.send(chunked_post(body, [("X-Injected", "yes")]))
        r = c.read_response(timeout=10)
        assert r.status == 200, r
        assert r.body == chat_completion_body("gpt-test")
        rec = upstream.last_request()
        assert not rec.has_header("x-injected"), "a trailer was forwarded as a header: %r" \
            % (rec.headers,)
        assert b"x-injected" not in rec.raw_head.lower()
        assert rec.body == body
        # The connection is still in step.
        assert c.request("GET", "/health").status == 200


def test_chunked_trailer_does_not_change_handling(gateway, upstream):
    """A trailer named like a request header the upstream acts on must not act."""
    gw = gateway(upstream=upstream)
    body = httpc.chat_body("gpt-test", "trailers")
    with gw.connect() as c:
        c.send(chunked_post(body, [("x-mock-behavior", "status=500"), ("X-Injected", "yes")]))
        r = c.read_response(timeout=10)
    assert r.status == 200, "a trailer changed how the request was handled: %r" % (r,)
    rec = upstream.last_request()
    assert rec.behavior == "json" and rec.status == 200
    assert not rec.has_header("x-mock-behavior") and not rec.has_header("x-injected")


def test_chunked_trailer_does_not_authenticate(gateway, upstream):
    gw = gateway(upstream=upstream, api_keys=["gw-key-trailer"])
    body = httpc.chat_body("gpt-test", "trailers")
    with gw.connect() as c:
        c.send(chunked_post(body, [("Authorization", "Bearer gw-key-trailer")]))
        r = c.read_response(timeout=10)
    assert r.status == 401, "a key sent as a trailer authenticated the request: %r" % (r,)
    assert upstream.request_list() == []
    # The same key as a header works.
    with gw.connect() as c:
        c.send(chunked_post(body, [], headers=[("Authorization", "Bearer gw-key-trailer")]))
        assert c.read_response(timeout=10).status == 200


# ---------------------------------------------------------------------------
# Transfer-Encoding that must end the connection


def test_http10_chunked_keepalive_closes_after_response(gateway):
    """HTTP/1.0 has no chunked coding: a gateway that honours `Connection:
    keep-alive` here reads the bytes after the body as a new request, which a
    front end that framed the message differently never saw as one."""
    gw = gateway()
    body = httpc.chat_body("echo", "ten")
    raw = (b"POST /v1/chat/completions HTTP/1.0\r\nConnection: keep-alive\r\n"
           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
           + httpc.chunked([body[:5], body[5:]]))
    with gw.connect() as c:
        c.send(raw + HEALTH)
        r = c.read_response(timeout=10)
        assert r.status in (200, 400), r
        assert r.will_close(), "the response announces keep-alive: %r" % (r,)
        rest = c.read_until_closed(timeout=5)
        assert b"HTTP/1." not in rest, "answered the request behind it: %r" % rest[:300]


def test_unsupported_transfer_coding_501_and_close(gateway):
    te = "gzip, chunked"
    gw = gateway()
    body = httpc.chat_body("echo", "te")
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\nTransfer-Encoding: " + te.encode() + b"\r\n\r\n"
           + httpc.chunked([body]))
    with gw.connect() as c:
        c.send(raw + HEALTH)
        r = c.read_response(timeout=10)
        assert r.status == 501, r
        assert r.json()["error"]["request_id"] == r.request_id
        assert r.will_close(), r
        rest = c.read_until_closed(timeout=5)
        assert b"HTTP/1." not in rest, "answered the request behind it: %r" % rest[:300]
    assert gw.request("GET", "/health").status == 200


# ---------------------------------------------------------------------------
# Drain with a response still being written

TCP_ESTABLISHED, TCP_CLOSE_WAIT = "01", "08"


def tcp_socket(local_port: int, remote_port: int):
    """(state, tx_queue, rx_queue) of the IPv4 socket 127.0.0.1:local_port ->
    127.0.0.1:remote_port, from /proc/net/tcp; None when there is none."""
    local, remote = "0100007F:%04X" % local_port, "0100007F:%04X" % remote_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == local and fields[2] == remote:
                tx, rx = fields[4].split(":")
                return fields[3], int(tx, 16), int(rx, 16)
    return None


def test_sigterm_with_pending_write_exits_once_delivered(gateway, upstream):
    """The request is over (the gateway has the whole upstream response) but
    the response is still being written to a slow client when SIGTERM comes:
    the connection must close, and the process exit, once the last byte is
    written, not when drain_timeout runs out."""
    n = 3_500_000
    gw = gateway(upstream=upstream, server={"drain_timeout": 10})
    c = gw.connect(rcvbuf=4096)
    try:
        # connection-close: the gateway closing its upstream socket tells the
        # test that it has read and handled the whole upstream response.
        c.send(httpc.build_request("POST", PATH, [CT_JSON, ("x-mock-behavior",
                                                            "big-body=%d,connection-close" % n)],
                                   httpc.chat_body("gpt-test", "big")))
        rec = upstream.wait_requests(1, 10)[0]
        gw_up_port = upstream.conns[rec.conn_id].peer[1]
        wait_until(lambda: (tcp_socket(gw_up_port, upstream.port) or ("gone",))[0]
                   not in (TCP_ESTABLISHED, TCP_CLOSE_WAIT), 15,
                   "the gateway to read the whole upstream response")
        client_port = c.sock.getsockname()[1]
        out = tcp_socket(gw.port, client_port)
        inn = tcp_socket(client_port, gw.port)
        assert out and inn, "cannot see the client connection in /proc/net/tcp"
        if out[1] + inn[2] >= n:
            pytest.skip("the kernel buffers took the whole response (%d bytes): no write "
                        "is left pending in the gateway" % (out[1] + inn[2]))

        gw.send_signal(signal.SIGTERM)
        wait_until(lambda: re.search(r"SIGTERM.*draining", gw.log()) or not gw.alive(), 5,
                   "the gateway to log that it is draining")
        r = c.read_response(timeout=20)
        delivered = time.monotonic()
        assert r.status == 200, r
        assert len(r.body) == n and r.body == big_body(n), \
            "the body was cut after %d of %d bytes" % (len(r.body), n)
        try:
            rc = gw.wait_exit(5)
        except TimeoutError:
            pytest.fail("still running 5 s after the last byte was delivered "
                        "(drain_timeout is 10 s)")
        took = time.monotonic() - delivered
        assert rc == 0
        assert c.wait_closed(2)
    finally:
        c.close()
    assert took < 5, "exited %.1f s after the body was delivered" % took
