#!/usr/bin/env python3
"""mock_upstream.py -- a controllable OpenAI-compatible upstream for integration tests.

Runs an HTTP/1.1 server (plain or TLS) on its own asyncio loop in a background
thread, so a test can drive it from the main thread:

    mock = MockUpstream().start()           # or MockUpstream(ssl_context=ctx)
    ... point the gateway's provider base_url at mock.base_url ("http://127.0.0.1:PORT/v1")
    mock.requests[-1].header("authorization")
    mock.wait_conn_closed(conn_id, timeout=5)
    mock.stop()

It can also run as a script (`python3 mock_upstream.py --port 8081`), which is
handy for benchmarks and for poking at the gateway by hand.

What the mock records (all thread-safe to read through the helpers):
- every accepted connection (`accepted`, `conns[id]` with a `closed` threading.Event,
  the TLS SNI name, how many requests it carried);
- every request (`requests`: method, target, path, headers in wire order and case,
  decoded body, whether it was chunked, and what the mock sent back).

How it answers is chosen per request by the `x-mock-behavior` request header
(the gateway forwards end-to-end headers), or by `default_behavior` when the
header is absent. The value is a comma-separated list; one *body kind* plus any
number of *modifiers*:

body kinds
  json                  200 chat.completion with Content-Length (the default)
  chunked-json          the same JSON sent with Transfer-Encoding: chunked
  stream                SSE, chunked, one event per chunk, last event carries usage,
                        then `data: [DONE]`
  slow-stream[=SECS]    stream with SECS (default 0.2) between events
  hold                  headers + first event, then wait until the test calls
                        release(key) (key from `x-mock-key`, default "default");
                        `wait_held(key)` tells when the first event went out
  close-mid-stream      headers + two events, then close (FIN) without the last chunk
  reset-mid-stream      the same, but the close is a TCP RST
  close                 read the request, close without answering
  bad-response          answer with bytes that are not HTTP, then close
  big-body=N            200 JSON body of exactly N bytes, Content-Length
  big-stream=N          chunked SSE of about N payload bytes, 16 KiB events; stops
                        early if the peer goes away (for send-timeout tests)
  status=CODE           CODE with an OpenAI error body (429 adds Retry-After: 7)

modifiers
  delay-headers=SECS    wait SECS before sending anything (aborted if the peer closes)
  connection-close      send `Connection: close` and close after the response
  hop-headers           add hop-by-hop response headers the gateway must strip
  close-after=SECS      keep-alive response, then close the idle connection SECS later
                        without notice (a server dropping an idle keep-alive connection)
  dup-headers           add repeated response headers: two Set-Cookie and two X-Multi

Connections are keep-alive by default (HTTP/1.1), closed after a request that
asks for it (`Connection: close`, or HTTP/1.0 without keep-alive).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# ---------------------------------------------------------------------------
# Canned payloads. Formatting is deliberately unusual (spacing, escapes, raw
# UTF-8) so that byte-for-byte pass-through can be told apart from re-encoding.

CREATED = 1700000000


def chat_completion_body(model: str) -> bytes:
    """The JSON `json` answers with. Byte-exact; tests compare against it."""
    return (
        '{"id":"chatcmpl-mock-1","object":"chat.completion","created":%d,'
        '"model":%s,"choices":[{"index":0,"message":{"role":"assistant",'
        '"content":"Hello from the mock \\u00e9 caf\u00e9 \U0001f600"},'
        '"logprobs":null,"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21},'
        '  "system_fingerprint" : "fp_mock" }\n' % (CREATED, json.dumps(model))
    ).encode("utf-8")


def _chunk_event(model: str, delta: dict, finish=None, usage=None) -> bytes:
    obj = {
        "id": "chatcmpl-mock-2",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def sse_events(model: str) -> List[bytes]:
    """The events `stream` sends, one per HTTP chunk. The last data event carries usage."""
    events = [_chunk_event(model, {"role": "assistant", "content": ""})]
    events.append(b": mock keep-alive comment\n\n")
    for piece in ["Hel", "lo ", "fr\u00f6m ", "the ", "mock"]:
        events.append(_chunk_event(model, {"content": piece}))
    events.append(_chunk_event(model, {}, finish="stop",
                               usage={"prompt_tokens": 9, "completion_tokens": 5,
                                      "total_tokens": 14}))
    events.append(b"data: [DONE]\n\n")
    return events


def big_body(n: int) -> bytes:
    """A JSON document of exactly n bytes (n >= 32)."""
    head = b'{"object":"chat.completion","pad":"'
    tail = b'"}\n'
    if n < len(head) + len(tail):
        raise ValueError("big-body needs at least %d bytes" % (len(head) + len(tail)))
    fill = n - len(head) - len(tail)
    pattern = b"0123456789abcdefghijklmnopqrstuvwxyz"
    pad = (pattern * (fill // len(pattern) + 1))[:fill]
    return head + pad + tail


def error_body(status: int) -> bytes:
    return json.dumps({"error": {"message": "mock upstream error %d" % status,
                                 "type": "mock_error", "param": None,
                                 "code": "mock_%d" % status}}).encode()


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}

BIG_STREAM_EVENT = 16 * 1024
RECORD_LIMIT = 16 * 1024 * 1024      # don't keep more than this of a response in memory


# ---------------------------------------------------------------------------
# Records


def _lower_get(headers, name):
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


@dataclass
class MockRequest:
    conn_id: int
    seq_on_conn: int            # 1 for the first request on its connection
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: List[Tuple[str, str]]
    body: bytes
    chunked: bool
    raw_head: bytes
    behavior: str
    received_at: float
    status: Optional[int] = None
    sent_body: bytes = b""       # payload sent (de-chunked), up to RECORD_LIMIT
    sent_bytes: int = 0          # payload bytes sent in total
    completed: bool = False      # the whole response went out

    def header(self, name: str, default=None):
        vals = _lower_get(self.headers, name)
        return vals[0] if vals else default

    def header_all(self, name: str) -> List[str]:
        return _lower_get(self.headers, name)

    def has_header(self, name: str) -> bool:
        return bool(_lower_get(self.headers, name))

    def json(self):
        return json.loads(self.body)


@dataclass
class MockConn:
    id: int
    peer: Tuple
    sni: Optional[str] = None
    requests: int = 0
    closed: threading.Event = field(default_factory=threading.Event)
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: Optional[float] = None


class _PeerGone(Exception):
    pass


class _Conn:
    """Per-connection read buffer over an asyncio stream pair."""

    def __init__(self, rec: MockConn, reader, writer):
        self.rec = rec
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    async def fill(self):
        if self.eof:
            raise _PeerGone()
        try:
            data = await self.reader.read(65536)
        except (ConnectionError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            raise _PeerGone()
        self.buf += data

    async def read_until(self, sep: bytes, limit: int) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            await self.fill()

    async def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def watch_eof(self):
        """Return when the peer closes; data that arrives meanwhile is kept."""
        while not self.eof:
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, ssl.SSLError, OSError):
                data = b""
            if not data:
                self.eof = True
                return
            self.buf += data

    async def write(self, data: bytes):
        if self.eof and self.reset:
            raise _PeerGone()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError, OSError, RuntimeError) as e:
            raise _PeerGone() from e

    def abort_with_rst(self):
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.writer.transport.abort()


def parse_behavior(value: str) -> Tuple[str, Optional[str], Dict[str, Optional[str]]]:
    """'stream,delay-headers=2' -> ('stream', None, {'delay-headers': '2'})."""
    kinds = {"json", "chunked-json", "stream", "slow-stream", "hold", "close-mid-stream",
             "reset-mid-stream", "close", "bad-response", "big-body", "big-stream", "status"}
    kind, arg, mods = "json", None, {}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, val = item.partition("=")
        name = name.strip().lower()
        val = val.strip() if _ else None
        if name in kinds:
            kind, arg = name, val
        else:
            mods[name] = val
    return kind, arg, mods


# ---------------------------------------------------------------------------
# The server


class MockUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: Optional[ssl.SSLContext] = None, backlog: int = 4096,
                 default_behavior: str = "json"):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.backlog = backlog
        self.default_behavior = default_behavior
        self.requests: List[MockRequest] = []
        self.conns: Dict[int, MockConn] = {}
        self.sni_names: List[Optional[str]] = []
        self._cond = threading.Condition()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._start_error: Optional[BaseException] = None
        self._writers = set()
        self._next_conn = 0
        self._held: Dict[str, threading.Event] = {}
        self._release: Dict[str, asyncio.Event] = {}
        self._released_keys = set()
        if ssl_context is not None:
            ssl_context.sni_callback = self._sni_callback

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 10.0) -> "MockUpstream":
        self._thread = threading.Thread(target=self._run, name="mock-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("mock upstream did not start within %ss" % timeout)
        if self._start_error is not None:
            raise RuntimeError("mock upstream failed to start") from self._start_error
        return self

    def stop(self, timeout: float = 10.0):
        loop = self._loop
        if loop is None or self._thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    @property
    def base_url(self) -> str:
        """What a provider's base_url should be: the OpenAI convention includes /v1."""
        return self.url + "/v1"

    def _run(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        # Failed TLS handshakes and peers vanishing are what the tests provoke:
        # keep them out of stderr.
        loop.set_exception_handler(lambda _loop, _ctx: None)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(
                self._handle, self.host, self.port, ssl=self.ssl_context,
                backlog=self.backlog, reuse_address=True))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as e:  # noqa: BLE001 -- reported to start()
            self._start_error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _shutdown(self):
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._loop.call_later(0.05, self._loop.stop)

    def _sni_callback(self, sslobj, server_name, _ctx):
        with self._cond:
            self.sni_names.append(server_name)
        try:
            sslobj.mock_sni = server_name
        except AttributeError:
            pass
        return None

    # -- what tests read ---------------------------------------------------

    @property
    def accepted(self) -> int:
        with self._cond:
            return len(self.conns)

    @property
    def open_conns(self) -> int:
        with self._cond:
            return sum(1 for c in self.conns.values() if not c.closed.is_set())

    @property
    def closed_conns(self) -> int:
        with self._cond:
            return sum(1 for c in self.conns.values() if c.closed.is_set())

    def request_list(self) -> List[MockRequest]:
        with self._cond:
            return list(self.requests)

    def last_request(self) -> MockRequest:
        with self._cond:
            if not self.requests:
                raise AssertionError("the mock upstream received no request")
            return self.requests[-1]

    def wait_for(self, predicate, timeout: float, what: str = "condition"):
        """Wait until predicate() (called under the mock's lock) is true."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError("mock upstream: timed out after %.1fs waiting for %s"
                                   % (timeout, what))

    def wait_requests(self, n: int, timeout: float = 10.0) -> List[MockRequest]:
        self.wait_for(lambda: len(self.requests) >= n, timeout, "%d request(s)" % n)
        return self.request_list()

    def wait_conn_closed(self, conn_id: int, timeout: float = 10.0) -> bool:
        with self._cond:
            conn = self.conns[conn_id]
        return conn.closed.wait(timeout)

    def wait_closed_count(self, n: int, timeout: float = 10.0):
        self.wait_for(lambda: sum(1 for c in self.conns.values() if c.closed.is_set()) >= n,
                      timeout, "%d closed connection(s)" % n)

    def wait_completed(self, req: MockRequest, timeout: float = 10.0):
        self.wait_for(lambda: req.completed, timeout, "the response to be sent")

    def wait_held(self, key: str = "default", timeout: float = 10.0) -> bool:
        with self._cond:
            ev = self._held.setdefault(key, threading.Event())
        return ev.wait(timeout)

    def release(self, key: str = "default"):
        """Let `hold` responses with this key go on (also ones that arrive later)."""
        with self._cond:
            self._released_keys.add(key)
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._set_release, key)

    def reset_records(self):
        with self._cond:
            self.requests.clear()

    # -- connection handling (loop thread) ---------------------------------

    def _set_release(self, key):
        self._release.setdefault(key, asyncio.Event()).set()

    def _release_event(self, key) -> asyncio.Event:
        ev = self._release.setdefault(key, asyncio.Event())
        with self._cond:
            if key in self._released_keys:
                ev.set()
        return ev

    async def _handle(self, reader, writer):
        with self._cond:
            self._next_conn += 1
            rec = MockConn(id=self._next_conn, peer=writer.get_extra_info("peername"))
            sslobj = writer.get_extra_info("ssl_object")
            if sslobj is not None:
                rec.sni = getattr(sslobj, "mock_sni", None)
            self.conns[rec.id] = rec
            self._cond.notify_all()
        self._writers.add(writer)
        conn = _Conn(rec, reader, writer)
        rst = False
        try:
            while True:
                req = await self._read_request(conn)
                if req is None:
                    break
                keep, rst = await self._respond(conn, req)
                if not keep:
                    break
        except (_PeerGone, ConnectionError, ssl.SSLError, OSError, ValueError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._writers.discard(writer)
            try:
                if rst:
                    conn.abort_with_rst()
                else:
                    writer.close()
            except Exception:  # noqa: BLE001
                pass
            with self._cond:
                rec.closed_at = time.monotonic()
                rec.closed.set()
                self._cond.notify_all()

    async def _read_request(self, conn: _Conn) -> Optional[MockRequest]:
        try:
            head = await conn.read_until(b"\r\n\r\n", 1 << 20)
        except _PeerGone:
            return None
        lines = head[:-4].split(b"\r\n")
        method, target, version = lines[0].decode("latin-1").split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name, value.strip(" \t")))
        te = ",".join(_lower_get(headers, "transfer-encoding")).lower()
        chunked = "chunked" in te
        body = b""
        if chunked:
            parts = []
            while True:
                size_line = await conn.read_until(b"\r\n", 4096)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await conn.read_until(b"\r\n", 65536)) != b"\r\n":
                        pass
                    break
                parts.append(await conn.read_exact(size))
                await conn.read_exact(2)
            body = b"".join(parts)
        else:
            cl = _lower_get(headers, "content-length")
            if cl:
                body = await conn.read_exact(int(cl[0]))
        path, _, query = target.partition("?")
        conn.rec.requests += 1
        behavior = None
        for k, v in headers:
            if k.lower() == "x-mock-behavior":
                behavior = v
        if behavior is None:
            behavior = self.default_behavior
        req = MockRequest(conn_id=conn.rec.id, seq_on_conn=conn.rec.requests, method=method,
                          target=target, path=path, query=query, version=version,
                          headers=headers, body=body, chunked=chunked, raw_head=head,
                          behavior=behavior, received_at=time.monotonic())
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()
        return req

    async def _pause(self, conn: _Conn, delay: Optional[float] = None,
                     event: Optional[asyncio.Event] = None):
        """Wait for delay/event; raise _PeerGone as soon as the peer closes."""
        waiters = []
        if delay is not None:
            waiters.append(asyncio.ensure_future(asyncio.sleep(delay)))
        if event is not None:
            waiters.append(asyncio.ensure_future(event.wait()))
        eof = asyncio.ensure_future(conn.watch_eof())
        done, pending = await asyncio.wait(waiters + [eof], return_when=asyncio.FIRST_COMPLETED)
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if eof in done:
            raise _PeerGone()

    def _record_sent(self, req: MockRequest, payload: bytes):
        req.sent_bytes += len(payload)
        if len(req.sent_body) < RECORD_LIMIT:
            req.sent_body += payload

    async def _respond(self, conn: _Conn, req: MockRequest) -> Tuple[bool, bool]:
        """Answer one request. Returns (keep the connection, close it with RST)."""
        kind, arg, mods = parse_behavior(req.behavior)
        conn_tokens = {t.strip().lower() for v in req.header_all("connection")
                       for t in v.split(",")}
        keep = "close" not in conn_tokens
        if req.version == "HTTP/1.0" and "keep-alive" not in conn_tokens:
            keep = False
        if "connection-close" in mods:
            keep = False

        if "delay-headers" in mods:
            await self._pause(conn, delay=float(mods["delay-headers"] or 1))

        if kind == "close":
            return False, False
        if kind == "bad-response":
            await conn.write(b"this is \x00 not HTTP at all\r\n\r\n")
            req.completed = True
            return False, False

        model = "mock-model"
        try:
            model = str(json.loads(req.body).get("model", model)) if req.body else model
        except (ValueError, AttributeError):
            pass

        extra = []
        if "hop-headers" in mods:
            extra += [("Connection", "X-Hop-Server, keep-alive"), ("X-Hop-Server", "secret"),
                      ("Keep-Alive", "timeout=3, max=7"), ("Proxy-Authenticate", "Basic realm=mock"),
                      ("Upgrade", "h2c"), ("Trailer", "X-Mock-Trailer"),
                      ("X-End-To-End-Response", "kept")]
        elif not keep:
            extra.append(("Connection", "close"))
        if "dup-headers" in mods:
            extra += [("Set-Cookie", "a=1; Path=/"), ("X-Multi", "one"), ("Set-Cookie", "b=2"),
                      ("X-Multi", "two")]
        extra.append(("X-Mock-Conn", str(conn.rec.id)))

        def head(status, headers):
            lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
            lines += ["%s: %s" % kv for kv in headers + extra]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        def chunk(data: bytes) -> bytes:
            return b"%x\r\n" % len(data) + data + b"\r\n"

        sse_headers = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                       ("Transfer-Encoding", "chunked")]

        if kind in ("json", "big-body", "status"):
            if kind == "json":
                status, body = 200, chat_completion_body(model)
            elif kind == "big-body":
                status, body = 200, big_body(int(arg))
            else:
                status, body = int(arg), error_body(int(arg))
            hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            if kind == "status" and status == 429:
                hdrs.append(("Retry-After", "7"))
            req.status = status
            await conn.write(head(status, hdrs) + body)
            self._record_sent(req, body)
        elif kind == "chunked-json":
            body = chat_completion_body(model)
            req.status = 200
            await conn.write(head(200, [("Content-Type", "application/json"),
                                        ("Transfer-Encoding", "chunked")]))
            for piece in (body[:10], body[10:40], body[40:]):
                await conn.write(chunk(piece))
                self._record_sent(req, piece)
            await conn.write(b"0\r\n\r\n")
        elif kind in ("stream", "slow-stream", "hold", "close-mid-stream", "reset-mid-stream"):
            events = sse_events(model)
            req.status = 200
            await conn.write(head(200, sse_headers))
            interval = float(arg or 0.2) if kind == "slow-stream" else None
            for i, ev in enumerate(events):
                if kind in ("close-mid-stream", "reset-mid-stream") and i == 2:
                    return False, kind == "reset-mid-stream"
                if i > 0 and interval:
                    await self._pause(conn, delay=interval)
                if i == 1 and kind == "hold":
                    key = req.header("x-mock-key", "default")
                    with self._cond:
                        self._held.setdefault(key, threading.Event()).set()
                    await self._pause(conn, event=self._release_event(key))
                await conn.write(chunk(ev))
                self._record_sent(req, ev)
            await conn.write(b"0\r\n\r\n")
        elif kind == "big-stream":
            total = int(arg)
            req.status = 200
            await conn.write(head(200, sse_headers))
            n = 0
            pad = b"x" * BIG_STREAM_EVENT
            while n < total:
                ev = b'data: {"pad":"' + pad + b'"}\n\n'
                await conn.write(chunk(ev))
                self._record_sent(req, ev)
                n += len(ev)
            await conn.write(b"0\r\n\r\n")
        else:
            raise ValueError("unknown behavior %r" % kind)

        req.completed = True
        with self._cond:
            self._cond.notify_all()

        if keep and "close-after" in mods:
            try:
                await self._pause(conn, delay=float(mods["close-after"] or 0))
            except _PeerGone:
                pass
            return False, False
        return keep, False


# ---------------------------------------------------------------------------
# Script entry point


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Mock OpenAI-compatible upstream.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert", help="PEM certificate chain: serve TLS")
    ap.add_argument("--key", help="PEM private key for --cert")
    ap.add_argument("--behavior", default="json",
                    help="default behaviour when a request has no x-mock-behavior header")
    args = ap.parse_args(argv)
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    mock = MockUpstream(args.host, args.port, ssl_context=ctx,
                        default_behavior=args.behavior).start()
    print("mock upstream listening on %s (base_url %s)" % (mock.url, mock.base_url), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    mock.stop()
    print("mock upstream: %d connection(s), %d request(s)" % (mock.accepted, len(mock.requests)),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
