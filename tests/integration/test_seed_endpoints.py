"""The seed gateways' endpoints served through route adapters
(adapters/seed-chat.lua, seed-text-generation.lua; conf/examples/
seed-endpoints.lua): POST /api/v1/chat and POST /api/v1/inference/
text-generation against the built-in echo model, an OpenAI-kind upstream and
an Anthropic-kind one, whole and streamed; input validation; usage, cost and
processing time in every answer."""
import json

import pytest

from httpc import parse_sse

CHAT = "/api/v1/chat"
TEXTGEN = "/api/v1/inference/text-generation"
CT_JSON = ("Content-Type", "application/json")
ROUTES = [
    {"path": CHAT, "adapter": "seed-chat"},
    {"path": TEXTGEN, "adapter": "seed-text-generation"},
]
MOCK_TEXT = "Hello from the mock"


def start(gateway, upstream=None, anthropic=False, **kw):
    extra = {}
    if anthropic:
        extra["providers"] = {"anthropic": {"kind": "anthropic", "base_url": upstream.url,
                                            "api_key": "k"}}
    return gateway(upstream=upstream, routes=ROUTES, **extra, **kw)


def post(gw, path, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return gw.request("POST", path, [CT_JSON], raw)


def events(r):
    assert r.header("content-type", "").startswith("text/event-stream"), r
    return parse_sse(r.body)


def check_usage(doc, prompt=None, completion=None):
    u = doc["usage"]
    assert set(u) == {"prompt_tokens", "completion_tokens", "total_tokens"}, u
    if prompt is not None:
        assert u["prompt_tokens"] == prompt, u
    if completion is not None:
        assert u["completion_tokens"] == completion, u
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
    assert isinstance(doc["processing_time_ms"], int) and doc["processing_time_ms"] >= 0, doc


def final_event(r):
    """The stream's deltas joined, and its final object; checks the framing."""
    evs = events(r)
    assert evs[-1] == b"[DONE]", evs
    docs = [json.loads(e) for e in evs[:-1]]
    deltas = [d["delta"] for d in docs[:-1]]
    assert all(set(d) == {"delta"} for d in docs[:-1]), docs
    return "".join(deltas), docs[-1]


# ---------------------------------------------------------------------------
# echo (no upstream)


def test_chat_echo(gateway):
    gw = start(gateway)
    r = post(gw, CHAT, {"message": "hello there"})
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    d = r.json()
    assert set(d) == {"response", "model_used", "usage", "cost", "processing_time_ms"}, d
    assert d["response"] == "hello there" and d["model_used"] == "echo"
    check_usage(d, prompt=2, completion=2)
    assert d["cost"] == 0


def test_chat_echo_context_forms(gateway):
    gw = start(gateway)
    # a string: one system message before the user's (echo counts its words)
    d = post(gw, CHAT, {"message": "hi", "context": "you are terse"}).json()
    assert d["response"] == "hi"
    check_usage(d, prompt=4, completion=1)
    # a list of earlier turns
    turns = [{"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}]
    d = post(gw, CHAT, {"message": "x", "context": turns, "model_preference": "echo"}).json()
    assert d["response"] == "x"
    check_usage(d, prompt=4, completion=1)
    assert post(gw, CHAT, {"message": "x", "context": []}).status == 200
    assert post(gw, CHAT, {"message": "x", "context": None}).status == 200


def test_chat_echo_stream(gateway):
    gw = start(gateway)
    r = post(gw, CHAT, {"message": "one two three", "stream": True})
    assert r.status == 200, r
    text, last = final_event(r)
    assert text == "one two three"
    assert last["response"] == text and last["model_used"] == "echo"
    check_usage(last, prompt=3, completion=3)
    assert last["cost"] == 0


def test_text_generation_echo(gateway):
    gw = start(gateway)
    r = post(gw, TEXTGEN, {"prompt": "say it back", "max_tokens": 10, "temperature": 0,
                           "top_p": 1})
    assert r.status == 200, r
    d = r.json()
    assert set(d) == {"generated_text", "model", "usage", "cost", "finish_reason",
                      "processing_time_ms"}, d
    assert d["generated_text"] == "say it back" and d["model"] == "echo"
    assert d["finish_reason"] == "stop"
    check_usage(d, prompt=3, completion=3)
    assert d["cost"] == 0


def test_text_generation_echo_stream(gateway):
    gw = start(gateway)
    r = post(gw, TEXTGEN, {"prompt": "a b", "stream": True})
    assert r.status == 200, r
    text, last = final_event(r)
    assert text == "a b" and last["generated_text"] == "a b"
    assert last["model"] == "echo" and last["finish_reason"] == "stop"
    check_usage(last, prompt=2, completion=2)


def test_default_model_from_env(gateway, upstream):
    gw = start(gateway, upstream, env={"AIGW_SEED_DEFAULT_MODEL": "gpt-4o-mini"})
    d = post(gw, CHAT, {"message": "hi"}).json()
    assert d["model_used"] == "gpt-4o-mini", d
    assert upstream.last_request().json()["model"] == "gpt-4o-mini"


def test_method_not_allowed(gateway):
    gw = start(gateway)
    r = gw.request("GET", CHAT)
    assert r.status == 405 and r.header("allow") == "POST", r


# ---------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("path,body,field", [
    (CHAT, {}, "message"),
    (CHAT, {"message": ""}, "message"),
    (CHAT, {"message": "   "}, "message"),
    (CHAT, {"message": 5}, "message"),
    (CHAT, {"message": None}, "message"),
    (CHAT, {"message": "x", "context": 5}, "context"),
    (CHAT, {"message": "x", "context": {"role": "user"}}, "context"),
    (CHAT, {"message": "x", "context": [{"role": "robot", "content": "x"}]}, "context[1].role"),
    (CHAT, {"message": "x", "context": [{"role": "user", "content": 1}]}, "context[1].content"),
    (CHAT, {"message": "x", "context": ["x"]}, "context[1]"),
    (CHAT, {"message": "x", "model_preference": 3}, "model_preference"),
    (CHAT, {"message": "x", "model_preference": ""}, "model_preference"),
    (CHAT, {"message": "x", "stream": "yes"}, "stream"),
    (TEXTGEN, {}, "prompt"),
    (TEXTGEN, {"prompt": ""}, "prompt"),
    (TEXTGEN, {"prompt": ["a"]}, "prompt"),
    (TEXTGEN, {"prompt": "a", "model": 1}, "model"),
    (TEXTGEN, {"prompt": "a", "max_tokens": 0}, "max_tokens"),
    (TEXTGEN, {"prompt": "a", "max_tokens": -3}, "max_tokens"),
    (TEXTGEN, {"prompt": "a", "max_tokens": 1.5}, "max_tokens"),
    (TEXTGEN, {"prompt": "a", "max_tokens": "10"}, "max_tokens"),
    (TEXTGEN, {"prompt": "a", "temperature": -0.1}, "temperature"),
    (TEXTGEN, {"prompt": "a", "temperature": 2.01}, "temperature"),
    (TEXTGEN, {"prompt": "a", "temperature": "hot"}, "temperature"),
    (TEXTGEN, {"prompt": "a", "top_p": 0}, "top_p"),
    (TEXTGEN, {"prompt": "a", "top_p": 1.01}, "top_p"),
    (TEXTGEN, {"prompt": "a", "top_p": True}, "top_p"),
    (TEXTGEN, {"prompt": "a", "stream": 1}, "stream"),
])
def test_validation(gateway, upstream, path, body, field):
    gw = start(gateway, upstream)
    r = post(gw, path, body)
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error", err
    assert err["code"] == "invalid_request", err
    assert "'%s" % field in err["message"], err
    assert upstream.request_list() == []


@pytest.mark.parametrize("path", [CHAT, TEXTGEN])
@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"'])
def test_not_an_object(gateway, path, raw):
    gw = start(gateway)
    r = post(gw, path, raw)
    assert r.status == 400, r
    assert "error" in r.json()


def test_validation_edges_accepted(gateway):
    gw = start(gateway)
    for body in ({"prompt": "a", "temperature": 0, "top_p": 1, "max_tokens": 1},
                 {"prompt": "a", "temperature": 2, "top_p": 0.001},
                 {"prompt": "a", "max_tokens": None, "temperature": None, "top_p": None}):
        r = post(gw, TEXTGEN, body)
        assert r.status == 200, (body, r)


def test_unknown_model(gateway, upstream):
    gw = start(gateway, upstream, providers={"openai": {"models": ["gpt-4o-mini"]}})
    r = post(gw, CHAT, {"message": "x", "model_preference": "gpt-nope"})
    assert r.status == 404, r
    assert r.json()["error"]["code"] == "model_not_found"


# ---------------------------------------------------------------------------
# an OpenAI-kind upstream


def test_chat_openai_upstream(gateway, upstream):
    gw = start(gateway, upstream)
    turns = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "reply"}]
    r = post(gw, CHAT, {"message": "hello", "context": turns, "model_preference": "gpt-4o-mini"})
    assert r.status == 200, r
    d = r.json()
    assert d["response"].startswith("Hello from the mock"), d
    assert d["model_used"] == "gpt-4o-mini"
    check_usage(d, prompt=9, completion=12)
    # gpt-4o-mini: 0.15 / 0.60 USD per million tokens
    assert d["cost"] == pytest.approx((9 * 0.15 + 12 * 0.60) / 1e6)
    rec = upstream.last_request()
    assert rec.path == "/v1/chat/completions"
    sent = rec.json()
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == turns + [{"role": "user", "content": "hello"}]
    assert not sent.get("stream")


def test_chat_openai_upstream_string_context(gateway, upstream):
    gw = start(gateway, upstream)
    r = post(gw, CHAT, {"message": "hello", "context": "be brief", "model_preference": "gpt-4o"})
    assert r.status == 200, r
    assert upstream.last_request().json()["messages"] == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


def test_text_generation_openai_upstream(gateway, upstream):
    gw = start(gateway, upstream)
    r = post(gw, TEXTGEN, {"model": "gpt-4o-mini", "prompt": "write", "max_tokens": 42,
                           "temperature": 0.7, "top_p": 0.9})
    assert r.status == 200, r
    d = r.json()
    assert d["generated_text"].startswith("Hello from the mock")
    assert d["model"] == "gpt-4o-mini" and d["finish_reason"] == "stop"
    check_usage(d, prompt=9, completion=12)
    assert isinstance(d["cost"], float) and d["cost"] > 0
    sent = upstream.last_request().json()
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [{"role": "user", "content": "write"}]
    assert sent["max_tokens"] == 42 and sent["temperature"] == 0.7 and sent["top_p"] == 0.9


def test_text_generation_unpriced_model_cost_null(gateway, upstream):
    gw = start(gateway, upstream)
    d = post(gw, TEXTGEN, {"model": "some-local-model", "prompt": "x"}).json()
    assert d["cost"] is None, d
    check_usage(d, prompt=9, completion=12)


def test_alias_model(gateway, upstream):
    gw = start(gateway, upstream, models={"fast": {"provider": "openai", "model": "gpt-4o-mini"}})
    d = post(gw, CHAT, {"message": "hi", "model_preference": "fast"}).json()
    assert d["model_used"] == "gpt-4o-mini", d
    assert upstream.last_request().json()["model"] == "gpt-4o-mini"


def test_chat_openai_upstream_stream(gateway, upstream):
    gw = start(gateway, upstream)
    r = gw.request("POST", CHAT, [CT_JSON, ("x-mock-behavior", "stream")],
                   json.dumps({"message": "hello", "model_preference": "gpt-4o-mini",
                               "stream": True}).encode())
    assert r.status == 200, r
    text, last = final_event(r)
    assert text == "Hel" + "lo " + "fr\u00f6m " + "the " + "mock"
    assert last["response"] == text and last["model_used"] == "gpt-4o-mini"
    check_usage(last, prompt=9, completion=5)
    assert last["cost"] == pytest.approx((9 * 0.15 + 5 * 0.60) / 1e6)
    sent = upstream.last_request().json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_text_generation_openai_upstream_stream(gateway, upstream):
    gw = start(gateway, upstream)
    r = gw.request("POST", TEXTGEN, [CT_JSON, ("x-mock-behavior", "stream")],
                   json.dumps({"model": "gpt-4o-mini", "prompt": "p", "max_tokens": 7,
                               "stream": True}).encode())
    assert r.status == 200, r
    text, last = final_event(r)
    assert last["generated_text"] == text and text.startswith("Hel")
    assert last["finish_reason"] == "stop" and last["model"] == "gpt-4o-mini"
    check_usage(last, prompt=9, completion=5)
    assert last["cost"] > 0
    assert upstream.last_request().json()["max_tokens"] == 7


def test_stream_error_event(gateway, upstream):
    gw = start(gateway, upstream)
    r = gw.request("POST", CHAT, [CT_JSON, ("x-mock-behavior", "stream-error")],
                   json.dumps({"message": "x", "model_preference": "gpt-4o-mini",
                               "stream": True}).encode())
    assert r.status == 200, r
    evs = [json.loads(e) for e in events(r)]
    assert "error" in evs[-1] and evs[-1]["error"]["message"], evs
    assert all("delta" in e for e in evs[:-1]), evs


def test_upstream_error_status(gateway, upstream):
    gw = start(gateway, upstream, plugins=["key-auth", "error-mapping"])
    r = gw.request("POST", TEXTGEN, [CT_JSON, ("x-mock-behavior", "status=429")],
                   json.dumps({"model": "gpt-4o-mini", "prompt": "p"}).encode())
    assert r.status == 429, r
    assert "error" in r.json()


# ---------------------------------------------------------------------------
# an Anthropic-kind upstream


def test_chat_anthropic_upstream(gateway, upstream):
    gw = start(gateway, upstream, anthropic=True)
    r = post(gw, CHAT, {"message": "hello there", "context": "be nice",
                        "model_preference": "claude-3-5-haiku-latest"})
    assert r.status == 200, r
    d = r.json()
    assert d["response"] == MOCK_TEXT
    assert d["model_used"] == "claude-3-5-haiku-latest"
    rec = upstream.last_request()
    assert rec.path == "/v1/messages"
    sent = rec.json()
    assert sent["model"] == "claude-3-5-haiku-latest"
    assert sent["system"] in ("be nice", [{"type": "text", "text": "be nice"}]), sent
    assert sent["messages"][-1]["role"] == "user"
    assert isinstance(sent["max_tokens"], int)
    check_usage(d, completion=5)   # prompt: the mock counts the request's words
    u = d["usage"]
    assert u["prompt_tokens"] > 0
    # claude-3-5-haiku: 0.80 / 4.00 USD per million tokens
    assert d["cost"] == pytest.approx((u["prompt_tokens"] * 0.80 + 5 * 4.00) / 1e6)


def test_text_generation_anthropic_upstream(gateway, upstream):
    gw = start(gateway, upstream, anthropic=True)
    r = post(gw, TEXTGEN, {"model": "anthropic/claude-3-5-haiku-latest", "prompt": "a b c",
                           "max_tokens": 33, "temperature": 0.5, "top_p": 0.5})
    assert r.status == 200, r
    d = r.json()
    assert d["generated_text"] == MOCK_TEXT
    assert d["finish_reason"] == "stop"
    sent = upstream.last_request().json()
    assert sent["max_tokens"] == 33 and sent["temperature"] == 0.5 and sent["top_p"] == 0.5
    check_usage(d, completion=5)
    assert isinstance(d["cost"], float) and d["cost"] > 0


@pytest.mark.parametrize("path,body,key", [
    (CHAT, {"message": "hello", "model_preference": "claude-3-5-haiku-latest"}, "response"),
    (TEXTGEN, {"model": "claude-3-5-haiku-latest", "prompt": "hello"}, "generated_text"),
])
def test_anthropic_upstream_stream(gateway, upstream, path, body, key):
    gw = start(gateway, upstream, anthropic=True)
    r = post(gw, path, dict(body, stream=True))
    assert r.status == 200, r
    text, last = final_event(r)
    assert text == MOCK_TEXT and last[key] == MOCK_TEXT
    assert upstream.last_request().json()["stream"] is True
    check_usage(last, completion=5)
    assert last["usage"]["prompt_tokens"] > 0
    assert isinstance(last["cost"], float) and last["cost"] > 0


def test_anthropic_stream_error_event(gateway, upstream):
    gw = start(gateway, upstream, anthropic=True)
    r = gw.request("POST", TEXTGEN, [CT_JSON, ("x-mock-behavior", "stream-error")],
                   json.dumps({"model": "claude-3-5-haiku-latest", "prompt": "x",
                               "stream": True}).encode())
    assert r.status == 200, r
    evs = [json.loads(e) for e in events(r)]
    assert evs[-1]["error"]["message"] == "Overloaded", evs
    assert evs[-1]["error"]["type"] == "overloaded_error"


# ---------------------------------------------------------------------------
# the example config


def test_example_config_checks(repo_root, aigw_path):
    import harness
    r = harness.run_cli(["check", str(repo_root / "conf/examples/seed-endpoints.lua")])
    assert r.returncode == 0, r


def test_stream_cut_off_mid_body(gateway, upstream):
    """The upstream closes mid-stream: the pieces so far, then the error event."""
    gw = start(gateway, upstream)
    r = gw.request("POST", CHAT, [CT_JSON, ("x-mock-behavior", "close-mid-stream")],
                   json.dumps({"message": "x", "model_preference": "gpt-4o-mini",
                               "stream": True}).encode())
    assert r.status == 200, r
    evs = [json.loads(e) for e in events(r)]
    assert "error" in evs[-1], evs
    assert all("delta" in e for e in evs[:-1]), evs


@pytest.mark.parametrize("stream", [False, True])
def test_processing_time_counts_the_upstream(gateway, upstream, stream):
    gw = start(gateway, upstream)
    r = gw.request("POST", TEXTGEN, [CT_JSON, ("x-mock-behavior", "delay-headers=0.3" +
                                               (",stream" if stream else ""))],
                   json.dumps({"model": "gpt-4o-mini", "prompt": "p", "stream": stream}).encode())
    assert r.status == 200, r
    d = final_event(r)[1] if stream else r.json()
    assert 300 <= d["processing_time_ms"] < 10000, d
