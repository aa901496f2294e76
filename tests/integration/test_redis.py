"""aigw.redis from a plugin's access phase, against a real redis-server on
127.0.0.1: call and pipeline, reply conversion, password and database,
timeouts, Redis stopped and restarted, many concurrent requests on the one
connection, a client that leaves mid-wait, the phases that cannot wait, and
refused commands. The tests that need redis-server are skipped when it is
not installed. And against a fake Redis (a raw socket server in the test)
that sends what a hostile one could: the link is plaintext."""
import json
import shutil
import socket
import subprocess
import threading
import time

import httpc
import pytest
from harness import LOOPBACK, REPO_ROOT, _die_with_parent, free_port, wait_logged, wait_until

REDIS_SERVER = shutil.which("redis-server")

# ---------------------------------------------------------------------------
# redis-server, started and stopped by PID


class RespError(Exception):
    pass


class RedisClient:
    """A tiny blocking RESP client for setting up and checking from the test."""

    def __init__(self, port, password=None, db=0, timeout=5.0):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.buf = b""
        if password:
            self.cmd("AUTH", password)
        if db:
            self.cmd("SELECT", db)

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("latin-1")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RespError("bad reply %r" % line)

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()


class RedisServer:
    def __init__(self, workdir, port=None, password=None):
        self.port = port or free_port()
        self.password = password
        self.dir = workdir / ("redis-%d" % self.port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None

    def start(self):
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--enable-debug-command", "local"]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        wait_until(self._up, 10, "redis-server on port %d" % self.port)
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
        try:
            c = self.client()
            ok = c.cmd("PING") == "PONG"
            c.close()
            return ok
        except (OSError, ConnectionError):
            return False

    def client(self, db=0):
        return RedisClient(self.port, self.password, db)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    @property
    def url(self):
        auth = ":%s@" % self.password if self.password else ""
        return "redis://%s%s:%d" % (auth, LOOPBACK, self.port)


@pytest.fixture
def make_redis(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    servers = []

    def make(**kw):
        s = RedisServer(tmp_path, **kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def redis(make_redis):
    return make_redis()


# ---------------------------------------------------------------------------
# The plugin and the gateway

PLUGIN = r'''
local aigw = require "aigw"
local redis = aigw.redis
local P = { name = "rtest", priority = 100 }

-- Replies as JSON: null as "<null>", an error reply as { err = "..." }.
local function show(v)
  if v == redis.null then return "<null>" end
  if type(v) == "table" then
    if v[1] == false then return { err = v[2] } end
    local t = {}
    for i, x in ipairs(v) do t[i] = show(x) end
    return t
  end
  return v
end

local function answer(v, err, t0, extra)
  local body = { v = show(v), err = err, took = aigw.monotonic() - t0,
                 null_is_json_null = redis.null == aigw.json.null }
  for k, x in pairs(extra or {}) do body[k] = x end
  return 200, body
end

function P.access(conf, ctx)
  local h = aigw.request.get_header
  local act = h("x-redis")
  if not act then return end
  ctx.act = act
  local t0 = aigw.monotonic()
  if act == "incr" then
    local n, err = redis.call("INCR", h("x-key") or "hits")
    return 200, { n = n, err = err, took = aigw.monotonic() - t0 }, "x-count: " .. tostring(n) .. "\r\n"
  elseif act == "call" then
    local args = aigw.request.get_json(ctx)
    local v, err = redis.call(unpack(args))
    return answer(v, err, t0)
  elseif act == "pipeline" then
    local res, err = redis.pipeline(aigw.request.get_json(ctx))
    return answer(res, err, t0)
  elseif act == "mix" then
    -- Each caller must get its own replies back, whatever else is in flight.
    local token = h("x-token")
    local res, err = redis.pipeline{ { "INCR", "mix" }, { "ECHO", token }, { "GET", "nothing" } }
    local echo, err2 = redis.call("ECHO", token .. "!")
    return 200, { res = res and show(res), err = err, echo = echo, err2 = err2 }
  elseif act == "misuse" then
    local out = {}
    for i, f in ipairs{
      function() return redis.call("SUBSCRIBE", "x") end,
      function() return redis.call("select", 1) end,
      function() return redis.call("MULTI") end,
      function() return redis.pipeline{ { "MULTI" }, { "INCR", "x" } } end,
      function() return redis.call("GET", {}) end,
      function() return redis.pipeline{ { "GET", "a" }, "GET" } end,
      function() return redis.call() end,
      function()
        local v = redis.call("SUBSCRIBE", "x")
        return v
      end,
    } do
      local ok, err = pcall(f)
      out[i] = { ok = ok, err = tostring(err) }
    end
    local res, err = redis.pipeline{ { "MULTI" }, { "INCR", "tx" }, { "INCR", "tx" }, { "EXEC" } }
    out.tx = res and show(res)
    out.tx_err = err
    return 200, out
  elseif act == "in-coroutine" then
    local co = coroutine.create(function() return redis.call("PING") end)
    local _, v, err = coroutine.resume(co)
    return 200, { v = v, err = err }
  end
end

function P.log(conf, ctx)
  if ctx.act then aigw.log.warn("rtest log act=", ctx.act, " status=", ctx.status) end
  if ctx.act == "log-phase" then
    local v, err = redis.call("PING")
    aigw.log.warn("log phase redis: ", tostring(v), " | ", tostring(err))
  end
end

return P
'''


PLUGIN_LINE = PLUGIN.splitlines().index('        local v = redis.call("SUBSCRIBE", "x")') + 1


def make_prefix(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "plugins").mkdir(parents=True, exist_ok=True)
    if not (prefix / "lua").exists():
        (prefix / "lua").symlink_to(REPO_ROOT / "lua")
    (prefix / "plugins" / "key-auth.lua").write_bytes(
        (REPO_ROOT / "plugins" / "key-auth.lua").read_bytes())
    (prefix / "plugins" / "rtest.lua").write_text(PLUGIN)
    return prefix


def start(gateway, tmp_path, url=None, timeout=2, connect_timeout=1, **overrides):
    cfg = dict(plugins=["key-auth", "rtest"])
    if url is not None:
        cfg["redis"] = {"url": url, "timeout": timeout, "connect_timeout": connect_timeout}
    cfg.update(overrides)
    return gateway(env={"AIGW_PREFIX": str(make_prefix(tmp_path))}, **cfg)


def act(gw, action, body=None, headers=(), timeout=10):
    hdrs = [("x-redis", action), ("Content-Type", "application/json")] + list(headers)
    data = json.dumps(body if body is not None else {"model": "echo"}).encode()
    r = gw.request("POST", "/v1/chat/completions", hdrs, data, timeout=timeout)
    assert r.status == 200, (r.status, r.body)
    return r, json.loads(r.body)


def call(gw, *args, timeout=10):
    return act(gw, "call", list(args), timeout=timeout)[1]


# ---------------------------------------------------------------------------
# Tests


def test_call_and_pipeline(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url)
    r1, b1 = act(gw, "incr", headers=[("x-key", "hits")])
    r2, b2 = act(gw, "incr", headers=[("x-key", "hits")])
    assert (b1["n"], b2["n"]) == (1, 2)
    assert r2.header("x-count") == "2"
    assert redis.client().cmd("GET", "hits") == "2"

    b = call(gw, "SET", "greeting", "hello")
    assert b["v"] == "OK" and b["null_is_json_null"] is True
    assert call(gw, "GET", "greeting")["v"] == "hello"
    assert call(gw, "GET", "missing")["v"] == "<null>"
    assert call(gw, "INCRBY", "n", 41)["v"] == 41          # numbers are sent as text
    assert call(gw, "INCRBYFLOAT", "f", 1.5)["v"] == "1.5"
    b = call(gw, "INCR", "greeting")                       # an error reply: nil, err
    assert "v" not in b and b["err"].startswith("ERR ")
    b = call(gw, "NOSUCHCOMMAND")
    assert b["err"].startswith("ERR unknown command")

    _, b = act(gw, "pipeline", [["DEL", "list"], ["RPUSH", "list", "a", "b"], ["GET", "greeting"],
                               ["GET", "missing"], ["INCR", "greeting"], ["LRANGE", "list", 0, -1],
                               ["MGET", "greeting", "missing"]])
    assert b["v"][:4] == [0, 2, "hello", "<null>"]
    assert b["v"][4]["err"].startswith("ERR ")             # { false, "ERR ..." } keeps its place
    assert b["v"][5:] == [["a", "b"], ["hello", "<null>"]]
    assert "err" not in b


def test_password_and_database(gateway, tmp_path, make_redis):
    rs = make_redis(password="p@ss:w/rd")
    url = "redis://:p%%40ss%%3Aw%%2Frd@%s:%d/3" % (LOOPBACK, rs.port)
    gw = start(gateway, tmp_path, url)
    assert call(gw, "SET", "where", "db3")["v"] == "OK"
    assert rs.client(db=3).cmd("GET", "where") == "db3"
    assert rs.client(db=0).cmd("GET", "where") is None
    gw.stop()

    # Redis 6 ACL form: user:password
    gw = start(gateway, tmp_path, "redis://default:p%%40ss%%3Aw%%2Frd@%s:%d/4" % (LOOPBACK, rs.port))
    assert call(gw, "SET", "where", "db4")["v"] == "OK"
    assert rs.client(db=4).cmd("GET", "where") == "db4"
    gw.stop()

    gw = start(gateway, tmp_path, "redis://:wrong@%s:%d" % (LOOPBACK, rs.port))
    b = call(gw, "PING")
    assert b["err"].startswith("redis unavailable: AUTH failed: WRONGPASS"), b
    assert b["took"] < 1
    gw.stop()                                              # every line written
    assert "wrong" not in gw.log()                         # the password is never logged


def test_timeout_answers_at_once_and_reconnects(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url, timeout=0.3)
    assert call(gw, "PING")["v"] == "PONG"
    admin = redis.client()
    # The server holds every command for 1.5 s.
    assert admin.cmd("CLIENT", "PAUSE", "1500", "ALL") == "OK"
    results = {}

    def one(name, *args):
        results[name] = call(gw, *args)

    threads = [threading.Thread(target=one, args=("a", "ECHO", "a")),
               threading.Thread(target=one, args=("b", "INCR", "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for name in "ab":
        assert results[name]["err"] == "timeout", results
        assert 0.25 <= results[name]["took"] < 1.2, results
    # Once the server serves again (this PING waits for it), the next
    # command reconnects and works; the late replies reached nobody.
    assert admin.cmd("PING") == "PONG"
    assert call(gw, "ECHO", "after")["v"] == "after"
    wait_logged(gw, "timed out: dropping the connection")


def test_debug_sleep_times_out(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url, timeout=0.3)
    b = call(gw, "DEBUG", "SLEEP", "1")
    assert b["err"] == "timeout" and 0.25 <= b["took"] < 0.9, b
    assert redis.client().cmd("PING") == "PONG"            # awake again
    assert call(gw, "PING")["v"] == "PONG"


def test_redis_down_then_restarted(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url)
    assert act(gw, "incr")[1]["n"] == 1
    redis.stop()
    # Requests are still answered; the plugin sees nil, err at once.
    for _ in range(5):
        _, b = act(gw, "incr", timeout=5)
        assert b.get("n") is None
        assert b["err"].startswith(("redis unavailable: ", "redis connection lost: ")), b
        assert b["took"] < 0.5
    _, b = act(gw, "incr")
    assert b["err"] == "redis unavailable: Connection refused"
    redis.start()
    # After the back-off (at most 1 s) the next command connects again.
    got = wait_until(lambda: act(gw, "incr", timeout=5)[1].get("n"), 5, "a reconnect", interval=0.05)
    assert got == 1                                        # a fresh server


def test_many_concurrent_requests_share_one_pipelined_connection(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url, timeout=5)
    assert call(gw, "PING")["v"] == "PONG"
    admin = redis.client()
    # Hold every command at the server so that they pile up on the connection.
    assert admin.cmd("CLIENT", "PAUSE", "400", "ALL") == "OK"
    n = 60
    out = [None] * n
    errors = []

    def one(i):
        try:
            out[i] = act(gw, "mix", headers=[("x-token", "tok-%d" % i)], timeout=15)[1]
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors[:3]
    counts = []
    for i, b in enumerate(out):
        assert b["res"][1] == "tok-%d" % i, b             # its own ECHO, not a neighbour's
        assert b["res"][2] == "<null>"
        assert b["echo"] == "tok-%d!" % i
        counts.append(b["res"][0])
    assert sorted(counts) == list(range(1, n + 1))
    # One connection from the gateway's single worker (plus ours).
    clients = admin.cmd("CLIENT", "LIST").strip().splitlines()
    assert len(clients) == 2, clients


def test_client_leaves_mid_wait(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url, timeout=10)
    assert call(gw, "PING")["v"] == "PONG"
    c = gw.connect()
    body = json.dumps(["BLPOP", "queue", "5"]).encode()
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               [("x-redis", "call"), ("Content-Type", "application/json")], body))
    admin = redis.client()
    wait_until(lambda: "blocked_clients:1" in admin.cmd("INFO", "clients"), 5, "the BLPOP at the server")
    c.close()
    wait_until(lambda: "rtest log act=call status=499" in gw.log(), 5, "the request cut short")
    # The BLPOP's answer comes for a caller that has gone: it reaches nobody,
    # and the next caller on the connection, queued behind it, gets its own.
    results = {}
    t = threading.Thread(target=lambda: results.update(after=call(gw, "ECHO", "mine")))
    t.start()
    wait_until(lambda: any("cmd=blpop" in l and " qbuf=0 " not in l
                           for l in admin.cmd("CLIENT", "LIST").splitlines()),
               5, "the ECHO queued behind the BLPOP")
    assert admin.cmd("RPUSH", "queue", "item") == 1
    t.join(10)
    assert results["after"]["v"] == "mine"
    assert admin.cmd("LLEN", "queue") == 0                 # the BLPOP did take it
    assert call(gw, "PING")["v"] == "PONG"


def test_phases_that_cannot_wait_and_plugin_coroutines(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url)
    act(gw, "log-phase")
    m = wait_until(lambda: "log phase redis:" in gw.log() and gw.log(), 5, "the log phase")
    assert "log phase redis: nil | aigw.redis.call cannot wait in this phase" in m
    _, b = act(gw, "in-coroutine")
    assert "v" not in b and "cannot wait inside a coroutine created by a plugin" in b["err"]


def test_not_configured(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    _, b = act(gw, "incr")
    assert b["err"] == "redis is not configured"
    _, b = act(gw, "pipeline", [["PING"]])
    assert b["err"] == "redis is not configured"


def test_refused_commands_raise(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url)
    _, b = act(gw, "misuse")
    errs = [b[str(i)] for i in range(1, 9)]
    assert all(e["ok"] is False for e in errs), errs
    assert "SUBSCRIBE is not allowed" in errs[0]["err"]
    assert "SELECT is not allowed" in errs[1]["err"]
    assert "MULTI is not allowed" in errs[2]["err"]
    assert "MULTI without EXEC" in errs[3]["err"]
    assert "bad argument #2 to 'call' (string or number expected, got table)" in errs[4]["err"]
    assert "bad argument #1 to 'pipeline' (command #2: table expected, got string)" in errs[5]["err"]
    assert "bad argument #1 to 'call'" in errs[6]["err"]
    # The error names the plugin's line that called (here a non-tail call).
    assert errs[7]["err"].startswith("plugins/rtest.lua:%d: aigw.redis.call: SUBSCRIBE" % PLUGIN_LINE)
    assert b["tx"] == ["OK", "QUEUED", "QUEUED", [1, 2]]


def test_bad_url_is_a_config_error(tmp_path, aigw_path):
    from harness import run_cli
    conf = tmp_path / "c.lua"
    conf.write_text('return { redis = { url = "redis://:hunter2@host:99999" } }')
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1
    assert "redis.url" in r.stderr and "bad port" in r.stderr
    assert "hunter2" not in r.stderr
    conf.write_text('return { redis = { url = "redis://h", timeout = 0 } }')
    r = run_cli(["check", str(conf)])
    assert r.returncode == 1 and "redis.timeout" in r.stderr


def test_shutdown_with_a_command_in_flight_and_an_idle_connection(gateway, tmp_path, redis):
    gw = start(gateway, tmp_path, redis.url, timeout=10)
    assert call(gw, "PING")["v"] == "PONG"
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               [("x-redis", "call"), ("Content-Type", "application/json")],
                               json.dumps(["BLPOP", "queue", "5"]).encode()))
    admin = redis.client()
    wait_until(lambda: "blocked_clients:1" in admin.cmd("INFO", "clients"), 5, "the BLPOP at the server")
    gw.send_signal()
    # Draining: the request in flight still gets its answer...
    assert admin.cmd("RPUSH", "queue", "x") == 1
    r = c.read_response(timeout=10)
    assert r.status == 200 and json.loads(r.body)["v"] == ["queue", "x"]
    # ...and the idle Redis connection does not keep the worker alive.
    assert gw.wait_exit(3) == 0


def test_reload_keeps_the_connection(gateway, tmp_path, redis):
    port = free_port()
    gw = start(gateway, tmp_path, redis.url, admin_listen="%s:%d" % (LOOPBACK, port))
    assert act(gw, "incr")[1]["n"] == 1
    admin = redis.client()
    before = admin.cmd("CLIENT", "LIST")
    r = httpc.request(port, "POST", "/admin/reload", timeout=20)
    assert r.status == 200, r.body
    assert act(gw, "incr")[1]["n"] == 2
    # The new generation uses the worker's connection: same client id.
    ids = lambda text: sorted(l.split()[0] for l in text.splitlines())  # noqa: E731
    assert ids(admin.cmd("CLIENT", "LIST")) == ids(before)


# ---------------------------------------------------------------------------
# A fake Redis that misbehaves


class FakeRedis:
    """Reads RESP commands on 127.0.0.1 and answers each with `answer`
    (bytes, or a function of the command's arguments); `send` writes any
    bytes on the latest connection. Threads, stopped by stop()."""

    def __init__(self, answer=b"+PONG\r\n"):
        self.answer = answer
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.conns = []             # (socket, closed Event)
        self.commands = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def url(self):
        return "redis://%s:%d" % (LOOPBACK, self.port)

    def _accept(self):
        while True:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            closed = threading.Event()
            with self.lock:
                self.conns.append((sock, closed))
            t = threading.Thread(target=self._serve, args=(sock, closed), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock, closed):
        buf = b""

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise EOFError
                buf += data
            out, buf = buf.split(b"\r\n", 1)
            return out

        try:
            while True:
                n = int(line()[1:])
                args = []
                for _ in range(n):
                    size = int(line()[1:])
                    while len(buf) < size + 2:
                        data = sock.recv(65536)
                        if not data:
                            raise EOFError
                        buf += data
                    args.append(buf[:size])
                    buf = buf[size + 2:]
                with self.lock:
                    self.commands.append(args)
                answer = self.answer(args) if callable(self.answer) else self.answer
                sock.sendall(answer)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            sock.close()
            closed.set()

    def send(self, data):
        with self.lock:
            sock, _ = self.conns[-1]
        sock.sendall(data)

    def wait_closed(self, i, timeout=5):
        with self.lock:
            _, closed = self.conns[i]
        return closed.wait(timeout)

    @property
    def accepted(self):
        with self.lock:
            return len(self.conns)

    def stop(self):
        self.lsock.close()
        with self.lock:
            conns = list(self.conns)
        for sock, _ in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)


@pytest.fixture
def fake_redis():
    made = []

    def make(**kw):
        f = FakeRedis(**kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.stop()


def test_unsolicited_reply_drops_the_connection_not_the_gateway(gateway, tmp_path, fake_redis):
    fake = fake_redis()
    gw = start(gateway, tmp_path, fake.url, timeout=5)
    assert call(gw, "PING")["v"] == "PONG"
    # Nothing is pending: hiredis alone would abort the process here.
    fake.send(b"+SURPRISE\r\n")
    assert fake.wait_closed(0), "the gateway dropped the connection"
    assert gw.alive()
    assert call(gw, "PING")["v"] == "PONG"                 # on a new connection
    assert fake.accepted == 2
    wait_logged(gw, "connection lost: unsolicited reply")


def test_malformed_or_oversized_replies_drop_the_connection(gateway, tmp_path, fake_redis):
    bad = {b"GARBAGE": b"?what\r\n", b"HUGE": b"*2000000000\r\n",
           b"EXTRA": b"+OK\r\n+EXTRA\r\n"}
    fake = fake_redis(answer=lambda args: bad.get(args[-1], b"+PONG\r\n"))
    gw = start(gateway, tmp_path, fake.url, timeout=5)
    b = call(gw, "ECHO", "GARBAGE")
    assert b["err"].startswith("redis connection lost: Protocol error"), b
    assert call(gw, "PING")["v"] == "PONG"
    b = call(gw, "ECHO", "HUGE")
    assert b["err"] == "redis connection lost: reply too large", b
    assert call(gw, "PING")["v"] == "PONG"
    b = call(gw, "ECHO", "EXTRA")                          # its own reply, then one more
    assert b["v"] == "OK", b
    assert fake.wait_closed(fake.accepted - 1)
    assert call(gw, "PING")["v"] == "PONG"
    assert fake.accepted == 4 and gw.alive()
