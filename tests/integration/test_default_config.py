"""conf/gateway.lua, driven by the environment only (AIGW_LISTEN, AIGW_ADMIN_LISTEN,
AIGW_WORKERS, AIGW_API_KEYS, OPENAI_BASE_URL, OPENAI_API_KEY)."""
import harness
from harness import REPO_ROOT


def start_default(gateway, upstream, tmp_path, keys="gw-env-1,gw-env-2", args=None, cwd=None):
    port = harness.free_port()
    env = {
        "AIGW_LISTEN": "127.0.0.1:%d" % port,
        "AIGW_ADMIN_LISTEN": "127.0.0.1:%d" % harness.free_port(),
        "AIGW_WORKERS": "1",
        "AIGW_API_KEYS": keys,
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": "sk-from-env",
    }
    return gateway(conf_path=REPO_ROOT / "conf" / "gateway.lua", port=port, env=env, args=args,
                   cwd=cwd)


def test_default_config_from_env(gateway, upstream, tmp_path):
    gw = start_default(gateway, upstream, tmp_path)

    assert gw.chat("echo", "hi").status == 401
    r = gw.chat("echo", "hi there", headers={"Authorization": "Bearer gw-env-2"})
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "hi there"

    r = gw.chat("gpt-4o-mini", "proxied", headers={"x-api-key": "gw-env-1"})
    assert r.status == 200, r
    rec = upstream.last_request()
    assert rec.path == "/v1/chat/completions"
    assert rec.header_all("authorization") == ["Bearer sk-from-env"]
    assert not rec.has_header("x-api-key")


def test_default_config_without_keys_serves_loopback(gateway, upstream, tmp_path):
    gw = start_default(gateway, upstream, tmp_path, keys="")
    r = gw.chat("echo", "no key needed")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "no key needed"


def test_run_without_argument_uses_default_config(gateway, upstream, tmp_path):
    """`aigw run` with no CONF runs conf/gateway.lua, from the repo root."""
    gw = start_default(gateway, upstream, tmp_path, keys="", args=["run"], cwd=REPO_ROOT)
    assert gw.chat("echo", "default").status == 200
