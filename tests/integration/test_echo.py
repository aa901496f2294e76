"""The built-in mock provider: model "echo" answers with no network."""
import json

import httpc


def test_echo_non_stream(gateway):
    gw = gateway()
    r = gw.chat("echo", "hello, caf\u00e9 \U0001f600")
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("application/json")
    doc = r.json()
    assert doc["object"] == "chat.completion"
    assert doc["id"]
    assert doc["model"] == "echo"
    choice = doc["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "hello, caf\u00e9 \U0001f600"
    assert choice["finish_reason"] == "stop"
    assert r.request_id


def test_echo_uses_last_user_message(gateway):
    gw = gateway()
    body = json.dumps({"model": "echo", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]}).encode()
    r = gw.request("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, body)
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "second"


def stream_chunks(r):
    datas = httpc.parse_sse(r.body)
    assert datas and datas[-1] == b"[DONE]", r.body[-200:]
    return [json.loads(d) for d in datas[:-1]]


def test_echo_stream(gateway):
    gw = gateway()
    r = gw.chat("echo", "stream me please", stream=True)
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("text/event-stream")
    chunks = stream_chunks(r)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "stream me please"
    assert r.body.endswith(b"data: [DONE]\n\n")


def test_echo_stream_include_usage(gateway):
    gw = gateway()
    r = gw.chat("echo", "count me", stream=True, stream_options={"include_usage": True})
    assert r.status == 200, r
    usages = [c["usage"] for c in stream_chunks(r) if c.get("usage")]
    assert usages, "stream_options.include_usage asked for a usage chunk"
    assert usages[-1]["total_tokens"] == usages[-1]["prompt_tokens"] + usages[-1]["completion_tokens"]


def test_echo_keep_alive_many(gateway):
    gw = gateway()
    with gw.connect() as c:
        for i in range(50):
            r = c.request("POST", "/v1/chat/completions", {"Content-Type": "application/json"},
                          httpc.chat_body("echo", "n%d" % i))
            assert r.status == 200
            assert r.json()["choices"][0]["message"]["content"] == "n%d" % i


def test_malformed_json_body_is_400(gateway):
    gw = gateway()
    r = gw.request("POST", "/v1/chat/completions", {"Content-Type": "application/json"},
                   b'{"model": "echo", "messages": [')
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["message"] and err["type"]
    assert err["request_id"] == r.request_id


def test_missing_model_is_400(gateway):
    gw = gateway()
    r = gw.request("POST", "/v1/chat/completions", {"Content-Type": "application/json"},
                   b'{"messages": [{"role": "user", "content": "x"}]}')
    assert r.status == 400, r
    assert r.json()["error"]["request_id"] == r.request_id
