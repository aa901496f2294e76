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


def small_quarantine():
    """Under AddressSanitizer freed blocks are held in a quarantine (256 MB by
    default): RSS would measure the requests served, not the memory held."""
    return {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}


def test_pipelining_client_that_does_not_read_is_paused_with_bounded_memory(gateway):
    gw = gateway(server={"send_timeout": 30}, env=small_quarantine())
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


# ---------------------------------------------------------------------------
# The access phase decides at the head, before any body is read


KEY = "sk-gw-head-test"


def post_head(length: int, headers=b"", path=b"/v1/chat/completions") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + headers + b"Content-Length: %d\r\n\r\n" % length)


@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_a_request_without_a_valid_key_is_refused_before_its_body(gateway, key):
    gw = gateway(api_keys=[KEY])
    c = gw.connect()
    auth = b"Authorization: Bearer %s\r\n" % key.encode() if key else b""
    c.send(post_head(5_000_000, auth))            # the 5 MB body is never sent
    r = c.read_response(timeout=5)
    assert r.status == 401, r
    assert r.will_close(), r
    c.close()


def test_expect_continue_is_answered_only_for_a_valid_key(gateway):
    gw = gateway(api_keys=[KEY])
    body = httpc.chat_body("echo", "hello")
    with gw.connect() as c:
        c.send(post_head(len(body), b"Authorization: Bearer nope\r\nExpect: 100-continue\r\n"))
        raw = c.read_until_closed(timeout=5)
        assert raw.startswith(b"HTTP/1.1 401 "), raw[:200]
        assert b"100 Continue" not in raw
    with gw.connect() as c:
        c.send(post_head(len(body), b"Authorization: Bearer %s\r\nExpect: 100-continue\r\n" % KEY.encode()))
        r = c.read_head(timeout=5, skip_1xx=False)
        assert r.status == 100, r
        c.send(body)
        r = c.read_response(timeout=5)
        assert r.status == 200, r
        assert not r.will_close()
        # The connection serves on.
        c.send(post_head(len(body), b"Authorization: Bearer %s\r\n" % KEY.encode()) + body)
        assert c.read_response(timeout=5).status == 200


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_valid_key_reads_a_body_sent_after_the_head(gateway, framing):
    gw = gateway(api_keys=[KEY])
    body = httpc.chat_body("echo", "y" * 50_000)
    auth = b"Authorization: Bearer %s\r\n" % KEY.encode()
    with gw.connect() as c:
        if framing == "length":
            c.send(post_head(len(body), auth))
            pieces = [body[i:i + 7000] for i in range(0, len(body), 7000)]
        else:
            c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                   b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            pieces = [httpc.chunked([body[i:i + 7000] for i in range(0, len(body), 7000)])]
        # The head is answered by nothing until the body is in.
        assert not select.select([c.sock], [], [], 0.2)[0]
        for p in pieces:
            c.send(p)
        r = c.read_response(timeout=10)
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "y" * 50_000
        c.send(HEALTH)
        assert c.read_response().status == 200


WAITING_PLUGIN = """
local aigw = require "aigw"
return {
  name = "waits", priority = 3000,
  access = function(conf, ctx)
    aigw.sleep(tonumber(aigw.request.get_header("x-wait") or "0"))
    if aigw.request.get_header("x-read-here") then
      ctx.seen = #aigw.request.get_body()
    end
  end,
  header_filter = function(conf, ctx)
    if ctx.seen then aigw.response.set_header("x-seen", tostring(ctx.seen)) end
  end,
}
"""


@pytest.mark.parametrize("read_in_plugin", [False, True])
def test_body_read_after_the_access_phase_waited(gateway, tmp_path, read_in_plugin):
    """The access phase waits (a timer) while the body arrives and is held
    unparsed; reading it afterwards, from a resumed thread, parses what was
    buffered on the next loop turn."""
    from harness import plugin_prefix
    prefix = plugin_prefix(tmp_path, {"waits.lua": WAITING_PLUGIN})
    gw = gateway(plugins=["waits"], env={"AIGW_PREFIX": str(prefix)})
    body = httpc.chat_body("echo", "z" * 20_000)
    extra = b"x-wait: 0.3\r\n" + (b"x-read-here: 1\r\n" if read_in_plugin else b"")
    with gw.connect() as c:
        c.send(post_head(len(body), extra))
        c.send(body[:100])
        c.send(body[100:])
        r = c.read_response(timeout=10)
        assert r.status == 200, r
        if read_in_plugin:
            assert r.header("x-seen") == str(len(body))
        c.send(HEALTH)
        assert c.read_response().status == 200


def test_client_leaving_while_its_body_is_awaited(gateway):
    from harness import access_line
    gw = gateway(api_keys=[KEY], plugins=["key-auth", "access-log"])
    c = gw.connect()
    c.send(post_head(100_000, b"x-request-id: left-mid-body\r\nAuthorization: Bearer %s\r\n" % KEY.encode())
           + b"{" * 10)
    assert not select.select([c.sock], [], [], 0.2)[0]
    c.close()
    # Logged as the client's leaving, and the gateway carries on.
    assert access_line(gw, "left-mid-body")["status"] == "499"
    assert gw.request("GET", "/health").status == 200


def test_a_head_request_refused_before_its_head_ends_gets_no_body(gateway):
    gw = gateway()
    with gw.connect() as c:
        c.send(b"HEAD /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A:\r\n folded\r\n\r\n")
        raw = c.read_until_closed(timeout=5)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), raw[:200]
    assert body == b"", "a HEAD answer carried a body: %r" % body[:100]


def test_a_request_refused_in_its_request_line_after_a_head_gets_its_body(gateway):
    """The method of a request refused before its method was read is not the
    previous request's: after a HEAD, the next request's 400 has its body."""
    gw = gateway()
    with gw.connect() as c:
        c.send(b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nP\xff\xffOST / HTTP/1.1\r\n\r\n")
        first = c.read_response(method="HEAD")
        assert first.status == 200 and first.body == b""
        second = c.read_response()
        assert second.status == 400, second
        assert second.complete and len(second.body) == int(second.header("Content-Length")) > 0
