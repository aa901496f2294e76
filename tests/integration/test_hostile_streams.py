"""Hostile providers: a stream that never ends a line, or never ends an event,
costs the gateway a bounded amount of memory, and the client's stream ends
well-formed in its own format.

Each test runs a provider of its own (a raw socket server on 127.0.0.1, one
thread) that answers with a few good events, then 200 MB that never end a line
(or an event), then a proper end. The gateway's RSS (/proc/PID/status VmRSS) is
sampled while those bytes flow.

- Translated streams (an OpenAI client served by an anthropic-kind provider,
  an Anthropic client by an openai one) and the OpenAI pass-through the gateway
  rewrites (it asked for the usage chunk on the client's behalf): the client
  gets the events so far, then one error event in its format (OpenAI's
  `data: {"error":...}` with no `[DONE]`; Anthropic's `event: error`) as soon
  as the bound is passed -- the provider is held after the first 2 MB until the
  client has it -- and nothing after it; the rest of the 200 MB is read and
  dropped.
- A client that closes its connection at the error event (as the SDKs do)
  has the upstream connection closed with it.
- Watched pass-through streams (an OpenAI client that asked for the usage
  chunk, an Anthropic client on an anthropic provider): the bytes reach the
  client as they came, and the usage after the oversized event is still counted.
"""
import json
import os
import socket
import threading
import time

import pytest

from harness import access_line, wait_logged

MB = 1 << 20
TOTAL = 200 * MB                 # hostile bytes per test
FIRST = 2 * MB                   # sent before the provider waits for the client
RSS_GROWTH_MAX_MB = 48           # what one such stream may add to the gateway's RSS

CT_JSON = ("Content-Type", "application/json")

ANTHROPIC_GOOD = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-x","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":7,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hello"}}\n\n'
)
ANTHROPIC_END = (
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
    b'"stop_sequence":null},"usage":{"output_tokens":42}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def openai_chunk(delta, finish=None, usage_null=True):
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage_null:
        c["usage"] = None
    return b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n"


OPENAI_GOOD = openai_chunk({"role": "assistant", "content": ""}) + openai_chunk({"content": "Hello"})
OPENAI_END = (openai_chunk({}, "stop")
              + b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
                b'"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":42,"total_tokens":49}}\n\n'
              + b"data: [DONE]\n\n")

# The hostile part: one line that never ends, or one event whose data lines
# never meet a blank line.
ENDLESS_LINE = (b"data: ", b"x")
ENDLESS_EVENT = (b"", b'data: {"p":"' + b"y" * 1000 + b'"}\n')


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


class RssWatch:
    """Samples a process's RSS every 20 ms in a thread; `peak_growth_mb` is the
    largest growth over the first sample. Past `limit_mb` it calls `on_exceed`
    once (the test stops its provider: no need to send the rest)."""

    def __init__(self, pid: int, limit_mb: float, on_exceed):
        self.pid, self.limit_mb, self.on_exceed = pid, limit_mb, on_exceed
        self.base = rss_kb(pid)
        self.peak = self.base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        fired = False
        while not self.stop.wait(0.02):
            try:
                now = rss_kb(self.pid)
            except (OSError, AssertionError):
                return
            self.peak = max(self.peak, now)
            if not fired and self.peak_growth_mb > self.limit_mb:
                fired = True
                self.on_exceed()

    @property
    def peak_growth_mb(self) -> float:
        return (self.peak - self.base) / 1024

    def close(self):
        self.stop.set()
        self.thread.join(5)


class RawProvider:
    """A provider on 127.0.0.1: answers one request with an event stream, as
    HTTP chunks: `good`, then `prefix` and `total` bytes made of `unit`, then
    `end`, then the last chunk. After the first `pause_after` hostile bytes it
    waits for `release` (set by the test once the client has what it expects;
    at most 10 s). `sent` counts the hostile bytes written."""

    def __init__(self, good: bytes, hostile, end: bytes, total: int = TOTAL,
                 pause_after: int = 0):
        self.good, (self.prefix, self.unit), self.end = good, hostile, end
        self.total, self.pause_after = total, pause_after
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.sent = 0
        self.request_head = b""
        self.error = None
        self.conn = None
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read_request(self, conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("the gateway closed before its request head")
            buf += data
        head, _, body = buf.partition(b"\r\n\r\n")
        self.request_head = head
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            data = conn.recv(65536)
            if not data:
                raise ConnectionError("the gateway closed inside its request body")
            body += data

    @staticmethod
    def _chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    def _serve(self):
        try:
            conn, _ = self.lsock.accept()
        except OSError:
            return
        self.conn = conn
        conn.settimeout(30)
        try:
            self._read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + self._chunk(self.good + self.prefix))
            block = self.unit * max(1, MB // len(self.unit))
            paused = self.pause_after == 0
            while self.sent < self.total and not self.stopping.is_set():
                if not paused and self.sent >= self.pause_after:
                    paused = True
                    self.release.wait(10)
                conn.sendall(self._chunk(block))
                self.sent += len(block)
            if not self.stopping.is_set():
                conn.sendall(self._chunk(self.end) + b"0\r\n\r\n")
        except OSError as e:
            self.error = e
        finally:
            self.done.set()

    def stop(self):
        self.stopping.set()
        self.release.set()
        for s in (self.conn, self.lsock):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.thread.join(10)


@pytest.fixture
def make_provider():
    made = []

    def make(*args, **kw) -> RawProvider:
        p = RawProvider(*args, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def start_gateway(gateway, provider: RawProvider, kind: str):
    base = provider.url + ("/v1" if kind == "openai" else "")
    timeouts = {"connect": 5, "read": 30, "total": 120}
    env = None
    if os.environ.get("ASAN_OPTIONS"):
        # Freed memory in ASan's quarantine (256 MB by default) is not what is measured here.
        env = {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] + ":quarantine_size_mb=16"}
    return gateway(plugins=["key-auth", "access-log"], env=env, providers={
        "hostile": {"kind": kind, "base_url": base, "api_key": "sk-upstream", "timeouts": timeouts},
        "mock": {"kind": "mock"},
    })


class Stream:
    """The client's side of one streamed answer, read as it comes: the body's
    first and last bytes kept (not the 200 MB between), its length, whether the
    chunked body ended with its last chunk."""

    KEEP = 256 * 1024

    def __init__(self, gw, path: str, body: dict):
        self.conn = gw.connect(timeout=10)
        payload = json.dumps(body).encode()
        self.conn.send(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(payload), payload))
        self.head = self.conn.read_head(timeout=20)
        assert self.head.status == 200, self.head
        assert "chunked" in (self.head.header("transfer-encoding") or "")
        self.first = bytearray()
        self.last = b""
        self.length = 0
        self.complete = False
        self._pieces = self.conn.iter_body(self.head, timeout=120)

    def _take(self, data: bytes):
        self.length += len(data)
        if len(self.first) < self.KEEP:
            self.first += data[:self.KEEP - len(self.first)]
        self.last = (self.last + data)[-self.KEEP:]

    def read_until(self, marker: bytes):
        """Reads until the body so far holds marker (in what is kept of it)."""
        while marker not in bytes(self.first) and marker not in self.last:
            data = next(self._pieces, None)
            if data is None:
                return False
            self.head.chunks.clear()     # iter_body keeps every chunk: not 200 MB of them
            self._take(data)
        return True

    def read_to_end(self):
        for data in self._pieces:
            self.head.chunks.clear()
            self._take(data)
        self.complete = bool(getattr(self.head, "complete", False))

    def text(self) -> bytes:
        assert self.length <= self.KEEP, "the body is whole only when small"
        return bytes(self.first)

    def close(self):
        self.conn.close()


def sse_events(body: bytes):
    """(event name, decoded data) pairs of an SSE body; it must end an event."""
    body = body.replace(b"\r\n", b"\n")
    assert body.endswith(b"\n\n"), body[-200:]
    out = []
    for block in body.split(b"\n\n")[:-1]:
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].strip())
        if data:
            d = b"\n".join(data)
            out.append((name, "[DONE]" if d == b"[DONE]" else json.loads(d)))
    return out


# --- streams the gateway translates or rewrites: they end with an error event ---

CASES = {
    # id: (client path, request body, provider kind, good, end, client format)
    "openai-client-anthropic-provider": (
        "/v1/chat/completions",
        {"model": "hostile/claude-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        "anthropic", ANTHROPIC_GOOD, ANTHROPIC_END, "openai"),
    "anthropic-client-openai-provider": (
        "/v1/messages",
        {"model": "hostile/gpt-x", "stream": True, "max_tokens": 64,
         "messages": [{"role": "user", "content": "hi"}]},
        "openai", OPENAI_GOOD, OPENAI_END, "anthropic"),
    "openai-pass-through-usage-asked-by-the-gateway": (
        "/v1/chat/completions",
        {"model": "hostile/gpt-x", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        "openai", OPENAI_GOOD, OPENAI_END, "openai"),
}


@pytest.mark.parametrize("hostile", [ENDLESS_LINE, ENDLESS_EVENT], ids=["endless-line", "endless-event"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_stream_past_a_bound_ends_with_an_error_event_in_bounded_memory(gateway, make_provider, case, hostile):
    path, body, kind, good, end, client = CASES[case]
    provider = make_provider(good, hostile, end, pause_after=FIRST)
    gw = start_gateway(gateway, provider, kind)
    watch = RssWatch(gw.pid, RSS_GROWTH_MAX_MB, provider.stop)
    s = Stream(gw, path, body)
    try:
        # The error event comes while the provider waits after its first 2 MB:
        # at the bound, not at the end of the stream.
        marker = b'"error"' if client == "openai" else b"event: error"
        got_error = s.read_until(marker)
        sent_then = provider.sent
        provider.release.set()
        s.read_to_end()
        assert provider.done.wait(60), "the provider was never stopped"
    finally:
        watch.close()
        s.close()
    assert got_error, "no error event before the stream ended: %r" % s.last[-600:]
    assert sent_then <= FIRST + MB, sent_then
    assert watch.peak_growth_mb < RSS_GROWTH_MAX_MB, \
        "the gateway grew by %.0f MB while the provider streamed" % watch.peak_growth_mb
    # The response ended at the error event, and the upstream connection with
    # it: the provider's sending failed long before its 200 MB were through.
    assert provider.error is not None and provider.sent < TOTAL / 2, \
        "the gateway kept reading the refused stream (%d bytes)" % provider.sent

    # The events so far, then the error event, nothing after it; the body
    # ends with its last chunk.
    assert s.complete, "the response did not end with its last chunk"
    evs = sse_events(s.text())
    if client == "openai":
        assert evs[0][1]["choices"][0]["delta"].get("role") == "assistant"
        assert any(e[1]["choices"][0]["delta"].get("content") == "Hello" for e in evs[:-1])
        name, last = evs[-1]
        assert name is None and last["error"]["type"] == "server_error", evs[-1]
        assert "[DONE]" not in [e[1] for e in evs]
    else:
        assert evs[0][0] == "message_start"
        assert any(e[0] == "content_block_delta" and e[1]["delta"].get("text") == "Hello" for e in evs)
        name, last = evs[-1]
        assert name == "error" and last["type"] == "error" and last["error"]["type"] == "api_error", evs[-1]
        assert "message_stop" not in [e[0] for e in evs]
    message = last["error"]["message"]
    why = "event too large" if (kind == client or hostile is ENDLESS_EVENT) else "line too long"
    assert message.startswith("upstream stream failed: " + why), message
    assert [e for e in evs if e[0] == "error" or (isinstance(e[1], dict) and "error" in e[1])] == [evs[-1]]
    wait_logged(gw, "stream refused: " + why)

    # The tokens reported before it are counted, marked partial (an OpenAI
    # stream reports none before its end).
    line = access_line(gw, s.head.header("x-request-id"))
    if kind == "anthropic":
        assert line["partial"] == "true" and line["prompt_tokens"] == "7", line
    else:
        assert "prompt_tokens" not in line, line


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_client_leaving_at_the_error_event_cancels_the_upstream(gateway, make_provider, case):
    """What an SDK does (it raises at the error event and closes): the upstream
    connection is closed then, long before the provider's 200 MB are through."""
    path, body, kind, good, end, client = CASES[case]
    provider = make_provider(good, ENDLESS_LINE, end, pause_after=FIRST)
    gw = start_gateway(gateway, provider, kind)
    s = Stream(gw, path, body)
    got_error = s.read_until(b'"error"' if client == "openai" else b"event: error")
    s.close()
    provider.release.set()
    assert got_error, s.last[-600:]
    assert provider.done.wait(20), "the provider could send on"
    assert isinstance(provider.error, OSError), "the upstream connection stayed open"
    assert provider.sent < TOTAL // 2, provider.sent


# --- streams the gateway only watches: they pass on as they came -----------------

WATCHED = {
    "openai-client-asked-usage": (
        "/v1/chat/completions",
        {"model": "hostile/gpt-x", "stream": True, "stream_options": {"include_usage": True},
         "messages": [{"role": "user", "content": "hi"}]},
        "openai", OPENAI_GOOD, OPENAI_END),
    "anthropic-pass-through": (
        "/v1/messages",
        {"model": "hostile/claude-x", "stream": True, "max_tokens": 64,
         "messages": [{"role": "user", "content": "hi"}]},
        "anthropic", ANTHROPIC_GOOD, ANTHROPIC_END),
}


@pytest.mark.parametrize("case", list(WATCHED), ids=list(WATCHED))
def test_watched_stream_passes_on_in_bounded_memory_and_is_still_counted(gateway, make_provider, case):
    path, body, kind, good, end = WATCHED[case]
    provider = make_provider(good, ENDLESS_LINE, b"\n\n" + end)
    gw = start_gateway(gateway, provider, kind)
    watch = RssWatch(gw.pid, RSS_GROWTH_MAX_MB, provider.stop)
    s = Stream(gw, path, body)
    t0 = time.monotonic()
    try:
        s.read_to_end()
        assert provider.done.wait(30)
    finally:
        watch.close()
        s.close()
    assert watch.peak_growth_mb < RSS_GROWTH_MAX_MB, \
        "the gateway grew by %.0f MB while %d MB passed through (%.1f s)" % (
            watch.peak_growth_mb, provider.sent // MB, time.monotonic() - t0)
    assert provider.error is None and provider.sent >= TOTAL
    # every byte, as it came
    hostile = len(ENDLESS_LINE[0]) + TOTAL
    assert s.complete
    assert s.length == len(good) + hostile + 2 + len(end)
    assert bytes(s.first).startswith(good + ENDLESS_LINE[0] + b"xxxx")
    assert s.last.endswith(b"x\n\n" + end)
    # and the usage after the oversized event is counted
    line = access_line(gw, s.head.header("x-request-id"))
    assert line["completion_tokens"] == "42", line
    assert "partial" not in line
