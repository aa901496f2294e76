"""Routing: `provider/model` names pick a provider and only the model's value
changes in the body sent upstream; configured routes (path, provider,
endpoint, method)."""
import pytest

from mock_upstream import chat_completion_body

CT_JSON = ("Content-Type", "application/json")

# Bytes a decode/encode round trip would change: [] (-> {}), a 17-digit
# number, raw UTF-8 next to \u escapes, an escaped slash, odd spacing, key order.
TAIL = ('"messages":[{"role":"user","content":"caf\u00e9 \\u00e9 \U0001f600 \u65e5\u672c\u8a9e '
        '\\"quoted\\" a\\/b"}],"tools":[],"temperature":0.12345678901234567,'
        '"top_p":1.0,"n":1,"stop":null,"logit_bias":{},  "seed" : 12345678901234567890 }')


def post(gw, body, path="/v1/chat/completions"):
    return gw.request("POST", path, [CT_JSON], body)


@pytest.mark.parametrize("head", [
    '{"model":"openai/gpt-4o",',
    '{ "model" : "openai/gpt-4o" ,',
    '{"model":"openai\\/gpt-4o",',
], ids=["compact", "spaced", "escaped-slash"])
def test_provider_prefix_keeps_body_bytes(gateway, upstream, head):
    body = (head + TAIL).encode("utf-8")
    gw = gateway(upstream=upstream)
    r = post(gw, body)
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == "/v1/chat/completions"
    old = b'"openai/gpt-4o"' if b'"openai/gpt-4o"' in body else b'"openai\\/gpt-4o"'
    expected = body.replace(old, b'"gpt-4o"', 1)
    assert rec.body == expected, "upstream got\n%r\nexpected\n%r" % (rec.body, expected)
    assert rec.header("content-length") == str(len(expected))
    assert r.body == chat_completion_body("gpt-4o")


def test_provider_prefix_rewrites_only_the_top_level_model(gateway, upstream):
    """A "model" key with the same value inside another object (here metadata,
    before the top-level one) is the client's data: it stays as sent."""
    body = ('{"metadata":{"model":"openai/gpt-4o"},"model":"openai/gpt-4o",' + TAIL).encode()
    gw = gateway(upstream=upstream)
    r = post(gw, body)
    assert r.status == 200, r
    rec = upstream.last_request()
    expected = body.replace(b',"model":"openai/gpt-4o"', b',"model":"gpt-4o"', 1)
    assert rec.json()["model"] == "gpt-4o", rec.body
    assert rec.body == expected, "upstream got\n%r\nexpected\n%r" % (rec.body, expected)


def test_unprefixed_model_body_untouched(gateway, upstream):
    body = ('{"model":"gpt-4o",' + TAIL).encode()
    gw = gateway(upstream=upstream)
    assert post(gw, body).status == 200
    assert upstream.last_request().body == body


def test_route_method_is_case_insensitive(gateway, upstream):
    """method = "post" means POST: POST /x reaches the provider's endpoint with
    the body as sent; other methods get 405 naming POST."""
    gw = gateway(upstream=upstream, routes=[{"path": "/x", "provider": "openai",
                                             "endpoint": "chat/completions", "method": "post"}])
    body = ('{"model":"gpt-route",' + TAIL).encode()
    r = post(gw, body, path="/x")
    assert r.status == 200, r
    assert r.body == chat_completion_body("gpt-route")
    rec = upstream.last_request()
    assert rec.method == "POST" and rec.path == "/v1/chat/completions", rec
    assert rec.body == body
    r = gw.request("GET", "/x")
    assert r.status == 405, r
    assert r.header("allow") == "POST", r
    assert len(upstream.request_list()) == 1


@pytest.mark.parametrize("path,upstream_path", [
    ("/v1/embeddings", "/v1/embeddings"),
    ("/embeddings", "/v1/embeddings"),
    ("/v1/completions", "/v1/completions"),
    ("/v1/responses", "/v1/responses"),
    ("/responses", "/v1/responses"),
])
def test_openai_endpoints_routed_by_model(gateway, upstream, path, upstream_path):
    gw = gateway(upstream=upstream)
    body = b'{"model":"text-embedding-3-small","input":"hi"}'
    r = post(gw, body, path)
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == upstream_path
    assert rec.body == body


@pytest.mark.parametrize("path", ["/api/v1/chat/completions", "/api/chat/completions"])
def test_api_prefix(gateway, upstream, path):
    gw = gateway(upstream=upstream, api_prefix="/api", api_keys=["k-prefix"])
    r = gw.request("POST", path, [CT_JSON, ("x-api-key", "k-prefix")],
                   b'{"model":"echo","messages":[{"role":"user","content":"hello"}]}')
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "hello"
    r = gw.request("GET", "/api/v1/models", [("x-api-key", "k-prefix")])
    assert r.status == 200 and r.json()["object"] == "list"
    # The unprefixed paths still work; others under the prefix do not exist.
    assert gw.request("GET", "/v1/models", [("x-api-key", "k-prefix")]).status == 200
    assert gw.request("GET", "/api/nope", [("x-api-key", "k-prefix")]).status == 404


def models_config(upstream):
    return dict(
        providers={
            "openai": {"kind": "openai", "base_url": upstream.base_url, "api_key": "k",
                       "models": ["gpt-4o", "gpt-4o-mini"]},
            "anthropic": {"kind": "openai-compatible", "base_url": upstream.base_url, "api_key": "k"},
            "local": {"kind": "openai-compatible", "base_url": upstream.base_url, "models": ["llama-3"]},
        },
        models={"fast": {"provider": "local", "model": "llama-3"}},
    )


def test_aliases_allow_lists_and_naming(gateway, upstream):
    gw = gateway(upstream=upstream, **models_config(upstream))
    # An alias: its provider, and the model rewritten in the body.
    r = post(gw, b'{"model":"fast","messages":[]}')
    assert r.status == 200, r
    assert upstream.last_request().body == b'{"model":"llama-3","messages":[]}'
    # claude-* goes to the provider named anthropic (no allow-list there).
    assert post(gw, b'{"model":"claude-3-5-haiku-latest","messages":[]}').status == 200
    assert upstream.last_request().body == b'{"model":"claude-3-5-haiku-latest","messages":[]}'
    # The openai provider serves only its allow-list.
    assert post(gw, b'{"model":"gpt-4o-mini","messages":[]}').status == 200
    r = post(gw, b'{"model":"gpt-3.5-turbo","messages":[]}')
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"
    r = post(gw, b'{"model":"local/other","messages":[]}')
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"


def test_models_list_and_lookup(gateway, upstream):
    gw = gateway(upstream=upstream, **models_config(upstream))
    r = gw.request("GET", "/v1/models")
    assert r.status == 200
    ids = [m["id"] for m in r.json()["data"]]
    assert ids == ["echo", "fast", "local/llama-3", "gpt-4o", "gpt-4o-mini"]
    r = gw.request("GET", "/v1/models/local/llama-3")
    assert r.status == 200 and r.json() == {"id": "local/llama-3", "object": "model", "created": 0,
                                            "owned_by": "local"}
    assert gw.request("GET", "/models/fast").json()["owned_by"] == "local"
    r = gw.request("GET", "/v1/models/nope")
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"
    assert gw.request("POST", "/v1/models/fast").status == 405


def test_bad_alias_is_a_config_error(gateway, upstream, tmp_path):
    from harness import run_cli, render_config, base_config, free_port
    cfg = base_config(free_port(), upstream.base_url)
    cfg["models"] = {"fast": {"provider": "ghost", "model": "x"}}
    conf = tmp_path / "bad.lua"
    conf.write_text(render_config(cfg))
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1
    assert "models.fast.provider: expected the name of a configured provider" in r.stderr
