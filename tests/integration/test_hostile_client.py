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
