"""Self-tests of the mock upstream's API formats, talking to it directly over
HTTP (no gateway): OpenAI (chat, tools, usage, embeddings, completions, models,
responses), Azure OpenAI, Anthropic Messages and Gemini generateContent --
their JSON answers, streamed event sequences, tool calls and errors."""
import json

import pytest

import httpc
from mock_upstream import (TEXT, anthropic_events, chat_completion_body, gemini_events,
                           prompt_tokens, sse_events)

CT_JSON = ("Content-Type", "application/json")
WEATHER_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]


def call(mock, path, doc=None, behavior=None, method="POST", headers=()):
    hdrs = [CT_JSON] + list(headers)
    if behavior:
        hdrs.append(("x-mock-behavior", behavior))
    body = None if doc is None else json.dumps(doc).encode()
    with httpc.Conn.open(mock.port) as c:
        return c.request(method, path, hdrs, body, timeout=5)


def named_events(body: bytes):
    """[(event name or None, parsed data)] of an SSE body (LF or CRLF)."""
    out = []
    for ev in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, data = None, None
        for line in ev.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if data is not None:
            out.append((name, data if data == b"[DONE]" else json.loads(data)))
    return out


# --- OpenAI ------------------------------------------------------------------------


def test_openai_stream_usage_only_when_asked(upstream):
    doc = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    r = call(upstream, "/v1/chat/completions", doc, "stream")
    assert r.chunks == sse_events("gpt-test") and b'"usage"' not in r.body
    doc["stream_options"] = {"include_usage": True}
    r = call(upstream, "/v1/chat/completions", doc, "stream")
    assert r.chunks == sse_events("gpt-test", include_usage=True)
    evs = [d for _, d in named_events(r.body)]
    assert evs[-1] == b"[DONE]"
    assert evs[-2]["choices"] == [] and evs[-2]["usage"]["total_tokens"] == 14
    assert all(e["usage"] is None for e in evs[:-2])
    assert evs[-3]["choices"][0]["finish_reason"] == "stop"


def test_openai_tool_call_json_and_stream(upstream):
    doc = {"model": "gpt-t", "messages": [{"role": "user", "content": "weather?"}],
           "tools": WEATHER_OPENAI}
    r = call(upstream, "/v1/chat/completions", doc)
    got = json.loads(r.body)
    choice = got["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (tc,) = choice["message"]["tool_calls"]
    assert tc["type"] == "function" and tc["id"].startswith("call_")
    assert tc["function"]["name"] == "get_weather"
    assert json.loads(tc["function"]["arguments"]) == {"city": "Paris"}

    r = call(upstream, "/v1/chat/completions", doc, "stream")
    evs = [d for _, d in named_events(r.body)]
    assert evs[-1] == b"[DONE]"
    deltas = [e["choices"][0]["delta"] for e in evs[:-1]]
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["index"] == 0
    assert all(tc["index"] == 0 for tc in calls) and len(calls) > 2
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert evs[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_text_unless_tools(upstream):
    """No tools (or an empty list): the byte-exact text answer; `tool-call` forces a call."""
    doc = {"model": "gpt-x", "messages": [], "tools": []}
    assert call(upstream, "/v1/chat/completions", doc).body == chat_completion_body("gpt-x")
    r = call(upstream, "/v1/chat/completions", {"model": "gpt-x"}, "json,tool-call=lookup")
    tc = json.loads(r.body)["choices"][0]["message"]["tool_calls"][0]
    assert tc["function"]["name"] == "lookup"


def test_openai_stream_error(upstream):
    r = call(upstream, "/v1/chat/completions", {"model": "m"}, "stream-error")
    assert r.status == 200 and r.complete
    evs = [d for _, d in named_events(r.body)]
    assert evs[-1] == {"error": {"message": evs[-1]["error"]["message"], "type": "server_error",
                                 "param": None, "code": None}}
    assert len(evs) >= 3 and b"[DONE]" not in r.body


def test_openai_other_endpoints(upstream):
    r = call(upstream, "/v1/embeddings", {"model": "emb", "input": ["a b", "c", "d e f"]})
    got = json.loads(r.body)
    assert got["object"] == "list" and got["model"] == "emb"
    assert [d["index"] for d in got["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 8 for d in got["data"])
    assert got["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    got = json.loads(call(upstream, "/v1/embeddings", {"model": "emb", "input": "x",
                                                       "dimensions": 4}).body)
    assert len(got["data"]) == 1 and len(got["data"][0]["embedding"]) == 4

    got = json.loads(call(upstream, "/v1/completions", {"model": "c", "prompt": "x"}).body)
    assert got["object"] == "text_completion" and got["choices"][0]["text"] == TEXT
    r = call(upstream, "/v1/completions", {"model": "c", "prompt": "x"}, "stream")
    evs = [d for _, d in named_events(r.body)]
    assert "".join(e["choices"][0]["text"] for e in evs[:-1]) == TEXT and evs[-1] == b"[DONE]"

    got = json.loads(call(upstream, "/v1/models", method="GET").body)
    assert got["object"] == "list" and all(m["object"] == "model" for m in got["data"])
    assert json.loads(call(upstream, "/v1/models/gpt-4o", method="GET").body)["id"] == "gpt-4o"

    got = json.loads(call(upstream, "/v1/responses", {"model": "r", "input": "hi"}).body)
    assert got["object"] == "response" and got["status"] == "completed"
    assert got["output"][0]["content"][0] == {"type": "output_text", "text": TEXT,
                                              "annotations": []}
    r = call(upstream, "/v1/responses", {"model": "r", "input": "hi", "stream": True}, "stream")
    names = [n for n, _ in named_events(r.body)]
    assert names[0] == "response.created" and names[-1] == "response.completed"


def test_openai_errors(upstream):
    r = call(upstream, "/v1/chat/completions", {"model": "m"}, "status=429")
    assert r.status == 429 and r.header("retry-after") == "7"
    assert json.loads(r.body)["error"]["code"] == "mock_429"


# --- Azure OpenAI ----------------------------------------------------------------------


def test_azure(upstream):
    path = "/openai/deployments/my-dep/chat/completions?api-version=2024-10-21"
    r = call(upstream, path, {"messages": []}, headers=[("api-key", "azk")])
    assert r.status == 200 and r.body == chat_completion_body("my-dep")
    rec = upstream.last_request()
    assert rec.query == "api-version=2024-10-21" and rec.header("api-key") == "azk"
    r = call(upstream, path, {"messages": []}, "stream")
    assert r.chunks == sse_events("my-dep")
    r = call(upstream, "/openai/deployments/emb/embeddings?api-version=1", {"input": "x"})
    assert json.loads(r.body)["model"] == "emb"
    r = call(upstream, "/openai/deployments/my-dep/chat/completions", {"messages": []}, "stream")
    assert r.status == 404
    assert json.loads(r.body) == {"error": {"code": "404", "message": "Resource not found"}}


# --- Anthropic -------------------------------------------------------------------------

MSG = {"model": "claude-test", "max_tokens": 100,
       "messages": [{"role": "user", "content": "what is the weather"}]}
WEATHER_ANTHROPIC = [{"name": "get_weather", "description": "weather in a city",
                      "input_schema": {"type": "object"}}]
ANTHROPIC_HDRS = [("x-api-key", "sk-ant"), ("anthropic-version", "2023-06-01")]


def test_anthropic_json(upstream):
    r = call(upstream, "/v1/messages", MSG, headers=ANTHROPIC_HDRS)
    got = json.loads(r.body)
    n = prompt_tokens(MSG)
    assert got == {"id": got["id"], "type": "message", "role": "assistant",
                   "model": "claude-test", "content": [{"type": "text", "text": TEXT}],
                   "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": n, "output_tokens": 5}}
    assert got["id"].startswith("msg_") and r.header("request-id")
    rec = upstream.last_request()
    assert rec.header("x-api-key") == "sk-ant" and rec.header("anthropic-version") == "2023-06-01"

    r = call(upstream, "/v1/messages", dict(MSG, tools=WEATHER_ANTHROPIC))
    got = json.loads(r.body)
    (block,) = got["content"]
    assert got["stop_reason"] == "tool_use" and block["type"] == "tool_use"
    assert block["id"].startswith("toolu_01") and block["name"] == "get_weather"
    assert block["input"] == {"city": "Paris"}

    r = call(upstream, "/v1/messages/count_tokens", MSG)
    assert json.loads(r.body) == {"input_tokens": n}


def test_anthropic_stream(upstream):
    r = call(upstream, "/v1/messages", dict(MSG, stream=True))     # the request asks
    assert r.header("content-type").startswith("text/event-stream") and r.framing == "chunked"
    assert r.chunks == anthropic_events("claude-test", prompt_tokens(MSG))
    evs = named_events(r.body)
    names = [n for n, _ in evs]
    assert names == ["message_start", "content_block_start", "ping"] + \
        ["content_block_delta"] * 5 + ["content_block_stop", "message_delta", "message_stop"]
    assert all(d["type"] == n for n, d in evs)
    start = evs[0][1]["message"]
    assert start["usage"] == {"input_tokens": prompt_tokens(MSG), "output_tokens": 1}
    assert start["content"] == [] and start["stop_reason"] is None
    assert "".join(d["delta"]["text"] for n, d in evs if n == "content_block_delta") == TEXT
    assert evs[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert evs[-2][1]["usage"]["output_tokens"] == 5
    assert b"[DONE]" not in r.body


def test_anthropic_stream_tool_use(upstream):
    r = call(upstream, "/v1/messages", dict(MSG, stream=True, tools=WEATHER_ANTHROPIC))
    evs = named_events(r.body)
    block = evs[1][1]["content_block"]
    assert block == {"type": "tool_use", "id": block["id"], "name": "get_weather", "input": {}}
    deltas = [d["delta"] for n, d in evs if n == "content_block_delta"]
    assert all(d["type"] == "input_json_delta" for d in deltas) and len(deltas) > 1
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"city": "Paris"}
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_stream_machinery(upstream):
    """The stream body kinds work on the Anthropic event list too."""
    evs = anthropic_events("claude-test", prompt_tokens(MSG))
    with httpc.Conn.open(upstream.port) as c:
        c.send(httpc.build_request("POST", "/v1/messages",
                                   [CT_JSON, ("x-mock-behavior", "close-mid-stream")],
                                   json.dumps(MSG).encode()))
        head = c.read_head(5)
        got = []
        with pytest.raises(httpc.Closed):
            for piece in c.iter_body(head, 5):
                got.append(piece)
    assert got == evs[:2]
    with httpc.Conn.open(upstream.port) as c:
        c.send(httpc.build_request("POST", "/v1/messages",
                                   [CT_JSON, ("x-mock-behavior", "hold"), ("x-mock-key", "a")],
                                   json.dumps(MSG).encode()))
        head = c.read_head(5)
        it = c.iter_body(head, 10)
        first = next(it)
        assert upstream.wait_held("a", 5)
        upstream.release("a")
        assert first + b"".join(it) == b"".join(evs)
    # `json` names a body kind: no stream even though the request asks for one.
    r = call(upstream, "/v1/messages", dict(MSG, stream=True), "json")
    assert json.loads(r.body)["type"] == "message"


def test_anthropic_errors(upstream):
    for code, kind in [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error"),
                       (400, "invalid_request_error"), (401, "authentication_error"),
                       (403, "permission_error"), (404, "not_found_error")]:
        r = call(upstream, "/v1/messages", MSG, "status=%d" % code)
        got = json.loads(r.body)
        assert r.status == code and got["type"] == "error" and got["error"]["type"] == kind
        assert (r.header("retry-after") == "7") == (code == 429)
    r = call(upstream, "/v1/messages", dict(MSG, stream=True), "stream-error")
    evs = named_events(r.body)
    assert [n for n, _ in evs][0] == "message_start"
    assert "content_block_delta" in [n for n, _ in evs]
    assert evs[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded"}})


# --- Gemini ----------------------------------------------------------------------------

GEM = {"contents": [{"role": "user", "parts": [{"text": "what is the weather"}]}]}
WEATHER_GEMINI = [{"functionDeclarations": [{"name": "get_weather",
                                             "parameters": {"type": "OBJECT"}}]}]
GPATH = "/v1beta/models/gemini-test:"


def test_gemini_json(upstream):
    r = call(upstream, GPATH + "generateContent", GEM, headers=[("x-goog-api-key", "gk")])
    got = json.loads(r.body)
    n = prompt_tokens(GEM)
    assert got["candidates"] == [{"content": {"parts": [{"text": TEXT}], "role": "model"},
                                  "finishReason": "STOP", "index": 0}]
    assert got["usageMetadata"] == {"promptTokenCount": n, "candidatesTokenCount": 5,
                                    "totalTokenCount": n + 5}
    assert got["modelVersion"] == "gemini-test" and got["responseId"]
    assert upstream.last_request().header("x-goog-api-key") == "gk"

    r = call(upstream, GPATH + "generateContent", dict(GEM, tools=WEATHER_GEMINI))
    got = json.loads(r.body)
    assert got["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]

    assert json.loads(call(upstream, GPATH + "countTokens", GEM).body) == {"totalTokens": n}


def test_gemini_stream(upstream):
    r = call(upstream, GPATH + "streamGenerateContent?alt=sse", GEM)
    assert r.header("content-type") == "text/event-stream"
    assert r.chunks == gemini_events("gemini-test", prompt_tokens(GEM))
    assert all(c.startswith(b"data: ") and c.endswith(b"}\r\n\r\n") for c in r.chunks)
    evs = [d for _, d in named_events(r.body)]
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in evs)
    assert text == TEXT and b"[DONE]" not in r.body
    counts = [e["usageMetadata"]["candidatesTokenCount"] for e in evs]
    assert counts == sorted(counts) and counts[-1] == 5
    assert [("finishReason" in e["candidates"][0]) for e in evs] == [False] * 4 + [True]

    r = call(upstream, GPATH + "streamGenerateContent?alt=sse", dict(GEM, tools=WEATHER_GEMINI))
    evs = [d for _, d in named_events(r.body)]
    assert evs[-1]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "get_weather"

    # Without alt=sse: one JSON array, sent in pieces.
    r = call(upstream, GPATH + "streamGenerateContent", GEM)
    assert r.header("content-type") == "application/json" and len(r.chunks) > 2
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"]
                   for e in json.loads(r.body)) == TEXT


def test_gemini_errors(upstream):
    r = call(upstream, GPATH + "generateContent", GEM, "status=429")
    got = json.loads(r.body)["error"]
    assert r.status == 429 and got["code"] == 429 and got["status"] == "RESOURCE_EXHAUSTED"
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    assert retry in got["details"]
    assert r.header("retry-after") is None
    for code, status in [(400, "INVALID_ARGUMENT"), (500, "INTERNAL"), (503, "UNAVAILABLE")]:
        r = call(upstream, GPATH + "generateContent", GEM, "status=%d" % code)
        assert json.loads(r.body)["error"]["status"] == status and "details" not in r.body.decode()
    r = call(upstream, GPATH + "streamGenerateContent?alt=sse", GEM, "stream-error")
    evs = [d for _, d in named_events(r.body)]
    assert "candidates" in evs[0] and evs[-1]["error"]["status"] == "UNAVAILABLE"


def test_gemini_close_mid_stream_tool_call(upstream):
    """A one-event stream (a function call) still gets cut: before its only event."""
    with httpc.Conn.open(upstream.port) as c:
        c.send(httpc.build_request("POST", GPATH + "streamGenerateContent?alt=sse",
                                   [CT_JSON, ("x-mock-behavior", "close-mid-stream")],
                                   json.dumps(dict(GEM, tools=WEATHER_GEMINI)).encode()))
        head = c.read_head(5)
        with pytest.raises(httpc.Closed):
            assert list(c.iter_body(head, 5)) == []
