"""The official `@anthropic-ai/sdk` npm SDK against aigw's /v1/messages: an
application changes only its base URL (the gateway's root, no /v1) and key
(sent as x-api-key). Messages plain and streamed (the SDK's stream helper and
the raw event sequence), system prompt, tools over two turns, countTokens, and
errors as the SDK's typed errors; served by an OpenAI-kind provider (aigw
translates), an anthropic-kind provider, and a gemini-kind provider, all on the
mock upstream.

Each test starts a gateway and one `node tests/sdk/anthropic.mjs` (see sdk.py).
"""
from __future__ import annotations

import json
import re

import pytest

import sdk
from sdk import KINDS

KEY = "gw-key"
SERVED_BY = [pytest.param(k, id=k) for k in ("openai", "anthropic", "gemini")]
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

MOCK_TEXT = "Hello from the mock \u00e9 caf\u00e9 \U0001f600"
MOCK_STREAM_TEXT = "Hello fr\u00f6m the mock"


def start(gateway, upstream=None, kind="openai", **kw):
    return sdk.start_gateway(gateway, upstream, kind, KEY, **kw)


def run(gw, plan, key=KEY, timeout=30.0):
    return sdk.run("anthropic", gw.url, key, plan, timeout=timeout)


@pytest.fixture(autouse=True)
def _need_sdk():
    sdk.require("anthropic")


def assert_usage(u):
    assert u is not None, "no usage"
    for k in ("input_tokens", "output_tokens"):
        assert isinstance(u[k], int) and u[k] >= 0, u


STREAM_EVENTS = re.compile(r"^message_start content_block_start( content_block_delta)+ "
                           r"content_block_stop message_delta message_stop$")


def assert_event_sequence(s, block="text", delta="text_delta"):
    events = [e for e in s["events"] if e != "ping"]
    assert STREAM_EVENTS.match(" ".join(events)), s["events"]
    assert s["block_types"] == [block] and s["block_indexes"] == [0], s
    assert set(s["delta_types"]) == {delta}, s
    m = s["start_message"]
    assert m["type"] == "message" and m["role"] == "assistant" and m["content"] == [], m
    assert s["content_type"].startswith("text/event-stream")
    assert s["request_id"]


# ---------------------------------------------------------------------------
# Messages, plain and streamed


def test_echo_messages(gateway):
    gw = start(gateway)
    plain, events = run(gw, [
        {"op": "create", "model": "echo", "content": "hello through the SDK"},
        {"op": "stream_events", "model": "echo", "content": "stream me"},
    ])
    m = sdk.ok(plain)
    assert m["type"] == "message" and m["role"] == "assistant" and m["block_types"] == ["text"]
    assert "hello through the SDK" in m["text"] and m["stop_reason"] == "end_turn"
    assert_usage(m["usage"])
    s = sdk.ok(events)
    assert_event_sequence(s)
    assert "stream me" in s["text"] and s["stop_reason"] == "end_turn"


@pytest.mark.parametrize("kind", SERVED_BY)
def test_messages_create(gateway, upstream, kind):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    m = sdk.ok(run(gw, [{"op": "create", "model": k["model"], "system": "Be brief.",
                         "content": "hi", "max_tokens": 64}])[0])
    assert m["type"] == "message" and m["role"] == "assistant", m
    assert m["block_types"] == ["text"] and m["text"], m
    assert m["stop_reason"] == "end_turn" and m["request_id"], m
    assert_usage(m["usage"])

    rec = upstream.last_request()
    assert rec.path == k["path"], rec.target
    assert (m["usage"]["input_tokens"], m["usage"]["output_tokens"]) == sdk.upstream_usage(kind, rec)
    assert rec.header(k["auth"][0]) == k["auth"][1]
    assert KEY not in rec.raw_head.decode("latin-1")
    body = rec.json()
    if kind == "openai":
        assert m["text"] == MOCK_TEXT
        assert m["usage"]["input_tokens"] == 9 and m["usage"]["output_tokens"] == 12
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["messages"][1]["role"] == "user"
        assert body.get("max_tokens", body.get("max_completion_tokens")) == 64
    elif kind == "anthropic":
        assert rec.header("anthropic-version") == "2023-06-01"
        assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
        assert body["max_tokens"] == 64 and body["model"] == k["model"]
    else:
        assert "Be brief." in json.dumps(body["systemInstruction"])
        assert body["generationConfig"]["maxOutputTokens"] == 64
        assert [c["role"] for c in body["contents"]] == ["user"]


@pytest.mark.parametrize("kind", SERVED_BY)
def test_messages_stream(gateway, upstream, kind):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    final, events = run(gw, [
        {"op": "stream_final", "model": k["model"], "system": "Be brief.", "content": "hi",
         "headers": {"x-mock-behavior": "stream"}},
        {"op": "stream_events", "model": k["model"], "content": "hi",
         "headers": {"x-mock-behavior": "stream"}},
    ])
    f = sdk.ok(final)
    assert f["block_types"] == ["text"] and f["text"] and f["deltas"] == f["text"], f
    assert f["stop_reason"] == "end_turn"
    assert_usage(f["usage"])
    s = sdk.ok(events)
    assert_event_sequence(s)
    assert s["text"] and s["stop_reason"] == "end_turn", s
    assert isinstance(s["delta_usage"]["output_tokens"], int), s

    reqs = upstream.request_list()
    assert [r.path for r in reqs] == [k["stream_path"]] * 2, [r.target for r in reqs]
    # Usage is exactly what the provider reported: message_delta's input_tokens
    # when it has them, else message_start's.
    got = f["usage"]
    assert (got["input_tokens"], got["output_tokens"]) == sdk.upstream_usage(kind, reqs[0]), got
    d = s["delta_usage"]
    inp = d["input_tokens"] if d.get("input_tokens") is not None else s["start_usage"]["input_tokens"]
    assert (inp, d["output_tokens"]) == sdk.upstream_usage(kind, reqs[1]), s
    if kind == "openai":
        assert s["text"] == MOCK_STREAM_TEXT == f["text"]
        # OpenAI reports usage only at the end of a stream: message_start says 0 and
        # message_delta carries the provider's numbers, not added up.
        assert s["start_usage"]["input_tokens"] == 0, s["start_usage"]
        assert s["delta_usage"]["input_tokens"] == 9 and s["delta_usage"]["output_tokens"] == 5
        assert f["usage"]["input_tokens"] == 9 and f["usage"]["output_tokens"] == 5
        body = reqs[0].json()
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    elif kind == "anthropic":
        assert reqs[0].json()["stream"] is True
    else:
        assert "alt=sse" in reqs[0].query


@pytest.mark.parametrize("kind", SERVED_BY)
def test_tools_two_turns(gateway, upstream, kind):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    plain, streamed, events = run(gw, [
        {"op": "tools", "model": k["model"], "second_turn": True},
        {"op": "tools", "model": k["model"], "stream": True,
         "headers": {"x-mock-behavior": "stream"}},
        {"op": "stream_events", "model": k["model"], "tools": True,
         "content": "What is the weather in Paris?", "headers": {"x-mock-behavior": "stream"}},
    ])
    t = sdk.ok(plain)
    first = t["first"]
    assert first["stop_reason"] == "tool_use" and "tool_use" in first["block_types"], first
    use = first["tool_uses"][0]
    assert use["name"] == "get_weather" and isinstance(use["input"], dict), use
    assert TOOL_ID.match(use["id"]), use
    second = t["second"]
    assert second["stop_reason"] in ("end_turn", "tool_use"), second
    assert_usage(second["usage"])
    st = sdk.ok(streamed)["first"]
    assert st["stop_reason"] == "tool_use", st
    assert st["tool_uses"] and st["tool_uses"][0]["name"] == "get_weather", st
    assert TOOL_ID.match(st["tool_uses"][0]["id"]) and isinstance(st["tool_uses"][0]["input"], dict)
    # Arguments cross unchanged (the mock always calls with {"city": "Paris"}).
    assert use["input"] == st["tool_uses"][0]["input"] == {"city": "Paris"}
    ev = sdk.ok(events)
    assert_event_sequence(ev, block="tool_use", delta="input_json_delta")
    assert json.loads(ev["partial_json"]) == {"city": "Paris"} and ev["stop_reason"] == "tool_use"

    # The first turn offered the tool, the second carried its result, in the
    # provider's own format.
    reqs = upstream.request_list()
    turn1, turn2 = reqs[0].json(), reqs[1].json()
    assert "get_weather" in json.dumps(turn1.get("tools")), turn1
    assert "temperature_c" in json.dumps(turn2), turn2
    if kind == "openai":
        call = next(m for m in turn2["messages"] if m["role"] == "assistant")["tool_calls"][0]
        result = next(m for m in turn2["messages"] if m["role"] == "tool")
        assert call["function"]["name"] == "get_weather"
        assert result["tool_call_id"] == call["id"]
        assert isinstance(json.loads(call["function"]["arguments"]), dict)
    elif kind == "anthropic":
        blocks = [b for m in turn2["messages"] if isinstance(m["content"], list)
                  for b in m["content"]]
        res = next(b for b in blocks if b["type"] == "tool_result")
        assert res["tool_use_id"] == use["id"]
    else:
        parts = [p for c in turn2["contents"] for p in c.get("parts", [])]
        assert any("functionCall" in p for p in parts), turn2
        fr = next(p["functionResponse"] for p in parts if "functionResponse" in p)
        assert fr["name"] == "get_weather" and isinstance(fr["response"], dict)


def test_alias_and_provider_prefix(gateway, upstream):
    """An alias and provider/model on /v1/messages reach the provider they name."""
    gw = start(gateway, upstream, "gemini",
               models={"smart": {"provider": "gemini", "model": "gemini-2.0-flash"}})
    results = run(gw, [
        {"op": "create", "model": "smart"},
        {"op": "create", "model": "openai/gpt-4o"},
        {"op": "stream_final", "model": "gemini/gemini-1.5-pro",
         "headers": {"x-mock-behavior": "stream"}},
    ])
    for r in results:
        assert sdk.ok(r)["text"] and r["stop_reason"] == "end_turn", r
    reqs = upstream.request_list()
    assert [r.path for r in reqs] == ["/v1beta/models/gemini-2.0-flash:generateContent",
                                      "/v1/chat/completions",
                                      "/v1beta/models/gemini-1.5-pro:streamGenerateContent"]
    assert reqs[1].json()["model"] == "gpt-4o"


COUNT_PATHS = {"anthropic": "/v1/messages/count_tokens",
               "gemini": "/v1beta/models/gemini-2.0-flash:countTokens"}


@pytest.mark.parametrize("kind", [
    pytest.param("anthropic", id="anthropic"),
    pytest.param("gemini", id="gemini"),
])
def test_count_tokens(gateway, upstream, kind):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    r = sdk.ok(run(gw, [{"op": "count_tokens", "model": k["model"], "system": "Be brief.",
                         "content": "hi"}])[0])
    assert isinstance(r["input_tokens"], int) and r["input_tokens"] > 0, r
    rec = upstream.last_request()
    assert rec.path == COUNT_PATHS[kind], rec.target
    assert rec.header(k["auth"][0]) == k["auth"][1]


def test_count_tokens_without_a_counter(gateway, upstream):
    """A provider with no token counter (OpenAI): a clean BadRequestError."""
    gw = start(gateway, upstream, "openai")
    e = sdk.err(run(gw, [{"op": "count_tokens", "model": "gpt-4o-mini", "content": "hi"}])[0])
    assert_error(e, "BadRequestError", 400, "invalid_request_error")
    assert upstream.request_list() == []


# ---------------------------------------------------------------------------
# Errors: Anthropic's envelope, the SDK's typed errors, x-request-id


def assert_error(e, cls, status, etype):
    assert e["class"] == cls and "APIError" in e["chain"], e
    assert e["status"] == status, e
    body = e["body"] or {}
    assert body.get("type") == "error", e
    assert body["error"]["type"] == etype and body["error"]["message"], e
    assert e["headers"].get("x-request-id"), "no x-request-id on the error response: %r" % (e,)


def test_error_wrong_key(gateway, upstream):
    gw = start(gateway, upstream)
    plain, streamed = run(gw, [{"op": "create", "model": "gpt-4o-mini"},
                               {"op": "stream_events", "model": "gpt-4o-mini"}], key="wrong-key")
    for r in (plain, streamed):
        assert_error(sdk.err(r), "AuthenticationError", 401, "authentication_error")
    assert upstream.request_list() == []


def test_error_unknown_model(gateway, upstream):
    gw = start(gateway, upstream, providers={"openai": {"models": ["gpt-4o-mini"]}})
    results = run(gw, [{"op": "create", "model": "nope/x"},
                       {"op": "create", "model": "gpt-3.5-not-allowed"},
                       {"op": "stream_events", "model": "nope/x"}])
    for r in results:
        e = sdk.err(r)
        assert_error(e, "NotFoundError", 404, "not_found_error")
        assert "model" in e["body"]["error"]["message"].lower(), e
    assert upstream.request_list() == []


@pytest.mark.parametrize("kind", SERVED_BY)
@pytest.mark.parametrize("behavior,cls,status,etype", [
    ("status=429", "RateLimitError", 429, "rate_limit_error"),
    ("status=500", "InternalServerError", 502, "api_error"),
    ("status=400", "BadRequestError", 400, "invalid_request_error"),
    # The provider refused the gateway's own key: never the client's 401.
    ("status=401", "InternalServerError", 502, "api_error"),
], ids=["429", "500", "400", "401"])
def test_error_from_provider(gateway, upstream, kind, behavior, cls, status, etype):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    plain, streamed = run(gw, [
        {"op": "create", "model": k["model"], "headers": {"x-mock-behavior": behavior}},
        {"op": "stream_events", "model": k["model"], "headers": {"x-mock-behavior": behavior}},
    ])
    for r in (plain, streamed):
        e = sdk.err(r)
        assert_error(e, cls, status, etype)
        assert "mock upstream error" in e["body"]["error"]["message"], e
        if status == 429:
            assert e["headers"].get("retry-after") == "7", e["headers"]
    assert len(upstream.request_list()) == 2


STREAM_ERROR = {"openai": ("api_error", "mock stream-error"),
                "anthropic": ("overloaded_error", "Overloaded"),
                "gemini": ("api_error", "overloaded")}


@pytest.mark.parametrize("kind", SERVED_BY)
def test_error_mid_stream(gateway, upstream, kind):
    """A provider error after the stream started: an `error` event, which the
    SDK's iterator throws as an APIError with the provider's message, after
    the text that came before it."""
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    s = sdk.ok(run(gw, [{"op": "stream_events", "model": k["model"], "catch_stream_error": True,
                         "headers": {"x-mock-behavior": "stream-error"}}])[0])
    assert s["status"] == 200 and s["text"] == "Hello " and s["stop_reason"] is None, s
    assert s["events"][:2] == ["message_start", "content_block_start"], s
    assert "message_stop" not in s["events"], s
    e = s["stream_error"]
    assert e and e["class"] == "APIError" and e["status"] is None, s
    etype, msg = STREAM_ERROR[kind]
    assert e["body"]["type"] == "error" and e["body"]["error"]["type"] == etype, e
    assert msg in e["body"]["error"]["message"], e


@pytest.mark.parametrize("kind,stream", [
    pytest.param(kind, stream, id="%s-%s" % (kind, "stream" if stream else "plain"))
    for kind in ("openai", "anthropic", "gemini") for stream in (False, True)])
def test_error_upstream_timeout(gateway, upstream, kind, stream):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind, expect_errors=True, timeouts={"read": 0.5})
    behavior = "stream,delay-headers=2" if stream else "delay-headers=2"
    r = run(gw, [{"op": "stream_events" if stream else "create", "model": k["model"],
                  "headers": {"x-mock-behavior": behavior}}])[0]
    e = sdk.err(r)
    assert_error(e, "GatewayTimeoutError", 504, "timeout_error")
    assert 350 <= r["ms"] <= 1900, r["ms"]


# ---------------------------------------------------------------------------
# A model alias whose first target is overloaded


def test_failover_is_invisible_to_the_sdk(gateway, make_upstream):
    down, up = make_upstream(default_behavior="status=529"), make_upstream(default_behavior="stream")
    providers = {"claude": {"kind": "anthropic", "base_url": down.url, "api_key": "sk-ant"},
                 "backup": {"kind": "openai", "base_url": up.base_url, "api_key": "sk-b"}}
    models = {"smart": {"strategy": "priority", "targets": [
        {"provider": "claude", "model": "claude-3-5-haiku-latest"},
        {"provider": "backup", "model": "gpt-4o-mini"}]}}
    gw = sdk.start_gateway(gateway, None, "openai", KEY, providers=providers, models=models)
    final, events = run(gw, [
        {"op": "stream_final", "model": "smart", "content": "hi"},
        {"op": "stream_events", "model": "smart", "content": "hi"},
    ])
    f = sdk.ok(final)
    assert f["text"] and f["deltas"] == f["text"] and f["stop_reason"] == "end_turn", f
    assert_usage(f["usage"])
    s = sdk.ok(events)
    assert_event_sequence(s)
    assert len(down.request_list()) == 2 and len(up.request_list()) == 2
