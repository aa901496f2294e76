#!/usr/bin/env python3
"""driver.py -- the soak's load, its accounting and the memory report.

Started by tests/soak/run.sh against a running gateway (see tests/soak/README.md);
Python 3 standard library only, one asyncio loop, raw HTTP/1.1 on 127.0.0.1.

Load: `--rps` non-stream requests a second spread over request lanes (each keeps
one keep-alive connection), and `--streams` stream lanes that each run one slow
stream after another, so that about that many streams are open at any time. Every
`--reload-min`..`--reload-max` seconds a reload: SIGHUP and POST /admin/reload in
turn.

Accounting: every request has its own x-request-id and one outcome: `ok` (the
answer its kind expects, checked down to the body or the stream's last event),
`left` (the client went away on purpose), or `fail` with a reason. The gateway's
access lines are matched to the requests as its log grows: the status logged must
be the status the client saw.

Memory: the gateway's VmRSS, VmHWM and RssAnon, its open fds, threads and CPU,
and the Lua memory from /admin/status every `--sample` seconds (TSV file), a
table minute by minute, and the least-squares slope of RSS over the second half.

Exit status: 0 when nothing was lost and the slope is under the threshold (checked
on runs of 10 minutes or more, or when --max-slope is given), 1 otherwise, 2 when
the run could not start.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import socket
import struct
import sys
import time
from collections import Counter, defaultdict

HOST = "127.0.0.1"
KEY = "sk-soak-client"
TEXTS = ("Hello from the mock", "Hello fr\u00f6m the mock")   # Anthropic/Gemini, OpenAI pieces
TOOL_ARGS = {"city": "Paris"}
REQ_TIMEOUT = 30.0
MAX_BODY = 256 * 1024          # server.max_body_size in the config run.sh writes
LAT_KEEP = 20000               # latency samples kept per kind
# RSS growth over the second half that fails the run, KB per minute (README:
# "Thresholds"): ~11 bytes per request at the default load, ~3 standard errors
# of the noise of a flat 30-minute run.
DEFAULT_MAX_SLOPE = 128.0

OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "weather of a city",
                    "input_schema": {"type": "object",
                                     "properties": {"city": {"type": "string"}}}}]

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray "
         "yankee zulu").split()


def prompt(rng: random.Random) -> str:
    """Prompts of a few words to a few KB, so buffers of many sizes come and go."""
    n = int(rng.choice((3, 8, 20, 60, 200, 600)) * rng.uniform(0.5, 1.5)) + 1
    return " ".join(rng.choice(WORDS) for _ in range(n))


# ---------------------------------------------------------------------------
# A small HTTP/1.1 client


class Closed(Exception):
    """The connection ended where an answer was due."""


class Response:
    def __init__(self, status, headers, body=b""):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def closes(self) -> bool:
        return "close" in (self.header("connection") or "").lower()

    def short(self, n=300) -> str:
        return "%d %s" % (self.status, self.body[:n].decode("utf-8", "replace"))


class Conn:
    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.used = 0

    @classmethod
    async def open(cls, port):
        r, w = await asyncio.open_connection(HOST, port, limit=1 << 20)
        return cls(r, w)

    def close(self, reset=False):
        try:
            if reset:
                sock = self.w.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.w.close()
        except Exception:  # noqa: BLE001 -- closing a broken connection
            pass

    async def send(self, data: bytes):
        self.w.write(data)
        await self.w.drain()

    async def head(self) -> Response:
        try:
            raw = await self.r.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            raise Closed("connection closed before the response head (%d bytes of it)"
                         % len(e.partial)) from None
        except ConnectionError as e:
            raise Closed("connection error before the response head: %s" % e) from None
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise Closed("not an HTTP response: %r" % lines[0][:100])
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        return Response(int(parts[1]), headers)

    async def chunks(self):
        """The pieces of a chunked body, up to its terminal chunk."""
        while True:
            try:
                line = await self.r.readuntil(b"\r\n")
                size = int(line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while (await self.r.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return
                data = await self.r.readexactly(size + 2)
            except (asyncio.IncompleteReadError, ConnectionError):
                raise Closed("the chunked body ended without its terminal chunk") from None
            except ValueError:
                raise Closed("bad chunk size line %r" % line[:40]) from None
            yield data[:-2]

    async def body(self, method: str, resp: Response) -> bytes:
        if method == "HEAD" or resp.status in (204, 304) or resp.status < 200:
            return b""
        if "chunked" in (resp.header("transfer-encoding") or "").lower():
            return b"".join([p async for p in self.chunks()])
        cl = resp.header("content-length")
        if cl is not None:
            try:
                return await self.r.readexactly(int(cl))
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                got = len(getattr(e, "partial", b""))
                raise Closed("body cut short: %d of %s bytes" % (got, cl)) from None
        return await self.r.read()


def request_bytes(method, path, port, headers, body=None) -> bytes:
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (HOST, port)]
    lines += ["%s: %s" % kv for kv in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def sse_events(data: bytes):
    """[(event name or None, data)] of an SSE body; comments skipped."""
    out = []
    for block in data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n\n"):
        name, datas = None, []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                name = value
            elif field == "data":
                datas.append(value)
        if name is not None or datas:
            out.append((name, "\n".join(datas)))
    return out


# ---------------------------------------------------------------------------
# What each answer must be. Each check returns None when the answer is the one
# expected, else why not.


def check_rid(resp, rid):
    got = resp.header("x-request-id")
    if got != rid:
        return "x-request-id %r, expected %r" % (got, rid)
    return None


def check_chat(resp, tools=False, echo=None):
    if resp.status != 200:
        return "status %s, expected 200" % resp.short()
    try:
        doc = resp.json()
        ch = doc["choices"][0]
        msg = ch["message"]
        if doc.get("object") != "chat.completion":
            return "object %r" % doc.get("object")
        if tools:
            call = msg["tool_calls"][0]["function"]
            if ch["finish_reason"] != "tool_calls" or json.loads(call["arguments"]) != TOOL_ARGS:
                return "not the tool call: %s" % resp.short()
        elif echo is not None:
            if msg["content"] != echo:
                return "echo answered %r" % (msg["content"][:80],)
        elif not any(msg["content"].startswith(t) for t in TEXTS):
            return "content %r" % (msg["content"][:80],)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return "not a chat completion (%s): %s" % (e, resp.short())
    return None


def check_message(resp, tools=False):
    if resp.status != 200:
        return "status %s, expected 200" % resp.short()
    try:
        doc = resp.json()
        if doc.get("type") != "message":
            return "type %r" % doc.get("type")
        block = doc["content"][0]
        if tools:
            if doc["stop_reason"] != "tool_use" or block["type"] != "tool_use" \
                    or block["input"] != TOOL_ARGS:
                return "not the tool use: %s" % resp.short()
        elif block["type"] != "text" or not any(block["text"].startswith(t) for t in TEXTS):
            return "content %r" % (block,)
    except (ValueError, KeyError, IndexError, TypeError) as e:
        return "not a message (%s): %s" % (e, resp.short())
    return None


def check_error(resp, rid, status, anthropic=False, etype=None, code=None, retry_after=False):
    if resp.status != status:
        return "status %s, expected %d" % (resp.short(), status)
    try:
        doc = resp.json()
        if anthropic:
            err = doc["error"]
            if doc.get("type") != "error":
                return "not Anthropic's envelope: %s" % resp.short()
        else:
            err = doc["error"]
            if err.get("code") is None and code is not None:
                return "no code: %s" % resp.short()
            if err.get("request_id") != rid:
                return "request_id %r in the envelope, expected %r" % (err.get("request_id"), rid)
        if not isinstance(err.get("message"), str) or not err["message"]:
            return "no message: %s" % resp.short()
        if etype is not None and err.get("type") != etype:
            return "error type %r, expected %r" % (err.get("type"), etype)
        if code is not None and err.get("code") != code:
            return "error code %r, expected %r" % (err.get("code"), code)
    except (ValueError, KeyError, TypeError) as e:
        return "not an error envelope (%s): %s" % (e, resp.short())
    if retry_after and not (resp.header("retry-after") or "").isdigit():
        return "no Retry-After on a 429"
    return None


def check_openai_stream(events, error=False):
    if not events:
        return "no event"
    if error:
        if events[-1][1] == "[DONE]":
            return "[DONE] after an upstream failure"
        try:
            last = json.loads(events[-1][1])
        except ValueError:
            return "last event is not JSON: %r" % events[-1][1][:100]
        if not isinstance(last, dict) or not isinstance(last.get("error"), dict):
            return "the stream did not end with an error event: %r" % events[-1][1][:200]
        return None
    if events[-1][1] != "[DONE]":
        return "the stream did not end with [DONE]: %r" % events[-1][1][:200]
    text = []
    for _, data in events[:-1]:
        try:
            obj = json.loads(data)
        except ValueError:
            return "event is not JSON: %r" % data[:100]
        if "error" in obj:
            return "error event: %r" % data[:200]
        for ch in obj.get("choices") or []:
            text.append((ch.get("delta") or {}).get("content") or "")
    if "".join(text) not in TEXTS:
        return "streamed text %r" % "".join(text)[:100]
    return None


def check_anthropic_stream(events, error=False):
    names = [n for n, _ in events]
    if not names or names[0] != "message_start":
        return "the stream did not start with message_start: %r" % names[:3]
    if error:
        if names[-1] != "error":
            return "the stream did not end with an error event: %r" % names[-3:]
        return None
    if names[-1] != "message_stop":
        return "the stream did not end with message_stop: %r" % (events[-1],)
    if "error" in names:
        return "error event in the stream"
    text = []
    for name, data in events:
        if name == "content_block_delta":
            d = json.loads(data).get("delta") or {}
            text.append(d.get("text") or "")
    if "".join(text) not in TEXTS:
        return "streamed text %r" % "".join(text)[:100]
    return None


# ---------------------------------------------------------------------------
# Outcomes


class Fail(Exception):
    """The request did not get its expected answer."""


class Tally:
    def __init__(self):
        self.sent = 0
        self.ok = 0
        self.left = 0
        self.failed = 0
        self.reasons = Counter()
        self.examples = defaultdict(list)
        self.lat = []
        self.lat_seen = 0


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(math.ceil(p / 100.0 * len(xs))) - 1)]


def least_squares(points):
    """(slope, standard error of the slope) of y over x."""
    n = len(points)
    if n < 3:
        return float("nan"), float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return float("nan"), float("nan")
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    resid = sum((y - (my + slope * (x - mx))) ** 2 for x, y in points)
    return slope, math.sqrt(resid / (n - 2) / sxx)


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out if "VmRSS" in out else None      # gone, or a zombie


CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """CPU seconds (user + system) of a process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return None


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


# ---------------------------------------------------------------------------
# The driver


class Driver:
    def __init__(self, args):
        self.a = args
        self.port = args.port
        self.rng = random.Random(args.seed)
        self.tally = defaultdict(Tally)
        self.log = LogReader(args.log)
        # --only: a subset of the mix, to find which traffic a problem comes with
        only = [x.strip() for x in (args.only or "").split(",") if x.strip()]
        keep = (lambda name: any(name.startswith(x) for x in only)) if only else (lambda _: True)
        self.req_kinds = [k for k in self.REQ_KINDS if keep(k[0])] if args.rps > 0 else []
        self.stream_kinds = [k for k in self.STREAM_KINDS if keep(k[0])]
        self.req_lanes = args.req_lanes if self.req_kinds else 0
        self.stream_lanes = args.streams if self.stream_kinds else 0
        self.inflight = {}              # request id -> kind
        self.seq = 0
        self.stopping = False
        self.interrupted = False
        self.skipped = 0                # request tickets dropped: lanes all busy
        self.samples = []
        self.reloads = 0
        self.admin_auth = None
        self.start = None
        self.done_total = 0

    # -- bookkeeping ---------------------------------------------------------

    def new_rid(self, kind):
        self.seq += 1
        rid = "soak-%s-%d" % (kind, self.seq)
        self.inflight[rid] = kind
        self.tally[kind].sent += 1
        return rid

    def record(self, kind, rid, outcome, status=None, reason=None, t0=None, logged=True):
        if self.inflight.pop(rid, None) is None:
            return                      # already counted (a pipelined batch cut short)
        t = self.tally[kind]
        self.done_total += 1
        if outcome == "ok":
            t.ok += 1
        elif outcome == "left":
            t.left += 1
        else:
            t.failed += 1
            t.reasons[reason] += 1
            if len(t.examples[reason]) < 3:
                t.examples[reason].append(rid)
        if t0 is not None and outcome == "ok":
            t.lat_seen += 1
            ms = (time.monotonic() - t0) * 1000
            if len(t.lat) < LAT_KEEP:
                t.lat.append(ms)
            else:
                i = self.rng.randrange(t.lat_seen)
                if i < LAT_KEEP:
                    t.lat[i] = ms
        if logged:
            self.log.expect(rid, kind, status, outcome)

    # -- one exchange on a lane's connection ------------------------------------

    async def exchange(self, lane, method, path, headers, body=None):
        """Send one request on the lane's keep-alive connection, read the whole answer."""
        if lane.conn is None:
            lane.conn = await Conn.open(self.port)
        conn = lane.conn
        conn.used += 1
        reused = conn.used > 1
        try:
            await conn.send(request_bytes(method, path, self.port, headers, body))
            resp = await conn.head()
            resp.body = await conn.body(method, resp)
        except (Closed, ConnectionError) as e:
            lane.drop()
            raise Fail("%s%s" % (e, " (reused connection)" if reused else "")) from None
        if resp.closes():
            lane.drop()
        return resp

    def hdrs(self, rid, behavior=None, extra=(), key=KEY, anthropic=False):
        h = [("Content-Type", "application/json"), ("x-request-id", rid)]
        if key is not None:
            h.append(("x-api-key", key) if anthropic else ("Authorization", "Bearer " + key))
        if anthropic:
            h.append(("anthropic-version", "2023-06-01"))
        if behavior:
            h.append(("x-mock-behavior", behavior))
        h.extend(extra)
        return h

    def chat_body(self, model, stream=False, tools=False, content=None, **extra):
        doc = {"model": model, "messages": [
            {"role": "system", "content": "You are a soak test."},
            {"role": "user", "content": content or prompt(self.rng)}]}
        if stream:
            doc["stream"] = True
            if self.rng.random() < 0.5:
                doc["stream_options"] = {"include_usage": True}
        if tools:
            doc["tools"] = OPENAI_TOOLS
        doc.update(extra)
        return json.dumps(doc).encode()

    def messages_body(self, model, stream=False, tools=False):
        doc = {"model": model, "max_tokens": 64, "system": "You are a soak test.",
               "messages": [{"role": "user", "content": prompt(self.rng)}]}
        if stream:
            doc["stream"] = True
        if tools:
            doc["tools"] = ANTHROPIC_TOOLS
        return json.dumps(doc).encode()

    # -- request kinds: (name, weight, coroutine(lane, rid) -> status; raises Fail) --

    async def k_chat(self, lane, rid):
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("gpt-soak"))
        return r, check_chat(r)

    async def k_echo(self, lane, rid):
        text = prompt(self.rng)
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("echo", content=text))
        return r, check_chat(r, echo=text)

    async def k_messages(self, lane, rid):
        tools = self.rng.random() < 0.25
        r = await self.exchange(lane, "POST", "/v1/messages", self.hdrs(rid, anthropic=True),
                                self.messages_body("claude-soak", tools=tools))
        return r, check_message(r, tools)

    async def k_chat_to_anthropic(self, lane, rid):
        tools = self.rng.random() < 0.25
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("claude-soak", tools=tools))
        return r, check_chat(r, tools)

    async def k_chat_to_gemini(self, lane, rid):
        tools = self.rng.random() < 0.25
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("gemini-soak", tools=tools))
        return r, check_chat(r, tools)

    async def k_messages_to_openai(self, lane, rid):
        tools = self.rng.random() < 0.25
        r = await self.exchange(lane, "POST", "/v1/messages", self.hdrs(rid, anthropic=True),
                                self.messages_body("gpt-soak", tools=tools))
        return r, check_message(r, tools)

    async def k_messages_to_gemini(self, lane, rid):
        r = await self.exchange(lane, "POST", "/v1/messages", self.hdrs(rid, anthropic=True),
                                self.messages_body("gemini-soak"))
        return r, check_message(r)

    async def failover(self, lane, rid, alias):
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body(alias))
        why = check_chat(r)
        if why is None and r.header("x-aigw-provider") != "openai":
            why = "served by %r, expected the good target" % r.header("x-aigw-provider")
        return r, why

    async def k_failover_refused(self, lane, rid):
        return await self.failover(lane, rid, "soak-failover")

    async def k_failover_ttfb(self, lane, rid):
        return await self.failover(lane, rid, "soak-ttfb-failover")

    async def k_failover_breaker(self, lane, rid):
        return await self.failover(lane, rid, "soak-breaker")

    async def k_bad_json(self, lane, rid):
        body = self.chat_body("gpt-soak")[:-7]            # cut inside the messages
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid), body)
        return r, check_error(r, rid, 400, etype="invalid_request_error", code="invalid_json")

    async def k_bad_key(self, lane, rid):
        anthropic = self.rng.random() < 0.5
        path = "/v1/messages" if anthropic else "/v1/chat/completions"
        body = self.messages_body("claude-soak") if anthropic else self.chat_body("gpt-soak")
        r = await self.exchange(lane, "POST", path, self.hdrs(rid, key="sk-wrong",
                                                               anthropic=anthropic), body)
        return r, check_error(r, rid, 401, anthropic=anthropic, etype="authentication_error")

    async def k_unknown_model(self, lane, rid):
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("gpt-unknown-%d" % self.rng.randrange(1000)))
        return r, check_error(r, rid, 404, code="model_not_found")

    async def k_upstream_500(self, lane, rid):
        r = await self.exchange(lane, "POST", "/v1/chat/completions",
                                self.hdrs(rid, "status=500"), self.chat_body("gpt-soak"))
        return r, check_error(r, rid, 502, etype="server_error", code="upstream_error")

    async def k_upstream_429(self, lane, rid):
        if self.rng.random() < 0.5:
            r = await self.exchange(lane, "POST", "/v1/messages",
                                    self.hdrs(rid, "status=429", anthropic=True),
                                    self.messages_body("claude-soak"))
            return r, check_error(r, rid, 429, anthropic=True, etype="rate_limit_error",
                                  retry_after=True)
        r = await self.exchange(lane, "POST", "/v1/chat/completions",
                                self.hdrs(rid, "status=429"), self.chat_body("gpt-soak"))
        return r, check_error(r, rid, 429, etype="rate_limit_error", retry_after=True)

    async def k_refused(self, lane, rid):
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("dead/gpt-dead"))
        return r, check_error(r, rid, 502, code="upstream_connect_failed")

    async def k_hang(self, lane, rid):
        if self.rng.random() < 0.3:
            r = await self.exchange(lane, "POST", "/v1/messages", self.hdrs(rid, anthropic=True),
                                    self.messages_body("hang/gpt-hang"))
            return r, check_error(r, rid, 504, anthropic=True)
        stream = self.rng.random() < 0.3
        r = await self.exchange(lane, "POST", "/v1/chat/completions", self.hdrs(rid),
                                self.chat_body("hang/gpt-hang", stream=stream))
        return r, check_error(r, rid, 504, code="upstream_timeout")

    async def k_oversized(self, lane, rid):
        """A body past max_body_size on its own connection: 413, then the gateway closes."""
        size = MAX_BODY + self.rng.randrange(1024, 64 * 1024)
        body = b'{"model":"gpt-soak","messages":[{"role":"user","content":"' + \
            b"x" * size + b'"}]}'
        conn = await Conn.open(self.port)
        try:
            conn.w.write(request_bytes("POST", "/v1/chat/completions", self.port,
                                       self.hdrs(rid), body))
            drain = asyncio.ensure_future(conn.w.drain())
            try:
                resp = await conn.head()
                resp.body = await conn.body("POST", resp)
            except (Closed, ConnectionError) as e:
                raise Fail(str(e)) from None
            finally:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
        finally:
            conn.close()
        return resp, check_error(resp, rid, 413, code="request_too_large")

    async def k_leave_waiting(self, lane, rid):
        """The client goes away while the gateway waits for a hanging upstream (1 s read
        timeout) or for an alias's first target (0.3 s first-byte timeout): the upstream
        request must be cancelled, the access line says 499.

        The client leaves well before either timeout, but a busy machine can make it
        late. A raw socket, which nothing else reads, tells whether the answer came
        first: then the request was answered, not left, and is judged as such."""
        model, leave, expect = self.rng.choice((("hang/gpt-hang", (0.05, 0.6), 504),
                                                 ("soak-ttfb-failover", (0.02, 0.15), 200)))
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (HOST, self.port))
            await loop.sock_sendall(sock, request_bytes(
                "POST", "/v1/chat/completions", self.port, self.hdrs(rid),
                self.chat_body(model)))
            await asyncio.sleep(self.rng.uniform(*leave))
            try:
                first = sock.recv(16384, socket.MSG_PEEK)
            except BlockingIOError:
                first = None
            if first is not None:
                m = re.match(rb"HTTP/1\.1 (\d{3}) ", first)
                if not m:
                    raise Fail("the connection ended before the client left (%r)"
                               % first[:100])
                head = first.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
                resp = Response(int(m.group(1)), [(k.strip().lower(), v.strip()) for k, _, v in
                                                  (h.partition(":") for h in head)])
                return resp, None if resp.status == expect else \
                    "answered %d before the client left, expected %d" % (resp.status, expect)
            if self.rng.random() < 0.3:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError as e:
            raise Fail("connection: %s" % e) from None
        finally:
            sock.close()
        return Response(499, []), "left"

    async def k_pipelined(self, lane, rid):
        """Four requests in one write on a new connection; the answers in order."""
        rids = [rid] + [self.new_rid("pipelined") for _ in range(3)]
        reqs = [
            ("POST", "/v1/chat/completions", self.chat_body("gpt-soak"),
             lambda r: check_chat(r)),
            ("GET", "/v1/models", None,
             lambda r: None if r.status == 200 and r.json().get("object") == "list"
             else "models: %s" % r.short()),
            ("POST", "/v1/chat/completions", self.chat_body("echo", content="pipelined"),
             lambda r: check_chat(r, echo="pipelined")),
            ("POST", "/v1/messages", self.messages_body("claude-soak"),
             lambda r: check_message(r)),
        ]
        t0 = time.monotonic()
        try:
            conn = await Conn.open(self.port)
        except OSError as e:
            for y in rids:
                self.record("pipelined", y, "fail", reason="pipelined: connect: %s" % e)
            return None
        try:
            data = b"".join(request_bytes(m, p, self.port,
                                          self.hdrs(x, anthropic=p == "/v1/messages"), b)
                            for x, (m, p, b, _) in zip(rids, reqs))
            await conn.send(data)
            for i, (x, (m, _, _, check)) in enumerate(zip(rids, reqs)):
                try:
                    r = await conn.head()
                    r.body = await conn.body(m, r)
                except (Closed, ConnectionError) as e:
                    for y in rids[i:]:
                        self.record("pipelined", y, "fail", reason="pipelined: %s" % e)
                    return None
                why = check_rid(r, x) or check(r)
                if why:
                    self.record("pipelined", x, "fail", r.status, "pipelined: " + why)
                else:
                    self.record("pipelined", x, "ok", r.status, t0=t0)
        except BaseException as e:
            # a timeout (cancellation) or a write error: the rest had no answer
            for y in rids:
                self.record("pipelined", y, "fail", reason="pipelined: no answer (%s)"
                            % (type(e).__name__,))
            raise
        finally:
            conn.close()
        return None

    REQ_KINDS = [
        ("chat", 20, "k_chat"),
        ("echo", 4, "k_echo"),
        ("messages", 8, "k_messages"),
        ("chat_to_anthropic", 8, "k_chat_to_anthropic"),
        ("chat_to_gemini", 8, "k_chat_to_gemini"),
        ("messages_to_openai", 8, "k_messages_to_openai"),
        ("messages_to_gemini", 3, "k_messages_to_gemini"),
        ("failover_refused", 5, "k_failover_refused"),
        ("failover_ttfb", 2, "k_failover_ttfb"),
        ("failover_breaker", 2, "k_failover_breaker"),
        ("bad_json", 3, "k_bad_json"),
        ("bad_key", 1, "k_bad_key"),
        ("unknown_model", 2, "k_unknown_model"),
        ("upstream_500", 3, "k_upstream_500"),
        ("upstream_429", 3, "k_upstream_429"),
        ("refused", 2, "k_refused"),
        ("hang", 2, "k_hang"),
        ("oversized", 1, "k_oversized"),
        ("leave_waiting", 1, "k_leave_waiting"),
        ("pipelined", 2, "k_pipelined"),
    ]
    # Answered by the core before any Lua: no access line is expected.
    NOT_LOGGED = {"oversized"}

    # -- stream kinds --------------------------------------------------------------

    async def stream(self, lane, rid, path, body, behavior, anthropic, leave=None, error=False):
        """One streamed request; `leave` = number of events after which the client goes
        away (0: right after the head), None: read it to the end."""
        if lane.conn is None:
            lane.conn = await Conn.open(self.port)
        conn = lane.conn
        conn.used += 1
        reused = conn.used > 1
        try:
            await conn.send(request_bytes("POST", path, self.port,
                                          self.hdrs(rid, behavior, anthropic=anthropic), body))
            resp = await conn.head()
        except (Closed, ConnectionError) as e:
            lane.drop()
            raise Fail("%s%s" % (e, " (reused connection)" if reused else "")) from None
        why = check_rid(resp, rid)
        if why or resp.status != 200:
            body_bytes = b""
            try:
                body_bytes = await conn.body("POST", resp)
            except (Closed, ConnectionError):
                pass
            lane.drop()
            resp.body = body_bytes
            raise Fail(why or "stream answered %s" % resp.short())
        if not (resp.header("content-type") or "").startswith("text/event-stream"):
            lane.drop()
            raise Fail("stream content-type %r" % resp.header("content-type"))
        if "chunked" not in (resp.header("transfer-encoding") or "").lower():
            lane.drop()
            raise Fail("stream not chunked")
        if leave == 0:
            lane.drop(reset=self.rng.random() < 0.3)
            return resp, "left"
        got = bytearray()
        try:
            async for piece in conn.chunks():
                got += piece
                if leave is not None and got.count(b"\n\n") >= leave:
                    lane.drop(reset=self.rng.random() < 0.3)
                    return resp, "left"
        except (Closed, ConnectionError) as e:
            lane.drop()
            raise Fail("stream cut: %s after %d bytes" % (e, len(got))) from None
        if leave is not None:
            raise Fail("the stream ended before the client could leave (%d bytes)" % len(got))
        if resp.closes():
            lane.drop()
        events = sse_events(bytes(got))
        check = check_anthropic_stream if anthropic else check_openai_stream
        return resp, check(events, error)

    def gap(self):
        return "slow-stream=%g" % self.a.stream_gap

    async def s_openai(self, lane, rid):
        return await self.stream(lane, rid, "/v1/chat/completions",
                                 self.chat_body("gpt-soak", stream=True), self.gap(), False)

    async def s_messages(self, lane, rid):
        return await self.stream(lane, rid, "/v1/messages",
                                 self.messages_body("claude-soak", stream=True), self.gap(), True)

    async def s_chat_to_anthropic(self, lane, rid):
        return await self.stream(lane, rid, "/v1/chat/completions",
                                 self.chat_body("claude-soak", stream=True), self.gap(), False)

    async def s_chat_to_gemini(self, lane, rid):
        return await self.stream(lane, rid, "/v1/chat/completions",
                                 self.chat_body("gemini-soak", stream=True), self.gap(), False)

    async def s_messages_to_openai(self, lane, rid):
        return await self.stream(lane, rid, "/v1/messages",
                                 self.messages_body("gpt-soak", stream=True), self.gap(), True)

    async def s_failover(self, lane, rid):
        # The first target refuses the connection, the second streams.
        return await self.stream(lane, rid, "/v1/chat/completions",
                                 self.chat_body("soak-failover", stream=True), self.gap(), False)

    async def s_leave(self, lane, rid):
        choice = self.rng.randrange(4)
        leave = self.rng.choice((0, 1, 1, 2, 3))
        if choice == 0:
            return await self.stream(lane, rid, "/v1/chat/completions",
                                     self.chat_body("gpt-soak", stream=True), self.gap(), False,
                                     leave=leave)
        if choice == 1:
            return await self.stream(lane, rid, "/v1/chat/completions",
                                     self.chat_body("claude-soak", stream=True), self.gap(),
                                     False, leave=leave)
        if choice == 2:
            return await self.stream(lane, rid, "/v1/messages",
                                     self.messages_body("gpt-soak", stream=True), self.gap(),
                                     True, leave=leave)
        return await self.stream(lane, rid, "/v1/messages",
                                 self.messages_body("claude-soak", stream=True), self.gap(), True,
                                 leave=leave)

    async def s_upstream_error(self, lane, rid):
        """The provider's own error event mid-stream, passed on or translated."""
        if self.rng.random() < 0.5:
            return await self.stream(lane, rid, "/v1/chat/completions",
                                     self.chat_body(self.rng.choice(("gpt-soak", "claude-soak")),
                                                    stream=True), "stream-error", False,
                                     error=True)
        return await self.stream(lane, rid, "/v1/messages",
                                 self.messages_body(self.rng.choice(("gpt-soak", "claude-soak")),
                                                    stream=True), "stream-error", True, error=True)

    async def s_upstream_cut(self, lane, rid):
        """The provider closes mid-stream (between events): an error event ends it."""
        if self.rng.random() < 0.5:
            return await self.stream(lane, rid, "/v1/chat/completions",
                                     self.chat_body(self.rng.choice(("gpt-soak", "claude-soak",
                                                                     "gemini-soak")),
                                                    stream=True), "close-mid-stream", False,
                                     error=True)
        return await self.stream(lane, rid, "/v1/messages",
                                 self.messages_body(self.rng.choice(("gpt-soak", "claude-soak")),
                                                    stream=True), "close-mid-stream", True,
                                 error=True)

    STREAM_KINDS = [
        ("stream_openai", 25, "s_openai"),
        ("stream_messages", 15, "s_messages"),
        ("stream_chat_to_anthropic", 10, "s_chat_to_anthropic"),
        ("stream_chat_to_gemini", 10, "s_chat_to_gemini"),
        ("stream_messages_to_openai", 10, "s_messages_to_openai"),
        ("stream_failover", 4, "s_failover"),
        ("client_leaves", 15, "s_leave"),
        ("stream_upstream_error", 3, "s_upstream_error"),
        ("stream_upstream_cut", 3, "s_upstream_cut"),
    ]

    # -- lanes ------------------------------------------------------------------------

    async def run_one(self, lane, name, method_name):
        rid = self.new_rid(name)
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(REQ_TIMEOUT):
                res = await getattr(self, method_name)(lane, rid)
        except Fail as e:
            self.record(name, rid, "fail", reason=str(e), logged=name not in self.NOT_LOGGED)
            return
        except TimeoutError:
            lane.drop()
            self.record(name, rid, "fail", reason="no answer within %gs" % REQ_TIMEOUT)
            return
        except (OSError, ConnectionError) as e:
            lane.drop()
            self.record(name, rid, "fail", reason="connection: %s" % e)
            return
        if res is None:                 # the kind recorded its own requests
            return
        resp, why = res
        logged = name not in self.NOT_LOGGED
        if why == "left":
            self.record(name, rid, "left", resp.status, logged=logged)
            return
        why = why or check_rid(resp, rid)
        if why:
            self.record(name, rid, "fail", resp.status, why, logged=logged)
        else:
            self.record(name, rid, "ok", resp.status, t0=t0, logged=logged)

    def pick(self, kinds):
        total = sum(w for _, w, _ in kinds)
        x = self.rng.uniform(0, total)
        for name, w, m in kinds:
            x -= w
            if x <= 0:
                return name, m
        return kinds[-1][0], kinds[-1][2]

    async def pacer(self, queue):
        interval = 1.0 / self.a.rps
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        while not self.stopping:
            nxt += interval
            delay = nxt - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                nxt = loop.time()        # fell far behind: no burst to catch up
            if queue.qsize() >= self.req_lanes:
                self.skipped += 1
            else:
                queue.put_nowait(1)

    async def req_lane(self, queue):
        lane = Lane()
        while True:
            tok = await queue.get()
            if tok is None or self.stopping:
                break
            name, m = self.pick(self.req_kinds)
            await self.run_one(lane, name, m)
        lane.drop()

    async def stream_lane(self, i):
        lane = Lane()
        await asyncio.sleep(self.rng.uniform(0, 3))        # spread the starts
        while not self.stopping:
            name, m = self.pick(self.stream_kinds)
            await self.run_one(lane, name, m)
            await asyncio.sleep(self.rng.uniform(0, 0.3))
        lane.drop()

    # -- admin: status and reloads ------------------------------------------------

    async def admin(self, method, path, body=None):
        """One request to the admin listener. The first credentials that are not
        refused are kept: the admin key when given, else the client key, else none."""
        choices = [self.admin_auth] if self.admin_auth is not None else \
            ([self.a.admin_key] if self.a.admin_key else []) + [KEY, ""]
        last = None
        for key in choices:
            h = [("Authorization", "Bearer " + key)] if key else []
            if body is not None:
                h.append(("Content-Type", "application/json"))
            conn = await Conn.open(self.a.admin_port)
            try:
                await conn.send(request_bytes(method, path, self.a.admin_port,
                                              h + [("Connection", "close")], body))
                r = await conn.head()
                r.body = await conn.body(method, r)
            finally:
                conn.close()
            last = r
            if r.status not in (401, 403):
                self.admin_auth = key
                return r
        return last

    async def status(self):
        try:
            async with asyncio.timeout(10):
                r = await self.admin("GET", "/admin/status")
            if r.status == 200:
                return r.json()
        except (OSError, Closed, ValueError, TimeoutError):
            pass
        return None

    async def mock_status(self):
        try:
            async with asyncio.timeout(5):
                conn = await Conn.open(self.a.mock_port)
                try:
                    await conn.send(request_bytes("GET", "/__soak/status", self.a.mock_port,
                                                  [("Connection", "close")]))
                    r = await conn.head()
                    r.body = await conn.body("GET", r)
                finally:
                    conn.close()
            return r.json()
        except (OSError, Closed, ValueError, TimeoutError):
            return None

    async def reloader(self):
        n = 0
        while True:
            await asyncio.sleep(self.rng.uniform(self.a.reload_min, self.a.reload_max))
            if self.stopping:
                return
            n += 1
            how = "sighup" if n % 2 == 1 else "admin"
            kind = "reload_" + how
            rid = self.new_rid(kind)
            before = await self.status()
            gen0 = before.get("generation") if before else None
            try:
                if how == "sighup":
                    os.kill(self.a.pid, signal.SIGHUP)
                    deadline = time.monotonic() + 15
                    while True:
                        st = await self.status()
                        if st and gen0 is not None and st.get("generation", 0) > gen0 \
                                and not st.get("reloading"):
                            if st.get("last_reload_ok") is False:
                                raise Fail("reload failed: %s" % st.get("last_reload"))
                            break
                        if time.monotonic() > deadline:
                            raise Fail("no new generation 15 s after SIGHUP (status %r)"
                                       % (st and {k: st.get(k) for k in
                                                  ("generation", "reloading", "last_reload")}))
                        await asyncio.sleep(0.2)
                else:
                    async with asyncio.timeout(15):
                        r = await self.admin("POST", "/admin/reload", b"")
                    if r.status != 200 or not r.json().get("reloaded"):
                        raise Fail("POST /admin/reload answered %s" % r.short())
                self.reloads += 1
                self.record(kind, rid, "ok", 200, logged=None)
            except Fail as e:
                self.record(kind, rid, "fail", reason=str(e), logged=None)
            except (OSError, Closed, ValueError, TimeoutError) as e:
                self.record(kind, rid, "fail", reason="reload: %r" % e, logged=None)

    # -- memory samples ---------------------------------------------------------------

    async def sample(self, t):
        st = proc_status(self.a.pid)
        if st is None:
            return None
        s = {"t": t, "rss": st.get("VmRSS"), "hwm": st.get("VmHWM"), "anon": st.get("RssAnon"),
             "threads": st.get("Threads"), "fds": proc_fds(self.a.pid),
             "cpu_gw": proc_cpu(self.a.pid), "cpu_mock": proc_cpu(self.a.mock_pid),
             "cpu_driver": proc_cpu(os.getpid()), "done": self.done_total,
             "failed": sum(x.failed for x in self.tally.values()),
             "inflight": len(self.inflight), "reloads": self.reloads,
             "mock_rss": (proc_status(self.a.mock_pid) or {}).get("VmRSS"),
             "driver_rss": (proc_status(os.getpid()) or {}).get("VmRSS")}
        adm = await self.status()
        if adm and isinstance(adm.get("workers"), list):
            ws = adm["workers"]
            s["lua_kb"] = sum(w.get("lua_memory_kb", 0) for w in ws)
            s["old_gens"] = sum(w.get("old_generations", 0) for w in ws)
            s["old_kb"] = sum(w.get("old_generations_memory_kb", 0) for w in ws)
            s["gen"] = adm.get("generation")
        ms = await self.mock_status()
        if ms:
            s["up_active"] = sum(v.get("active", 0) for v in ms.values())
            s["up_conns"] = sum(v.get("open_conns", 0) for v in ms.values())
        return s

    TSV_COLS = ["t", "rss", "hwm", "anon", "lua_kb", "old_gens", "old_kb", "fds", "threads",
                "cpu_gw", "cpu_mock", "cpu_driver", "done", "failed", "inflight", "reloads",
                "gen", "up_active", "up_conns", "mock_rss", "driver_rss"]

    def write_tsv(self, s):
        with open(self.a.tsv, "a") as f:
            if f.tell() == 0:
                f.write("\t".join(self.TSV_COLS) + "\n")
            f.write("\t".join("" if s.get(c) is None else
                              ("%.2f" % s[c] if isinstance(s[c], float) else str(s[c]))
                              for c in self.TSV_COLS) + "\n")

    async def sampler(self, duration):
        minute_rows = 0
        while True:
            t = time.monotonic() - self.start
            s = await self.sample(round(t, 1))
            if s is None:
                if not self.gateway_gone:
                    print("soak: the gateway (pid %d) is gone" % self.a.pid, flush=True)
                self.gateway_gone = True
                self.stop()
                return
            self.samples.append(s)
            self.write_tsv(s)
            self.log.read()
            if t >= 60 * (minute_rows + 1) - 1:
                minute_rows += 1
                print(self.table_row(minute_rows, s, self.prev_minute(s)), flush=True)
            if self.stopping or t >= duration:
                return
            nxt = self.a.sample * (int(t / self.a.sample) + 1)
            try:
                await asyncio.wait_for(self.stop_event.wait(),
                                       max(0.0, nxt - (time.monotonic() - self.start)))
            except TimeoutError:
                pass

    def prev_minute(self, s):
        """The sample a minute before s (or the first)."""
        prev = self.samples[0]
        for x in self.samples:
            if x["t"] <= s["t"] - 59:
                prev = x
        return prev

    TABLE_HEAD = ("  min   RSS MB   HWM MB  anon MB  Lua KB  old gen (KB)  fds  req/min  "
                  "fail  gw CPU  mock CPU  drv CPU")

    def table_row(self, minute, s, p):
        dt = max(1e-9, s["t"] - p["t"])

        def cpu(k):
            if s.get(k) is None or p.get(k) is None:
                return "  -"
            return "%3.0f%%" % (100.0 * (s[k] - p[k]) / dt)
        return "%5s %8.1f %8.1f %8.1f %7s %7s %5s %4s %8.0f %5d %7s %9s %8s" % (
            minute, s["rss"] / 1024.0, s["hwm"] / 1024.0, (s.get("anon") or 0) / 1024.0,
            s.get("lua_kb", "-"), s.get("old_gens", "-"),
            "(%s)" % s.get("old_kb", "-"), s.get("fds", "-"),
            (s["done"] - p["done"]) * 60.0 / dt, s["failed"],
            cpu("cpu_gw"), cpu("cpu_mock"), cpu("cpu_driver"))

    # -- the run ---------------------------------------------------------------------

    async def run(self):
        self.gateway_gone = False
        self.stop_event = asyncio.Event()
        duration = self.a.minutes * 60.0
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.interrupt)
        base = await self.sample(0.0)
        if base is None:
            print("soak: no gateway at pid %d" % self.a.pid)
            return 2
        self.baseline = base
        print("soak: %g min, %g req/s over %d lanes, %d stream lanes (event gap %gs), "
              "reloads every %g-%g s, seed %d" % (
                  self.a.minutes, self.a.rps if self.req_lanes else 0, self.req_lanes,
                  self.stream_lanes, self.a.stream_gap, self.a.reload_min, self.a.reload_max,
                  self.a.seed), flush=True)
        if self.a.only:
            print("soak: only %s" % ", ".join(k[0] for k in self.req_kinds + self.stream_kinds),
                  flush=True)
        print("soak: idle gateway: RSS %.1f MB, Lua %s KB, %s fds, %s threads" % (
            base["rss"] / 1024.0, base.get("lua_kb", "?"), base.get("fds"), base.get("threads")),
            flush=True)
        print(self.TABLE_HEAD, flush=True)
        self.start = time.monotonic()
        queue = asyncio.Queue()
        tasks = [asyncio.ensure_future(self.watch_gateway())]
        if self.req_lanes:
            tasks.append(asyncio.ensure_future(self.pacer(queue)))
        lanes = [asyncio.ensure_future(self.req_lane(queue)) for _ in range(self.req_lanes)]
        lanes += [asyncio.ensure_future(self.stream_lane(i)) for i in range(self.stream_lanes)]
        reload_task = asyncio.ensure_future(self.reloader())
        sampler = asyncio.ensure_future(self.sampler(duration))
        await sampler
        # Stop: no new request; those in flight finish (or time out) and are counted.
        self.stopping = True
        for _ in range(self.req_lanes):
            queue.put_nowait(None)
        done, pending = await asyncio.wait(lanes + tasks, timeout=REQ_TIMEOUT + 10)
        for p in pending:
            p.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        reload_task.cancel()
        await asyncio.gather(reload_task, return_exceptions=True)
        for rid, kind in list(self.inflight.items()):
            if kind.startswith("reload_"):
                self.record(kind, rid, "fail", reason="reload still waiting at the end",
                            logged=None)
            else:
                self.record(kind, rid, "fail", reason="still waiting for its answer at the end")
        self.elapsed = time.monotonic() - self.start
        return None

    async def watch_gateway(self):
        """Stop the load as soon as the gateway process is gone."""
        while not self.stopping:
            if proc_status(self.a.pid) is None:
                print("soak: the gateway (pid %d) is gone" % self.a.pid, flush=True)
                self.gateway_gone = True
                self.stop()
                return
            await asyncio.sleep(0.5)

    def interrupt(self):
        if not self.stopping:
            print("soak: interrupted: stopping the load", flush=True)
        self.interrupted = True
        self.stop()

    def stop(self):
        self.stopping = True
        self.stop_event.set()


class Lane:
    def __init__(self):
        self.conn = None

    def drop(self, reset=False):
        if self.conn is not None:
            self.conn.close(reset)
            self.conn = None


# ---------------------------------------------------------------------------
# After the load: quiescence, the access log, the report

ACCESS = re.compile(r" access .*?request_id=(\S+).*? status=(\d+)")
WARN = re.compile(r"^\S+ (warn|error) \[(\w+)\] (.*)$")


def normalise(msg: str) -> str:
    msg = re.sub(r"request \S+:", "request ID:", msg)
    msg = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", msg)
    msg = re.sub(r"\d+", "N", msg)
    return msg[:160]


class LogReader:
    """Reads the gateway's log as it grows (every sample, and at the end): matches
    each access line to the request it names, and groups warn/error lines by
    message. An access line may come before the client has read its answer, or after:
    whichever comes second makes the comparison, so only requests in flight are held."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.partial = b""
        self.waiting = {}        # request id -> (kind, status seen, outcome): no line yet
        self.early = {}          # request id -> status logged: the client is not done
        self.lines = 0
        self.checked = 0
        self.mismatch = Counter()
        self.examples = []
        self.warns = Counter()
        self.warn_examples = {}

    def expect(self, rid, kind, status, outcome):
        self.checked += 1
        got = self.early.pop(rid, None)
        if got is None:
            self.waiting[rid] = (kind, status, outcome)
        else:
            self.compare(rid, kind, status, got)

    def compare(self, rid, kind, status, got):
        if status is not None and got != status:
            self.mismatch[kind] += 1
            if len(self.examples) < 5:
                self.examples.append("%s: the client saw %s, the access line says %s"
                                     % (rid, status, got))

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        self.pos += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if " access " in line:
                m = ACCESS.search(line)
                if m:
                    self.lines += 1
                    rid, got = m.group(1), int(m.group(2))
                    w = self.waiting.pop(rid, None)
                    if w is not None:
                        self.compare(rid, w[0], w[1], got)
                    elif rid.startswith("soak-"):
                        self.early[rid] = got
                continue
            m = WARN.match(line)
            if m:
                key = "%s %s" % (m.group(1), normalise(m.group(3)))
                self.warns[key] += 1
                self.warn_examples.setdefault(key, line)

    def missing(self):
        """Requests that had their answer (or left) and have no access line."""
        out = Counter()
        for rid, (kind, _, outcome) in self.waiting.items():
            if outcome != "fail":
                out[kind] += 1
                if len(self.examples) < 5:
                    self.examples.append("%s: no access line" % rid)
        return out


def log_lines_for(path, rids, limit=6):
    out = defaultdict(list)
    want = set(rids)
    if not want:
        return out
    with open(path, errors="replace") as f:
        for line in f:
            for rid in want:
                if rid in line and len(out[rid]) < limit:
                    out[rid].append(line.rstrip("\n")[:400])
    return out


async def quiesce(d):
    """After the load: upstream work left behind, old generations left open."""
    deadline = time.monotonic() + 15
    ms = st = None
    while time.monotonic() < deadline:
        ms = await d.mock_status()
        st = await d.status()
        active = sum(v.get("active", 0) for v in ms.values()) if ms else None
        old = sum(w.get("old_generations", 0) for w in st["workers"]) if st else None
        if active == 0 and old == 0:
            break
        await asyncio.sleep(0.5)
    return ms, st


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--admin-port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the gateway's pid")
    ap.add_argument("--log", required=True, help="the gateway's log file")
    ap.add_argument("--mock-port", type=int, required=True)
    ap.add_argument("--mock-pid", type=int, required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rps", type=float, default=150)
    ap.add_argument("--req-lanes", type=int, default=48)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--stream-gap", type=float, default=0.3)
    ap.add_argument("--reload-min", type=float, default=30)
    ap.add_argument("--reload-max", type=float, default=60)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--summary", help="write the figures as JSON here")
    ap.add_argument("--max-slope", type=float, default=None,
                    help="KB/min over the second half (default %g; given, it is checked "
                    "even on a run shorter than 10 minutes)" % DEFAULT_MAX_SLOPE)
    ap.add_argument("--admin-key", default=os.environ.get("SOAK_ADMIN_KEY"))
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--only", default=os.environ.get("SOAK_ONLY"),
                    help="comma-separated kind names (or their beginnings): run only these")
    args = ap.parse_args()

    d = Driver(args)
    rc = asyncio.run(d.run())
    if rc is not None:
        return rc
    return asyncio.run(report(d))


async def report(d):
    a = d.a
    failures = []
    ms, st = await quiesce(d)
    final = await d.sample(round(time.monotonic() - d.start, 1))
    if final is not None:
        d.write_tsv(final)

    # -- requests
    print("\nRequests per kind (%0.1f min of load, %d reloads):" % (d.elapsed / 60, d.reloads))
    print("  %-26s %8s %8s %6s %6s %9s %9s" % ("kind", "sent", "ok", "left", "FAIL",
                                                "p50 ms", "p99 ms"))
    tot = Tally()
    for name in sorted(d.tally):
        t = d.tally[name]
        tot.sent += t.sent
        tot.ok += t.ok
        tot.left += t.left
        tot.failed += t.failed
        print("  %-26s %8d %8d %6d %6d %9.1f %9.1f" % (
            name, t.sent, t.ok, t.left, t.failed, percentile(t.lat, 50), percentile(t.lat, 99)))
    print("  %-26s %8d %8d %6d %6d" % ("total", tot.sent, tot.ok, tot.left, tot.failed))
    unaccounted = tot.sent - tot.ok - tot.left - tot.failed
    if unaccounted:
        failures.append("%d request(s) sent and never accounted for" % unaccounted)
    print("  (%.0f req/s on average; %d request tickets dropped because every request lane "
          "was busy)" % (tot.sent / max(1.0, d.elapsed), d.skipped))

    # -- the access log against what the clients saw
    d.log.read()
    missing = d.log.missing()
    mismatch = d.log.mismatch
    print("\nAccess log: %d lines, %d requests checked; %d without a line, %d with "
          "another status" % (d.log.lines, d.log.checked, sum(missing.values()),
                              sum(mismatch.values())))
    for ex in d.log.examples:
        print("  " + ex)
    if missing:
        failures.append("requests without an access line: %s" % dict(missing))
    if mismatch:
        failures.append("access lines with another status than the client saw: %s"
                        % dict(mismatch))
    warns, warn_examples = d.log.warns, d.log.warn_examples

    # -- failures, explained
    if tot.failed:
        print("\nFailed requests, by reason (request ids, then the gateway's lines for them):")
        ex_rids = []
        for name in sorted(d.tally):
            t = d.tally[name]
            for reason, n in t.reasons.most_common():
                print("  %-24s %6d  %s" % (name, n, reason[:300]))
                print("  %-24s         e.g. %s" % ("", ", ".join(t.examples[reason])))
                ex_rids += t.examples[reason][:1]
        for rid, lines in log_lines_for(a.log, ex_rids).items():
            print("  -- %s" % rid)
            for line in lines:
                print("     " + line)
        failures.append("%d request(s) failed" % tot.failed)

    # -- gateway log lines above info
    print("\nGateway warn/error lines, by message (%d in all):" % sum(warns.values()))
    for key, n in warns.most_common(25):
        print("  %7d  %s" % (n, key))
    errs = {k: n for k, n in warns.items() if k.startswith("error ")}
    if errs:
        print("  error lines, first of each:")
        for k in errs:
            print("    " + warn_examples[k][:400])

    # -- after the load
    print("\nAfter the load:")
    if ms:
        active = {k: v.get("active") for k, v in ms.items()}
        print("  upstream answers still in progress: %s (open upstream connections: %s)"
              % (active, {k: v.get("open_conns") for k, v in ms.items()}))
        if any(active.values()):
            failures.append("upstream work left behind 15 s after the load: %s" % active)
    if st:
        ws = st.get("workers", [])
        print("  generation %s; per worker Lua KB %s, old generations %s" % (
            st.get("generation"), [w.get("lua_memory_kb") for w in ws],
            [w.get("old_generations") for w in ws]))
        if any(w.get("old_generations") for w in ws):
            failures.append("old generations still open 15 s after the load: %s"
                            % [w.get("old_generations") for w in ws])
    if final:
        print("  fds %s (idle at start %s), threads %s, RSS %.1f MB, HWM %.1f MB" % (
            final["fds"], d.baseline["fds"], final["threads"], final["rss"] / 1024.0,
            final["hwm"] / 1024.0))
    if d.gateway_gone or final is None:
        failures.append("the gateway process exited during the run")

    # -- memory
    print("\nMemory, minute by minute:")
    print(d.TABLE_HEAD)
    rows = []
    for m in range(1, int(d.elapsed // 60) + 1):
        near = min(d.samples, key=lambda s: abs(s["t"] - 60 * m))
        if abs(near["t"] - 60 * m) <= a.sample:
            rows.append(d.table_row(m, near, d.prev_minute(near)))
    print("\n".join(rows))
    half = d.elapsed / 2
    pts = [(s["t"] / 60.0, s["rss"]) for s in d.samples if s["t"] >= half and s.get("rss")]
    lua_pts = [(s["t"] / 60.0, s["lua_kb"]) for s in d.samples
               if s["t"] >= half and s.get("lua_kb") is not None]
    fd_pts = [(s["t"] / 60.0, s["fds"]) for s in d.samples if s["t"] >= half and s.get("fds")]
    slope, se = least_squares(pts)
    lslope, lse = least_squares(lua_pts)
    fslope, _ = least_squares(fd_pts)
    limit = a.max_slope if a.max_slope is not None else DEFAULT_MAX_SLOPE
    enforced = a.max_slope is not None or d.elapsed >= 600
    print("\nRSS slope over the second half (%d samples, %.1f-%.1f min): %+.1f KB/min "
          "(standard error %.1f), threshold %.1f KB/min%s" % (
              len(pts), pts[0][0] if pts else 0, pts[-1][0] if pts else 0, slope, se, limit,
              "" if enforced else ", not enforced: the run is shorter than 10 minutes"))
    if pts:
        first = [s for s in d.samples if s["t"] >= half][0]
        print("RSS %.1f -> %.1f MB, HWM %.1f -> %.1f MB over the second half" % (
            first["rss"] / 1024.0, d.samples[-1]["rss"] / 1024.0,
            first["hwm"] / 1024.0, d.samples[-1]["hwm"] / 1024.0))
    print("Lua memory slope: %+.1f KB/min (standard error %.1f); fds slope %+.2f per min"
          % (lslope, lse, fslope))
    if math.isnan(slope):
        if enforced:
            failures.append("too few memory samples for a slope")
    elif slope > limit and enforced:
        failures.append("RSS grows by %.1f KB/min over the second half (threshold %.1f)"
                        % (slope, limit))

    if d.interrupted:
        failures.append("interrupted before the end")
    if a.summary:
        with open(a.summary, "w") as f:
            json.dump({"minutes": d.elapsed / 60, "reloads": d.reloads,
                       "kinds": {k: {"sent": t.sent, "ok": t.ok, "left": t.left,
                                     "failed": t.failed, "reasons": dict(t.reasons)}
                                 for k, t in d.tally.items()},
                       "slope_kb_min": slope, "slope_se": se, "slope_limit": limit,
                       "slope_enforced": enforced,
                       "lua_slope_kb_min": lslope, "failures": failures}, f, indent=1)
    print()
    if failures:
        for f_ in failures:
            print("SOAK FAIL: " + f_)
        return 1
    print("soak: no request lost, RSS slope %+.1f KB/min (threshold %.1f%s)"
          % (slope, limit, "" if enforced else ", not checked on a run this short"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
