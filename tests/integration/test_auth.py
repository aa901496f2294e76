"""key-auth: gateway keys by Authorization: Bearer or x-api-key; /health is open;
with no keys only loopback clients are served (every test here is loopback)."""
import pytest

import httpc

KEYS = ["gw-key-1", "gw-key-2"]


@pytest.fixture
def gw(gateway, upstream):
    return gateway(upstream=upstream, api_keys=KEYS)


def assert_openai_401(r):
    assert r.status == 401, r
    assert r.request_id
    err = r.json()["error"]
    assert err["message"] and err["type"]
    assert "code" in err and err["param"] is None
    assert err["request_id"] == r.request_id


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer"},
    {"Authorization": "Basic Z3cta2V5LTE6"},
    {"Authorization": "gw-key-1"},
    {"x-api-key": "wrong"},
    {"x-api-key": ""},
    {"Authorization": "Bearer gw-key-1x"},
    {"Authorization": "Bearer gw-key-"},
], ids=lambda h: repr(h))
def test_missing_or_wrong_key_is_401(gw, headers):
    assert_openai_401(gw.chat("echo", "x", headers=headers))


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer gw-key-1"},
    {"Authorization": "Bearer gw-key-2"},
    {"x-api-key": "gw-key-1"},
    {"X-Api-Key": "gw-key-2"},
], ids=lambda h: repr(h))
def test_valid_key_is_served(gw, headers):
    r = gw.chat("echo", "authorised", headers=headers)
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "authorised"


def test_401_on_messages_path_is_anthropic_shaped(gw):
    r = gw.request("POST", "/v1/messages", {"Content-Type": "application/json"},
                   b'{"model":"echo","max_tokens":10,"messages":[{"role":"user","content":"x"}]}')
    assert r.status == 401, r
    doc = r.json()
    assert doc["type"] == "error"
    assert doc["error"]["type"] and doc["error"]["message"]
    assert doc["request_id"] == r.request_id


def test_health_needs_no_key(gw):
    r = gw.request("GET", "/health")
    assert r.status == 200
    assert r.json() == {"status": "ok"}


def test_unauthorised_request_never_reaches_upstream(gw, upstream):
    assert gw.chat("gpt-test", "x", headers={"Authorization": "Bearer nope"}).status == 401
    assert upstream.accepted == 0 and upstream.request_list() == []


def test_no_keys_serves_loopback_without_key(gateway):
    gw = gateway(api_keys=[])
    assert gw.chat("echo", "open").status == 200


def test_keys_never_logged(gateway, upstream):
    gw = gateway(upstream=upstream, api_keys=KEYS, log_level="debug",
                 providers={"openai": {"api_key": "sk-upstream-secret-123"}})
    assert gw.chat("gpt-test", "x", headers={"Authorization": "Bearer gw-key-1"}).status == 200
    assert gw.chat("echo", "x", headers={"x-api-key": "gw-key-2"}).status == 200
    assert gw.chat("echo", "x", headers={"x-api-key": "gw-guess-999"}).status == 401
    gw.stop()                         # every line written
    log = gw.log()
    for secret in ("gw-key-1", "gw-key-2", "gw-guess-999", "sk-upstream-secret-123"):
        assert secret not in log, "secret %r appears in the log" % secret


def test_keep_alive_after_401(gw):
    with gw.connect() as c:
        body = httpc.chat_body("echo", "x")
        r = c.request("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, body)
        assert r.status == 401
        if r.will_close():
            return
        r = c.request("POST", "/v1/chat/completions",
                      {"Content-Type": "application/json", "x-api-key": "gw-key-1"}, body)
        assert r.status == 200
