"""Client backpressure over an https upstream.

When the client's write queue passes CLIENT_HIGH_WATER (1 MiB, core/upstream/upstream_int.h)
the gateway stops reading the upstream and resumes below 256 KiB. Over TLS,
records already decrypted into OpenSSL's buffer at the pause must be processed
on resume even if no new bytes ever arrive on the socket: otherwise the end of
the response sits there until the upstream read timeout cuts it off.

Every test uses a short upstream read timeout (3 s), so a stall turns into a
truncated response, and asserts that the client read finishes well before it.
Whether the gateway has stopped reading (or what its peers hold) is read from
/proc/net/tcp: the receive queue of the gateway's upstream socket, the send
queue of its client socket, and so on.
"""
import socket
import ssl
import time

import pytest

import httpc
from harness import Elapsed, wait_until

READ_TIMEOUT = 3            # the provider's upstream read timeout in these tests
HIGH_WATER = 1024 * 1024    # CLIENT_HIGH_WATER in core/upstream/upstream_int.h
CT_JSON = ("Content-Type", "application/json")


def provider(base_url, pki):
    return {"openai": {"base_url": base_url, "api_key": "sk-tls", "ca_file": str(pki.ca),
                       "timeouts": {"connect": 5, "read": READ_TIMEOUT, "total": 60}}}


# ---------------------------------------------------------------------------
# /proc/net/tcp: what sits in kernel socket queues


def _hexport(addr):
    ip, port = addr.split(":")
    return ip, int(port, 16)


def tcp_queues():
    """{(local_port, remote_port): (tx_queue, rx_queue)} for established
    127.0.0.1 <-> 127.0.0.1 connections."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            (lip, lport), (rip, rport) = _hexport(fields[1]), _hexport(fields[2])
            if lip != "0100007F" or rip != "0100007F" or fields[3] != "01":
                continue
            tx, rx = fields[4].split(":")
            out[(lport, rport)] = (int(tx, 16), int(rx, 16))
    return out


def queues(local_port, remote_port):
    q = tcp_queues().get((local_port, remote_port))
    if q is None:
        raise AssertionError("no TCP connection 127.0.0.1:%d -> 127.0.0.1:%d in /proc/net/tcp"
                             % (local_port, remote_port))
    return q


# ---------------------------------------------------------------------------
# Through the ordinary mock: a large body to a client that stops reading


def steady(fn, quiet, timeout, what):
    """fn()'s value once it has not changed for `quiet` seconds."""
    state = {}

    def check():
        v, now = fn(), time.monotonic()
        if "v" not in state or v != state["v"]:
            state["v"], state["t"] = v, now
            return False
        return now - state["t"] >= quiet
    wait_until(check, timeout, what)
    return state["v"]


@pytest.mark.parametrize("behavior", ["big-stream=8000000", "big-body=8000000"],
                         ids=["sse-chunked", "content-length"])
def test_https_large_response_to_slow_client(gateway, tls_upstream, pki, behavior):
    """8 MB is more than the client side can hold (client socket, the gateway's
    send buffer, at most 4 MiB here, and its 1 MiB write queue): with the
    client not reading, the gateway must stop reading the upstream."""
    gw = gateway(providers=provider(tls_upstream.base_url, pki))
    with gw.connect(rcvbuf=64 * 1024) as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("x-mock-behavior", behavior)],
                                   httpc.chat_body("gpt-tls", "x", stream=True)))
        rec = tls_upstream.wait_requests(1, 10)[0]
        mock_port = tls_upstream.port
        (up_port,) = wait_until(lambda: [l for (l, r) in tcp_queues() if r == mock_port], 10,
                                "the gateway's connection to the upstream")

        def progress():
            # (payload the mock has written, upstream bytes the gateway has not read)
            return (rec.sent_bytes, queues(mock_port, up_port)[0] + queues(up_port, mock_port)[1])
        # The client reads nothing until the upstream and the gateway stand still ...
        sent, unread = steady(progress, 0.5, 30, "the upstream and the gateway to stand still")
        # ... with upstream bytes left unread: the gateway has paused.
        assert unread > 0, "the gateway read all %d bytes with the client reading none" % sent
        with Elapsed() as el:
            r = c.read_response(timeout=READ_TIMEOUT + 10)
    assert r.status == 200, r
    assert r.complete, "the response did not complete (%d bytes)" % len(r.body)
    assert rec.completed and len(r.body) == rec.sent_bytes
    assert r.body == rec.sent_body, "the body differs from what the upstream sent"
    assert el.seconds < READ_TIMEOUT / 2, \
        "reading the rest took %.2fs (upstream read timeout %ds)" % (el.seconds, READ_TIMEOUT)


# ---------------------------------------------------------------------------
# A scripted TLS upstream: the pause lands inside the last socket read


class ScriptedTLSUpstream:
    """A one-connection https upstream driven step by step from the test: it
    sends a chunked response one write at a time, each chunk in its own TLS
    record, and can send several records in a single TCP segment."""

    def __init__(self, pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.cert), str(pki.key))
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.conn = None
        self.peer_port = None
        self.data = []           # chunk payloads sent, in order

    @property
    def base_url(self):
        return "https://127.0.0.1:%d/v1" % self.port

    def accept(self, timeout=10):
        self.lsock.settimeout(timeout)
        raw, peer = self.lsock.accept()
        raw.settimeout(timeout)
        self.peer_port = peer[1]
        self.conn = self.ctx.wrap_socket(raw, server_side=True)
        buf = b""
        while b"\r\n\r\n" not in buf:
            got = self.conn.recv(65536)
            assert got, "the gateway closed the upstream connection"
            buf += got
        head, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(body) < length:
            got = self.conn.recv(65536)
            assert got, "the gateway closed the upstream connection"
            body += got
        self.request_line = head.split(b"\r\n", 1)[0]

    def send_head(self):
        self.conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")

    def event(self, size):
        """An SSE event of exactly `size` bytes carrying its sequence number."""
        head = b'data: {"seq":%d,"pad":"' % len(self.data)
        tail = b'"}\n\n'
        pad = b"abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1)
        return head + pad[:size - len(head) - len(tail)] + tail

    def send_chunk(self, payload):
        """One chunk = one SSL_write = one record. Returns the bytes it takes
        on the wire after the gateway re-frames it (the same framing)."""
        self.data.append(payload)
        framed = b"%x\r\n" % len(payload) + payload + b"\r\n"
        self.conn.sendall(framed)
        return len(framed)

    def send_burst(self, sizes):
        """Records of these sizes and the last chunk, in one TCP segment."""
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        n = sum(self.send_chunk(self.event(s)) for s in sizes)
        self.conn.sendall(b"0\r\n\r\n")
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        return n

    def close(self):
        for s in (self.conn, self.lsock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def scripted(pki):
    up = ScriptedTLSUpstream(pki)
    yield up
    up.close()


def test_https_pause_with_records_left_in_tls_buffer(gateway, scripted, pki):
    """The client stops reading; the upstream sends chunks one at a time
    until the gateway's client write queue is just under 1 MiB, then eight
    small records (the last one the end of the body) in one segment: the
    first of them pushes the queue over the mark, so the gateway pauses with
    the rest decrypted-or-buffered inside OpenSSL and nothing more coming on
    the socket. When the client reads again they must still come out."""
    gw = gateway(providers=provider(scripted.base_url, pki))
    c = gw.connect(rcvbuf=4096)
    try:
        c.send(httpc.build_request("POST", "/v1/chat/completions", [CT_JSON],
                                   httpc.chat_body("gpt-tls", "x", stream=True)))
        scripted.accept()
        assert scripted.request_line == b"POST /v1/chat/completions HTTP/1.1"
        scripted.send_head()
        head = c.read_head(10)
        assert head.status == 200, head
        client_port = c.sock.getsockname()[1]
        received = len(head.raw_head) + len(c.buf)     # what the client took off the socket
        written = len(head.raw_head)                   # what the gateway wrote to it

        def settled():
            """(client rx queue, gateway tx queue) once the gateway has read all
            the upstream sent and the client side stands still."""
            snap = []

            def still():
                up_tx = queues(scripted.port, scripted.peer_port)[0]
                gw_rx = queues(scripted.peer_port, scripted.port)[1]
                cur = (queues(client_port, gw.port)[1], queues(gw.port, client_port)[0])
                snap.append(cur)
                return up_tx == 0 and gw_rx == 0 and len(snap) >= 3 and snap[-1] == snap[-2] == snap[-3]
            wait_until(still, 10, "the gateway to take what the upstream sent", interval=0.03)
            return snap[-1]

        # The client's kernel receive queue is at most ~8 KiB (rcvbuf 4096,
        # doubled), which bounds how far the estimate below can be off.
        target = HIGH_WATER - 12 * 1024
        steps = 0
        while True:
            crx, gtx = settled()
            queued = written - received - crx - gtx      # gateway's user-space write queue
            assert queued <= HIGH_WATER, "paused early: queue estimate %d" % queued
            gap = target - queued
            if gap <= 2048:
                break
            steps += 1
            assert steps < 400, "the write queue does not grow (estimate %d)" % queued
            budget = gap                  # the queue grows by at most what is sent
            while budget > 64:
                n = scripted.send_chunk(scripted.event(min(16000, budget - 16)))
                written += n
                budget -= n
        # Now within 14 KiB of the mark (12 KiB + the client-side estimate error).
        # Eight records: the first seven (14,385 bytes re-framed) surely cross
        # the mark; with TLS overhead all eight and the last chunk still fit
        # one 16 KiB socket read of the gateway.
        sizes = [2048] * 7 + [200]
        burst = scripted.send_burst(sizes)
        assert burst == 7 * 2055 + 206
        settled()
        body, cut = b"", None
        with Elapsed() as el:
            try:
                for piece in c.iter_body(head, timeout=READ_TIMEOUT + 10):
                    body += piece
            except httpc.Closed as e:
                cut = e
        assert cut is None and head.complete, \
            "the response was cut after %.2fs with %d of %d body bytes (upstream read " \
            "timeout %ds): the records left in TLS at the pause were never processed" \
            % (el.seconds, len(body), sum(map(len, scripted.data)), READ_TIMEOUT)
        assert body == b"".join(scripted.data), "the body differs from what the upstream sent"
        assert el.seconds < READ_TIMEOUT / 2, \
            "the end of the body took %.2fs (upstream read timeout %ds): a stall" \
            % (el.seconds, READ_TIMEOUT)
    finally:
        c.close()
