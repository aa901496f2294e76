"""The admin listener (admin_listen): its own endpoints (/status, /health) and
never the API; a non-loopback admin address without api_keys is refused; the
default config turns it off with AIGW_ADMIN_LISTEN=off."""
import json
import signal
import re

import httpc
import harness
from harness import REPO_ROOT, run_cli, wait_until

CT_JSON = ("Content-Type", "application/json")


def admin_gateway(gateway, upstream=None, **kw):
    admin_port = harness.free_port()
    gw = gateway(upstream=upstream, admin_listen="127.0.0.1:%d" % admin_port, **kw)
    return gw, admin_port


def test_admin_status_and_health(gateway):
    gw, admin = admin_gateway(gateway)
    r = httpc.request(admin, "GET", "/status", timeout=5)
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("application/json"), r
    doc = r.json()
    version = run_cli(["version"]).stdout.split()[-1]
    assert doc.get("version") == version, doc
    assert doc.get("targets") == [], doc        # no model aliases: an empty list, not {}
    for port in (admin, gw.port):
        h = httpc.request(port, "GET", "/health", timeout=5)
        assert h.status == 200, (port, h)


def test_admin_listener_never_serves_the_api(gateway, upstream):
    gw, admin = admin_gateway(gateway, upstream)
    for model in ("echo", "gpt-test"):
        r = httpc.request(admin, "POST", "/v1/chat/completions", [CT_JSON],
                          httpc.chat_body(model, "hi"), timeout=5)
        assert r.status == 404, (model, r)
        assert harness.json_error(r)["error"]["code"] == "not_found", r
    r = httpc.request(admin, "GET", "/v1/models", timeout=5)
    assert r.status == 404, r
    assert upstream.request_list() == [], "the admin listener proxied a request upstream"
    # The same requests on the main listener are served.
    r = gw.chat("echo", "on the api port")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "on the api port"
    assert gw.chat("gpt-test", "x").status == 200
    assert len(upstream.request_list()) == 1


def test_run_refuses_public_admin_listen_without_keys(gateway, tmp_path):
    """admin_listen on 0.0.0.0 without api_keys must not start. Should it start
    anyway, it is killed as soon as it answers on its (loopback) main port."""
    port = harness.free_port()
    admin = "0.0.0.0:%d" % harness.free_port()
    cfg = harness.base_config(port)
    cfg["admin_listen"] = admin
    cfg["api_keys"] = []
    gw = gateway(config=cfg, wait=False, expect_errors=True)

    def exited_or_serving():
        if not gw.alive():
            return "exited"
        try:
            if httpc.request(port, "GET", "/health", timeout=1).status == 200:
                return "serving"
        except (OSError, httpc.Closed, TimeoutError, ValueError, IndexError):
            pass
        return None

    outcome = wait_until(exited_or_serving, 15, "aigw run to exit or serve")
    if outcome == "serving":
        gw.stop(sig=signal.SIGKILL, timeout=5)
        raise AssertionError("aigw run served with admin_listen %s and no api_keys:\n%s"
                             % (admin, gw.log()[-2000:]))
    rc = gw.wait_exit(5)
    assert rc != 0
    msg = gw.log()
    assert admin in msg, msg
    assert re.search(r"api_keys|AIGW_API_KEYS", msg), msg


def test_default_config_admin_listen_off(gateway, upstream):
    port = harness.free_port()
    env = {"AIGW_LISTEN": "127.0.0.1:%d" % port, "AIGW_ADMIN_LISTEN": "off",
           "AIGW_WORKERS": "1", "AIGW_API_KEYS": "", "OPENAI_BASE_URL": upstream.base_url}
    gw = gateway(conf_path=REPO_ROOT / "conf" / "gateway.lua", port=port, env=env)
    assert gw.request("GET", "/health").status == 200
    r = gw.chat("echo", "admin off")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "admin off"
    start = [l for l in gw.log().splitlines() if "listening on" in l]
    assert start and "127.0.0.1:%d" % port in start[0], gw.log()
    assert "admin" not in start[0], start[0]


def test_default_config_admin_listen_from_env(gateway, upstream):
    port, admin = harness.free_port(), harness.free_port()
    env = {"AIGW_LISTEN": "127.0.0.1:%d" % port, "AIGW_ADMIN_LISTEN": "127.0.0.1:%d" % admin,
           "AIGW_WORKERS": "1", "AIGW_API_KEYS": "", "OPENAI_BASE_URL": upstream.base_url}
    gateway(conf_path=REPO_ROOT / "conf" / "gateway.lua", port=port, env=env)
    r = httpc.request(admin, "GET", "/status", timeout=5)
    assert r.status == 200 and "version" in json.loads(r.body), r
