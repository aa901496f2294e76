"""httpc.py -- a small raw HTTP/1.1 client for integration tests.

http.client hides exactly what these tests look at (framing, chunk boundaries,
whether the server closed the connection, malformed requests), so this client
works on bytes over a plain socket. Every call takes a timeout and turns it into
a deadline: nothing here can block forever.
"""
from __future__ import annotations

import json as _json
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Tuple, Union

Headers = Union[None, dict, Iterable[Tuple[str, str]]]


def _header_list(headers: Headers) -> List[Tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, dict):
        return list(headers.items())
    return list(headers)


def build_request(method: str, target: str, headers: Headers = None,
                  body: Optional[bytes] = None, version: str = "HTTP/1.1",
                  host: Optional[str] = "127.0.0.1", content_length: bool = True) -> bytes:
    """Serialise a request. Adds Host and Content-Length unless given (or disabled)."""
    hdrs = _header_list(headers)
    names = {k.lower() for k, _ in hdrs}
    if host is not None and "host" not in names:
        hdrs.insert(0, ("Host", host))
    if (body is not None and content_length and "content-length" not in names
            and "transfer-encoding" not in names):
        hdrs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, target, version)
    head += "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunked(pieces: Iterable[bytes], trailers: Headers = None) -> bytes:
    """Encode pieces as a chunked body (one chunk each, then the last chunk)."""
    out = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces if p)
    out += b"0\r\n"
    out += "".join("%s: %s\r\n" % kv for kv in _header_list(trailers)).encode("latin-1")
    return out + b"\r\n"


def chat_body(model: str = "echo", content: str = "hello", stream: bool = False,
              **extra) -> bytes:
    doc = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        doc["stream"] = True
    doc.update(extra)
    return _json.dumps(doc, ensure_ascii=False).encode("utf-8")


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: List[Tuple[str, str]]
    raw_head: bytes
    body: bytes = b""
    framing: str = "none"              # length | chunked | close | none
    chunks: List[bytes] = field(default_factory=list)
    complete: bool = False             # body ended as its framing says
    informational: List["Response"] = field(default_factory=list)   # 1xx seen before

    def header(self, name: str, default=None):
        vals = self.header_all(name)
        return vals[0] if vals else default

    def header_all(self, name: str) -> List[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name: str) -> bool:
        return bool(self.header_all(name))

    def connection_tokens(self) -> set:
        return {t.strip().lower() for v in self.header_all("connection") for t in v.split(",")
                if t.strip()}

    def will_close(self) -> bool:
        toks = self.connection_tokens()
        if "close" in toks:
            return True
        return self.version == "HTTP/1.0" and "keep-alive" not in toks

    @property
    def request_id(self) -> Optional[str]:
        return self.header("x-request-id")

    def json(self):
        return _json.loads(self.body)

    def __repr__(self):
        body = self.body[:300]
        return "<Response %s %d %r headers=%r body=%r%s>" % (
            self.version, self.status, self.reason, self.headers, body,
            "..." if len(self.body) > 300 else "")


class Closed(Exception):
    """The server closed the connection (EOF or RST) before a full response."""


def _deadline(timeout: float) -> float:
    return time.monotonic() + timeout


class Conn:
    """One client connection with its own read buffer."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    @classmethod
    def open(cls, port: int, host: str = "127.0.0.1", timeout: float = 5.0,
             rcvbuf: Optional[int] = None) -> "Conn":
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return cls(s)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes, timeout: float = 10.0):
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def request(self, method: str, target: str, headers: Headers = None,
                body: Optional[bytes] = None, timeout: float = 10.0, **kw) -> Response:
        self.send(build_request(method, target, headers, body, **kw), timeout)
        return self.read_response(timeout=timeout, method=method)

    # -- reading -----------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read more into buf. False on EOF/RST; TimeoutError past the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out reading from the gateway")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out reading from the gateway") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, sep: bytes, deadline: float) -> bytes:
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if not self._fill(deadline):
                raise Closed("connection closed before %r (have %r)" % (sep, bytes(self.buf[:200])))

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise Closed("connection closed with %d of %d bytes" % (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self, timeout: float = 10.0, skip_1xx: bool = True) -> Response:
        deadline = _deadline(timeout)
        informational = []
        while True:
            raw = self._read_until(b"\r\n\r\n", deadline)
            lines = raw[:-4].split(b"\r\n")
            parts = lines[0].decode("latin-1").split(" ", 2)
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                name, _, value = line.decode("latin-1").partition(":")
                headers.append((name, value.strip(" \t")))
            resp = Response(version, status, reason, headers, raw)
            if 100 <= status < 200 and status != 101 and skip_1xx:
                informational.append(resp)
                continue
            resp.informational = informational
            return resp

    def iter_body(self, resp: Response, timeout: float = 10.0,
                  method: str = "GET") -> Iterator[bytes]:
        """Yield body pieces as they arrive (a chunk's data for chunked bodies)."""
        deadline = _deadline(timeout)
        te = ",".join(resp.header_all("transfer-encoding")).lower()
        cl = resp.header_all("content-length")
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            resp.framing, resp.complete = "none", True
            return
        if "chunked" in te:
            resp.framing = "chunked"
            while True:
                size_line = self._read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    resp.complete = True
                    return
                data = self._read_exact(size, deadline)
                if self._read_exact(2, deadline) != b"\r\n":
                    raise AssertionError("chunk data not followed by CRLF")
                resp.chunks.append(data)
                yield data
        elif cl:
            resp.framing = "length"
            left = int(cl[0])
            while left > 0:
                if not self.buf and not self._fill(deadline):
                    raise Closed("connection closed with %d body bytes missing" % left)
                piece = bytes(self.buf[:left])
                del self.buf[:len(piece)]
                left -= len(piece)
                yield piece
            resp.complete = True
        else:
            resp.framing = "close"
            while True:
                if self.buf:
                    piece = bytes(self.buf)
                    self.buf.clear()
                    yield piece
                if not self._fill(deadline):
                    break
            resp.complete = True

    def read_body(self, resp: Response, timeout: float = 10.0, method: str = "GET") -> Response:
        resp.body = b"".join(self.iter_body(resp, timeout, method))
        return resp

    def read_response(self, timeout: float = 10.0, method: str = "GET",
                      skip_1xx: bool = True) -> Response:
        deadline = _deadline(timeout)
        resp = self.read_head(timeout, skip_1xx)
        return self.read_body(resp, max(0.01, deadline - time.monotonic()), method)

    def read_until_closed(self, timeout: float = 10.0) -> bytes:
        """Everything until EOF/RST; TimeoutError if the server keeps it open."""
        deadline = _deadline(timeout)
        while self._fill(deadline):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """True if the server closes within timeout (data meanwhile is discarded)."""
        try:
            self.read_until_closed(timeout)
            return True
        except TimeoutError:
            return False

    def is_open(self, within: float = 0.05) -> bool:
        """True if no EOF/RST shows up within `within` seconds (data is kept)."""
        deadline = _deadline(within)
        try:
            while self._fill(deadline):
                pass
            return False
        except TimeoutError:
            return True


def request(port: int, method: str, target: str, headers: Headers = None,
            body: Optional[bytes] = None, timeout: float = 10.0, **kw) -> Response:
    """One request on a fresh connection, which is then closed."""
    with Conn.open(port, timeout=timeout) as c:
        return c.request(method, target, headers, body, timeout=timeout, **kw)


def parse_sse(data: bytes) -> List[bytes]:
    """The `data:` payloads of an SSE body, in order (comments dropped)."""
    out = []
    for event in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        datas = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if datas:
            out.append(b"\n".join(datas))
    return out
