"""The log: access lines written by the core, in text and in json, with
every field and nothing a client sends able to break or add a line; lines
written by a writer thread, none lost on shutdown, and dropped (counted on
/metrics, then reported) rather than waited for when stderr does not read."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import harness
import httpc
from harness import LOG_LINE, REPO_ROOT, access_line, plugin_prefix, wait_until

CT_JSON = ("Content-Type", "application/json")
KEY = "gw-log-key-1"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# A plugin whose log phase writes what the request asks: fields (x-fields),
# or x-spam lines of 1500 bytes each.
PROBE = r'''
local aigw = require "aigw"
return {
  name = "logprobe", priority = 5, schema = {},
  log = function(conf, ctx)
    local req = aigw.request
    if req.get_header("x-fields") then
      aigw.log.info("probe", { n = 3, f = 1.5, yes = true, s = "two words",
                               bad = "a\1b\255c\"d\ne=f", [2] = "two" })
    end
    local spam = tonumber(req.get_header("x-spam") or "")
    if spam then
      local filler = string.rep("s", 1500)
      for i = 1, spam do aigw.log.info("spam ", i, " ", filler) end
    end
  end,
}
'''


def start(gateway, upstream, tmp_path, **kw):
    prefix = plugin_prefix(tmp_path, {"logprobe.lua": PROBE})
    for name in ("key-auth", "access-log", "error-mapping"):
        (prefix / "plugins" / (name + ".lua")).write_bytes(
            (REPO_ROOT / "plugins" / (name + ".lua")).read_bytes())
    return gateway(upstream=upstream, api_keys=[KEY],
                   plugins=["key-auth", "error-mapping", "access-log", "logprobe"],
                   env={"AIGW_PREFIX": str(prefix)}, **kw)


def post(gw, body: bytes, headers=(), path="/v1/chat/completions"):
    return gw.request("POST", path, [CT_JSON, ("Authorization", "Bearer " + KEY)] + list(headers),
                      body)


def chat(gw, model="gpt-4o-mini", headers=()):
    return post(gw, httpc.chat_body(model, "hello"), headers)


def json_lines(gw):
    """Every line of the log as a JSON object (each must parse)."""
    out = []
    for raw in gw.log_path.read_bytes().split(b"\n"):
        if raw:
            out.append(json.loads(raw))
    return out


def json_access(gw, rid, timeout=5):
    def find():
        for o in json_lines(gw):
            if o.get("msg") == "access" and o.get("request_id") == rid:
                return o
        return None
    return wait_until(find, timeout, "the json access line of " + rid)


def lua_unquote(v: str) -> bytes:
    """A text value as written: bare, or quoted with Lua's %q escapes."""
    if not v.startswith('"'):
        return v.encode("latin-1")
    body, out, i = v[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode("latin-1")
            i += 1
            continue
        n = body[i + 1]
        if n == "n":
            out.append(10)
            i += 2
        elif n.isdigit():
            j = i + 1
            while j < len(body) and j < i + 4 and body[j].isdigit():
                j += 1
            out.append(int(body[i + 1:j]))
            i = j
        else:
            out += n.encode("latin-1")
            i += 2
    return bytes(out)


def text_fields(line: str) -> dict:
    """key=value pairs of a text line after its message, quoted values kept whole."""
    rest = line.split(" access ", 1)[1]
    return {k: v for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', rest)}


def log_text(gw) -> str:
    """The log, each byte one character (the log is bytes, not always UTF-8)."""
    return gw.log_path.read_bytes().decode("latin-1")


# --- the access line -----------------------------------------------------------

def test_text_access_line_has_every_field(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path)
    r = chat(gw)
    assert r.status == 200, r
    rid = r.header("x-request-id")
    line = access_line(gw, rid)
    assert set(line) == {"request_id", "method", "path", "status", "ms", "provider", "model",
                         "consumer", "prompt_tokens", "completion_tokens", "total_tokens", "cost"}
    assert line["request_id"] == rid and line["method"] == "POST"
    assert line["path"] == "/v1/chat/completions" and line["status"] == "200"
    assert line["provider"] == "openai" and line["model"] == "gpt-4o-mini"
    assert line["consumer"] == "1"
    assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == ("9", "12", "21")
    assert re.fullmatch(r"\d+\.\d{6}", line["cost"]) and float(line["cost"]) > 0
    assert re.fullmatch(r"\d+", line["ms"])
    raw = [l for l in gw.log().splitlines() if rid in l]
    assert len(raw) == 1 and LOG_LINE.match(raw[0]) and " info [w1] access request_id=" in raw[0]


def test_json_every_line_parses_with_typed_fields(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path, log_format="json")
    r = chat(gw)
    assert r.status == 200, r
    rid = r.header("x-request-id")
    o = json_access(gw, rid)
    assert TIME.match(o["time"]) and o["level"] == "info" and o["thread"] == "w1"
    assert o["method"] == "POST" and o["path"] == "/v1/chat/completions"
    assert o["status"] == 200 and isinstance(o["ms"], int) and o["consumer"] == 1
    assert o["provider"] == "openai" and o["model"] == "gpt-4o-mini"
    assert (o["prompt_tokens"], o["completion_tokens"], o["total_tokens"]) == (9, 12, 21)
    assert isinstance(o["cost"], float) and o["cost"] > 0
    assert "partial" not in o and "attempts" not in o

    # A Lua line with fields: members, typed; the C core's own lines too.
    r = chat(gw, headers=[("x-fields", "1")])
    assert r.status == 200
    probe = wait_until(lambda: [x for x in json_lines(gw) if x.get("msg") == "probe"], 5,
                       "the probe line")[0]
    assert probe["n"] == 3 and probe["f"] == 1.5 and probe["yes"] is True
    assert probe["s"] == "two words" and probe["2"] == "two"
    assert probe["bad"] == 'a\x01b\u00ffc"d\ne=f'
    assert any("listening on" in x["msg"] for x in json_lines(gw))
    gw.stop()
    lines = json_lines(gw)
    assert lines[-1]["msg"] == "stopped" and lines[-1]["thread"] == "main"


def test_json_partial_stream_is_true(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path, log_format="json", expect_errors=True,
               providers={"anthropic": {"kind": "anthropic", "base_url": upstream.url,
                                        "api_key": "a-key"}})
    body = json.dumps({"model": "claude-3-5-haiku-latest", "stream": True, "max_tokens": 9,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    r = post(gw, body, [("x-mock-behavior", "close-mid-stream")], path="/v1/messages")
    assert r.status == 200
    o = json_access(gw, r.header("x-request-id"))
    assert o["partial"] is True and o["prompt_tokens"] > 0


HOSTILE = [
    b'quote"model',
    b"two words",
    b"a=b",
    b"tab\tand\\back",
    b"bad\xff\xfeutf8",
    b"\xc3\xa9t\xc3\xa9 \xe6\xa8\xa1",
    b"nl\ninjected 2026-01-01T00:00:00.000Z error [w1] fake",
    b"cr\r\x01\x1b[31m",
]


def hostile_requests(gw):
    """Each hostile model name in a body, and a path with quotes and '='."""
    rids = []
    for m in HOSTILE:
        # The model goes into the JSON body as raw bytes (escaped where JSON
        # must escape), invalid UTF-8 included.
        esc = m.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
        esc = esc.replace(b"\r", b"\\r").replace(b"\t", b"\\t").replace(b"\x01", b"\\u0001")
        esc = esc.replace(b"\x1b", b"\\u001b")
        body = b'{"model":"' + esc + b'","messages":[{"role":"user","content":"x"}]}'
        r = post(gw, body)
        rids.append((r.header("x-request-id"), m, r.status))
    r = post(gw, httpc.chat_body("gpt-4o-mini"), path='/v1/chat/completions?q="a=b"&x=%0A')
    rids.append((r.header("x-request-id"), None, r.status))
    return rids


def test_hostile_values_cannot_break_or_add_a_text_line(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path, expect_errors=True)
    rids = hostile_requests(gw)
    for rid, model, status in rids:
        line = wait_until(lambda: [l for l in log_text(gw).splitlines() if "request_id=" + rid in l], 5,
                          "the access line of " + rid)
        assert len(line) == 1
        f = text_fields(line[0])
        assert f["request_id"] == rid and f["status"] == str(status)
        if model is not None and "model" in f:
            assert lua_unquote(f["model"]) == model, (f["model"], model)
    # Every line is a log line: nothing a client sent started a new one.
    raw = gw.log_path.read_bytes()
    for l in raw.split(b"\n"):
        if l:
            assert LOG_LINE.match(l.decode("latin-1")), l
            assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", l), l
    assert b"fake" not in raw or raw.count(b" error [w1] fake") == 0


def test_hostile_values_cannot_break_a_json_line(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path, log_format="json", expect_errors=True)
    rids = hostile_requests(gw)
    for rid, model, status in rids:
        o = json_access(gw, rid)
        assert o["status"] == status
        if model is not None and "model" in o:
            try:
                assert o["model"] == model.decode("utf-8")
            except UnicodeDecodeError:       # invalid bytes as \u00XX
                assert o["model"] == model.decode("latin-1")
    for l in gw.log_path.read_bytes().split(b"\n"):
        if l:
            json.loads(l)


# --- the writer ------------------------------------------------------------------

def test_no_access_line_lost_on_sigterm(gateway, upstream, tmp_path):
    gw = start(gateway, upstream, tmp_path, workers=2)
    n = 300
    rids = set()
    with gw.connect() as c:
        for _ in range(n):
            r = c.request("POST", "/v1/chat/completions",
                          {"Content-Type": "application/json", "Authorization": "Bearer " + KEY},
                          httpc.chat_body("echo", "x"))
            assert r.status == 200
            rids.add(r.header("x-request-id"))
    assert gw.stop() == 0
    lines = [l for l in gw.log().splitlines() if " access " in l]
    assert len(lines) == n
    assert {text_fields(l)["request_id"] for l in lines} == rids
    assert gw.log().splitlines()[-1].endswith("stopped")


def test_a_sink_that_does_not_read_drops_lines_and_says_so(aigw_path, upstream, tmp_path):
    port, admin = harness.free_port(), harness.free_port()
    cfg = harness.base_config(port, upstream.base_url)
    cfg.update(admin_listen="127.0.0.1:%d" % admin, plugins=["logprobe"])
    conf = tmp_path / "gateway.lua"
    conf.write_text(harness.render_config(cfg))
    prefix = plugin_prefix(tmp_path, {"logprobe.lua": PROBE})
    env = dict(os.environ, AIGW_PREFIX=str(prefix))
    proc = subprocess.Popen([str(aigw_path), "run", str(conf)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True, preexec_fn=harness._die_with_parent)
    got = bytearray()
    try:
        # Start-up lines are few: the pipe (64 KiB) holds them unread.
        wait_until(lambda: _health(port), 20, "/health")
        # 40 requests, each logging 200 lines of 1.5 KB (12 MB in all): far
        # more than the pipe and the writer's buffers hold. Each is answered
        # at once all the same: workers never wait for stderr.
        for _ in range(40):
            t0 = time.monotonic()
            r = httpc.request(port, "POST", "/v1/chat/completions",
                              [CT_JSON, ("x-spam", "200")], httpc.chat_body("echo", "x"), timeout=5)
            assert r.status == 200
            assert time.monotonic() - t0 < 2
        m = httpc.request(admin, "GET", "/metrics", timeout=5)
        assert m.status == 200
        body = m.body.decode()
        assert "# TYPE aigw_log_lines_dropped_total counter" in body
        dropped = int(float(re.search(r"^aigw_log_lines_dropped_total (\S+)$", body, re.M).group(1)))
        assert dropped > 0

        # Now read: the writer catches up and says how many it dropped.
        reader = threading.Thread(target=read_all, args=(proc.stderr, got), daemon=True)
        reader.start()
        wait_until(lambda: b"dropped" in bytes(got), 10, "the dropped-lines warning")
        m = re.search(rb"warn \[log\] log: (\d+) line\(s\) dropped", bytes(got))
        assert m and int(m.group(1)) > 0
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = bytes(got).decode("latin-1")
    assert text.rstrip("\n").endswith("stopped")
    for l in text.splitlines():
        assert LOG_LINE.match(l), l[:200]


def read_all(f, into: bytearray):
    while True:
        b = os.read(f.fileno(), 65536)
        if not b:
            return
        into.extend(b)


def _health(port):
    try:
        return httpc.request(port, "GET", "/health", timeout=1).status == 200
    except (OSError, httpc.Closed, TimeoutError, ValueError, IndexError):
        return False


def test_default_config_reads_aigw_log_format(gateway, upstream):
    port = harness.free_port()
    env = {"AIGW_LISTEN": "127.0.0.1:%d" % port, "AIGW_ADMIN_LISTEN": "off", "AIGW_WORKERS": "1",
           "AIGW_API_KEYS": "", "OPENAI_BASE_URL": upstream.base_url, "AIGW_LOG_FORMAT": "json"}
    gw = gateway(conf_path=REPO_ROOT / "conf" / "gateway.lua", port=port, env=env)
    r = gw.chat("echo", "json please")
    assert r.status == 200
    o = json_access(gw, r.header("x-request-id"))
    assert o["model"] == "echo" and o["status"] == 200 and o["provider"] == "mock"
    gw.stop()
    assert [x["msg"] for x in json_lines(gw)][-1] == "stopped"
