"""Hot reload: SIGHUP, POST /admin/reload, `aigw reload`, file watching.
Every worker builds a new generation; one failure rejects the whole reload
and the old generation keeps serving; requests in flight finish on their own
generation; shared dicts survive; a reload under continuous load drops
nothing."""
import json
import signal
import threading
import time

import httpc
from harness import free_port, run_cli, wait_logged, wait_until
from test_plugin_runtime import make_prefix, probe, probe_source, start, admin

BROKEN_SYNTAX = "return { name = 'probe', priority = 100,  access = function( end }"
BROKEN_INIT = probe_source("v-broken").replace("function P.init_worker(conf)",
                                               "function P.init_worker(conf)\n  error('init_worker says no')")


def tag(gw):
    r = probe(gw, "tag")
    assert r.status == 200, r
    return json.loads(r.body)["tag"]


def write_probe(gw, source):
    (gw.prefix / "plugins" / "probe.lua").write_text(source)


def generation(gw):
    return json.loads(admin(gw, "GET", "/admin/status").body)["generation"]


def test_sighup_reloads_every_worker(gateway, tmp_path):
    gw = start(gateway, tmp_path, workers=2)
    assert tag(gw) == "v1"
    write_probe(gw, probe_source("v2"))
    gw.send_signal(signal.SIGHUP)
    # `reloading` stays true until every worker has switched.
    st = wait_until(lambda: (lambda s: s if s["generation"] == 2 and not s["reloading"] else None)(
        json.loads(admin(gw, "GET", "/admin/status").body)), 10, "generation 2 applied")
    assert all(w["generation"] == 2 for w in st["workers"])
    # Both workers serve the new code (connections spread over them).
    assert {tag(gw) for _ in range(20)} == {"v2"}
    wait_logged(gw, "reload: generation 2 serving")


def test_admin_reload_reports_a_broken_plugin_and_keeps_the_old_one(gateway, tmp_path):
    gw = start(gateway, tmp_path, workers=2, expect_errors=True)
    for broken, words in ((BROKEN_SYNTAX, "plugins/probe.lua"), (BROKEN_INIT, "init_worker says no")):
        write_probe(gw, broken)
        r = admin(gw, "POST", "/admin/reload")
        assert r.status == 422, r
        err = json.loads(r.body)["error"]
        assert err["code"] == "reload_failed"
        assert words in err["message"] and "probe" in err["message"]
        assert tag(gw) == "v1"
        assert generation(gw) == 1
    wait_logged(gw, "reload rejected")
    write_probe(gw, probe_source("v3"))
    r = admin(gw, "POST", "/admin/reload")
    assert r.status == 200 and json.loads(r.body) == {"reloaded": True, "generation": 2}
    # Once the reload has answered, every worker serves the new generation.
    st = json.loads(admin(gw, "GET", "/admin/status").body)
    assert [w["generation"] for w in st["workers"]] == [2, 2]
    assert {tag(gw) for _ in range(10)} == {"v3"}


def test_a_broken_config_file_is_rejected(gateway, tmp_path):
    gw = start(gateway, tmp_path, expect_errors=True)
    conf = gw.conf_path.read_text()
    gw.conf_path.write_text(conf.replace("workers", "wokers", 1))
    r = admin(gw, "POST", "/admin/reload")
    assert r.status == 422 and "wokers" in json.loads(r.body)["error"]["message"]
    assert tag(gw) == "v1"


def test_admin_reload_only_by_post(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    r = admin(gw, "GET", "/admin/reload")
    assert r.status == 405 and r.header("allow") == "POST"


def test_in_flight_requests_finish_on_their_generation(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    c = gw.connect()
    c.send(httpc.build_request("POST", "/v1/chat/completions",
                               [("x-probe", "sleep"), ("x-seconds", "1.5")],
                               httpc.chat_body("echo", "hi", False)))
    assert tag(gw) == "v1"      # the sleeping request has started on generation 1
    write_probe(gw, probe_source("v2"))
    assert admin(gw, "POST", "/admin/reload").status == 200
    assert tag(gw) == "v2"
    st = json.loads(admin(gw, "GET", "/admin/status").body)
    assert st["workers"][0]["old_generations"] == 1   # kept for the sleeper
    r = c.read_response(timeout=10)
    assert json.loads(r.body)["tag"] == "v1"
    # Once its last request is done, the old VM is closed.
    wait_until(lambda: json.loads(admin(gw, "GET", "/admin/status").body)["workers"][0]["old_generations"] == 0,
               5, "old generation closed")


def test_shared_dicts_survive_and_old_timers_stop(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    def ticks(t):
        return json.loads(probe(gw, "ticks").body).get("ticks") if t is None else t
    wait_until(lambda: (json.loads(probe(gw, "ticks").body).get("ticks") or 0) >= 5, 10, "v1 ticks")
    write_probe(gw, probe_source("v2"))
    assert admin(gw, "POST", "/admin/reload").status == 200
    # The old generation's counter stays readable (shared dicts persist)...
    r = httpc.request(gw.port, "POST", "/v1/chat/completions", [("x-probe", "ticks")],
                      httpc.chat_body("echo", "hi", False))
    wait_until(lambda: (json.loads(probe(gw, "ticks").body).get("ticks") or 0) >= 5, 10, "v2 ticks")
    # ...and no longer moves: its timer was cancelled with its generation.
    write_probe(gw, probe_source("v1"))   # read v1's counter through a v1 plugin again
    assert admin(gw, "POST", "/admin/reload").status == 200
    a = json.loads(probe(gw, "ticks").body)["ticks"]
    assert a >= 5
    assert r.status == 200


def test_aigw_reload_command(gateway, tmp_path):
    gw = start(gateway, tmp_path)
    write_probe(gw, probe_source("v2"))
    env = {"AIGW_PREFIX": str(gw.prefix)}
    r = run_cli(["reload", str(gw.conf_path)], env=env)
    assert r.returncode == 0, r.stderr
    assert "generation" in r.stdout
    assert tag(gw) == "v2"
    write_probe(gw, BROKEN_SYNTAX)
    gw.expect_errors = True
    r = run_cli(["reload", str(gw.conf_path)], env=env)
    assert r.returncode == 1 and "reload failed (422)" in r.stderr
    assert tag(gw) == "v2"


def test_aigw_reload_through_the_pid_file(gateway, tmp_path):
    pid_file = tmp_path / "aigw.pid"
    gw = start(gateway, tmp_path, admin_listen=False, pid_file=str(pid_file))
    gw.admin_port = None
    assert int(pid_file.read_text()) == gw.pid
    write_probe(gw, probe_source("v2"))
    r = run_cli(["reload", str(gw.conf_path)], env={"AIGW_PREFIX": str(gw.prefix)})
    assert r.returncode == 0, r.stderr
    wait_until(lambda: tag(gw) == "v2", 10, "v2 served")
    gw.stop()
    assert not pid_file.exists()


def test_watching_files(gateway, tmp_path):
    gw = start(gateway, tmp_path, watch=True)
    write_probe(gw, probe_source("v2"))
    wait_until(lambda: tag(gw) == "v2", 10, "reload on file change")
    wait_logged(gw, "files changed: reloading")


def test_twenty_reloads_under_load_drop_nothing(gateway, upstream, tmp_path):
    gw = start(gateway, tmp_path, upstream=upstream, workers=2, expect_errors=True)
    stop = threading.Event()
    failures, counts = [], [0]
    lock = threading.Lock()

    def client(model):
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = gw.connect()
                c.send(httpc.build_request("POST", "/v1/chat/completions", [("Content-Type", "application/json")],
                                           httpc.chat_body(model, "hi", False)))
                r = c.read_response(timeout=10)
                if r.status != 200:
                    with lock:
                        failures.append("%s: %d %r" % (model, r.status, r.body[:200]))
                with lock:
                    counts[0] += 1
                if r.will_close():
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append("%s: %r" % (model, e))
                c = None
        if c:
            c.close()

    threads = [threading.Thread(target=client, args=(m,)) for m in ("echo", "gpt-test", "echo", "gpt-test")]
    for t in threads:
        t.start()
    results = []
    try:
        for i in range(20):
            broken = i == 10
            write_probe(gw, BROKEN_SYNTAX if broken else probe_source("r%d" % i))
            r = admin(gw, "POST", "/admin/reload")
            results.append((i, r.status))
            if broken:
                assert r.status == 422, r
                assert tag(gw) == "r9"      # the broken one did not take effect
            else:
                assert r.status == 200, r
            before = counts[0]
            wait_until(lambda: counts[0] > before + 8, 10, "traffic between reloads")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert failures == [], failures[:5]
    assert counts[0] > 200
    assert tag(gw) == "r19"
    assert generation(gw) == 20        # 19 reloads took, one was rejected
    assert sum(1 for _, s in results if s == 422) == 1
