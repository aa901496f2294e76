"""Model aliases over several targets: fallback order, retries with backoff
and Retry-After, the request deadline, the first-byte hold (ttfb_timeout) and
no retry once a byte reached the client, circuit breakers (open, half-open,
closed), active health checks and /ready, 503 and 504, the target headers,
strategies as clients meet them, and the admin status and metrics."""
import json
import re
import threading

import harness
import httpc
from harness import access_line, plugin_prefix, wait_until

CT_JSON = ("Content-Type", "application/json")
PROMPT = [{"role": "user", "content": "hello there"}]


def backend(upstream, **kw):
    p = {"kind": "openai", "base_url": upstream.base_url, "api_key": "sk-" + str(upstream.port),
         "timeouts": {"connect": 2, "read": 10, "total": 20}}
    p.update(kw)
    return p


def dead_backend():
    """An OpenAI-compatible provider on a port where nothing listens."""
    return {"kind": "openai", "base_url": "http://127.0.0.1:%d/v1" % harness.free_port(),
            "api_key": "sk-dead", "timeouts": {"connect": 2, "read": 10, "total": 20}}


def start(gateway, providers, models, admin=False, routing=None, plugins=None, **kw):
    cfg = dict(providers=dict(providers, mock={"kind": "mock"}), models=models,
               plugins=["key-auth", "error-mapping", "access-log"] if plugins is None else plugins,
               expect_errors=True)
    if routing:
        cfg["routing"] = routing
    admin_port = None
    if admin:
        admin_port = harness.free_port()
        cfg["admin_listen"] = "127.0.0.1:%d" % admin_port
    cfg.update(kw)
    gw = gateway(**cfg)
    gw.admin_port = admin_port
    return gw


def chat(gw, model, stream=False, behavior=None, headers=(), key=None, timeout=30):
    hs = [CT_JSON] + list(headers)
    if behavior:
        hs.append(("x-mock-behavior", behavior))
    if key:
        hs.append(("x-mock-key", key))
    body = {"model": model, "messages": PROMPT}
    if stream:
        body["stream"] = True
    return gw.request("POST", "/v1/chat/completions", hs, json.dumps(body).encode(), timeout=timeout)


def served(upstream):
    return len(upstream.request_list())


def targets_status(gw):
    r = httpc.request(gw.admin_port, "GET", "/status", timeout=5)
    assert r.status == 200, r
    return {(t["alias"], t["provider"]): t for t in r.json()["targets"]}


def priority(*names, **retry):
    return {"strategy": "priority",
            "targets": [{"provider": n, "model": "m-" + n} for n in names],
            **({"retry": retry} if retry else {})}


# --- fallback ----------------------------------------------------------------

def test_fallback_on_5xx_names_the_target_that_answered(gateway, make_upstream):
    a, b = make_upstream(default_behavior="status=500"), make_upstream()
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, {"pool": priority("a", "b")})
    r = chat(gw, "pool")
    assert r.status == 200, r
    assert r.json()["model"] == "m-b"
    assert r.header("x-aigw-provider") == "b"
    assert r.header("x-aigw-model") == "m-b"
    assert r.header("x-aigw-attempts") == "2"
    assert served(a) == 1 and served(b) == 1
    assert b.request_list()[0].json()["model"] == "m-b"
    line = access_line(gw, r.request_id)
    assert line["attempts"] == "2" and line["provider"] == "b", line


def test_fallback_order_follows_priority(gateway, make_upstream):
    a = make_upstream(default_behavior="status=503")
    b = make_upstream(default_behavior="status=429,retry-after=0")
    c = make_upstream()
    models = {"pool": {"strategy": "priority", "targets": [
        {"provider": "c", "model": "m-c", "priority": 3},
        {"provider": "a", "model": "m-a", "priority": 1},
        {"provider": "b", "model": "m-b", "priority": 2}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b), "c": backend(c)}, models)
    r = chat(gw, "pool")
    assert r.status == 200, r
    assert r.header("x-aigw-attempts") == "3"
    ta, tb, tc = (u.request_list()[0].received_at for u in (a, b, c))
    assert ta < tb < tc


def test_connect_failure_falls_back(gateway, make_upstream):
    b = make_upstream()
    gw = start(gateway, {"a": dead_backend(), "b": backend(b)}, {"pool": priority("a", "b")})
    r = chat(gw, "pool")
    assert r.status == 200, r
    assert r.header("x-aigw-provider") == "b"


def test_client_errors_are_not_retried(gateway, make_upstream):
    a, b = make_upstream(default_behavior="status=400"), make_upstream()
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, {"pool": priority("a", "b")})
    r = chat(gw, "pool")
    assert r.status == 400, r
    assert "error" in r.json()
    assert r.header("x-aigw-provider") == "a"
    assert served(b) == 0


def test_context_length_moves_on_only_when_configured(gateway, make_upstream):
    a, b = make_upstream(default_behavior="context-length"), make_upstream()
    models = {"strict": priority("a", "b"),
              "roomy": priority("a", "b", on=["connect", "timeout", "5xx", "context_length"])}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models)
    r = chat(gw, "strict")
    assert r.status == 400, r
    assert "maximum context length" in r.json()["error"]["message"]
    assert served(b) == 0
    r = chat(gw, "roomy")
    assert r.status == 200, r
    assert r.header("x-aigw-provider") == "b"


def test_fallback_translates_for_another_provider_kind(gateway, make_upstream):
    a, b = make_upstream(default_behavior="status=529"), make_upstream()
    providers = {"claude": {"kind": "anthropic", "base_url": a.url, "api_key": "sk-ant"},
                 "b": backend(b)}
    models = {"pool": {"strategy": "priority", "targets": [
        {"provider": "claude", "model": "claude-3-5-haiku-latest"},
        {"provider": "b", "model": "gpt-4o-mini"}]}}
    gw = start(gateway, providers, models)
    for stream in (False, True):
        b.default_behavior = "stream" if stream else None
        r = chat(gw, "pool", stream=stream)
        assert r.status == 200, r
        assert r.header("x-aigw-provider") == "b"
        assert a.request_list()[-1].path.endswith("/v1/messages")
        assert "messages" in b.request_list()[-1].json()
        if stream:
            assert r.body.rstrip().endswith(b"data: [DONE]")
        else:
            assert r.json()["choices"][0]["message"]["content"]
    # An Anthropic client served by the OpenAI fallback gets Anthropic's format.
    b.default_behavior = None
    r = gw.request("POST", "/v1/messages", [CT_JSON], json.dumps(
        {"model": "pool", "max_tokens": 50, "messages": PROMPT}).encode())
    assert r.status == 200, r
    assert r.json()["type"] == "message"


# --- the first byte ------------------------------------------------------------

def test_ttfb_timeout_moves_a_stream_on_before_its_first_byte(gateway, make_upstream):
    a = make_upstream(default_behavior="stream,delay-body=5")
    b = make_upstream(default_behavior="stream")
    models = {"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a", "ttfb_timeout": 0.5},
        {"provider": "b", "model": "m-b"}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models)
    with harness.Elapsed() as t:
        r = chat(gw, "pool", stream=True)
    assert r.status == 200, r
    assert r.header("x-aigw-provider") == "b"
    assert t.now() < 4
    assert b"m-b" in r.body and b"m-a" not in r.body
    assert r.body.rstrip().endswith(b"data: [DONE]")


def test_a_hanging_upstream_before_headers_moves_on(gateway, make_upstream):
    a, b = make_upstream(default_behavior="delay-headers=5"), make_upstream()
    models = {"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a", "ttfb_timeout": 0.4},
        {"provider": "b", "model": "m-b"}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models)
    r = chat(gw, "pool")
    assert r.status == 200, r
    assert r.header("x-aigw-provider") == "b"


def test_no_retry_once_a_byte_reached_the_client(gateway, make_upstream):
    a, b = make_upstream(default_behavior="close-mid-stream"), make_upstream()
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, {"pool": priority("a", "b")}, admin=True)
    r = chat(gw, "pool", stream=True)
    assert r.status == 200, r
    assert r.header("x-aigw-provider") == "a"
    assert b'"error"' in r.body and b"[DONE]" not in r.body
    assert served(b) == 0
    # The broken stream counts against a (passive health); a recovers.
    wait_until(lambda: targets_status(gw)[("pool", "a")]["failures"] == 1, 5, "the failure counted")
    a.default_behavior = "stream"
    r = chat(gw, "pool", stream=True)
    assert r.status == 200 and r.header("x-aigw-provider") == "a", r
    assert r.body.rstrip().endswith(b"data: [DONE]")


def test_all_attempts_timed_out_is_504(gateway, make_upstream):
    a, b = make_upstream(default_behavior="delay-headers=5"), make_upstream(default_behavior="delay-headers=5")
    models = {"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a", "ttfb_timeout": 0.3},
        {"provider": "b", "model": "m-b", "ttfb_timeout": 0.3}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models)
    r = chat(gw, "pool")
    assert r.status == 504, r
    assert r.json()["error"]["type"] == "timeout"
    assert r.header("x-aigw-attempts") == "2"


def test_the_deadline_bounds_the_whole_request(gateway, make_upstream):
    a = make_upstream(default_behavior="delay-headers=10")
    models = {"pool": {"strategy": "priority", "targets": [{"provider": "a", "model": "m-a"}],
                       "retry": {"attempts": 5, "deadline": 1}}}
    gw = start(gateway, {"a": backend(a)}, models)
    with harness.Elapsed() as t:
        r = chat(gw, "pool")
    assert r.status == 504, r
    assert 0.9 <= t.now() < 5, t.now()


# --- retries -------------------------------------------------------------------

def test_429_is_retried_after_retry_after(gateway, make_upstream):
    a = make_upstream()
    models = {"pool": {"strategy": "priority", "targets": [{"provider": "a", "model": "m-a"}],
                       "retry": {"attempts": 3, "backoff": 0.05}}}
    gw = start(gateway, {"a": backend(a)}, models)
    r = chat(gw, "pool", behavior="status=429,retry-after=1,times=1", key="ra")
    assert r.status == 200, r
    assert r.header("x-aigw-attempts") == "2"
    reqs = a.request_list()
    assert len(reqs) == 2
    gap = reqs[1].received_at - reqs[0].received_at
    assert gap >= 0.95, gap


def test_backoff_grows_between_rounds(gateway, make_upstream):
    a = make_upstream()
    models = {"pool": {"strategy": "priority", "targets": [{"provider": "a", "model": "m-a"}],
                       "retry": {"attempts": 4, "backoff": 0.2, "max_backoff": 5}}}
    gw = start(gateway, {"a": backend(a)}, models)
    r = chat(gw, "pool", behavior="status=503,times=3", key="bo")
    assert r.status == 200, r
    assert r.header("x-aigw-attempts") == "4"
    t = [q.received_at for q in a.request_list()]
    gaps = [t[i + 1] - t[i] for i in range(3)]
    # 0.2 * 2^(n-1) with equal jitter: [0.1, 0.2], [0.2, 0.4], [0.4, 0.8]
    assert 0.09 <= gaps[0] <= 0.5 and 0.19 <= gaps[1] <= 0.7 and 0.39 <= gaps[2] <= 1.1, gaps


def test_a_retry_after_past_the_limit_goes_back_to_the_client(gateway, make_upstream):
    a = make_upstream(default_behavior="status=429,retry-after=100")
    models = {"pool": {"strategy": "priority", "targets": [{"provider": "a", "model": "m-a"}],
                       "retry": {"attempts": 3, "max_retry_after": 5}}}
    gw = start(gateway, {"a": backend(a)}, models)
    with harness.Elapsed() as t:
        r = chat(gw, "pool")
    assert r.status == 429, r
    assert r.header("retry-after") == "100"
    assert t.now() < 3
    assert served(a) == 1


# --- breakers and health -----------------------------------------------------------

def test_breaker_opens_then_half_opens_and_closes(gateway, make_upstream):
    a, b = make_upstream(default_behavior="status=500"), make_upstream()
    models = {"pool": dict(priority("a", "b"),
                           breaker={"failures": 2, "cooldown": 1, "window": 30, "min_requests": 100})}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models, admin=True)
    for _ in range(2):
        assert chat(gw, "pool").header("x-aigw-provider") == "b"
    assert served(a) == 2
    assert targets_status(gw)[("pool", "a")]["breaker"] == "open"
    r = chat(gw, "pool")
    assert r.header("x-aigw-attempts") == "1" and r.header("x-aigw-provider") == "b"
    assert served(a) == 2                     # open: not even tried
    a.default_behavior = None                 # a recovers
    wait_until(lambda: targets_status(gw)[("pool", "a")]["breaker"] == "half_open", 5,
               "the breaker to half-open")
    r = chat(gw, "pool")                      # the probe
    assert r.header("x-aigw-provider") == "a", r
    assert targets_status(gw)[("pool", "a")]["breaker"] == "closed"
    assert chat(gw, "pool").header("x-aigw-provider") == "a"


def test_active_health_check_removes_and_restores_a_target(gateway, make_upstream):
    a, b = make_upstream(), make_upstream()
    hc = {"path": "/models", "interval": 0.2, "timeout": 1, "healthy": 1, "unhealthy": 2}
    providers = {"a": backend(a, health_check=hc), "b": backend(b, health_check=hc)}
    models = {"pool": {"strategy": "round-robin", "targets": [
        {"provider": "a", "model": "m-a"}, {"provider": "b", "model": "m-b"}]}}
    gw = start(gateway, providers, models, admin=True)
    wait_until(lambda: any(q.path.endswith("/models") for q in a.request_list()), 5, "a probe")
    a.default_behavior = "status=503"
    wait_until(lambda: not targets_status(gw)[("pool", "a")]["healthy"], 5, "a marked down")
    before = len([q for q in a.request_list() if q.path.endswith("/chat/completions")])
    for _ in range(4):
        r = chat(gw, "pool")
        assert r.status == 200 and r.header("x-aigw-provider") == "b", r
    assert len([q for q in a.request_list() if q.path.endswith("/chat/completions")]) == before
    assert gw.request("GET", "/ready").status == 200
    b.default_behavior = "status=503"
    wait_until(lambda: gw.request("GET", "/ready").status == 503, 5, "/ready to say 503")
    r = chat(gw, "pool")
    assert r.status == 503, r
    assert "no healthy target" in r.json()["error"]["message"]
    a.default_behavior = b.default_behavior = None
    wait_until(lambda: gw.request("GET", "/ready").status == 200, 5, "/ready to recover")
    seen = {chat(gw, "pool").header("x-aigw-provider") for _ in range(4)}
    assert seen == {"a", "b"}


def test_admin_status_and_metrics_count_per_target(gateway, make_upstream):
    a, b = make_upstream(default_behavior="status=500"), make_upstream()
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, {"pool": priority("a", "b")}, admin=True)
    for _ in range(3):
        assert chat(gw, "pool").status == 200
    st = targets_status(gw)
    assert st[("pool", "a")]["requests"] == 3 and st[("pool", "a")]["failures"] == 3
    assert st[("pool", "b")]["requests"] == 3 and st[("pool", "b")]["failures"] == 0
    assert st[("pool", "b")]["latency_ms"] > 0
    m = httpc.request(gw.admin_port, "GET", "/metrics", timeout=5)
    assert m.status == 200 and m.header("content-type").startswith("text/plain"), m
    text = m.body.decode()
    assert re.search(r'aigw_target_requests_total\{[^}]*provider="a"[^}]*\} 3\b', text), text
    assert re.search(r'aigw_target_failures_total\{[^}]*provider="a"[^}]*\} 3\b', text), text
    assert re.search(r'aigw_target_breaker_state\{[^}]*provider="b"[^}]*\} 0\b', text), text


# --- strategies as clients meet them ---------------------------------------------

def test_round_robin_and_weighted_spread_requests(gateway, make_upstream):
    ups = [make_upstream() for _ in range(3)]
    providers = {"p%d" % i: backend(u) for i, u in enumerate(ups)}
    models = {
        "rr": {"strategy": "round-robin",
               "targets": [{"provider": "p%d" % i, "model": "m"} for i in range(3)]},
        "wt": {"strategy": "weighted",
               "targets": [{"provider": "p0", "model": "w", "weight": 3},
                           {"provider": "p1", "model": "w", "weight": 1}]},
    }
    gw = start(gateway, providers, models)
    got = [chat(gw, "rr").header("x-aigw-provider") for _ in range(9)]
    assert sorted(got) == ["p0"] * 3 + ["p1"] * 3 + ["p2"] * 3, got
    got = [chat(gw, "wt").header("x-aigw-provider") for _ in range(8)]
    assert got.count("p0") == 6 and got.count("p1") == 2, got


def test_least_busy_avoids_the_target_holding_a_stream(gateway, make_upstream):
    a, b = make_upstream(), make_upstream()
    models = {"lb": {"strategy": "least-busy",
                     "targets": [{"provider": "a", "model": "m"}, {"provider": "b", "model": "m"}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models)
    hs = [CT_JSON, ("x-mock-behavior", "hold"), ("x-mock-key", "busy")]
    body = json.dumps({"model": "lb", "messages": PROMPT, "stream": True}).encode()
    held = {}

    def run():
        held["r"] = gw.request("POST", "/v1/chat/completions", hs, body, timeout=30)
    th = threading.Thread(target=run)
    th.start()
    try:
        wait_until(lambda: a.wait_held("busy", 0.05) or b.wait_held("busy", 0.05), 10, "a held stream")
        busy = "a" if served(a) else "b"
        got = {chat(gw, "lb").header("x-aigw-provider") for _ in range(4)}
        assert got == {"b" if busy == "a" else "a"}, (busy, got)
    finally:
        a.release("busy")
        b.release("busy")
        th.join(30)
    assert held["r"].status == 200


def test_sticky_header_keeps_a_conversation_on_one_target(gateway, make_upstream):
    ups = [make_upstream() for _ in range(3)]
    providers = {"p%d" % i: backend(u) for i, u in enumerate(ups)}
    models = {"st": {"strategy": "round-robin", "sticky": {"header": "x-session-id"},
                     "targets": [{"provider": "p%d" % i, "model": "m"} for i in range(3)]}}
    gw = start(gateway, providers, models)
    seen = {}
    for s in range(12):
        got = {chat(gw, "st", headers=[("x-session-id", "conv-%d" % s)]).header("x-aigw-provider")
               for _ in range(3)}
        assert len(got) == 1, (s, got)
        seen[s] = got.pop()
    assert len(set(seen.values())) >= 2, seen


def test_no_target_left_is_503_with_a_clear_message(gateway, make_upstream):
    a = make_upstream(default_behavior="status=500")
    models = {"pool": dict(priority("a"), breaker={"failures": 1, "cooldown": 60})}
    gw = start(gateway, {"a": backend(a)}, models)
    assert chat(gw, "pool").status == 502
    r = chat(gw, "pool")
    assert r.status == 503, r
    assert "no healthy target" in r.json()["error"]["message"] and "pool" in r.json()["error"]["message"]


# --- the load-balancer example ------------------------------------------------------

def test_load_balancer_example(gateway, make_upstream):
    ups = [make_upstream() for _ in range(3)]
    port, admin = harness.free_port(), harness.free_port()
    env = {"AIGW_BACKENDS": ",".join(u.base_url for u in ups), "AIGW_LISTEN": "127.0.0.1:%d" % port,
           "AIGW_ADMIN_LISTEN": "127.0.0.1:%d" % admin, "AIGW_WORKERS": "1",
           "AIGW_HEALTH_INTERVAL": "0.3", "AIGW_LB_UPSTREAM_MODEL": "served-model"}
    gw = gateway(conf_path=harness.REPO_ROOT / "conf/examples/load-balancer.lua", port=port, env=env,
                 expect_errors=True)
    gw.admin_port = admin
    names = [chat(gw, "llm").header("x-aigw-provider") for _ in range(9)]
    assert sorted(names) == ["backend1"] * 3 + ["backend2"] * 3 + ["backend3"] * 3, names
    assert ups[0].request_list()[-1].json()["model"] == "served-model"

    # backend2 fails: requests that reach it fail over at once, and the
    # probes take it out of the rotation.
    ups[1].default_behavior = "status=503"
    for _ in range(3):
        r = chat(gw, "llm")
        assert r.status == 200 and r.header("x-aigw-provider") != "backend2", r
    wait_until(lambda: not targets_status(gw)[("llm", "backend2")]["healthy"], 5, "backend2 down")
    before = len(ups[1].request_list())
    names = [chat(gw, "llm").header("x-aigw-provider") for _ in range(6)]
    assert sorted(names) == ["backend1"] * 3 + ["backend3"] * 3, names
    assert all(q.path.endswith("/models") for q in ups[1].request_list()[before:])

    ups[1].default_behavior = None
    wait_until(lambda: targets_status(gw)[("llm", "backend2")]["healthy"], 5, "backend2 back")
    names = {chat(gw, "llm").header("x-aigw-provider") for _ in range(6)}
    assert names == {"backend1", "backend2", "backend3"}


# --- shared across workers, and the rest of the strategies -------------------------

def test_breaker_state_is_shared_by_every_worker(gateway, make_upstream):
    a, b = make_upstream(default_behavior="status=500"), make_upstream()
    models = {"pool": dict(priority("a", "b"), breaker={"failures": 2, "cooldown": 60})}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models, workers=2)
    for _ in range(2):
        assert chat(gw, "pool").status == 200
    assert served(a) == 2
    # Each request on a new connection: the kernel spreads them over both
    # workers; none of them tries a again.
    for _ in range(12):
        r = chat(gw, "pool")
        assert r.status == 200 and r.header("x-aigw-attempts") == "1", r
    assert served(a) == 2


def test_lowest_latency_prefers_the_faster_target(gateway, make_upstream):
    slow, fast = make_upstream(default_behavior="delay-headers=0.15"), make_upstream()
    models = {"ll": {"strategy": "lowest-latency", "explore": 0,
                     "targets": [{"provider": "slow", "model": "m"}, {"provider": "fast", "model": "m"}]}}
    gw = start(gateway, {"slow": backend(slow), "fast": backend(fast)}, models)
    # Both are tried first (no sample yet), then the faster one keeps the traffic.
    first = {chat(gw, "ll").header("x-aigw-provider") for _ in range(2)}
    assert first == {"slow", "fast"}
    got = [chat(gw, "ll").header("x-aigw-provider") for _ in range(6)]
    assert got == ["fast"] * 6, got
    # The fast one slows down: after a few answers its average passes the other's.
    fast.default_behavior = "delay-headers=0.4"
    got = [chat(gw, "ll").header("x-aigw-provider") for _ in range(8)]
    assert got[-1] == "slow", got


def test_cost_picks_the_cheapest_target_that_can_serve(gateway, make_upstream):
    a, b = make_upstream(), make_upstream()
    models = {"cheap": {"strategy": "cost", "targets": [
        {"provider": "a", "model": "pricey-model"}, {"provider": "b", "model": "thrifty-model"}],
        "breaker": {"failures": 1, "cooldown": 60}}}
    prices = {"pricey-model": {"input": 10, "output": 30}, "thrifty-model": {"input": 0.1, "output": 0.4}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models, prices=prices)
    assert {chat(gw, "cheap").header("x-aigw-provider") for _ in range(4)} == {"b"}
    b.default_behavior = "status=503"
    r = chat(gw, "cheap")
    assert r.status == 200 and r.header("x-aigw-provider") == "a", r   # fell back
    assert chat(gw, "cheap").header("x-aigw-attempts") == "1"          # b's breaker is open


def test_a_select_function_in_the_config_orders_targets(gateway, make_upstream):
    a, b = make_upstream(), make_upstream()
    select = harness.Lua('function(targets, ctx)\n'
                         '  require("aigw").sleep(0.001)   -- it may wait, as for a routing service\n'
                         '  local tier = require("aigw").request.get_header("x-tier")\n'
                         '  for _, t in ipairs(targets) do\n'
                         '    if tier == "gold" and t.provider == "b" then return t end\n'
                         '  end\n'
                         '  return 1\n'
                         'end')
    models = {"sel": {"select": select, "targets": [{"provider": "a", "model": "m"},
                                                     {"provider": "b", "model": "m"}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models)
    assert chat(gw, "sel").header("x-aigw-provider") == "a"
    assert chat(gw, "sel", headers=[("x-tier", "gold")]).header("x-aigw-provider") == "b"
    a.default_behavior = "status=502"
    r = chat(gw, "sel")
    assert r.status == 200 and r.header("x-aigw-provider") == "b", r


def test_a_client_that_leaves_mid_attempt_frees_its_slot(gateway, make_upstream):
    a = make_upstream(default_behavior="delay-headers=5")
    models = {"pool": priority("a")}
    gw = start(gateway, {"a": backend(a)}, models, admin=True)
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions", [CT_JSON],
                               json.dumps({"model": "pool", "messages": PROMPT}).encode()))
    wait_until(lambda: a.request_list(), 5, "the attempt at the upstream")
    assert targets_status(gw)[("pool", "a")]["inflight"] == 1
    c.close()
    wait_until(lambda: targets_status(gw)[("pool", "a")]["inflight"] == 0, 5, "the slot freed")
    st = targets_status(gw)[("pool", "a")]
    assert st["failures"] == 0 and st["breaker"] == "closed", st
    wait_until(lambda: a.request_list() and a.conns[a.request_list()[0].conn_id].closed.is_set(), 5,
               "the upstream request cancelled")


def test_the_last_failure_of_a_translated_stream_is_a_plain_error(gateway, make_upstream):
    a = make_upstream(default_behavior="status=400")
    b = make_upstream(default_behavior="status=503")
    providers = {"claude": {"kind": "anthropic", "base_url": a.url, "api_key": "sk-ant"},
                 "gem": {"kind": "gemini", "base_url": b.url, "api_key": "g"}}
    models = {"one": {"targets": [{"provider": "claude", "model": "claude-3-5-haiku-latest"}]},
              "two": {"strategy": "priority", "targets": [
                  {"provider": "claude", "model": "claude-3-5-haiku-latest"},
                  {"provider": "gem", "model": "gemini-2.0-flash"}],
                  "retry": {"on": ["4xx", "5xx"]}}}
    gw = start(gateway, providers, models)
    for model, status in (("one", 400), ("two", 502)):
        r = chat(gw, model, stream=True)
        assert r.status == status, r
        assert r.header("content-type").startswith("application/json"), r
        err = r.json()["error"]
        assert err["message"] and err["request_id"] == r.request_id, err
    r = gw.request("POST", "/v1/messages", [CT_JSON], json.dumps(
        {"model": "two", "max_tokens": 20, "stream": True, "messages": PROMPT}).encode())
    assert r.status == 502, r
    assert r.json()["type"] == "error", r


BREAKING_PLUGIN = '''
return {
  name = "breaks", priority = 100,
  upstream = function(conf, ctx)
    if require("aigw").request.get_header("x-break") then error("the plugin broke") end
  end,
}
'''


def test_a_plugin_failing_mid_attempt_is_not_charged_to_the_target(gateway, make_upstream, tmp_path):
    a = make_upstream()
    prefix = plugin_prefix(tmp_path, {"breaks.lua": BREAKING_PLUGIN})
    models = {"pool": dict(priority("a"), breaker={"failures": 1, "cooldown": 60})}
    gw = start(gateway, {"a": backend(a)}, models, admin=True, plugins=["breaks"],
               env={"AIGW_PREFIX": str(prefix)})
    for _ in range(3):
        r = chat(gw, "pool", headers=[("x-break", "1")])
        assert r.status == 500, r
    st = targets_status(gw)[("pool", "a")]
    assert st["breaker"] == "closed" and st["inflight"] == 0, st
    assert served(a) == 0
    assert chat(gw, "pool").status == 200


def test_the_longest_retry_after_of_a_round_is_waited_for(gateway, make_upstream):
    a = make_upstream()
    models = {"pool": {"strategy": "priority", "targets": [
        {"provider": "a", "model": "m-a"}, {"provider": "dead", "model": "m-d"}],
        "retry": {"attempts": 3, "backoff": 0.01, "on": ["connect", "429"]}}}
    gw = start(gateway, {"a": backend(a), "dead": dead_backend()}, models)
    r = chat(gw, "pool", behavior="status=429,retry-after=1,times=1", key="rw")
    assert r.status == 200 and r.header("x-aigw-attempts") == "3", r
    t = [q.received_at for q in a.request_list()]
    assert t[1] - t[0] >= 0.95, t


TIER_STRATEGY = '''
-- Gold clients go to the target named "b"; everyone else to the first.
return {
  select = function(targets, ctx)
    local gold = require("aigw").request.get_header("x-tier") == "%s"
    for i, t in ipairs(targets) do
      if gold and t.provider == "b" then return i end
    end
    return targets[1]
  end,
}
'''


def test_a_select_module_is_read_again_on_reload(gateway, make_upstream, tmp_path):
    a, b = make_upstream(), make_upstream()
    prefix = plugin_prefix(tmp_path, {"strategies/by_tier.lua": TIER_STRATEGY % "gold"})
    module = prefix / "plugins" / "strategies" / "by_tier.lua"
    models = {"sel": {"select": "strategies.by_tier", "targets": [
        {"provider": "a", "model": "m"}, {"provider": "b", "model": "m"}]}}
    gw = start(gateway, {"a": backend(a), "b": backend(b)}, models, plugins=[],
               env={"AIGW_PREFIX": str(prefix)}, admin=True)
    gold = [("x-tier", "gold")]
    assert chat(gw, "sel", headers=gold).header("x-aigw-provider") == "b"
    module.write_text(TIER_STRATEGY % "platinum")
    r = httpc.request(gw.admin_port, "POST", "/admin/reload", timeout=10)
    assert r.status == 200, r
    assert chat(gw, "sel", headers=gold).header("x-aigw-provider") == "a"
    assert chat(gw, "sel", headers=[("x-tier", "platinum")]).header("x-aigw-provider") == "b"


def test_sticky_by_api_key(gateway, make_upstream):
    ups = [make_upstream() for _ in range(3)]
    providers = {"p%d" % i: backend(u) for i, u in enumerate(ups)}
    models = {"st": {"strategy": "round-robin", "sticky": {"api_key": True},
                     "targets": [{"provider": "p%d" % i, "model": "m"} for i in range(3)]}}
    keys = ["sk-team-%d" % i for i in range(10)]
    gw = start(gateway, providers, models, api_keys=keys)
    seen = set()
    for k in keys:
        got = {chat(gw, "st", headers=[("Authorization", "Bearer " + k)]).header("x-aigw-provider")
               for _ in range(3)}
        assert len(got) == 1, (k, got)
        seen |= got
    assert len(seen) >= 2, seen
    # The gateway key is a routing key, never sent upstream.
    assert all(q.header("authorization") != "Bearer sk-team-0" for u in ups for q in u.request_list())


def test_a_health_check_can_be_a_tiny_completion(gateway, make_upstream):
    a = make_upstream()
    hc = {"path": "/chat/completions", "method": "POST", "interval": 0.2, "timeout": 2,
          "body": {"model": "m-a", "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}}
    gw = start(gateway, {"a": backend(a, health_check=hc)}, {"pool": priority("a")})
    probe = wait_until(lambda: next((q for q in a.request_list() if q.method == "POST"), None), 5, "a probe")
    assert probe.path.endswith("/chat/completions")
    assert probe.json()["max_tokens"] == 1 and probe.json()["model"] == "m-a"
    assert probe.header("authorization") == "Bearer sk-%d" % a.port
    assert probe.header("content-type") == "application/json"
    assert chat(gw, "pool").status == 200


def test_bare_model_names_name_their_provider_too(gateway, make_upstream):
    a = make_upstream()
    gw = start(gateway, {"openai": backend(a)}, {})
    r = chat(gw, "gpt-4o-mini")
    assert r.status == 200, r
    assert r.header("x-aigw-provider") == "openai" and r.header("x-aigw-model") == "gpt-4o-mini"
    assert r.header("x-aigw-attempts") is None
    r = chat(gw, "echo")
    assert r.header("x-aigw-provider") == "mock", r
