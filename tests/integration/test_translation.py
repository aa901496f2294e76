"""Providers of every wire format behind both inbound APIs: what each provider
receives, streams translated as they arrive (never buffered), usage and cost
in the access log (streams and cut streams included), provider errors in the
client's envelope."""
import json

import pytest

import httpc
from harness import access_line

CT_JSON = ("Content-Type", "application/json")
PROMPT = [{"role": "user", "content": "hello there"}]


def providers(upstream):
    return {
        "openai": {"kind": "openai", "base_url": upstream.base_url, "api_key": "sk-openai"},
        "anthropic": {"kind": "anthropic", "base_url": upstream.url, "api_key": "sk-ant",
                      "max_tokens": 321},
        "gemini": {"kind": "gemini", "base_url": upstream.url, "api_key": "g-key"},
        "az": {"kind": "azure-openai", "base_url": upstream.url, "api_key": "az-key",
               "api_version": "2024-10-21", "deployments": {"gpt-4o": "prod-4o"}},
        "mock": {"kind": "mock"},
    }


@pytest.fixture
def gw(gateway, upstream):
    return gateway(upstream=upstream, plugins=["key-auth", "error-mapping", "access-log"],
                   providers=providers(upstream), expect_errors=True)


def post(gw, path, body, behavior=None, headers=()):
    hs = [CT_JSON] + list(headers)
    if behavior:
        hs.append(("x-mock-behavior", behavior))
    return gw.request("POST", path, hs, json.dumps(body).encode())


def events(body: bytes):
    """SSE events as (name, decoded data) pairs; [DONE] as ("done", None)."""
    out = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.decode().split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data == ["[DONE]"]:
            out.append(("done", None))
        elif data:
            out.append((name, json.loads("\n".join(data))))
    return out


# --- what each provider receives -------------------------------------------

def test_anthropic_provider_gets_messages_with_its_headers(gw, upstream):
    r = post(gw, "/v1/chat/completions",
             {"model": "claude-3-5-haiku-latest", "messages": [{"role": "system", "content": "be brief"}] + PROMPT},
             headers=[("Authorization", "Bearer client-key")])
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == "/v1/messages"
    assert rec.header("x-api-key") == "sk-ant"
    assert rec.header("anthropic-version") == "2023-06-01"
    assert rec.header("authorization") is None, "the client's credentials never travel"
    body = rec.json()
    assert body["system"] == "be brief" or body["system"][0]["text"] == "be brief"
    assert body["max_tokens"] == 321, "max_tokens filled from the provider's config"
    out = r.json()
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "Hello from the mock"


def test_gemini_provider_gets_generate_content_with_its_key(gw, upstream):
    r = post(gw, "/v1/chat/completions", {"model": "gemini-2.0-flash", "max_tokens": 7, "messages": PROMPT})
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert rec.header("x-goog-api-key") == "g-key"
    assert rec.json()["generationConfig"]["maxOutputTokens"] == 7
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_azure_provider_gets_its_deployment_and_api_version(gw, upstream):
    r = post(gw, "/v1/chat/completions", {"model": "az/gpt-4o", "messages": PROMPT})
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == "/openai/deployments/prod-4o/chat/completions"
    assert rec.query == "api-version=2024-10-21"
    assert rec.header("api-key") == "az-key"
    assert rec.header("authorization") is None


def test_messages_to_anthropic_pass_through_fills_max_tokens(gw, upstream):
    r = post(gw, "/v1/messages", {"model": "claude-3-5-haiku-latest", "messages": PROMPT})
    assert r.status == 200, r
    assert upstream.last_request().json()["max_tokens"] == 321
    assert r.json()["type"] == "message"


def test_count_tokens(gw, upstream):
    r = post(gw, "/v1/messages/count_tokens", {"model": "claude-3-5-haiku-latest", "messages": PROMPT})
    assert r.status == 200, r
    assert upstream.last_request().path == "/v1/messages/count_tokens"
    assert isinstance(r.json()["input_tokens"], int)
    r = post(gw, "/v1/messages/count_tokens", {"model": "gpt-4o", "messages": PROMPT})
    assert r.status == 400
    assert r.json()["type"] == "error", "errors on /v1/messages paths use Anthropic's envelope"
    r = post(gw, "/v1/messages/count_tokens", {"model": "echo", "messages": PROMPT})
    assert r.status == 200 and r.json() == {"input_tokens": 2}


def test_embeddings_to_a_gemini_provider_is_a_clear_400(gw, upstream):
    r = post(gw, "/v1/embeddings", {"model": "gemini-2.0-flash", "input": "x"})
    assert r.status == 400
    assert r.json()["error"]["code"] == "unsupported_endpoint"


# --- streams: translated as they arrive --------------------------------------

@pytest.mark.parametrize("path,model", [
    ("/v1/chat/completions", "claude-3-5-haiku-latest"),
    ("/v1/chat/completions", "gemini-2.0-flash"),
    ("/v1/messages", "gpt-4o"),
    ("/v1/messages", "gemini-2.0-flash"),
], ids=["anthropic->openai", "gemini->openai", "openai->anthropic", "gemini->anthropic"])
def test_first_translated_event_arrives_before_the_upstream_ends(gw, upstream, path, model):
    body = {"model": model, "max_tokens": 50, "stream": True, "messages": PROMPT}
    behavior = "hold" if "gemini" in model or "claude" in model else "stream,hold"
    with gw.connect() as c:
        c.send(httpc.build_request("POST", path, [CT_JSON, ("x-mock-behavior", behavior),
                                                  ("x-mock-key", "t1")], json.dumps(body).encode()))
        head = c.read_head(timeout=10)
        assert head.status == 200, head
        assert head.header("content-type").startswith("text/event-stream")
        it = c.iter_body(head, timeout=15)
        got = b""
        while b"\n\n" not in got:
            got += next(it)          # times out if the gateway waited for the end
        assert upstream.wait_held("t1", 5)
        assert not upstream.last_request().completed, "the upstream has not finished yet"
        first = events(got)[0]
        if path == "/v1/messages":
            assert first[0] == "message_start"
        else:
            assert first[1]["object"] == "chat.completion.chunk"
        upstream.release("t1")
        got += b"".join(it)
    evs = events(got)
    if path == "/v1/messages":
        assert [e[0] for e in evs][-2:] == ["message_delta", "message_stop"]
    else:
        assert evs[-1] == ("done", None)
        text = "".join((e[1]["choices"][0]["delta"].get("content") or "")
                       for e in evs if e[1] and e[1].get("choices"))
        assert text == "Hello from the mock"


# --- usage and cost -----------------------------------------------------------

def test_stream_usage_is_counted_but_not_shown_when_not_asked(gw, upstream):
    r = post(gw, "/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": PROMPT},
             behavior="stream")
    assert r.status == 200, r
    sent = upstream.last_request().json()
    assert sent["stream_options"] == {"include_usage": True}, "aigw asks for the usage chunk"
    evs = events(r.body)
    assert evs[-1] == ("done", None)
    assert all(not e[1].get("usage") for e in evs if e[1]), "the usage chunk stays with the gateway"
    assert b'"usage":null' not in r.body
    line = access_line(gw, r.header("x-request-id"))
    assert line["prompt_tokens"] == "9" and line["completion_tokens"] == "5"
    assert float(line["cost"]) > 0


def test_stream_usage_is_shown_when_asked(gw, upstream):
    r = post(gw, "/v1/chat/completions",
             {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
              "messages": PROMPT}, behavior="stream")
    evs = events(r.body)
    assert evs[-2][1]["usage"]["total_tokens"] == 14 and evs[-2][1]["choices"] == []
    assert access_line(gw, r.header("x-request-id"))["total_tokens"] == "14"


@pytest.mark.parametrize("model,stream", [
    ("gpt-4o-mini", False), ("claude-3-5-haiku-latest", False), ("claude-3-5-haiku-latest", True),
    ("gemini-2.0-flash", False), ("gemini-2.0-flash", True),
])
def test_usage_and_cost_in_the_access_log(gw, upstream, model, stream):
    r = post(gw, "/v1/chat/completions", {"model": model, "stream": stream, "messages": PROMPT})
    assert r.status == 200, r
    line = access_line(gw, r.header("x-request-id"))
    assert line["model"] == model and line["status"] == "200"
    assert int(line["prompt_tokens"]) > 0 and int(line["completion_tokens"]) > 0
    assert int(line["total_tokens"]) == int(line["prompt_tokens"]) + int(line["completion_tokens"])
    assert float(line["cost"]) > 0
    assert "partial" not in line


def test_a_cut_stream_records_the_tokens_seen_and_ends_with_an_error_event(gw, upstream):
    r = post(gw, "/v1/messages", {"model": "claude-3-5-haiku-latest", "stream": True, "max_tokens": 9,
                                  "messages": PROMPT}, behavior="close-mid-stream")
    assert r.status == 200
    evs = events(r.body)
    assert evs[0][0] == "message_start"
    assert evs[-1][0] == "error" and evs[-1][1]["type"] == "error"
    line = access_line(gw, r.header("x-request-id"))
    assert line["partial"] == "true"
    assert int(line["prompt_tokens"]) > 0, "message_start's input tokens are kept"


# --- errors in the client's envelope -------------------------------------------

@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-5-haiku-latest", "gemini-2.0-flash"])
@pytest.mark.parametrize("stream", [False, True])
def test_provider_429_keeps_retry_after_in_each_envelope(gw, upstream, model, stream):
    body = {"model": model, "stream": stream, "max_tokens": 5, "messages": PROMPT}
    r = post(gw, "/v1/chat/completions", body, behavior="status=429")
    assert r.status == 429
    assert r.header("retry-after") == "7"
    e = r.json()["error"]
    assert e["type"] == "rate_limit_error" and e["request_id"] == r.header("x-request-id")
    r = post(gw, "/v1/messages", body, behavior="status=429")
    assert r.status == 429 and r.header("retry-after") == "7"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-5-haiku-latest", "gemini-2.0-flash"])
def test_provider_5xx_is_a_502_naming_the_provider_status(gw, upstream, model):
    r = post(gw, "/v1/chat/completions", {"model": model, "messages": PROMPT}, behavior="status=500")
    assert r.status == 502
    assert "answered 500" in r.json()["error"]["message"]


def test_malformed_translated_answer_is_a_502(gw, upstream):
    r = post(gw, "/v1/chat/completions", {"model": "claude-3-5-haiku-latest", "messages": PROMPT},
             behavior="big-body=100")
    assert r.status == 502
    assert r.json()["error"]["code"] == "bad_gateway"


def test_invalid_client_json_names_the_problem(gw, upstream):
    r = gw.request("POST", "/v1/chat/completions", [CT_JSON], b'{"model": "gpt-4o", "messages": [}')
    assert r.status == 400
    assert r.json()["error"]["code"] == "invalid_json"
    assert r.json()["error"]["message"]


def test_completions_stream_usage_is_counted_but_not_shown(gw, upstream):
    r = post(gw, "/v1/completions", {"model": "gpt-4o-mini", "prompt": "say hi", "stream": True},
             behavior="stream")
    assert r.status == 200, r
    assert upstream.last_request().json()["stream_options"] == {"include_usage": True}
    evs = events(r.body)
    assert evs[-1] == ("done", None)
    assert all(not e[1].get("usage") for e in evs if e[1]), "the usage chunk stays with the gateway"
    line = access_line(gw, r.header("x-request-id"))
    assert int(line["total_tokens"]) > 0


def test_responses_stream_usage_is_counted(gw, upstream):
    r = post(gw, "/v1/responses", {"model": "gpt-4o-mini", "input": "say hi", "stream": True},
             behavior="stream")
    assert r.status == 200, r
    assert any(e[1].get("type") == "response.completed" for e in events(r.body) if e[1])
    line = access_line(gw, r.header("x-request-id"))
    assert int(line["total_tokens"]) > 0


def test_model_is_read_as_every_json_reader_reads_it(gw, upstream):
    # an escaped key and a repeated one: the last "model", decoded, as the
    # provider itself would read it
    body = b'{"model":"echo","mod\\u0065l":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}],' \
           b'"str\\u0065am":false}'
    r = gw.request("POST", "/v1/chat/completions", [CT_JSON], body)
    assert r.status == 200, r
    sent = upstream.last_request().json()
    assert sent["model"] == "gpt-4o", "routed to openai and rewritten as the provider reads it"
    assert "mod\\u0065l" not in upstream.last_request().body.decode()
    line = access_line(gw, r.header("x-request-id"))
    assert line["provider"] == "openai" and line["model"] == "gpt-4o"
