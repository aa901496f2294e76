"""aigw.http.request from a plugin's access phase, against the mock upstream:
methods and bodies, headers both ways, https with a test CA, connection reuse,
failures (timeout, refused, DNS, TLS, too large), streaming with on_chunk, and
a client of the gateway going away while its plugin waits."""
import json
import socket

import pytest

import httpc
from harness import REPO_ROOT, Elapsed, free_port, wait_until
from mock_upstream import big_body, chat_completion_body, sse_events

# The plugin takes a JSON spec in the body of POST /hc and answers with what
# each call returned:
#   { "opts": {...aigw.http.request options...}, "repeat": n, "stream": bool,
#     "sleep": secs (inside on_chunk), "log_chunks": bool, "log_url": url }
HC_PLUGIN = r'''
local aigw = require "aigw"
local json = require "cjson"

local function call(spec)
  local opts = {}
  for k, v in pairs(spec.opts) do opts[k] = v end
  local chunks
  if spec.stream then
    chunks = {}
    opts.on_chunk = function(piece)
      chunks[#chunks + 1] = piece
      if spec.log_chunks then aigw.log.warn("hc chunk ", #chunks, " ", #piece) end
      if spec.sleep then aigw.sleep(spec.sleep) end
      if spec.raise_in_chunk then error("raised in on_chunk") end
    end
  end
  local ok, res, err = pcall(aigw.http.request, opts)
  if not ok then return { raised = tostring(res) } end
  if not res then return { err = err } end
  return { status = res.status, headers = res.headers, body = res.body, chunks = chunks,
           nchunks = chunks and #chunks }
end

return {
  name = "hc", priority = 100,
  access = function(conf, ctx)
    if aigw.request.get_path() ~= "/hc" then return end
    local spec = json.decode(aigw.request.get_body())
    ctx.hc_log_url = spec.log_url
    local out = {}
    for i = 1, spec["repeat"] or 1 do out[i] = call(spec) end
    return 200, json.encode(out), "Content-Type: application/json\r\n"
  end,
  log = function(conf, ctx)
    if not ctx.hc_log_url then return end
    local res, err = aigw.http.request{ url = ctx.hc_log_url }
    aigw.log.warn("hc log phase: ", tostring(res), " ", tostring(err))
  end,
}
'''


def hc_prefix(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True)
    (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    (prefix / "plugins" / "key-auth.lua").write_bytes(
        (REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    (prefix / "plugins" / "hc.lua").write_text(HC_PLUGIN)
    return prefix


@pytest.fixture
def gw(gateway, upstream, tmp_path):
    return gateway(upstream=upstream, plugins=["key-auth", "hc"],
                   env={"AIGW_PREFIX": str(hc_prefix(tmp_path))})


def spec_request(spec):
    return httpc.build_request("POST", "/hc", [("Content-Type", "application/json")],
                               json.dumps(spec).encode())


def hc(gw, timeout=15, **spec):
    r = gw.request("POST", "/hc", [("Content-Type", "application/json")],
                   json.dumps(spec).encode(), timeout=timeout)
    assert r.status == 200, r
    return r.json()


def one(gw, **spec):
    out = hc(gw, **spec)
    assert len(out) == 1, out
    return out[0]


# --- requests and responses ---------------------------------------------------


def test_get_with_headers_both_ways(gw, upstream):
    res = one(gw, opts={"url": upstream.url + "/v1/things?x=1&y=2",
                        "headers": {"X-Custom": "abc", "X-Num": 7, "X-List": ["a", "b"],
                                    "x-mock-behavior": "json,dup-headers"}})
    assert res["status"] == 200, res
    assert res["body"].encode() == chat_completion_body("mock-model")
    h = res["headers"]
    assert h["content-type"] == "application/json"
    assert h["content-length"] == str(len(chat_completion_body("mock-model")))
    assert h["x-multi"] == "one, two"
    assert h["set-cookie"] == ["a=1; Path=/", "b=2"]
    assert all(k == k.lower() for k in h)
    rec = upstream.last_request()
    assert rec.method == "GET" and rec.target == "/v1/things?x=1&y=2"
    assert rec.header("x-custom") == "abc" and rec.header("x-num") == "7"
    assert rec.header_all("x-list") == ["a", "b"]
    assert rec.header("host") == "127.0.0.1:%d" % upstream.port
    assert rec.header("user-agent").startswith("aigw/")
    assert not rec.has_header("content-length") and not rec.has_header("transfer-encoding")


def test_post_with_body(gw, upstream):
    body = '{"model":"gpt-hc","messages":[{"role":"user","content":"caf\u00e9"}]}'
    res = one(gw, opts={"method": "POST", "url": upstream.base_url + "/chat/completions",
                        "body": body, "headers": {"content-type": "application/json",
                                                  "User-Agent": "hooks/1"}})
    assert res["status"] == 200, res
    assert res["body"].encode() == chat_completion_body("gpt-hc")
    rec = upstream.last_request()
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.body == body.encode()
    assert rec.header("content-length") == str(len(body.encode()))
    assert rec.header_all("user-agent") == ["hooks/1"]


def test_chunked_response_is_dechunked_and_status_kept(gw, upstream):
    res = one(gw, opts={"url": upstream.url + "/x",
                        "headers": {"x-mock-behavior": "chunked-json"}})
    assert res["status"] == 200
    assert res["body"].encode() == chat_completion_body("mock-model")
    assert "transfer-encoding" not in res["headers"]
    res = one(gw, opts={"url": upstream.url + "/x", "headers": {"x-mock-behavior": "status=429"}})
    assert res["status"] == 429 and res["headers"]["retry-after"] == "7"
    assert json.loads(res["body"])["error"]["code"] == "mock_429"


def test_head_request_has_empty_body(gw, upstream):
    res = one(gw, opts={"method": "HEAD", "url": upstream.url + "/x"})
    assert res["status"] == 200 and res["body"] == ""


def test_connection_reuse_across_calls(gw, upstream):
    out = hc(gw, opts={"url": upstream.url + "/a"}, **{"repeat": 3})
    assert [o["status"] for o in out] == [200, 200, 200]
    out = hc(gw, opts={"method": "POST", "url": upstream.url + "/b", "body": "x"})
    assert out[0]["status"] == 200
    assert len(upstream.request_list()) == 4
    assert upstream.accepted == 1, "4 calls used %d connections" % upstream.accepted
    assert [r.seq_on_conn for r in upstream.request_list()] == [1, 2, 3, 4]


def test_keepalive_false_closes(gw, upstream):
    out = hc(gw, opts={"url": upstream.url + "/a", "keepalive": False}, **{"repeat": 2})
    assert [o["status"] for o in out] == [200, 200]
    assert upstream.accepted == 2
    assert all(r.header("connection") == "close" for r in upstream.request_list())
    upstream.wait_closed_count(2, 5)


# --- https ------------------------------------------------------------------------


def test_https_with_ca_file_and_reuse(gw, tls_upstream, pki):
    out = hc(gw, opts={"method": "POST", "url": tls_upstream.base_url + "/chat/completions",
                       "body": '{"model":"gpt-tls"}', "ca_file": str(pki.ca)},
             **{"repeat": 3})
    assert [o["status"] for o in out] == [200] * 3, out
    assert out[0]["body"].encode() == chat_completion_body("gpt-tls")
    assert tls_upstream.last_request().body == b'{"model":"gpt-tls"}'
    assert tls_upstream.accepted == 1


def test_https_by_name_sends_sni(gw, tls_upstream, pki):
    infos = socket.getaddrinfo("localhost", tls_upstream.port, socket.AF_INET, socket.SOCK_STREAM)
    if not infos or infos[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 here")
    res = one(gw, opts={"url": "https://localhost:%d/x" % tls_upstream.port,
                        "ca_file": str(pki.ca)})
    assert res["status"] == 200, res
    assert tls_upstream.sni_names[-1] == "localhost"
    assert tls_upstream.last_request().header("host") == "localhost:%d" % tls_upstream.port


def test_https_verification(gw, tls_upstream):
    res = one(gw, opts={"url": tls_upstream.url + "/x"})
    assert res["err"].startswith("tls: certificate verify failed"), res
    assert tls_upstream.request_list() == []
    res = one(gw, opts={"url": tls_upstream.url + "/x", "tls_verify": False})
    assert res["status"] == 200, res
    res = one(gw, opts={"url": tls_upstream.url + "/x", "ca_file": "/nonexistent/ca.pem"})
    assert res["err"].startswith("tls: "), res


def test_https_stream(gw, tls_upstream, pki):
    res = one(gw, stream=True, opts={"url": tls_upstream.url + "/x", "ca_file": str(pki.ca),
                                     "headers": {"x-mock-behavior": "stream"}})
    assert res["status"] == 200 and res.get("body") is None
    assert "".join(res["chunks"]).encode() == b"".join(sse_events("mock-model"))


# --- failures -----------------------------------------------------------------------


def test_timeout(gw, upstream):
    with Elapsed() as t:
        res = one(gw, opts={"url": upstream.url + "/slow", "timeout": 0.3,
                            "headers": {"x-mock-behavior": "delay-headers=30"}})
    assert res == {"err": "timeout"}
    assert t.seconds < 3
    # The exchange was dropped: the mock sees its connection closed.
    upstream.wait_closed_count(1, 5)


def test_connect_refused(gw):
    res = one(gw, opts={"url": "http://127.0.0.1:%d/x" % free_port()})
    assert res["err"] == "connect failed: connection refused", res


def test_dns_failure(gw):
    try:
        socket.getaddrinfo("aigw-test.invalid", 80)
        pytest.skip("aigw-test.invalid resolves here")
    except socket.gaierror:
        pass
    res = one(gw, opts={"url": "http://aigw-test.invalid/x", "timeout": 10})
    assert res["err"] == "dns: cannot resolve aigw-test.invalid", res


def test_bad_and_truncated_responses(gw, upstream):
    res = one(gw, opts={"url": upstream.url + "/x", "headers": {"x-mock-behavior": "bad-response"}})
    assert res == {"err": "bad response"}
    res = one(gw, opts={"url": upstream.url + "/x", "headers": {"x-mock-behavior": "close"}})
    assert res == {"err": "closed"}
    res = one(gw, opts={"url": upstream.url + "/x",
                        "headers": {"x-mock-behavior": "close-mid-stream"}})
    assert res == {"err": "closed mid-response"}
    res = one(gw, stream=True, opts={"url": upstream.url + "/x",
                                     "headers": {"x-mock-behavior": "close-mid-stream"}})
    assert res == {"err": "closed mid-response"}


def test_body_too_large(gw, upstream):
    res = one(gw, opts={"url": upstream.url + "/x", "max_body": 1000,
                        "headers": {"x-mock-behavior": "big-body=100000"}})
    assert res == {"err": "response body too large"}
    res = one(gw, opts={"url": upstream.url + "/x", "max_body": 1000,
                        "headers": {"x-mock-behavior": "big-stream=100000"}})
    assert res == {"err": "response body too large"}
    res = one(gw, opts={"url": upstream.url + "/x", "max_body": 100000,
                        "headers": {"x-mock-behavior": "big-body=100000"}})
    assert res["status"] == 200 and res["body"].encode() == big_body(100000)
    # on_chunk takes any size: max_body is for the collected body only.
    res = one(gw, stream=True, opts={"url": upstream.url + "/x", "max_body": 1000,
                                     "headers": {"x-mock-behavior": "big-body=100000"}})
    assert "".join(res["chunks"]).encode() == big_body(100000)


def test_misuse_raises_naming_the_field(gw, upstream):
    cases = [
        ({"url": "ftp://x/"}, "url"),
        ({"url": "http:///x"}, "url"),
        ({"url": "http://host:99999/"}, "url"),
        ({"url": "http://h/a b"}, "url"),
        ({"url": 42}, "url"),
        ({"url": upstream.url, "method": "GE T"}, "method"),
        ({"url": upstream.url, "headers": {"x-a": "b\r\nx-evil: 1"}}, "headers"),
        ({"url": upstream.url, "headers": {"bad name": "x"}}, "headers"),
        ({"url": upstream.url, "headers": {"content-length": "3"}}, "headers"),
        ({"url": upstream.url, "timeout": -1}, "timeout"),
        ({"url": upstream.url, "body": {}}, "body"),
        ({"url": upstream.url, "tls_verify": "no"}, "tls_verify"),
        ({"url": upstream.url, "bogus": 1}, "bogus"),
    ]
    for opts, field in cases:
        res = one(gw, opts=opts)
        assert "raised" in res, (opts, res)
        assert "aigw.http.request: %s:" % field in res["raised"], (opts, res)
    assert upstream.request_list() == []


def test_cannot_wait_in_the_log_phase(gw, upstream):
    out = hc(gw, opts={"url": upstream.url + "/x"}, log_url=upstream.url + "/from-log")
    assert out[0]["status"] == 200
    wait_until(lambda: "hc log phase: nil aigw.http.request cannot wait" in gw.log(), 5,
               "the log phase's nil, err")
    assert [r.path for r in upstream.request_list()] == ["/x"]


# --- streaming --------------------------------------------------------------------------


def test_on_chunk_pieces_arrive_before_the_upstream_finishes(gw, upstream):
    with gw.connect() as c:
        c.send(spec_request({"stream": True, "log_chunks": True,
                             "opts": {"url": upstream.url + "/x",
                                      "headers": {"x-mock-behavior": "hold", "x-mock-key": "hc"}}}))
        assert upstream.wait_held("hc", 5)
        # The first event reached on_chunk while the upstream holds the rest.
        wait_until(lambda: "hc chunk 1 " in gw.log(), 5, "the first piece in on_chunk")
        upstream.release("hc")
        r = c.read_response(timeout=10)
    res = r.json()[0]
    assert res["status"] == 200 and res["nchunks"] >= 2
    assert "".join(res["chunks"]).encode() == b"".join(sse_events("mock-model"))


def test_on_chunk_may_wait_and_reading_pauses(gw, upstream):
    # A consumer that sleeps in on_chunk: every byte arrives, in order, and
    # no piece is larger than one read.
    res = one(gw, stream=True, sleep=0.002,
              opts={"url": upstream.url + "/x", "headers": {"x-mock-behavior": "big-stream=600000"}})
    assert res["status"] == 200
    body = "".join(res["chunks"]).encode()
    assert body == upstream.last_request().sent_body
    assert max(len(c) for c in res["chunks"]) <= 16384


def test_error_in_on_chunk_aborts_the_exchange(gw, upstream):
    res = one(gw, stream=True, raise_in_chunk=True,
              opts={"url": upstream.url + "/x",
                    "headers": {"x-mock-behavior": "hold", "x-mock-key": "err"}})
    assert "raised in on_chunk" in res["raised"], res
    upstream.wait_closed_count(1, 5)
    upstream.release("err")


# --- the gateway's client goes away ----------------------------------------------------------


@pytest.mark.parametrize("behavior", ["delay-headers=30", "hold"])
def test_client_gone_cancels_the_exchange(gw, upstream, behavior):
    c = gw.connect()
    c.send(spec_request({"stream": behavior == "hold",
                         "opts": {"url": upstream.url + "/x",
                                  "headers": {"x-mock-behavior": behavior, "x-mock-key": "gone"}}}))
    rec = upstream.wait_requests(1, 5)[0]
    if behavior == "hold":
        assert upstream.wait_held("gone", 5)
    c.close()
    # The upstream exchange is aborted at once: its connection closes.
    assert upstream.wait_conn_closed(rec.conn_id, 5)
    upstream.release("gone")
    # And the worker is fine.
    res = one(gw, opts={"url": upstream.url + "/after"})
    assert res["status"] == 200
    assert gw.chat("echo", "still here").status == 200


def test_shutdown_while_a_plugin_waits(gateway, upstream, tmp_path):
    gw = gateway(upstream=upstream, plugins=["key-auth", "hc"], server={"drain_timeout": 1},
                 env={"AIGW_PREFIX": str(hc_prefix(tmp_path))})
    c = gw.connect()
    c.send(spec_request({"opts": {"url": upstream.url + "/x",
                                  "headers": {"x-mock-behavior": "delay-headers=30"}}}))
    rec = upstream.wait_requests(1, 5)[0]
    with Elapsed() as t:
        assert gw.stop(timeout=10) == 0
    assert t.seconds < 5
    assert upstream.wait_conn_closed(rec.conn_id, 5)
    c.close()
