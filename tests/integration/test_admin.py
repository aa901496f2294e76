"""The admin listener (admin_listen): its own endpoints (/status, /health) and
never the API; admin keys (admin_keys, AIGW_ADMIN_KEYS) and what is refused
without them (other peers, browsers, Host names that are not loopback);
/metrics, /health and /ready open to scrapers and probes; a non-loopback admin
address without admin_keys is refused; the default config turns it off with
AIGW_ADMIN_LISTEN=off."""
import json
import signal

import pytest

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


@pytest.mark.parametrize("api_keys", [[], ["gw-key"]], ids=["no-api-keys", "api-keys"])
def test_run_refuses_public_admin_listen_without_admin_keys(gateway, api_keys):
    """admin_listen on 0.0.0.0 without admin_keys must not start, gateway keys
    or not (they are not admin keys). Should it start anyway, it is killed as
    soon as it answers on its (loopback) main port."""
    port = harness.free_port()
    admin = "0.0.0.0:%d" % harness.free_port()
    cfg = harness.base_config(port)
    cfg["admin_listen"] = admin
    cfg["api_keys"] = api_keys
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
        raise AssertionError("aigw run served with admin_listen %s and no admin_keys:\n%s"
                             % (admin, gw.log()[-2000:]))
    rc = gw.wait_exit(5)
    assert rc != 0
    msg = gw.log()
    assert admin in msg, msg
    assert "admin_keys" in msg and "AIGW_ADMIN_KEYS" in msg, msg


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


# --- admin keys and the rules without them --------------------------------------------

ADMIN_KEY, ADMIN_KEY2, DATA_KEY = "adm-one-secret", "adm-two-secret", "gw-data-key"


def bearer(key):
    return [("Authorization", "Bearer " + key)]


def admin_request(port, method, path, headers=(), body=None):
    return httpc.request(port, method, path, list(headers), body, timeout=20)


def generation(port, headers=()):
    r = admin_request(port, "GET", "/admin/status", headers)
    assert r.status == 200, r
    return r.json()["generation"]


def refused(r, status, code, error_type):
    assert r.status == status, r
    err = harness.json_error(r)["error"]
    assert (err["code"], err["type"]) == (code, error_type), r
    assert err["request_id"] == r.header("x-request-id"), r
    return err


def with_keys(gateway, **kw):
    cfg = dict(api_keys=[DATA_KEY], admin_keys=[ADMIN_KEY, ADMIN_KEY2])
    cfg.update(kw)
    return admin_gateway(gateway, **cfg)


ADMIN_PATHS = [("GET", "/admin/status"), ("GET", "/status"),
               ("POST", "/admin/reload"), ("POST", "/reload")]


def test_a_data_key_is_not_an_admin_key(gateway):
    gw, admin = with_keys(gateway)
    for method, path in ADMIN_PATHS:
        for headers in (bearer(DATA_KEY), [("x-api-key", DATA_KEY)], bearer("not-a-key-at-all"),
                        bearer(ADMIN_KEY + "x"), bearer(ADMIN_KEY[:-1])):
            r = admin_request(admin, method, path, headers)
            refused(r, 403, "invalid_admin_key", "permission_error")
    assert generation(admin, bearer(ADMIN_KEY)) == 1      # none of the reloads happened
    # Nor is an admin key a gateway key.
    r = gw.request("POST", "/v1/chat/completions", [CT_JSON] + bearer(ADMIN_KEY),
                   httpc.chat_body("echo", "hi"))
    refused(r, 401, "invalid_api_key", "authentication_error")


def test_an_admin_key_is_served(gateway):
    gw, admin = with_keys(gateway)
    r = admin_request(admin, "GET", "/admin/status", bearer(ADMIN_KEY))
    assert r.status == 200 and r.json()["generation"] == 1, r
    r = admin_request(admin, "POST", "/admin/reload", bearer(ADMIN_KEY2))
    assert r.status == 200 and r.json() == {"reloaded": True, "generation": 2}, r
    r = admin_request(admin, "GET", "/status", [("x-api-key", ADMIN_KEY2)])
    assert r.status == 200 and r.json()["generation"] == 2, r
    # The Bearer token is the one read when both are sent.
    r = admin_request(admin, "GET", "/admin/status", bearer(ADMIN_KEY) + [("x-api-key", DATA_KEY)])
    assert r.status == 200, r
    # With a key, neither Origin nor Host matters: a page cannot know the key.
    r = admin_request(admin, "GET", "/admin/status", bearer(ADMIN_KEY) + [
        ("Origin", "http://evil.example"), ("Host", "evil.example:%d" % admin)])
    assert r.status == 200, r


def test_no_admin_key_is_401(gateway):
    gw, admin = with_keys(gateway)
    for method, path in ADMIN_PATHS + [("GET", "/admin/nothing"), ("DELETE", "/admin/status")]:
        for headers in ([], [("Authorization", "Bearer ")], [("Authorization", "Basic YWRtOng=")]):
            r = admin_request(admin, method, path, headers)
            refused(r, 401, "missing_admin_key", "authentication_error")
            assert r.header("www-authenticate", "").startswith("Bearer"), r
    assert generation(admin, bearer(ADMIN_KEY)) == 1
    # Behind the key, an unknown path is a 404.
    r = admin_request(admin, "GET", "/admin/nothing", bearer(ADMIN_KEY))
    refused(r, 404, "not_found", "not_found_error")


def test_metrics_health_and_ready_need_no_key(gateway):
    for kw in (dict(api_keys=[DATA_KEY]),                           # gateway keys only
               dict(api_keys=[DATA_KEY], admin_keys=[ADMIN_KEY])):  # admin keys too
        gw, admin = admin_gateway(gateway, **kw)
        for path in ("/metrics", "/health", "/ready"):
            r = admin_request(admin, "GET", path)
            assert r.status == 200, (kw, path, r)
        assert admin_request(admin, "GET", "/metrics").header("content-type", "").startswith("text/plain")
        if "admin_keys" in kw:
            # The admin endpoints still are not open to a data key.
            refused(admin_request(admin, "GET", "/admin/status", bearer(DATA_KEY)),
                    403, "invalid_admin_key", "permission_error")
        gw.stop()


BROWSER = [("Origin", "http://evil.example")]


def test_without_admin_keys_a_browser_is_refused(gateway):
    gw, admin = admin_gateway(gateway)
    assert generation(admin) == 1
    for method, path in ADMIN_PATHS:
        for origin in ("http://evil.example", "null", "http://127.0.0.1:%d" % admin):
            r = admin_request(admin, method, path, [("Origin", origin)])
            refused(r, 403, "origin_not_allowed", "permission_error")
    # A cross-site form or fetch() with a "simple" body: no preflight, so
    # only the server can stop it.
    r = admin_request(admin, "POST", "/admin/reload",
                      BROWSER + [("Content-Type", "text/plain")], b"reload=1")
    refused(r, 403, "origin_not_allowed", "permission_error")
    r = admin_request(admin, "POST", "/admin/reload",
                      BROWSER + [("Content-Type", "application/x-www-form-urlencoded")], b"a=b")
    refused(r, 403, "origin_not_allowed", "permission_error")
    assert generation(admin) == 1, "a refused reload happened"
    # Without an Origin, a loopback client is served.
    r = admin_request(admin, "POST", "/admin/reload")
    assert r.status == 200 and r.json()["generation"] == 2, r


def test_without_admin_keys_host_must_name_loopback(gateway):
    gw, admin = admin_gateway(gateway)
    for host in ("evil.example:%d" % admin, "evil.example", "localhost.evil.example:%d" % admin,
                 "127.0.0.1.nip.io:%d" % admin, "127.0.0.1:%d.evil.example" % admin, "10.0.0.1:%d" % admin,
                 "[::2]:%d" % admin, "", "localhost:%d@evil.example" % admin):
        for method, path in ADMIN_PATHS:
            r = admin_request(admin, method, path, [("Host", host)])
            refused(r, 403, "host_not_allowed", "permission_error")
    assert generation(admin) == 1, "a refused reload happened"
    for host in ("localhost:%d" % admin, "127.0.0.1:%d" % admin, "[::1]:%d" % admin,
                 "localhost", "127.0.0.1", "[::1]", "LocalHost:%d" % admin):
        r = admin_request(admin, "GET", "/admin/status", [("Host", host)])
        assert r.status == 200, (host, r)
    r = admin_request(admin, "POST", "/admin/reload", [("Host", "localhost:%d" % admin)])
    assert r.status == 200 and r.json()["generation"] == 2, r


@pytest.mark.parametrize("plugins", [[], ["error-mapping", "access-log"]], ids=["none", "no-key-auth"])
def test_admin_is_protected_without_key_auth(gateway, plugins):
    gw, admin = admin_gateway(gateway, plugins=plugins)
    r = admin_request(admin, "POST", "/admin/reload", BROWSER + [("Content-Type", "text/plain")], b"x")
    refused(r, 403, "origin_not_allowed", "permission_error")
    refused(admin_request(admin, "GET", "/admin/status", [("Host", "evil.example:%d" % admin)]),
            403, "host_not_allowed", "permission_error")
    assert generation(admin) == 1
    gw.stop()
    gw, admin = with_keys(gateway, plugins=plugins)
    refused(admin_request(admin, "POST", "/admin/reload"), 401, "missing_admin_key", "authentication_error")
    refused(admin_request(admin, "POST", "/admin/reload", bearer(DATA_KEY)),
            403, "invalid_admin_key", "permission_error")
    assert generation(admin, bearer(ADMIN_KEY)) == 1


def test_aigw_reload_sends_the_admin_key(gateway, tmp_path):
    port, admin = harness.free_port(), harness.free_port()
    cfg = harness.base_config(port)
    cfg.update(admin_listen="127.0.0.1:%d" % admin, api_keys=[DATA_KEY], admin_keys=[ADMIN_KEY2, ADMIN_KEY])
    gw = gateway(config=cfg)

    def cli(conf, env=None):
        return run_cli(["reload", str(conf)], env=dict({"AIGW_ADMIN_KEYS": ""}, **(env or {})))

    r = cli(gw.conf_path)
    assert r.returncode == 0, r.stderr
    assert "generation" in r.stdout
    assert generation(admin, bearer(ADMIN_KEY)) == 2

    def variant(name, **over):
        c = dict(cfg, **over)
        for k, v in over.items():
            if v is None:
                del c[k]
        p = tmp_path / name
        p.write_text(harness.render_config(c))
        return p

    # The config names a key the gateway does not have.
    r = cli(variant("wrong.lua", admin_keys=["adm-wrong"]))
    assert r.returncode == 1, r
    assert "refused" in r.stderr and "403" in r.stderr and "admin key" in r.stderr, r.stderr
    # No admin key in the config: AIGW_ADMIN_KEYS gives it, else it says what is missing.
    keyless = variant("keyless.lua", admin_keys=None)
    r = cli(keyless)
    assert r.returncode == 1, r
    assert "refused" in r.stderr and "401" in r.stderr and "AIGW_ADMIN_KEYS" in r.stderr, r.stderr
    r = cli(keyless, {"AIGW_ADMIN_KEYS": ADMIN_KEY})
    assert r.returncode == 0, r.stderr
    assert generation(admin, bearer(ADMIN_KEY)) == 3


def test_default_config_reads_admin_keys(gateway, upstream):
    port, admin = harness.free_port(), harness.free_port()
    env = {"AIGW_LISTEN": "127.0.0.1:%d" % port, "AIGW_ADMIN_LISTEN": "127.0.0.1:%d" % admin,
           "AIGW_WORKERS": "1", "AIGW_API_KEYS": DATA_KEY, "AIGW_ADMIN_KEYS": "%s, %s" % (ADMIN_KEY, ADMIN_KEY2),
           "OPENAI_BASE_URL": upstream.base_url}
    conf = REPO_ROOT / "conf" / "gateway.lua"
    gateway(conf_path=conf, port=port, env=env)
    refused(admin_request(admin, "GET", "/admin/status"), 401, "missing_admin_key", "authentication_error")
    refused(admin_request(admin, "GET", "/admin/status", bearer(DATA_KEY)),
            403, "invalid_admin_key", "permission_error")
    assert generation(admin, bearer(ADMIN_KEY2)) == 1
    assert admin_request(admin, "GET", "/metrics").status == 200
    r = run_cli(["reload", str(conf)], env=env)
    assert r.returncode == 0, r.stderr
    assert generation(admin, bearer(ADMIN_KEY)) == 2
    r = run_cli(["reload", str(conf)], env=dict(env, AIGW_ADMIN_KEYS=""))
    assert r.returncode == 1 and "AIGW_ADMIN_KEYS" in r.stderr, r
    assert generation(admin, bearer(ADMIN_KEY)) == 2
