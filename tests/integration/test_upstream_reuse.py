"""Regression tests: pooled upstream connections must stay in step.

An upstream that sends bytes past the end of a response (an extra TLS record,
a body longer than its Content-Length, stray bytes after a response that ends
exactly at the gateway's 16 KiB read boundary) must never have those bytes
handed to a later request; and a request that the upstream fully received on a
pooled connection before the connection died is replayed only if its method
is idempotent (a POST gets 502 and reaches the upstream once; a GET is retried
on a fresh connection).

These need an upstream that misbehaves at the byte level, which mock_upstream
cannot do, so `ScriptedUpstream` below is a small threaded server on raw
sockets (TLS through ssl.MemoryBIO, so the test decides how plaintext is cut
into TLS records and which records share one TCP write). Each request carries
an `x-test-marker` header; the upstream answers `answer to <marker>`, so every
client can tell whether it got its own answer.
"""
import select
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import pytest

import httpc
from harness import LOOPBACK, json_error, server_ssl_context

PATH = "/v1/chat/completions"
CT_JSON = ("Content-Type", "application/json")
# What a buggy gateway would hand to the next request as its response.
STALE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
         b"STALE bytes!\n")
READ_BOUNDARY = 16 * 1024       # the gateway reads upstream bytes 16 KiB at a time


def answer_body(marker: bytes, pad: int = 0) -> bytes:
    return b"p" * pad + b"answer to " + marker + b"\n"


def answer(marker: bytes, pad: int = 0, extra: bytes = b"") -> bytes:
    """A 200 for `marker`; `extra` goes after the body, beyond Content-Length."""
    body = answer_body(marker, pad)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
            % len(body)) + body + extra


def answer_of_size(marker: bytes, total: int) -> Tuple[bytes, int]:
    """A response of exactly `total` bytes on the wire (head included), and its pad."""
    for pad in range(total, -1, -1):
        r = answer(marker, pad)
        if len(r) == total:
            return r, pad
        if len(r) < total:
            break
    raise AssertionError("cannot build a %d-byte response" % total)


# ---------------------------------------------------------------------------
# A scripted upstream on raw sockets


@dataclass
class UpRequest:
    conn_id: int
    seq_on_conn: int
    method: str
    target: str
    headers: List[Tuple[str, str]]
    body: bytes

    def header(self, name: str, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def marker(self) -> Optional[bytes]:
        m = self.header("x-test-marker")
        return m.encode() if m is not None else None


class _Gone(Exception):
    pass


class UpConn:
    """One accepted connection: reads requests, writes raw bytes or TLS records."""

    def __init__(self, sock: socket.socket, cid: int, ctx: Optional[ssl.SSLContext]):
        self.sock = sock
        self.id = cid
        self.requests = 0
        self.closed = threading.Event()
        self.buf = bytearray()
        self.tls = None
        if ctx is not None:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = ctx.wrap_bio(self.inc, self.out, server_side=True)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def handshake(self):
        if self.tls is None:
            return
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                data = self._recv()
                if not data:
                    raise _Gone()
                self.inc.write(data)
        self._flush()

    def _read_more(self):
        if self.tls is None:
            data = self._recv()
            if not data:
                raise _Gone()
            self.buf += data
            return
        while True:
            try:
                data = self.tls.read(65536)
                self._flush()
                if not data:
                    raise _Gone()
                self.buf += data
                return
            except ssl.SSLWantReadError:
                self._flush()
                raw = self._recv()
                if not raw:
                    raise _Gone()
                self.inc.write(raw)
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                raise _Gone()

    def _until(self, sep: bytes) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            self._read_more()

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._read_more()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_request(self) -> Tuple[str, str, List[Tuple[str, str]], bytes]:
        head = self._until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k, v.strip()))
        hmap = {k.lower(): v for k, v in headers}
        body = b""
        if "chunked" in hmap.get("transfer-encoding", "").lower():
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self._exact(size)
                self._exact(2)
        elif "content-length" in hmap:
            body = self._exact(int(hmap["content-length"]))
        return method, target, headers, body

    def send(self, *pieces: bytes):
        """Plain: all pieces in one write. TLS: one record per piece (a piece over
        16 KiB becomes several), all records in one TCP write."""
        if self.tls is None:
            self.sock.sendall(b"".join(pieces))
            return
        for p in pieces:
            self.tls.write(p)
        self._flush()

    def reset(self):
        """Close with a TCP RST, answering nothing."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


# respond(conn, request) -> None to keep serving the connection, or "done" when
# the responder closed it (reset/close).
Responder = Callable[[UpConn, UpRequest], Optional[str]]


class ScriptedUpstream:
    def __init__(self, respond: Responder, ssl_context: Optional[ssl.SSLContext] = None):
        self.respond = respond
        self.ctx = ssl_context
        self.requests: List[UpRequest] = []
        self.conns: Dict[int, UpConn] = {}
        self.errors: List[BaseException] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]

    @property
    def base_url(self) -> str:
        return "%s://%s:%d/v1" % ("https" if self.ctx else "http", LOOPBACK, self.port)

    def start(self) -> "ScriptedUpstream":
        t = threading.Thread(target=self._accept_loop, name="scripted-upstream", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        with self._cond:
            conns = list(self.conns.values())
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self.lsock.close()

    def _accept_loop(self):
        n = 0
        while not self._stop.is_set():
            r, _, _ = select.select([self.lsock], [], [], 0.1)
            if not r:
                continue
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                continue
            sock.settimeout(30)
            n += 1
            conn = UpConn(sock, n, self.ctx)
            with self._cond:
                self.conns[n] = conn
                self._cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: UpConn):
        try:
            conn.handshake()
            while True:
                method, target, headers, body = conn.read_request()
                conn.requests += 1
                req = UpRequest(conn.id, conn.requests, method, target, headers, body)
                with self._cond:
                    self.requests.append(req)
                    self._cond.notify_all()
                if self.respond(conn, req) == "done":
                    return
        except (_Gone, OSError, ssl.SSLError):
            pass
        except BaseException as e:  # noqa: BLE001 -- reported by the test
            with self._cond:
                self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass
            conn.closed.set()
            with self._cond:
                self._cond.notify_all()

    # -- what tests read ---------------------------------------------------

    @property
    def accepted(self) -> int:
        with self._cond:
            return len(self.conns)

    def request_list(self) -> List[UpRequest]:
        with self._cond:
            return list(self.requests)

    def with_marker(self, marker: bytes) -> List[UpRequest]:
        return [r for r in self.request_list() if r.marker == marker]

    def wait_closed(self, conn_id: int, timeout: float = 5.0) -> bool:
        with self._cond:
            conn = self.conns[conn_id]
        return conn.closed.wait(timeout)


@pytest.fixture
def scripted(request):
    made = []

    def make(respond: Responder, ssl_context=None) -> ScriptedUpstream:
        up = ScriptedUpstream(respond, ssl_context).start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()
    errors = [e for up in made for e in up.errors]
    assert not errors, "the scripted upstream failed: %r" % errors


def tls_context(scheme: str, pki):
    return server_ssl_context(pki.cert, pki.key) if scheme == "https" else None


def make_gateway(gateway, up: ScriptedUpstream, pki, **kw):
    prov = {"base_url": up.base_url, "api_key": "sk-upstream-test"}
    if up.ctx is not None:
        prov["ca_file"] = str(pki.ca)
    return gateway(providers={"openai": prov}, workers=1, **kw)


def chat_request(marker: bytes) -> bytes:
    return httpc.build_request("POST", PATH, [CT_JSON, ("x-test-marker", marker.decode())],
                               httpc.chat_body("gpt-test", "hi"))


def ask(gw, marker: bytes) -> httpc.Response:
    """One request from a fresh client connection."""
    with gw.connect() as c:
        c.send(chat_request(marker))
        return c.read_response(timeout=10)


def assert_own_answer(r: httpc.Response, marker: bytes, pad: int = 0):
    assert b"STALE" not in r.body, "stale upstream bytes reached a client: %r" % (r,)
    assert r.status == 200, r
    assert r.body == answer_body(marker, pad), "%s got someone else's answer: %r" % (marker, r)


# ---------------------------------------------------------------------------
# 1. Bytes past the response's framing on a keep-alive connection


TRAILING_CASES = [
    ("http", "overlong-body"),      # Content-Length: 13, then 13 bytes + a whole response
    ("https", "overlong-body"),     # the same inside one TLS record
    ("https", "extra-record"),      # the response, then one more TLS record, one TCP write
    ("http", "late"),               # stray bytes on the idle pooled connection
    ("https", "late"),
]


@pytest.mark.parametrize("scheme,how", TRAILING_CASES, ids=["-".join(c) for c in TRAILING_CASES])
def test_bytes_past_response_framing_never_reach_next_client(gateway, scripted, pki, scheme, how):
    stray_now = threading.Event()

    def respond(conn, req):
        if req.marker == b"c1":
            if how == "overlong-body":
                conn.send(answer(b"c1", extra=STALE))
            elif how == "extra-record":
                conn.send(answer(b"c1"), STALE)
            else:
                conn.send(answer(b"c1"))
                if not stray_now.wait(10):
                    raise AssertionError("the test never asked for the stray bytes")
                conn.send(STALE)
        else:
            conn.send(answer(req.marker))
        return None

    up = scripted(respond, tls_context(scheme, pki))
    gw = make_gateway(gateway, up, pki)

    assert_own_answer(ask(gw, b"c1"), b"c1")
    first = up.with_marker(b"c1")[0]
    if how == "late":
        stray_now.set()
    # Whatever follows a response out of step makes the connection unusable.
    assert up.wait_closed(first.conn_id, 5), \
        "the gateway kept an upstream connection that sent bytes past a response"
    for m in (b"c2", b"c3"):
        assert_own_answer(ask(gw, m), m)
    for m in (b"c1", b"c2", b"c3"):
        assert len(up.with_marker(m)) == 1, up.request_list()
    assert up.with_marker(b"c2")[0].conn_id != first.conn_id
    # The gateway is still healthy and keeps reusing the clean connections.
    assert_own_answer(ask(gw, b"c4"), b"c4")
    assert up.with_marker(b"c4")[0].conn_id == up.with_marker(b"c3")[0].conn_id


# ---------------------------------------------------------------------------
# 2. A response that ends exactly at the 16 KiB read boundary, then stray bytes,
#    with pipelined client requests


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_response_at_read_boundary_then_stray_bytes_pipelined(gateway, scripted, pki, scheme):
    first, pad = answer_of_size(b"c1", READ_BOUNDARY)

    def respond(conn, req):
        if req.marker == b"c1":
            conn.send(first + STALE)
        else:
            conn.send(answer(req.marker))
        return None

    up = scripted(respond, tls_context(scheme, pki))
    gw = make_gateway(gateway, up, pki)
    with gw.connect() as c:
        c.send(chat_request(b"c1") + chat_request(b"c2") + chat_request(b"c3"))
        got = [c.read_response(timeout=10) for _ in range(3)]
    assert_own_answer(got[0], b"c1", pad)
    assert_own_answer(got[1], b"c2")
    assert_own_answer(got[2], b"c3")
    for m in (b"c1", b"c2", b"c3"):
        assert len(up.with_marker(m)) == 1, up.request_list()
    assert up.with_marker(b"c2")[0].conn_id != up.with_marker(b"c1")[0].conn_id


# ---------------------------------------------------------------------------
# 3. The pooled connection dies after the upstream received the whole request


@pytest.mark.parametrize("close", ["rst", "fin"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_post_not_replayed_after_pooled_connection_dies(gateway, scripted, pki, scheme, close):
    """The upstream read the whole POST (and may have acted on it: billed
    tokens), then the connection died before any response byte. The gateway
    must answer 502 and must not send the POST again."""

    def respond(conn, req):
        if req.conn_id == 1 and req.seq_on_conn == 2:
            conn.reset() if close == "rst" else conn.close()
            return "done"
        conn.send(answer(req.marker))
        return None

    up = scripted(respond, tls_context(scheme, pki))
    gw = make_gateway(gateway, up, pki, expect_errors=True)
    assert_own_answer(ask(gw, b"p1"), b"p1")
    r = ask(gw, b"p2")
    assert r.status == 502, "a POST the upstream already received was answered by %r" % (r,)
    assert json_error(r)["error"]["request_id"] == r.request_id
    seen = up.with_marker(b"p2")
    assert [(q.conn_id, q.seq_on_conn) for q in seen] == [(1, 2)], \
        "the upstream received the POST %d times: %r" % (len(seen), up.request_list())
    # The gateway recovers on a fresh connection, and p2 still went out once.
    assert_own_answer(ask(gw, b"p3"), b"p3")
    assert len(up.with_marker(b"p2")) == 1
    assert up.with_marker(b"p3")[0].conn_id != 1


@pytest.mark.parametrize("close", ["rst", "fin"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_get_retried_on_fresh_connection_after_pooled_connection_dies(gateway, scripted, pki,
                                                                      scheme, close):
    """The same for an idempotent GET (a configured GET route): the gateway may
    send it again on a new connection, and the client gets that answer."""

    def respond(conn, req):
        if req.conn_id == 1 and req.seq_on_conn == 2:
            conn.reset() if close == "rst" else conn.close()
            return "done"
        conn.send(answer(req.marker))
        return None

    up = scripted(respond, tls_context(scheme, pki))
    gw = make_gateway(gateway, up, pki, routes=[{"path": "/v1/up-get", "provider": "openai",
                                                 "endpoint": "models", "method": "GET"}])

    def get(marker):
        with gw.connect() as c:
            return c.request("GET", "/v1/up-get", [("x-test-marker", marker.decode())])

    assert_own_answer(get(b"g1"), b"g1")
    assert up.with_marker(b"g1")[0].method == "GET"
    r = get(b"g2")
    assert_own_answer(r, b"g2")
    seen = [(q.conn_id, q.seq_on_conn, q.method) for q in up.with_marker(b"g2")]
    assert seen == [(1, 2, "GET"), (2, 1, "GET")], up.request_list()
