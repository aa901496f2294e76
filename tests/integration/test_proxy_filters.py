"""The proxy path with response filters on (core/upstream/upstream.c's hooks): a body
filter makes the response chunked (close-delimited for HTTP/1.0), keeps
backpressure working, and a header filter may change the status to one
without a body."""
import time

import pytest

import httpc
from harness import REPO_ROOT, Elapsed, wait_until
from mock_upstream import chat_completion_body
from test_backpressure_tls import queues, steady, tcp_queues

FILTER_PLUGIN = r'''
local aigw = require "aigw"
return {
  name = "filt", priority = 100,
  access = function(conf, ctx)
    ctx.act = aigw.request.get_header("x-filt")
    if ctx.act == "upper" then assert(aigw.response.filter_body() == true) end
  end,
  header_filter = function(conf, ctx)
    if ctx.act == "to204" then aigw.response.set_status(204) end
  end,
  body_filter = function(conf, ctx, chunk, eof)
    if ctx.act == "upper" then return chunk:upper() .. (eof and "[EOF]" or "") end
  end,
}
'''

CT_JSON = ("Content-Type", "application/json")


@pytest.fixture
def gw(gateway, upstream, tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True)
    (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    (prefix / "plugins" / "key-auth.lua").write_bytes(
        (REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    (prefix / "plugins" / "filt.lua").write_text(FILTER_PLUGIN)
    return gateway(upstream=upstream, plugins=["key-auth", "filt"],
                   env={"AIGW_PREFIX": str(prefix)},
                   providers={"openai": {"timeouts": {"connect": 5, "read": 3, "total": 60}}})


def chat(act, behavior=None, version="HTTP/1.1", stream=False):
    hdrs = [CT_JSON, ("x-filt", act)] + ([("x-mock-behavior", behavior)] if behavior else [])
    return httpc.build_request("POST", "/v1/chat/completions", hdrs,
                               httpc.chat_body("gpt-test", "x", stream=stream), version=version)


def test_body_filter_makes_the_response_chunked(gw, upstream):
    with gw.connect() as c:
        c.send(chat("upper"))
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.framing == "chunked" and r.complete
        assert r.header("content-length") is None
        assert r.body == chat_completion_body("gpt-test").upper() + b"[EOF]"
        # the connection stays usable
        c.send(chat("none", "chunked-json"))
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.body == chat_completion_body("gpt-test")


def test_body_filter_to_an_http10_client_is_close_delimited(gw, upstream):
    with gw.connect() as c:
        c.send(chat("upper", version="HTTP/1.0"))
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.framing == "close"
        assert r.body == chat_completion_body("gpt-test").upper() + b"[EOF]"
        assert c.wait_closed(5)


def test_header_filter_status_without_body(gw, upstream):
    with gw.connect() as c:
        c.send(chat("to204", "big-body=100000"))
        r = c.read_response(timeout=10)
        assert r.status == 204 and r.body == b""
        assert r.header("content-length") is None and r.header("transfer-encoding") is None
        # the upstream's body was read and dropped: the next answer is in step
        c.send(chat("none"))
        r = c.read_response(timeout=10)
        assert r.status == 200 and r.body == chat_completion_body("gpt-test")


@pytest.mark.parametrize("behavior", ["big-stream=8000000", "big-body=8000000"],
                         ids=["sse-chunked", "content-length"])
def test_body_filter_keeps_backpressure(gw, upstream, behavior):
    with gw.connect(rcvbuf=64 * 1024) as c:
        c.send(chat("upper", behavior, stream=True))
        rec = upstream.wait_requests(1, 10)[0]
        mock_port = upstream.port
        (up_port,) = wait_until(lambda: [l for (l, r) in tcp_queues() if r == mock_port], 10,
                                "the gateway's connection to the upstream")

        def progress():
            return (rec.sent_bytes, queues(mock_port, up_port)[0] + queues(up_port, mock_port)[1])
        sent, unread = steady(progress, 0.5, 30, "the upstream and the gateway to stand still")
        assert unread > 0, "the gateway read all %d bytes with the client reading none" % sent
        with Elapsed() as el:
            r = c.read_response(timeout=15)
    assert r.status == 200 and r.complete, r
    assert r.body == rec.sent_body.upper() + b"[EOF]"
    assert el.seconds < 1.5, "reading the rest took %.2fs" % el.seconds
