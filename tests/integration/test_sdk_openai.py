"""The official `openai` npm SDK against aigw: an application changes only its
base URL and key. Chat (plain, streamed, the SDK's stream helper), tools,
embeddings, models, and every error class arriving as the SDK's own typed error,
served by the built-in echo model, an OpenAI-kind provider, and (translated)
anthropic-, gemini- and azure-openai-kind providers, all on the mock upstream.

Each test starts a gateway and one `node tests/sdk/openai.mjs` (see sdk.py).
"""
from __future__ import annotations

import json

import pytest

import sdk
from sdk import KINDS

KEY = "gw-key"


def start(gateway, upstream=None, kind="openai", **kw):
    return sdk.start_gateway(gateway, upstream, kind, KEY, **kw)


def run(gw, plan, key=KEY, timeout=30.0):
    return sdk.run("openai", gw.url + "/v1", key, plan, timeout=timeout)


@pytest.fixture(autouse=True)
def _need_sdk():
    sdk.require("openai")


def assert_usage(u):
    assert u is not None, "no usage"
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(u[k], int) and u[k] >= 0, u


# ---------------------------------------------------------------------------
# The built-in echo model: no upstream at all


def test_echo_chat_stream_and_helper(gateway):
    gw = start(gateway)
    chat, stream, helper = run(gw, [
        {"op": "chat", "model": "echo", "content": "hello through the SDK"},
        {"op": "stream", "model": "echo", "content": "stream me", "include_usage": True},
        {"op": "stream_helper", "model": "echo", "content": "helper"},
    ])
    c = sdk.ok(chat)
    assert c["object"] == "chat.completion" and c["role"] == "assistant"
    assert "hello through the SDK" in c["content"]
    assert c["finish_reason"] == "stop" and c["request_id"]
    assert_usage(c["usage"])

    s = sdk.ok(stream)
    assert s["content_type"].startswith("text/event-stream")
    assert s["objects"] == ["chat.completion.chunk"] and len(s["ids"]) == 1
    assert "stream me" in s["text"] and s["finish_reason"] == "stop"
    assert_usage(s["last_chunk_usage"])
    assert s["usage_chunks"] == 1 and s["last_has_choices"] is False, s
    assert s["request_id"]

    h = sdk.ok(helper)
    assert "helper" in h["content"] and h["deltas"] == h["content"]
    assert h["finish_reason"] == "stop"


# ---------------------------------------------------------------------------
# An OpenAI-kind provider


MOCK_TEXT = "Hello from the mock \u00e9 caf\u00e9 \U0001f600"
MOCK_STREAM_TEXT = "Hello fr\u00f6m the mock"


def test_openai_provider_chat(gateway, upstream):
    gw = start(gateway, upstream)
    c = sdk.ok(run(gw, [{"op": "chat", "model": "gpt-4o-mini", "system": "Be brief.",
                         "content": "hi", "max_tokens": 50}])[0])
    assert c["content"] == MOCK_TEXT and c["finish_reason"] == "stop"
    assert c["usage"] == {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
    assert c["model"] == "gpt-4o-mini" and c["request_id"]
    rec = upstream.last_request()
    assert rec.path == "/v1/chat/completions"
    assert rec.header("authorization") == "Bearer sk-upstream-test"
    assert rec.header("x-request-id") == c["request_id"]
    body = rec.json()
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 50 and body["model"] == "gpt-4o-mini"
    assert KEY not in rec.raw_head.decode("latin-1")


def test_openai_provider_stream(gateway, upstream):
    gw = start(gateway, upstream)
    s, h = run(gw, [
        {"op": "stream", "model": "gpt-4o-mini", "include_usage": True,
         "headers": {"x-mock-behavior": "stream"}},
        {"op": "stream_helper", "model": "gpt-4o-mini",
         "default_headers": {"x-mock-behavior": "stream"}},
    ])
    s = sdk.ok(s)
    assert s["text"] == MOCK_STREAM_TEXT and s["finish_reason"] == "stop" and s["role"] == "assistant"
    assert s["last_chunk_usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    assert s["usage_chunks"] == 1 and s["last_has_choices"] is False, s
    assert s["request_id"]
    sent = upstream.request_list()[0].json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    h = sdk.ok(h)
    assert h["content"] == MOCK_STREAM_TEXT == h["deltas"] and h["finish_reason"] == "stop"
    assert h["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}


def test_models_list_and_retrieve(gateway, upstream):
    gw = start(gateway, upstream, providers={"openai": {"models": ["gpt-4o-mini", "gpt-4o"]}})
    lst, echo, allowed = run(gw, [
        {"op": "models_list"},
        {"op": "models_retrieve", "id": "echo"},
        {"op": "models_retrieve", "id": "gpt-4o"},
    ])
    lst = sdk.ok(lst)
    assert {"echo", "gpt-4o-mini", "gpt-4o"} <= set(lst["ids"]), lst
    assert set(lst["objects"]) == {"model"}
    assert sdk.ok(echo)["id"] == "echo" and echo["object"] == "model"
    assert sdk.ok(allowed)["id"] == "gpt-4o"
    assert upstream.request_list() == [], "the gateway answers /v1/models itself"


def test_embeddings(gateway, upstream):
    gw = start(gateway, upstream)
    b64, floats = run(gw, [
        {"op": "embeddings", "model": "text-embedding-3-small", "input": ["one", "two"]},
        {"op": "embeddings", "model": "text-embedding-3-small", "input": "one",
         "encoding_format": "float"},
    ])
    e = sdk.ok(b64)
    assert e["object"] == "list" and e["n"] == 2, e
    assert [i["index"] for i in e["items"]] == [0, 1]
    assert all(i["object"] == "embedding" and i["is_array"] and i["dims"] > 0 for i in e["items"]), e
    f = sdk.ok(floats)
    assert f["n"] == 1 and f["items"][0]["is_array"] and f["items"][0]["dims"] > 0, f
    reqs = upstream.request_list()
    assert [r.path for r in reqs] == ["/v1/embeddings"] * 2
    assert reqs[0].json()["encoding_format"] == "base64"
    assert reqs[0].json()["input"] == ["one", "two"]
    assert reqs[1].json()["encoding_format"] == "float"
    assert reqs[0].header("authorization") == "Bearer sk-upstream-test"


# ---------------------------------------------------------------------------
# Any provider kind: chat, stream, tools (translated for anthropic and gemini)


ALL_KINDS = [pytest.param(k, id=k) for k in KINDS]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_chat_and_stream_by_kind(gateway, upstream, kind):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    chat, stream, no_usage = run(gw, [
        {"op": "chat", "model": k["model"], "system": "Be brief.", "content": "hi",
         "max_tokens": 64},
        {"op": "stream", "model": k["model"], "content": "hi", "include_usage": True,
         "headers": {"x-mock-behavior": "stream"}},
        {"op": "stream", "model": k["model"], "content": "hi",
         "headers": {"x-mock-behavior": "stream"}},
    ])
    c = sdk.ok(chat)
    assert c["object"] == "chat.completion" and c["role"] == "assistant"
    assert isinstance(c["content"], str) and c["content"], c
    assert c["finish_reason"] == "stop" and c["request_id"]
    assert_usage(c["usage"])
    s = sdk.ok(stream)
    assert s["objects"] == ["chat.completion.chunk"], s
    assert s["text"] and s["finish_reason"] == "stop" and s["role"] == "assistant", s
    # include_usage: one last chunk with the usage and no choices, as OpenAI sends it.
    assert_usage(s["last_chunk_usage"])
    assert s["usage_chunks"] == 1 and s["last_has_choices"] is False, s
    # Not asked for: no usage chunk, whatever the gateway needed for itself.
    n = sdk.ok(no_usage)
    assert n["text"] == s["text"] and n["finish_reason"] == "stop", n
    assert n["usage_chunks"] == 0 and n["last_has_choices"] is True, n

    first, second = upstream.request_list()[:2]
    assert first.path == k["path"] and second.path == k["stream_path"], (first.target, second.target)
    # Usage is exactly what the provider reported, streams included.
    for got, rec in ((c["usage"], first), (s["last_chunk_usage"], second)):
        want = sdk.upstream_usage("openai" if kind == "azure" else kind, rec)
        assert (got["prompt_tokens"], got["completion_tokens"]) == want, (got, want)
    assert first.header(k["auth"][0]) == k["auth"][1]
    assert KEY not in first.raw_head.decode("latin-1")
    body = first.json()
    if kind == "anthropic":
        assert first.header("anthropic-version") == "2023-06-01"
        assert body["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
        assert body["max_tokens"] == 64 and body["messages"][0]["role"] == "user"
        assert second.json()["stream"] is True
    elif kind == "gemini":
        assert "systemInstruction" in body and body["generationConfig"]["maxOutputTokens"] == 64
        assert body["contents"][0]["role"] == "user"
        assert "alt=sse" in second.query
    elif kind == "azure":
        assert "api-version=2024-10-21" in first.query
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_tools_by_kind(gateway, upstream, kind):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    tools, streamed = run(gw, [
        {"op": "tools", "model": k["model"], "second_turn": True},
        {"op": "stream", "model": k["model"], "content": "What is the weather in Paris?",
         "tools": True, "headers": {"x-mock-behavior": "stream"}},
    ])
    t = sdk.ok(tools)
    first = t["first"]
    assert first["finish_reason"] == "tool_calls", first
    calls = first["tool_calls"]
    assert calls and calls[0]["type"] == "function", first
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"]
    # Arguments cross unchanged (the mock always calls with {"city": "Paris"}).
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    second = t["second"]
    assert second["finish_reason"] in ("stop", "tool_calls"), second
    s = sdk.ok(streamed)
    assert s["finish_reason"] == "tool_calls", s
    assert s["tool_calls"] and s["tool_calls"][0]["name"] == "get_weather", s
    assert s["tool_calls"][0]["id"] and json.loads(s["tool_calls"][0]["arguments"]) == {"city": "Paris"}

    # The second turn carried the tool result back in the provider's own format.
    reqs = upstream.request_list()
    turn2 = reqs[1].json()
    text = json.dumps(turn2)
    assert "temperature_c" in text, turn2
    if kind == "anthropic":
        blocks = [b for m in turn2["messages"] if isinstance(m["content"], list) for b in m["content"]]
        kinds = [b["type"] for b in blocks]
        assert "tool_use" in kinds and "tool_result" in kinds, turn2
        use = next(b for b in blocks if b["type"] == "tool_use")
        res = next(b for b in blocks if b["type"] == "tool_result")
        assert res["tool_use_id"] == use["id"]
    elif kind == "gemini":
        parts = [p for c in turn2["contents"] for p in c.get("parts", [])]
        assert any("functionCall" in p for p in parts) and any("functionResponse" in p for p in parts)
        fr = next(p["functionResponse"] for p in parts if "functionResponse" in p)
        assert fr["name"] == "get_weather" and isinstance(fr["response"], dict)
        # Schema keys Gemini rejects never reach it.
        assert "additionalProperties" not in json.dumps(reqs[0].json().get("tools"))
    else:
        assert any(m["role"] == "tool" for m in turn2["messages"]), turn2


ALIASES = {"fast": {"provider": "anthropic", "model": "claude-3-5-haiku-latest"},
           "smart": {"provider": "gemini", "model": "gemini-2.0-flash"}}


def test_aliases_and_provider_prefix(gateway, upstream):
    """Model names the application already uses, aliases and provider/model,
    each reaching its provider in that provider's format."""
    gw = start(gateway, upstream, "anthropic", models=ALIASES,
               providers=sdk.provider_config("gemini", upstream))
    results = run(gw, [
        {"op": "chat", "model": "fast"},
        {"op": "chat", "model": "smart"},
        {"op": "chat", "model": "anthropic/claude-3-opus-latest"},
        {"op": "stream", "model": "gemini/gemini-1.5-pro", "headers": {"x-mock-behavior": "stream"}},
        {"op": "models_list"},
    ])
    for r in results[:4]:
        assert sdk.ok(r)["text" if r["op"] == "stream" else "content"], r
    assert {"fast", "smart", "echo"} <= set(sdk.ok(results[4])["ids"]), results[4]
    reqs = upstream.request_list()
    assert [(r.path, (r.json().get("model") if r.path == "/v1/messages" else None))
            for r in reqs] == [
        ("/v1/messages", "claude-3-5-haiku-latest"),
        ("/v1beta/models/gemini-2.0-flash:generateContent", None),
        ("/v1/messages", "claude-3-opus-latest"),
        ("/v1beta/models/gemini-1.5-pro:streamGenerateContent", None),
    ]


# ---------------------------------------------------------------------------
# Errors: each status arrives as the SDK's typed error, with the request id


def assert_error(e, cls, status):
    assert e["class"] == cls and "APIError" in e["chain"], e
    assert e["status"] == status, e
    assert e["request_id"], "no x-request-id on the error response: %r" % (e,)
    assert e["headers"]["x-request-id"] == e["request_id"]
    body = e["body"] or {}
    assert body.get("request_id") == e["request_id"], e
    assert body.get("message"), e


def test_client_request_id(gateway, upstream):
    """The client's x-request-id is the one it gets back, the provider sees, and
    an error carries."""
    gw = start(gateway, upstream)
    good, bad = run(gw, [
        {"op": "chat", "model": "gpt-4o-mini", "headers": {"x-request-id": "app-req-1"}},
        {"op": "chat", "model": "gpt-4o-mini", "api_key": "wrong-key",
         "headers": {"x-request-id": "app-req-2"}},
    ])
    assert sdk.ok(good)["request_id"] == "app-req-1"
    assert upstream.last_request().header("x-request-id") == "app-req-1"
    e = sdk.err(bad)
    assert e["status"] == 401 and e["request_id"] == "app-req-2", e
    assert e["body"]["request_id"] == "app-req-2", e
    assert len(upstream.request_list()) == 1


def test_error_wrong_gateway_key(gateway, upstream):
    gw = start(gateway, upstream)
    chat, models = run(gw, [{"op": "chat", "model": "gpt-4o-mini"}, {"op": "models_list"}],
                       key="wrong-key")
    for r in (chat, models):
        assert_error(sdk.err(r), "AuthenticationError", 401)
    assert upstream.request_list() == []


def test_error_unknown_model(gateway, upstream):
    gw = start(gateway, upstream, providers={"openai": {"models": ["gpt-4o-mini"]}})
    results = run(gw, [
        {"op": "chat", "model": "nope/x"},
        {"op": "chat", "model": "gpt-3.5-not-allowed"},
        {"op": "stream", "model": "nope/x"},
        {"op": "models_retrieve", "id": "nope"},
        {"op": "embeddings", "model": "nope/x"},
    ])
    for r in results:
        e = sdk.err(r)
        assert_error(e, "NotFoundError", 404)
        assert e["code"] == "model_not_found", e
    assert upstream.request_list() == []


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("behavior,cls,status", [
    ("status=429", "RateLimitError", 429),
    ("status=500", "InternalServerError", 502),
    ("status=400", "BadRequestError", 400),
    # The provider refused the gateway's own key: never the client's 401.
    ("status=401", "InternalServerError", 502),
], ids=["429", "500", "400", "401"])
def test_error_from_provider(gateway, upstream, kind, behavior, cls, status):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    plain, streamed = run(gw, [
        {"op": "chat", "model": k["model"], "headers": {"x-mock-behavior": behavior}},
        {"op": "stream", "model": k["model"], "headers": {"x-mock-behavior": behavior}},
    ])
    for r in (plain, streamed):
        e = sdk.err(r)
        assert_error(e, cls, status)
        assert "mock upstream error %s" % behavior[7:] in e["body"]["message"], e
        if status == 429:
            assert e["headers"].get("retry-after") == "7", e["headers"]
    assert len(upstream.request_list()) == 2


# What each provider's in-stream error says (the mock's `stream-error`).
STREAM_ERROR_MESSAGE = {"openai": "mock stream-error", "azure": "mock stream-error",
                        "anthropic": "Overloaded", "gemini": "overloaded"}


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_error_mid_stream(gateway, upstream, kind):
    """A provider error after the stream started: the SDK's iterator throws an
    APIError (no status: the answer was a 200) with the provider's message,
    after the text that came before it."""
    k = KINDS[kind]
    gw = start(gateway, upstream, kind)
    s = sdk.ok(run(gw, [{"op": "stream", "model": k["model"], "catch_stream_error": True,
                         "headers": {"x-mock-behavior": "stream-error"}}])[0])
    assert s["status"] == 200 and s["text"] == "Hello " and s["finish_reason"] is None, s
    e = s["stream_error"]
    assert e and e["class"] == "APIError" and e["status"] is None, s
    assert STREAM_ERROR_MESSAGE[kind] in e["message"], e


@pytest.mark.parametrize("kind,stream", [
    pytest.param(kind, stream, id="%s-%s" % (kind, "stream" if stream else "plain"))
    for kind in KINDS for stream in (False, True)])
def test_error_upstream_timeout(gateway, upstream, kind, stream):
    k = KINDS[kind]
    gw = start(gateway, upstream, kind, expect_errors=True, timeouts={"read": 0.5})
    behavior = "stream,delay-headers=2" if stream else "delay-headers=2"
    r = run(gw, [{"op": "stream" if stream else "chat", "model": k["model"],
                  "headers": {"x-mock-behavior": behavior}}])[0]
    e = sdk.err(r)
    assert_error(e, "InternalServerError", 504)
    assert e["code"] == "upstream_timeout", e
    assert 350 <= r["ms"] <= 1900, r["ms"]


# ---------------------------------------------------------------------------
# A model alias whose first target fails


def test_failover_is_invisible_to_the_sdk(gateway, make_upstream):
    down, up = make_upstream(default_behavior="status=503"), make_upstream()
    providers = {"primary": {"kind": "openai", "base_url": down.base_url, "api_key": "sk-a"},
                 "claude": {"kind": "anthropic", "base_url": up.url, "api_key": "sk-ant"}}
    models = {"smart": {"strategy": "priority", "targets": [
        {"provider": "primary", "model": "gpt-4o-mini"},
        {"provider": "claude", "model": "claude-3-5-haiku-latest"}]}}
    gw = sdk.start_gateway(gateway, None, "openai", KEY, providers=providers, models=models)
    chat, stream = run(gw, [
        {"op": "chat", "model": "smart", "content": "hello"},
        {"op": "stream", "model": "smart", "content": "stream me", "include_usage": True},
    ])
    c = sdk.ok(chat)
    assert c["object"] == "chat.completion" and c["content"] and c["finish_reason"] == "stop", c
    assert_usage(c["usage"])
    s = sdk.ok(stream)
    assert s["objects"] == ["chat.completion.chunk"] and s["text"] and s["finish_reason"] == "stop", s
    assert s["usage_chunks"] == 1 and s["last_has_choices"] is False, s
    assert_usage(s["last_chunk_usage"])
    assert len(down.request_list()) == 2 and len(up.request_list()) == 2
