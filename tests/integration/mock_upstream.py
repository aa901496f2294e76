#!/usr/bin/env python3
"""mock_upstream.py -- a controllable upstream for integration tests that speaks
the OpenAI, Azure OpenAI, Anthropic Messages and Gemini wire formats.

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
- every request (`requests`: method, target, path, query, headers in wire order and
  case -- so `authorization`, `api-key`, `x-api-key` + `anthropic-version`,
  `x-goog-api-key` -- decoded body, whether it was chunked, and what the mock sent back).

Which API answers is picked by the request path (`classify`):

  /openai/deployments/{dep}/chat/completions|completions|embeddings   Azure OpenAI:
        the OpenAI bodies with "model" = the deployment; no `api-version` query
        -> 404 {"error":{"code":"404","message":"Resource not found"}}
  .../messages                      Anthropic Messages (`"stream": true` streams)
  .../messages/count_tokens         Anthropic {"input_tokens": N}
  /v1beta/models/{model}:generateContent          Gemini GenerateContentResponse
  /v1beta/models/{model}:streamGenerateContent    Gemini stream: with `?alt=sse`
        `data: {...}\r\n\r\n` events, else one JSON array in pieces; no [DONE]
  /v1beta/models/{model}:countTokens              Gemini {"totalTokens": N}
  .../embeddings                    OpenAI embeddings list: one per input (string or
        list), `dimensions` (default 8) and `encoding_format: base64` honoured
  .../completions                   OpenAI text_completion (streams too)
  .../responses                     a minimal Responses API object (stream: events
        response.created, response.output_text.delta..., response.completed)
  GET .../models, .../models/{id}   OpenAI model list / one model
  anything else                     OpenAI chat.completion (what the mock always did)

What is in the answer follows the request: "model" is the request's (Gemini: the
path's, Azure: the deployment); when the request has a non-empty `tools` list
(Gemini: functionDeclarations), chat / messages / generateContent answer with a call
of the first tool with arguments {"city":"Paris"} (OpenAI `tool_calls` with
finish_reason "tool_calls", split over deltas with `index` in streams; Anthropic a
`tool_use` block, stop_reason "tool_use", `input_json_delta` pieces; Gemini a
`functionCall` part); otherwise text "Hello from the mock". OpenAI streams carry the
usage chunk (`"choices":[]`, every earlier chunk `"usage":null`) only when the request
has `stream_options.include_usage: true`. Anthropic and Gemini token counts are the
words in the request's strings (`prompt_tokens`), the same the token counters
answer; OpenAI chat keeps its fixed counts (9 prompt tokens).

How it answers is chosen per request by the `x-mock-behavior` request header
(the gateway forwards end-to-end headers), or by `default_behavior` when the
header is absent. The value is a comma-separated list; one *body kind* plus any
number of *modifiers*. With no body kind named, Anthropic and Gemini requests that
ask for a stream get `stream`, everything else `json`.

body kinds
  json                  200 JSON answer of the API with Content-Length (OpenAI chat:
                        byte-exact `chat_completion_body`)
  chunked-json          the same JSON sent with Transfer-Encoding: chunked
  stream                the API's stream, chunked, one event per chunk (OpenAI: SSE
                        `sse_events`, ends with `data: [DONE]`; Anthropic `event:` +
                        `data:` lines, `anthropic_events`; Gemini `gemini_events`)
  slow-stream[=SECS]    stream with SECS (default 0.2) between events
  hold                  headers + first event, then wait until the test calls
                        release(key) (key from `x-mock-key`, default "default");
                        `wait_held(key)` tells when the first event went out
  close-mid-stream      headers + two events, then close (FIN) without the last chunk
  reset-mid-stream      the same, but the close is a TCP RST
                        (hold / close / reset: before the last event of shorter streams)
  stream-error          a few events, then the API's in-stream error and the end of
                        the body: OpenAI `data: {"error":{..."type":"server_error"}}`
                        (no [DONE]); Anthropic `event: error` overloaded_error; Gemini
                        `data: {"error":{"code":503,...,"status":"UNAVAILABLE"}}`
  close                 read the request, close without answering
  bad-response          answer with bytes that are not HTTP, then close
  big-body=N            200 JSON body of exactly N bytes, Content-Length
  big-stream=N          chunked SSE of about N payload bytes, 16 KiB events; stops
                        early if the peer goes away (for send-timeout tests)
  status=CODE           CODE with the API's error body: OpenAI/Azure {"error":{...}}
                        (429 adds Retry-After: 7); Anthropic {"type":"error","error":
                        {"type":"rate_limit_error"|"overloaded_error"(529)|...}} (429
                        adds retry-after: 7); Gemini {"error":{"code","message",
                        "status":"RESOURCE_EXHAUSTED"|...}}, 429 with a RetryInfo
                        "retryDelay":"7s" in `details` and no Retry-After header
  context-length        400 with OpenAI's context_length_exceeded error body
  The stream kinds on an endpoint without a streamed form (embeddings, models,
  token counts) answer `json`.

modifiers
  delay-headers=SECS    wait SECS before sending anything (aborted if the peer closes)
  delay-body=SECS       streams: send the head, then wait SECS before the first event
  retry-after=SECS      with status=429: the Retry-After value (default 7)
  times=N               the behaviour holds for the first N requests with this
                        `x-mock-key` (default key "default"); later ones get the
                        plain answer
  connection-close      send `Connection: close` and close after the response
  hop-headers           add hop-by-hop response headers the gateway must strip
  close-after=SECS      keep-alive response, then close the idle connection SECS later
                        without notice (a server dropping an idle keep-alive connection)
  dup-headers           add repeated response headers: two Set-Cookie and two X-Multi
  tool-call[=NAME]      answer with a tool call even without `tools` in the request
                        (of NAME, default get_weather)
  usage-always          OpenAI chat streams: usage on the finish_reason chunk whatever
                        the request asked (the mock's former stream)

Connections are keep-alive by default (HTTP/1.1), closed after a request that
asks for it (`Connection: close`, or HTTP/1.0 without keep-alive).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
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


TEXT = "Hello from the mock"
TEXT_PIECES = ["Hel", "lo ", "from ", "the ", "mock"]          # Anthropic and Gemini deltas
OPENAI_PIECES = ["Hel", "lo ", "fr\u00f6m ", "the ", "mock"]   # kept: tests compare the bytes
DEFAULT_TOOL = "get_weather"
TOOL_ARGS = '{"city":"Paris"}'
TOOL_ARG_PIECES = ['{"ci', 'ty":"', 'Par', 'is"}']
OPENAI_USAGE = {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _data(obj, sep: bytes = b"\n\n") -> bytes:
    return b"data: " + _dumps(obj).encode() + sep


def _named(name: str, obj) -> bytes:
    """An SSE event with an event name (Anthropic, Responses API)."""
    return b"event: " + name.encode() + b"\n" + _data(obj)


def _chunk_event(model: str, delta: dict, finish=None, usage=None,
                 usage_null: bool = False) -> bytes:
    obj = {
        "id": "chatcmpl-mock-2",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    elif usage_null:
        obj["usage"] = None
    return _data(obj)


def sse_events(model: str, include_usage: bool = False, usage_always: bool = False,
               tool: Optional[str] = None, error: bool = False) -> List[bytes]:
    """The events OpenAI `stream` sends, one per HTTP chunk, ending with `data: [DONE]`.

    Usage comes as the real API sends it: only with include_usage (the request's
    stream_options.include_usage), then every chunk has "usage":null and a last
    chunk with "choices":[] carries it. usage_always (the `usage-always`
    modifier) puts it on the finish_reason chunk whatever the request asked.
    tool: answer with a call of that function, its arguments split over deltas.
    error: a few chunks, then an in-stream error event, and no [DONE]."""
    un = include_usage and not usage_always
    if tool:
        first = {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_mock_1", "type": "function",
             "function": {"name": tool, "arguments": ""}}]}
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
                  for p in TOOL_ARG_PIECES]
        finish = "tool_calls"
    else:
        first = {"role": "assistant", "content": ""}
        deltas = [{"content": p} for p in OPENAI_PIECES]
        finish = "stop"
    events = [_chunk_event(model, first, usage_null=un)]
    events.append(b": mock keep-alive comment\n\n")
    for d in deltas[:2] if error else deltas:
        events.append(_chunk_event(model, d, usage_null=un))
    if error:
        events.append(_data({"error": {"message": "The server had an error while processing "
                                                  "your request (mock stream-error)",
                                       "type": "server_error", "param": None, "code": None}}))
        return events
    events.append(_chunk_event(model, {}, finish=finish,
                               usage=OPENAI_USAGE if usage_always else None, usage_null=un))
    if un:
        events.append(_data({"id": "chatcmpl-mock-2", "object": "chat.completion.chunk",
                             "created": CREATED, "model": model, "choices": [],
                             "usage": OPENAI_USAGE}))
    events.append(b"data: [DONE]\n\n")
    return events


def chat_tool_call_body(model: str, tool: str) -> bytes:
    """The chat.completion `json` answers with when the request has tools."""
    return (_dumps({
        "id": "chatcmpl-mock-1", "object": "chat.completion", "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": None, "refusal": None,
            "tool_calls": [{"id": "call_mock_1", "type": "function",
                            "function": {"name": tool, "arguments": TOOL_ARGS}}]},
            "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": len(TOOL_ARG_PIECES),
                  "total_tokens": 9 + len(TOOL_ARG_PIECES)},
        "system_fingerprint": "fp_mock"}) + "\n").encode()


def completion_body(model: str) -> bytes:
    return (_dumps({"id": "cmpl-mock-1", "object": "text_completion", "created": CREATED,
                    "model": model,
                    "choices": [{"text": TEXT, "index": 0, "logprobs": None,
                                 "finish_reason": "stop"}],
                    "usage": OPENAI_USAGE}) + "\n").encode()


def completion_events(model: str, include_usage: bool = False,
                      error: bool = False) -> List[bytes]:
    def ev(text, finish=None):
        return _data({"id": "cmpl-mock-2", "object": "text_completion", "created": CREATED,
                      "choices": [{"text": text, "index": 0, "logprobs": None,
                                   "finish_reason": finish}], "model": model})
    events = [ev(p) for p in (TEXT_PIECES[:2] if error else TEXT_PIECES)]
    if error:
        return events + [_data({"error": {"message": "mock stream-error",
                                          "type": "server_error", "param": None,
                                          "code": None}})]
    events.append(ev("", "stop"))
    if include_usage:
        events.append(_data({"id": "cmpl-mock-2", "object": "text_completion",
                             "created": CREATED, "choices": [], "model": model,
                             "usage": OPENAI_USAGE}))
    return events + [b"data: [DONE]\n\n"]


def _embedding(i: int, dims: int) -> List[float]:
    return [round(((i * 31 + k * 7) % 97) / 97.0 - 0.5, 6) for k in range(dims)]


def embeddings_body(model: str, doc: dict) -> bytes:
    """One embedding per input (a string, a list of strings, tokens or token lists)."""
    inp = doc.get("input", "")
    if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
        inp = [inp]
    if not isinstance(inp, list):
        inp = [inp]
    dims = doc.get("dimensions") if isinstance(doc.get("dimensions"), int) else 8
    data = []
    for i, _ in enumerate(inp):
        vec = _embedding(i, dims)
        if doc.get("encoding_format") == "base64":
            vec = base64.b64encode(struct.pack("<%df" % dims, *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vec})
    n = sum(len(x) if isinstance(x, list) else _words(x) for x in inp) or 1
    return (_dumps({"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": n, "total_tokens": n}}) + "\n").encode()


MODEL_IDS = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]


def models_body(model_id: Optional[str] = None) -> bytes:
    """GET /v1/models (the list) or /v1/models/{id} (one model)."""
    def one(m):
        return {"id": m, "object": "model", "created": CREATED, "owned_by": "mock"}
    doc = one(model_id) if model_id else {"object": "list", "data": [one(m) for m in MODEL_IDS]}
    return (_dumps(doc) + "\n").encode()


def _response_obj(model: str, status: str, text: Optional[str]) -> dict:
    out = []
    if text is not None:
        out = [{"type": "message", "id": "msg_mock_1", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    return {"id": "resp_mock_1", "object": "response", "created_at": CREATED,
            "status": status, "error": None, "incomplete_details": None, "model": model,
            "output": out, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": ({"input_tokens": 9, "output_tokens": 5, "total_tokens": 14}
                      if status == "completed" else None)}


def responses_body(model: str) -> bytes:
    """POST /v1/responses: a minimal Responses API object."""
    return (_dumps(_response_obj(model, "completed", TEXT)) + "\n").encode()


def responses_events(model: str, error: bool = False) -> List[bytes]:
    events = [_named("response.created", {"type": "response.created", "sequence_number": 0,
                                          "response": _response_obj(model, "in_progress",
                                                                    None)})]
    for p in TEXT_PIECES[:2] if error else TEXT_PIECES:
        events.append(_named("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": len(events),
            "item_id": "msg_mock_1", "output_index": 0, "content_index": 0, "delta": p}))
    if error:
        return events + [_named("error", {"type": "error", "sequence_number": len(events),
                                          "code": "server_error", "param": None,
                                          "message": "mock stream-error"})]
    return events + [_named("response.completed", {
        "type": "response.completed", "sequence_number": len(events),
        "response": _response_obj(model, "completed", TEXT)})]


# -- Anthropic Messages API --------------------------------------------------

ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error",
                    413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
                    529: "overloaded_error"}
ANTHROPIC_MSG_ID = "msg_01MockUpstreamMessage1"
ANTHROPIC_TOOL_ID = "toolu_01MockUpstreamToolUse1"


def anthropic_body(model: str, input_tokens: int, tool: Optional[str] = None) -> bytes:
    if tool:
        content = [{"type": "tool_use", "id": ANTHROPIC_TOOL_ID, "name": tool,
                    "input": json.loads(TOOL_ARGS)}]
        stop, out = "tool_use", len(TOOL_ARG_PIECES)
    else:
        content = [{"type": "text", "text": TEXT}]
        stop, out = "end_turn", len(TEXT_PIECES)
    return (_dumps({"id": ANTHROPIC_MSG_ID, "type": "message", "role": "assistant",
                    "model": model, "content": content, "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": out}})
            + "\n").encode()


def anthropic_events(model: str, input_tokens: int, tool: Optional[str] = None,
                     error: bool = False) -> List[bytes]:
    """The event sequence of a streamed Messages answer: message_start,
    content_block_start, ping, content_block_delta..., content_block_stop,
    message_delta, message_stop. error: message_start, the block start and two
    deltas, then an `error` event (overloaded_error)."""
    if tool:
        block = {"type": "tool_use", "id": ANTHROPIC_TOOL_ID, "name": tool, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in TOOL_ARG_PIECES]
        stop = "tool_use"
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in TEXT_PIECES]
        stop = "end_turn"
    events = [
        _named("message_start", {"type": "message_start", "message": {
            "id": ANTHROPIC_MSG_ID, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        _named("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": block}),
        _named("ping", {"type": "ping"}),
    ]
    for d in deltas[:2] if error else deltas:
        events.append(_named("content_block_delta", {"type": "content_block_delta",
                                                     "index": 0, "delta": d}))
    if error:
        return events + [_named("error", {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}})]
    return events + [
        _named("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _named("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": len(deltas)}}),
        _named("message_stop", {"type": "message_stop"}),
    ]


def anthropic_error_body(status: int) -> bytes:
    kind = ANTHROPIC_ERRORS.get(status, "api_error")
    msg = "Overloaded" if status == 529 else "mock upstream error %d" % status
    return _dumps({"type": "error", "error": {"type": kind, "message": msg}}).encode()


# -- Gemini generateContent --------------------------------------------------

GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED",
                 499: "CANCELLED", 500: "INTERNAL", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}
GEMINI_RESPONSE_ID = "mockGeminiResponse1"


def _gemini_response(model: str, parts: list, prompt: int, out: int, finish: bool) -> dict:
    cand = {"content": {"parts": parts, "role": "model"}}
    if finish:
        cand["finishReason"] = "STOP"
    cand["index"] = 0
    return {"candidates": [cand],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": out,
                              "totalTokenCount": prompt + out},
            "modelVersion": model, "responseId": GEMINI_RESPONSE_ID}


def _gemini_call_part(tool: str) -> dict:
    return {"functionCall": {"name": tool, "args": json.loads(TOOL_ARGS)}}


def gemini_body(model: str, prompt_tokens: int, tool: Optional[str] = None) -> bytes:
    if tool:
        doc = _gemini_response(model, [_gemini_call_part(tool)], prompt_tokens, 3, True)
    else:
        doc = _gemini_response(model, [{"text": TEXT}], prompt_tokens, len(TEXT_PIECES), True)
    return (_dumps(doc) + "\n").encode()


def gemini_events(model: str, prompt_tokens: int, tool: Optional[str] = None,
                  error: bool = False, sse: bool = True) -> List[bytes]:
    """streamGenerateContent: one GenerateContentResponse per event, usageMetadata
    running totals on each, finishReason on the last, no [DONE]. sse (alt=sse):
    `data: {...}` events ended by CRLF CRLF; else one JSON array sent in pieces.
    error: two events, then an error object (503 UNAVAILABLE)."""
    if tool:
        docs = [_gemini_response(model, [_gemini_call_part(tool)], prompt_tokens, 3, True)]
    else:
        pieces = TEXT_PIECES[:2] if error else TEXT_PIECES
        docs = [_gemini_response(model, [{"text": p}], prompt_tokens, i + 1,
                                 i == len(TEXT_PIECES) - 1)
                for i, p in enumerate(pieces)]
    if error:
        docs.append({"error": {"code": 503, "message": "The model is overloaded. "
                               "Please try again later.", "status": "UNAVAILABLE"}})
    if sse:
        return [_data(d, b"\r\n\r\n") for d in docs]
    return ([b"[" + _dumps(docs[0]).encode()] + [b",\r\n" + _dumps(d).encode() for d in docs[1:]]
            + [b"]"])


def gemini_error_body(status: int) -> bytes:
    err = {"code": status, "message": "mock upstream error %d" % status,
           "status": GEMINI_STATUS.get(status, "UNKNOWN")}
    if status == 429:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                           "retryDelay": "7s"}]
    return _dumps({"error": err}).encode()


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


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout", 529: "Overloaded"}


# ---------------------------------------------------------------------------
# Which API a request speaks, picked by its path, and what each one answers


def _words(x) -> int:
    """Whitespace-separated words in every string inside x: the mock's token count."""
    if isinstance(x, str):
        return len(x.split())
    if isinstance(x, list):
        return sum(_words(v) for v in x)
    if isinstance(x, dict):
        return sum(_words(v) for v in x.values())
    return 0


def prompt_tokens(doc: dict) -> int:
    """What the Anthropic and Gemini answers (and their token counters) report as
    input: the words of every string in the request but its model, at least 1."""
    return max(1, _words({k: v for k, v in doc.items() if k != "model"}))


AZURE_RE = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)$")
GEMINI_RE = re.compile(r"^/v1[a-z0-9]*/models/([^/:]+):([A-Za-z]+)$")


@dataclass
class Call:
    """What the mock understood of a request (see classify)."""
    api: str                 # openai | azure | anthropic | gemini
    endpoint: str            # chat, completions, embeddings, models, responses, messages,
                             # count_tokens, generateContent, streamGenerateContent, countTokens
    model: str
    doc: dict
    tool: Optional[str] = None           # answer with a call of this tool
    streams: bool = False                # the request itself asks for a stream
    include_usage: bool = False          # OpenAI stream_options.include_usage
    usage_always: bool = False
    sse: bool = True                     # Gemini: alt=sse (else a streamed JSON array)
    reject: Optional[Tuple[int, bytes]] = None   # answered instead of the body kind


def _first_tool(api: str, doc: dict) -> Optional[str]:
    tools = doc.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    t = tools[0] if isinstance(tools[0], dict) else {}
    if api == "gemini":
        for t in tools:
            decls = (t.get("functionDeclarations") or t.get("function_declarations")
                     if isinstance(t, dict) else None)
            if decls:
                return decls[0].get("name", DEFAULT_TOOL)
        return None
    if api == "anthropic":
        return t.get("name", DEFAULT_TOOL)
    fn = t.get("function")
    return (fn.get("name") if isinstance(fn, dict) else t.get("name")) or DEFAULT_TOOL


def classify(method: str, path: str, query: str, body: bytes, mods: dict) -> Call:
    """Pick the API by path. Anything not recognised is an OpenAI chat completion
    (what the mock always answered), so a test can use any path it likes."""
    try:
        doc = json.loads(body) if body else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    model = doc.get("model", "mock-model")
    model = model if isinstance(model, str) else str(model)
    qs = urllib.parse.parse_qs(query, keep_blank_values=True)
    call = Call("openai", "chat", model, doc, usage_always="usage-always" in mods)

    m = AZURE_RE.match(path)
    g = GEMINI_RE.match(path)
    if m:
        call.api, call.model = "azure", urllib.parse.unquote(m.group(1))
        call.endpoint = "chat" if m.group(2) == "chat/completions" else m.group(2)
        if not qs.get("api-version", [""])[0]:
            call.reject = (404, b'{"error":{"code":"404","message":"Resource not found"}}')
    elif g:
        call.api, call.model, call.endpoint = "gemini", g.group(1), g.group(2)
        call.streams = call.endpoint == "streamGenerateContent"
        call.sse = qs.get("alt", [""])[0] == "sse"
    elif path.endswith("/messages/count_tokens"):
        call.api, call.endpoint = "anthropic", "count_tokens"
    elif path.endswith("/messages"):
        call.api, call.endpoint = "anthropic", "messages"
        call.streams = doc.get("stream") is True
    elif path.endswith("/embeddings"):
        call.endpoint = "embeddings"
    elif path.endswith("/completions") and not path.endswith("/chat/completions"):
        call.endpoint = "completions"
    elif path.endswith("/responses"):
        call.endpoint = "responses"
    elif method == "GET" and (path.endswith("/models") or "/models/" in path):
        call.endpoint = "models"
        call.model = path.rsplit("/models", 1)[1].lstrip("/")
    so = doc.get("stream_options")
    call.include_usage = isinstance(so, dict) and so.get("include_usage") is True
    call.tool = _first_tool(call.api, doc)
    if call.tool is None and "tool-call" in mods:
        call.tool = mods["tool-call"] or DEFAULT_TOOL
    if call.endpoint not in ("chat", "messages", "generateContent", "streamGenerateContent"):
        call.tool = None
    return call


JSON = "application/json"


def answer_json(call: Call) -> bytes:
    """The body `json` answers with."""
    if call.api == "anthropic":
        n = prompt_tokens(call.doc)
        if call.endpoint == "count_tokens":
            return (_dumps({"input_tokens": n}) + "\n").encode()
        return anthropic_body(call.model, n, call.tool)
    if call.api == "gemini":
        n = prompt_tokens(call.doc)
        if call.endpoint == "countTokens":
            return (_dumps({"totalTokens": n}) + "\n").encode()
        return gemini_body(call.model, n, call.tool)
    if call.endpoint == "embeddings":
        return embeddings_body(call.model, call.doc)
    if call.endpoint == "completions":
        return completion_body(call.model)
    if call.endpoint == "models":
        return models_body(call.model or None)
    if call.endpoint == "responses":
        return responses_body(call.model)
    if call.tool:
        return chat_tool_call_body(call.model, call.tool)
    return chat_completion_body(call.model)


def answer_stream(call: Call, error: bool = False) -> Optional[Tuple[str, List[bytes]]]:
    """(content type, events) for the stream body kinds; None when the endpoint
    has no streamed form (embeddings, models, token counts: those answer JSON)."""
    if call.api == "anthropic":
        if call.endpoint != "messages":
            return None
        return "text/event-stream; charset=utf-8", anthropic_events(
            call.model, prompt_tokens(call.doc), call.tool, error)
    if call.api == "gemini":
        if call.endpoint not in ("generateContent", "streamGenerateContent"):
            return None
        events = gemini_events(call.model, prompt_tokens(call.doc), call.tool, error, call.sse)
        return ("text/event-stream" if call.sse else JSON), events
    if call.endpoint == "chat":
        return "text/event-stream", sse_events(call.model, call.include_usage,
                                               call.usage_always, call.tool, error)
    if call.endpoint == "completions":
        return "text/event-stream", completion_events(call.model, call.include_usage, error)
    if call.endpoint == "responses":
        return "text/event-stream", responses_events(call.model, error)
    return None


CONTEXT_LENGTH_BODY = json.dumps({"error": {
    "message": "This model's maximum context length is 8192 tokens. However, your messages "
               "resulted in 9000 tokens.",
    "type": "invalid_request_error", "param": "messages",
    "code": "context_length_exceeded"}}).encode()


def answer_error(call: Call, status: int) -> Tuple[bytes, List[Tuple[str, str]]]:
    """`status=CODE`: the API's error body and headers."""
    if call.api == "anthropic":
        return anthropic_error_body(status), [("retry-after", "7")] if status == 429 else []
    if call.api == "gemini":
        return gemini_error_body(status), []        # Gemini: RetryInfo in the body only
    return error_body(status), [("Retry-After", "7")] if status == 429 else []


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


STREAM_KINDS = ("stream", "slow-stream", "hold", "close-mid-stream", "reset-mid-stream",
                "stream-error")


def parse_behavior(value: str, default: Optional[str] = "json"
                   ) -> Tuple[Optional[str], Optional[str], Dict[str, Optional[str]]]:
    """'stream,delay-headers=2' -> ('stream', None, {'delay-headers': '2'}).
    The kind is `default` when the value names none."""
    kinds = {"json", "chunked-json", "close", "bad-response", "big-body", "big-stream",
             "status", "context-length"} | set(STREAM_KINDS)
    kind, arg, mods = default, None, {}
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
                 default_behavior: Optional[str] = None):
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
        self._times: Dict[str, int] = {}
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
                # close() and abort() only schedule the socket's close: a
                # test told "closed" before the FIN (or RST) has left would
                # race it with its next request.
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (Exception, asyncio.CancelledError):  # noqa: BLE001
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
            behavior = self.default_behavior or "json"
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
        named = req.behavior if req.has_header("x-mock-behavior") else self.default_behavior
        kind, arg, mods = parse_behavior(named or "", default=None)
        if "times" in mods:
            # The behaviour holds for the first N requests with this key;
            # later ones get the plain answer (a provider that recovers).
            key = req.header("x-mock-key", "default")
            with self._cond:
                seen = self._times.get(key, 0)
                self._times[key] = seen + 1
            if seen >= int(mods["times"] or 1):
                kind, arg, mods = None, None, {}
        call = classify(req.method, req.path, req.query, req.body, mods)
        if kind is None:
            # No body kind named: Anthropic and Gemini stream when the request
            # asks to; OpenAI answers JSON unless told `stream`.
            kind = "stream" if call.streams else "json"
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
        if call.api == "anthropic":
            extra.append(("request-id", "req_mock_%d_%d" % (conn.rec.id, req.seq_on_conn)))
        extra.append(("X-Mock-Conn", str(conn.rec.id)))

        def head(status, headers):
            lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
            lines += ["%s: %s" % kv for kv in headers + extra]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        def chunk(data: bytes) -> bytes:
            return b"%x\r\n" % len(data) + data + b"\r\n"

        def sse_headers(ctype="text/event-stream"):
            return [("Content-Type", ctype), ("Cache-Control", "no-cache"),
                    ("Transfer-Encoding", "chunked")]

        stream = answer_stream(call, kind == "stream-error") if kind in STREAM_KINDS else None
        if kind in STREAM_KINDS and stream is None:
            kind = "json"            # an endpoint without a streamed form
        if call.reject is not None:
            kind, arg = "reject", None

        if kind in ("json", "big-body", "status", "reject", "context-length"):
            hdrs = [("Content-Type", JSON)]
            if kind == "json":
                status, body = 200, answer_json(call)
            elif kind == "big-body":
                status, body = 200, big_body(int(arg))
            elif kind == "reject":
                status, body = call.reject
            elif kind == "context-length":
                status, body = 400, CONTEXT_LENGTH_BODY
            else:
                status = int(arg)
                body, more = answer_error(call, status)
                if "retry-after" in mods and more:
                    more = [(more[0][0], mods["retry-after"])]
                hdrs += more
            hdrs.insert(1, ("Content-Length", str(len(body))))
            req.status = status
            # recorded before it leaves: a test that got the answer finds it
            self._record_sent(req, body)
            await conn.write(head(status, hdrs) + body)
        elif kind == "chunked-json":
            body = answer_json(call)
            req.status = 200
            await conn.write(head(200, [("Content-Type", "application/json"),
                                        ("Transfer-Encoding", "chunked")]))
            for piece in (body[:10], body[10:40], body[40:]):
                self._record_sent(req, piece)
                await conn.write(chunk(piece))
            await conn.write(b"0\r\n\r\n")
        elif kind in STREAM_KINDS:
            ctype, events = stream
            req.status = 200
            await conn.write(head(200, sse_headers(ctype)))
            if "delay-body" in mods:
                await self._pause(conn, delay=float(mods["delay-body"] or 1))
            interval = float(arg or 0.2) if kind == "slow-stream" else None
            cut = min(2, len(events) - 1)
            for i, ev in enumerate(events):
                if kind in ("close-mid-stream", "reset-mid-stream") and i == cut:
                    return False, kind == "reset-mid-stream"
                if i > 0 and interval:
                    await self._pause(conn, delay=interval)
                if i == min(1, len(events) - 1) and kind == "hold":
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
            await conn.write(head(200, sse_headers()))
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
    ap.add_argument("--behavior", default=None,
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
