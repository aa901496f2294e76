"""Hostile clients: what one connection can make the gateway hold, and for how long.

- A client that pipelines requests without reading the answers is paused once a
  small amount of answers is queued (it blocks in its own send), its queued
  answers all arrive once it reads, and it is closed after send_timeout if it
  never does: the send deadline follows write progress, not each request.
- Bare CRLFs between requests do not keep an idle connection alive.
- An Upgrade request is answered as a plain request, and the connection ends
  after it: nothing behind it is read as a request.
- obs-fold is refused wherever it appears, after an empty value included.
- Chunk extensions and trailers count against max_body_size; a request body
  has a total deadline as well as a per-read one.
"""
import os
import select
import socket
import threading
import time

import pytest

import httpc
from harness import wait_until

HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def push_until_blocked(sock: socket.socket, data: bytes, blocked_for: float, limit_s: float):
    """Sends copies of `data` without reading, until a send has not been possible
    for `blocked_for` seconds or `limit_s` passed. Returns (bytes sent, whether
    the sender ended blocked)."""
    sock.setblocking(False)
    block = data * max(1, 65536 // len(data))
    sent = 0
    pending = memoryview(block)
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        _, w, _ = select.select([], [sock], [], blocked_for)
        if not w:
            return sent, True
        try:
            n = sock.send(pending)
        except BlockingIOError:
            continue
        sent += n
        pending = pending[n:]
        if not pending:
            pending = memoryview(block)
    return sent, False


def test_pipelining_client_that_does_not_read_is_paused_with_bounded_memory(gateway):
    gw = gateway(server={"send_timeout": 30})
    before = rss_kb(gw.pid)
    c = gw.connect(rcvbuf=4096)
    sent, blocked = push_until_blocked(c.sock, HEALTH, blocked_for=1.0, limit_s=8)
    grown_mb = (rss_kb(gw.pid) - before) / 1024
    assert blocked, "the gateway kept reading %d bytes of requests whose answers were not read" % sent
    assert grown_mb < 32, "one connection made the gateway grow by %.0f MB" % grown_mb

    # Once the client reads, every request it sent whole is answered, in order.
    whole, partial = divmod(sent, len(HEALTH))
    c.sock.setblocking(True)
    if partial:
        c.send(HEALTH[partial:])
        whole += 1
    for i in range(whole):
        r = c.read_response(timeout=20)
        assert r.status == 200, (i, r)
    c.close()


def test_send_deadline_follows_write_progress_not_requests(gateway):
    """A client that keeps pipelining but never reads is closed about send_timeout
    after its answers stop moving, however many requests it still sends."""
    gw = gateway(server={"send_timeout": 2})
    c = gw.connect(rcvbuf=4096)
    t0 = time.monotonic()
    sent, blocked = push_until_blocked(c.sock, HEALTH, blocked_for=0.5, limit_s=10)
    assert blocked, "the gateway never stopped reading (%d bytes)" % sent
    wait_until(lambda: "client send timeout" in gw.log(), 8, "the send timeout to close the connection")
    assert time.monotonic() - t0 < 8
    c.close()


def test_many_pipelined_requests_in_one_read_are_served_without_recursion(gateway):
    """Thousands of pipelined requests already in the buffer are answered in a loop:
    every one of them, in order, with no stack growth per request."""
    gw = gateway()
    n = 3000
    c = gw.connect()
    reader_done = threading.Event()
    statuses = []

    def reader():
        try:
            for _ in range(n):
                statuses.append(c.read_response(timeout=20).status)
        finally:
            reader_done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    c.sock.sendall(HEALTH * n)
    assert reader_done.wait(30)
    assert statuses == [200] * n
    c.close()


def test_bare_crlfs_do_not_keep_an_idle_connection_open(gateway):
    gw = gateway(server={"keepalive_timeout": 2})
    c = gw.connect()
    c.send(HEALTH)
    assert c.read_response().status == 200
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 8:
        try:
            c.sock.sendall(b"\r\n")
        except OSError:
            closed = True
            break
        if c.wait_closed(timeout=0.5):
            closed = True
            break
    assert closed, "two bytes every half second kept the connection open past keepalive_timeout"
    assert time.monotonic() - t0 < 5
    c.close()


@pytest.mark.parametrize("method,extra", [
    ("GET", b""),
    ("POST", b"Content-Length: 2\r\n\r\n{}"),
])
def test_upgrade_request_is_answered_then_the_connection_ends(gateway, method, extra):
    """Nothing is switched to another protocol: the request is answered as a plain
    one, and the connection ends after it, so bytes behind it (another protocol,
    or a request smuggled behind a proxy) are never read as a request."""
    gw = gateway()
    c = gw.connect()
    head = ("%s /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
            "Upgrade: websocket\r\n" % method).encode()
    if not extra:
        head += b"\r\n"
    c.send(head + extra + HEALTH)
    r = c.read_response()
    assert r.status in (200, 405), r
    assert r.will_close(), r
    rest = c.read_until_closed(timeout=5)
    assert rest == b"", "more was answered after the Upgrade request: %r" % rest[:200]
    c.close()
    # The gateway still serves.
    assert gw.request("GET", "/health").status == 200


def test_connect_method_is_refused_and_ends_the_connection(gateway):
    gw = gateway()
    c = gw.connect()
    c.send(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + HEALTH)
    r = c.read_response()
    assert r.status >= 400, r
    assert r.will_close(), r
    assert c.read_until_closed(timeout=5) == b""
    c.close()


@pytest.mark.parametrize("head", [
    b"X-Empty:\r\n Content-Length: 5\r\n",
    b"X-Empty: \r\n\tContent-Length: 5\r\n",
    b"X-A: a\r\n Content-Length: 5\r\n",
])
def test_obs_fold_is_refused_after_an_empty_value_too(gateway, head):
    gw = gateway()
    c = gw.connect()
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head +
           b"Content-Length: 2\r\n\r\n{}")
    r = c.read_response()
    assert r.status == 400, r
    assert r.will_close()
    c.close()


def chunked_head(path="/v1/chat/completions"):
    return ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" % path).encode()


def test_chunk_extensions_count_against_max_body_size(gateway):
    gw = gateway(server={"max_body_size": "1k"})
    c = gw.connect()
    body = httpc.chat_body("echo", "hi")
    ext = b";" + b"e" * 600 + b"=" + b"v" * 600
    c.send(chunked_head() + b"%x%s\r\n%s\r\n0\r\n\r\n" % (len(body), ext, body))
    r = c.read_response()
    assert r.status == 413, r
    c.close()


def test_trailers_count_against_max_body_size(gateway):
    gw = gateway(server={"max_body_size": "1k"})
    c = gw.connect()
    body = httpc.chat_body("echo", "hi")
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 100) for i in range(20))
    c.send(chunked_head() + b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailers))
    r = c.read_response()
    assert r.status == 413, r
    c.close()


def test_request_body_has_a_total_deadline(gateway):
    """One byte every half second never trips a 1 s per-read timeout, but the
    body's total deadline ends it."""
    gw = gateway(server={"client_body_timeout": 1, "client_body_total_timeout": 3})
    c = gw.connect()
    c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < 10:
        try:
            c.sock.sendall(b" ")
        except OSError:
            break
        if select.select([c.sock], [], [], 0.5)[0]:
            got = c.read_response(timeout=5)
            break
    assert got is not None and got.status == 408, got
    assert time.monotonic() - t0 < 6
    c.close()


def chat_of_size(n: int) -> bytes:
    base = httpc.chat_body("echo", "")
    pad = n - len(base)
    doc = httpc.chat_body("echo", "x" * pad)
    assert len(doc) == n
    return doc


def test_bodies_grow_as_they_arrive_within_max_buffered_bodies(gateway):
    size = 1_000_000
    gw = gateway(server={"max_body_size": "1m", "max_buffered_bodies": "2m"})
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size).encode()
    body = chat_of_size(size)

    # Eight bodies declared at 1 MB each (8 MB, four times the budget) but only
    # begun: what is held is what arrived, so others are still served.
    started = [gw.connect() for _ in range(8)]
    for c in started:
        c.send(head + body[:10_000])
    r = gw.request("POST", "/v1/chat/completions", [("Content-Type", "application/json")],
                   httpc.chat_body("echo", "still served"))
    assert r.status == 200, r
    for c in started:
        c.close()

    # Three bodies of 910 KB: two fit in 2 MB, the third is refused with a 503
    # that says when to retry.
    conns = [gw.connect() for _ in range(3)]
    for c in conns:
        c.send(head + body[:910_000])
    ready = select.select([c.sock for c in conns], [], [], 10)[0]
    later = select.select([c.sock for c in conns if c.sock not in ready], [], [], 0.5)[0]
    refused = [c for c in conns if c.sock in ready or c.sock in later]
    assert len(refused) == 1, "expected exactly one body refused, got %d" % len(refused)
    r = refused[0].read_response()
    assert r.status == 503, r
    assert r.header("Retry-After") == "1"
    assert r.json()["error"]["code"] == "overloaded"
    # The two that fit complete normally...
    for c in conns:
        if c is refused[0]:
            continue
        c.send(body[910_000:])
        assert c.read_response(timeout=20).status == 200
    for c in conns:
        c.close()
    # ...and the budget they held is free again.
    with gw.connect() as c:
        c.send(head + body)
        assert c.read_response(timeout=20).status == 200
