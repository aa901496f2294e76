"""Proxying to an https upstream: verification against ca_file, tls_verify=false,
hostname checks, SNI, and connection reuse over TLS. Certificates come from a
throw-away CA made with the openssl CLI for this test session."""
import socket

import pytest

import httpc
from harness import server_ssl_context
from mock_upstream import chat_completion_body, sse_events

CT_JSON = ("Content-Type", "application/json")
ODD_BODY = '{"model":"gpt-tls",  "messages":[{"role":"user","content":"caf\u00e9 \\u00e9"}]}'.encode()


def provider(mock, **kw):
    p = {"base_url": mock.base_url, "api_key": "sk-tls"}
    p.update(kw)
    return {"openai": p}


def call(gw, behavior=None, body=ODD_BODY):
    hdrs = [CT_JSON] + ([("x-mock-behavior", behavior)] if behavior else [])
    return gw.request("POST", "/v1/chat/completions", hdrs, body)


def assert_502(r):
    assert r.status == 502, r
    err = r.json()["error"]
    assert err["request_id"] == r.request_id and err["message"]


def test_https_upstream_with_ca_file(gateway, tls_upstream, pki):
    gw = gateway(providers=provider(tls_upstream, ca_file=str(pki.ca)))
    r = call(gw)
    assert r.status == 200, r
    assert r.body == chat_completion_body("gpt-tls")
    rec = tls_upstream.last_request()
    assert rec.body == ODD_BODY
    assert rec.header_all("authorization") == ["Bearer sk-tls"]
    assert rec.header("host") == "127.0.0.1:%d" % tls_upstream.port


def test_https_stream_byte_for_byte(gateway, tls_upstream, pki):
    gw = gateway(providers=provider(tls_upstream, ca_file=str(pki.ca)))
    r = call(gw, "stream", httpc.chat_body("gpt-tls", "x", stream=True))
    assert r.status == 200, r
    assert r.body == b"".join(sse_events("gpt-tls"))


def test_https_big_body(gateway, tls_upstream, pki):
    gw = gateway(providers=provider(tls_upstream, ca_file=str(pki.ca)))
    r = call(gw, "big-body=3000000")
    assert r.status == 200 and len(r.body) == 3000000


def test_https_without_ca_file_fails_verification(gateway, tls_upstream):
    gw = gateway(providers=provider(tls_upstream), expect_errors=True)
    assert_502(call(gw))
    assert tls_upstream.request_list() == [], "a request went out over an unverified connection"


def test_https_tls_verify_false(gateway, tls_upstream):
    gw = gateway(providers=provider(tls_upstream, tls_verify=False))
    r = call(gw)
    assert r.status == 200, r
    assert r.body == chat_completion_body("gpt-tls")


def test_https_hostname_mismatch(gateway, make_upstream, pki):
    wrong = make_upstream(ssl_context=server_ssl_context(pki.wrong_cert, pki.wrong_key))
    gw = gateway(providers=provider(wrong, ca_file=str(pki.ca)), expect_errors=True)
    assert_502(call(gw))
    assert wrong.request_list() == []


def test_https_by_hostname_sends_sni(gateway, tls_upstream, pki):
    infos = socket.getaddrinfo("localhost", tls_upstream.port, socket.AF_INET, socket.SOCK_STREAM)
    if not infos or infos[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 here")
    url = "https://localhost:%d/v1" % tls_upstream.port
    gw = gateway(providers={"openai": {"base_url": url, "api_key": "sk-tls",
                                       "ca_file": str(pki.ca)}})
    r = call(gw)
    assert r.status == 200, r
    assert tls_upstream.sni_names and tls_upstream.sni_names[-1] == "localhost"
    assert tls_upstream.last_request().header("host") == "localhost:%d" % tls_upstream.port


def test_https_keepalive_reuse(gateway, tls_upstream, pki):
    gw = gateway(providers=provider(tls_upstream, ca_file=str(pki.ca)), workers=1)
    for i in range(10):
        r = call(gw, "stream" if i % 2 else None)
        assert r.status == 200, r
    assert len(tls_upstream.request_list()) == 10
    assert tls_upstream.accepted == 1, "10 requests used %d TLS connections" % tls_upstream.accepted


def test_https_upstream_closes_mid_stream(gateway, tls_upstream, pki):
    gw = gateway(providers=provider(tls_upstream, ca_file=str(pki.ca)), expect_errors=True)
    with gw.connect() as c:
        c.send(httpc.build_request("POST", "/v1/chat/completions",
                                   [CT_JSON, ("x-mock-behavior", "close-mid-stream")],
                                   httpc.chat_body("gpt-tls", "x", stream=True)))
        head = c.read_head(timeout=10)
        assert head.status == 200
        got = b""
        try:
            for piece in c.iter_body(head, timeout=10):
                got += piece
        except httpc.Closed:
            pass
        # cut short: an error event closes the stream, never [DONE]
        assert b'data: {"error":' in got and b"[DONE]" not in got, got
    assert call(gw).status == 200
